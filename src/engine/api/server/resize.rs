//! `POST /containers/{id}/resize?h=&w=` and `POST /exec/{id}/resize?h=&w=`: a TTY's window
//! size, as the Docker CLI sends it after starting and on every `SIGWINCH`. A container's goes
//! to its shim (which holds the pty master), an exec's is set on the master the engine holds for
//! the exec's life.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

use super::{ApiError, ApiResult, Params};
use crate::engine::runtime::console::WindowSize;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/containers/{id}/resize", post(resize_container))
        .route("/exec/{id}/resize", post(resize_exec))
}

/// `h` and `w` as Docker takes them: both required, non-negative integers; a zero size is
/// accepted and ignored (the CLI sends one before it knows the terminal's).
fn window_size(params: &HashMap<String, String>) -> ApiResult<Option<WindowSize>> {
    let dimension = |key: &str| -> ApiResult<u16> {
        let value = params.get(key).map(String::as_str).unwrap_or("");
        value.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!("invalid {key} {value:?}: a size in characters"))
        })
    };
    let (rows, cols) = (dimension("h")?, dimension("w")?);
    Ok((rows > 0 && cols > 0).then_some(WindowSize { rows, cols }))
}

async fn resize_container(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<StatusCode> {
    if let Some(size) = window_size(&params)? {
        engine.resize_container_tty(&id, size)?;
    } else {
        engine.inspect_container(&id).await?;
    }
    Ok(StatusCode::OK)
}

async fn resize_exec(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<StatusCode> {
    match window_size(&params)? {
        Some(size) => engine.resize_exec(&id, size)?,
        None => drop(engine.inspect_exec(&id)?),
    }
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sizes_are_required_numbers_and_zero_is_ignored() {
        assert_eq!(
            window_size(&params(&[("h", "40"), ("w", "120")])).unwrap(),
            Some(WindowSize {
                rows: 40,
                cols: 120
            })
        );
        assert_eq!(
            window_size(&params(&[("h", "0"), ("w", "0")])).unwrap(),
            None
        );
        assert_eq!(
            window_size(&params(&[("h", "40")])).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            window_size(&params(&[("h", "-1"), ("w", "3")]))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
