//! `POST /build` (the classic builder's API, so `docker build` with DOCKER_BUILDKIT=0 works
//! against berth) and `POST /build/prune`.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt;
use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::body::{spool, tokio_stream_from};
use super::{emit_event, ApiError, ApiResult, JSON_STREAM};
use crate::engine::auth::AuthConfig;
use crate::engine::build::executor;
use crate::engine::build::progress::BuildMessage;
use crate::engine::build::session::BuildOptions;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/build", post(build))
        .route("/build/prune", post(prune))
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")
}

fn json_param<T: serde::de::DeserializeOwned + Default>(name: &str, v: &str) -> ApiResult<T> {
    if v.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(v).map_err(|e| ApiError::bad_request(format!("{name}: invalid JSON: {e}")))
}

/// The query as Docker's classic builder reads it (`t` repeats; maps are JSON).
pub fn options(pairs: &[(String, String)]) -> ApiResult<BuildOptions> {
    let mut o = BuildOptions::default();
    for (k, v) in pairs {
        match k.as_str() {
            "t" if !v.is_empty() => o.tags.push(v.clone()),
            "dockerfile" => o.dockerfile = v.clone(),
            "buildargs" => o.build_args = json_param::<IndexMap<String, Option<String>>>(k, v)?,
            "target" if !v.is_empty() => o.target = Some(v.clone()),
            "nocache" => o.nocache = truthy(v),
            "pull" => o.pull = truthy(v),
            "labels" => o.labels = json_param(k, v)?,
            "q" => o.quiet = truthy(v),
            "networkmode" if v != "default" => o.network_mode = v.clone(),
            "shmsize" if !v.is_empty() && v != "0" => {
                o.shm_size =
                    Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("shmsize: not a number: {v}"))
                    })?)
            }
            "extrahosts" => o
                .extra_hosts
                .extend(v.split(',').filter(|h| !h.is_empty()).map(String::from)),
            "platform" if !v.is_empty() => o.platform = Some(v.clone()),
            _ => {}
        }
    }
    for t in &o.tags {
        crate::engine::reference::ImageReference::parse(t)?;
    }
    if !matches!(o.network_mode.as_str(), "" | "bridge" | "none" | "host") {
        return Err(ApiError::bad_request(format!(
            "networkmode {}: berth builds with bridge, none or host networking",
            o.network_mode
        )));
    }
    Ok(o)
}

/// `X-Registry-Config`: base64url JSON of registry → `AuthConfig`.
pub fn registry_config(headers: &HeaderMap) -> ApiResult<HashMap<String, AuthConfig>> {
    let Some(v) = headers.get("x-registry-config") else {
        return Ok(HashMap::new());
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Registry-Config is not ASCII"))?;
    let trimmed = text.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Config: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    let map: HashMap<String, AuthConfig> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Config: {e}")))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (crate::engine::auth::normalize_key(&k), v))
        .collect())
}

async fn build(
    State(engine): State<SharedEngine>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let mut opts = options(&pairs)?;
    opts.registry_auth = registry_config(&headers)?;
    let tar = spool(&engine, body).await?;
    let (tx, rx) = mpsc::channel::<BuildMessage>(256);
    tokio::spawn(async move {
        let result = executor::build(engine.clone(), opts, tar.clone(), tx.clone()).await;
        let _ = tokio::fs::remove_file(&tar).await;
        match result {
            Ok(image) => emit_event(&engine, "image", "build", &image.id, &[]),
            Err(e) => {
                let _ = tx.send(BuildMessage::failure(e.to_string())).await;
            }
        }
    });
    let lines = tokio_stream_from(rx).map(|m| Ok::<_, Infallible>(Bytes::from(m.to_line())));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(JSON_STREAM.0, JSON_STREAM.1)
        .body(Body::from_stream(lines))
        .unwrap_or_default())
}

async fn prune(State(engine): State<SharedEngine>) -> ApiResult<Response> {
    let used = super::containers::image_in_use(&engine).await;
    let report = tokio::task::spawn_blocking(move || {
        crate::engine::build::prune::prune(&engine, &|id: &str| used.iter().any(|u| u == id))
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))?
    .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(super::json_response(StatusCode::OK, &report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_docker_clis_query_is_decoded() {
        let o = options(&pairs(&[
            ("t", "app:1"),
            ("t", "app:latest"),
            ("buildargs", r#"{"A":"1","B":null}"#),
            ("labels", r#"{"l":"v"}"#),
            ("nocache", "1"),
            ("networkmode", "default"),
            ("q", "true"),
        ]))
        .unwrap();
        assert_eq!(o.tags, ["app:1", "app:latest"]);
        assert_eq!(o.build_args["A"].as_deref(), Some("1"));
        assert_eq!(o.build_args["B"], None);
        assert_eq!(o.labels["l"], "v");
        assert!(o.nocache && o.quiet && !o.pull);
        assert_eq!(o.network_mode, "");
        assert!(options(&pairs(&[("networkmode", "container:x")])).is_err());
        assert!(options(&pairs(&[("t", "UPPER:case")])).is_err());
    }

    #[test]
    fn registry_config_is_a_base64url_map() {
        let json = r#"{"127.0.0.1:5000":{"username":"u","password":"p"}}"#;
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::URL_SAFE.encode(json);
        h.insert("x-registry-config", enc.parse().unwrap());
        let map = registry_config(&h).unwrap();
        assert_eq!(map["127.0.0.1:5000"].username, "u");
    }
}
