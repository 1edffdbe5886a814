//! `/containers/{id}/archive` (`HEAD` stat, `GET` tar, `PUT` extract), what `docker cp` calls.
//! The work is `engine::container::archive_io`'s; this maps HTTP to it: Docker's query flags,
//! the `X-Docker-Container-Path-Stat` header, and Docker's statuses (404 for a missing path,
//! 400 for a bad destination).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;

use super::errors::container_status;
use super::{flag, ApiError, ApiResult, Params};
use crate::engine::container::archive_io::{ArchiveStream, PutOptions};
use crate::engine::container::archive_root::ArchiveError;
use crate::engine::container::archive_stat::{PathStat, PATH_STAT_HEADER};
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route(
            "/containers/{id}/archive",
            axum::routing::get(get_archive)
                .head(head_archive)
                .put(put_archive),
        )
        .route("/containers/{id}/changes", axum::routing::get(changes))
}

/// `GET /containers/{id}/changes`: `[{"Path", "Kind"}]`, Kind 0 modified, 1 added, 2 deleted.
async fn changes(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let changes = engine.container_changes(&id).await?;
    Ok(super::json_response(StatusCode::OK, &changes))
}

/// Statuses by kind, as Docker answers them.
fn api_error(e: ArchiveError) -> ApiError {
    let status = match &e {
        ArchiveError::NotFound { .. } => 404,
        ArchiveError::BadRequest(_) | ArchiveError::Unpack(_) => 400,
        ArchiveError::Conflict(_) => 409,
        ArchiveError::TooLarge(_) => 413,
        ArchiveError::Container(inner) => container_status(inner),
        ArchiveError::Io { .. } => 500,
    };
    ApiError::new(status, e.to_string())
}

fn path_param(params: &Params) -> ApiResult<&str> {
    params
        .get("path")
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path is required: the path in the container"))
}

fn with_stat(stat: &PathStat, status: StatusCode, body: Body) -> ApiResult<Response> {
    Response::builder()
        .status(status)
        .header(PATH_STAT_HEADER, stat.header_value())
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .map_err(|e| ApiError::new(500, format!("build archive response: {e}")))
}

async fn head_archive(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let stat = engine
        .stat_container_path(&id, path_param(&params)?)
        .await
        .map_err(api_error)?;
    with_stat(&stat, StatusCode::OK, Body::empty())
}

async fn get_archive(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let (stat, stream) = engine
        .container_archive(&id, path_param(&params)?)
        .await
        .map_err(api_error)?;
    with_stat(&stat, StatusCode::OK, Body::from_stream(chunks(stream)))
}

/// The tar as it is written; an error ends the body early (the status went out already).
fn chunks(stream: ArchiveStream) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(stream, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
}

async fn put_archive(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
    body: Body,
) -> ApiResult<Response> {
    let options = PutOptions {
        no_overwrite_dir_non_dir: flag(&params, "noOverwriteDirNonDir"),
        copy_uid_gid: flag(&params, "copyUIDGID"),
    };
    let body = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| e.to_string()));
    engine
        .extract_into_container(&id, path_param(&params)?, body, options)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::OK, Body::empty()).into_response())
}
