//! `POST /containers/{id}/sync?path=TARGET` (a berth extension, not Docker's API): a tar of the
//! changed files, deletions as `.wh.NAME` entries, applied to the RUNNING container through its
//! own root (see `engine::container::sync`). Answers `200 {"Entries": n, "Bytes": b}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::{json_response, ApiError, ApiResult, Params};
use crate::engine::container::sync::MAX_SYNC_BYTES;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new().route("/containers/{id}/sync", post(sync))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SyncResponse {
    entries: u64,
    bytes: u64,
}

async fn sync(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let path = params
        .get("path")
        .ok_or_else(|| ApiError::bad_request("path is required: the directory to sync into"))?;
    // The tar framing adds at most a header and padding per entry on top of the content cap.
    let limit = MAX_SYNC_BYTES + (64 << 20);
    let tar = axum::body::to_bytes(body, limit).await.map_err(|e| {
        ApiError::new(
            413,
            format!("sync body unreadable or over {limit} bytes: {e}"),
        )
    })?;
    let stats = engine.sync_container(&id, path, tar).await?;
    let answer = SyncResponse {
        entries: stats.entries,
        bytes: stats.bytes,
    };
    Ok(json_response(StatusCode::OK, &answer))
}
