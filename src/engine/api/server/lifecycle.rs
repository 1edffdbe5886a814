//! `/containers/{id}/pause`, `unpause`, `top`, `stats`, `rename` and `update`: the rest of
//! Docker's container lifecycle and inspection endpoints (the verbs live in
//! `engine::container::{pause, top, stats, update}`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::{flag, json_body, json_response, ApiError, ApiResult, Params};
use crate::engine::container::update::UpdateRequest;
use crate::engine::SharedEngine;

/// Docker's interval between two streamed samples.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/update", post(update))
}

fn no_content() -> Response {
    (StatusCode::NO_CONTENT, Body::empty()).into_response()
}

async fn pause(State(engine): State<SharedEngine>, Path(id): Path<String>) -> ApiResult<Response> {
    engine.pause_container(&id).await?;
    Ok(no_content())
}

async fn unpause(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    engine.unpause_container(&id).await?;
    Ok(no_content())
}

async fn top(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let ps_args = params.get("ps_args").map(String::as_str).unwrap_or("");
    let top = engine.top_container(&id, ps_args).await?;
    Ok(json_response(StatusCode::OK, &top))
}

/// Docker's `stream` defaults to true; `one-shot` (with `stream=false`) skips the second sample
/// that fills `precpu_stats`.
async fn stats(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let mut sampler = engine.stats_sampler(&id)?;
    let stream = params.get("stream").is_none_or(|_| flag(&params, "stream"));
    if !stream {
        let mut stats = sampler.next().await;
        if stats.is_some() && !flag(&params, "one-shot") {
            tokio::time::sleep(STATS_INTERVAL).await;
            stats = sampler.next().await.or(stats);
        }
        let stats = stats.unwrap_or_else(|| sampler.empty());
        return Ok(json_response(StatusCode::OK, &stats));
    }
    let first = sampler.next().await.unwrap_or_else(|| sampler.empty());
    let body = futures_util::stream::unfold(
        (Some(first), sampler),
        |(pending, mut sampler)| async move {
            let stats = match pending {
                Some(s) => s,
                None => {
                    tokio::time::sleep(STATS_INTERVAL).await;
                    sampler.next().await?
                }
            };
            let mut line = serde_json::to_vec(&stats).ok()?;
            line.push(b'\n');
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                (None, sampler),
            ))
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::new(500, format!("build stats response: {e}")))
}

async fn rename(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let name = params.get("name").map(String::as_str).unwrap_or("");
    engine.rename_container(&id, name).await?;
    Ok(no_content())
}

async fn update(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: UpdateRequest = json_body(&body)?;
    let answer = engine.update_container(&id, &req).await?;
    Ok(json_response(StatusCode::OK, &answer))
}
