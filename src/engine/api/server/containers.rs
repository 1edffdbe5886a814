//! `/containers`: create, list, inspect, start, stop, kill, wait, restart, remove and logs.
//!
//! The verbs themselves live in `engine::container` (one file each); this file maps HTTP to them:
//! query parameters, Docker's 304 for "already in that state", and the multiplexed log stream.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;

use super::body::{multiplexed_frame, tokio_stream_from};
use super::{flag, json_body, json_response, ApiError, ApiResult, Params};
use crate::engine::container::list::ContainerFilters;
use crate::engine::container::logs::LogOptions;
use crate::engine::container::wait::WaitCondition;
use crate::engine::container::ContainerError;
use crate::engine::wire::{ContainerCreateRequest, ContainerSummary, ContainerWaitResponse};
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}", axum::routing::delete(remove))
}

fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// 204 on success; Docker's bodiless 304 when the container already was in the wanted state.
fn done(result: Result<(), ContainerError>) -> ApiResult<Response> {
    match result {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        Err(ContainerError::NotModified(_)) => Ok(empty(StatusCode::NOT_MODIFIED)),
        Err(e) => Err(e.into()),
    }
}

/// Docker's `t` (seconds before SIGKILL); `-1` waits forever, as Docker does.
fn timeout_param(params: &HashMap<String, String>) -> ApiResult<Option<i64>> {
    match params.get("t").filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t:?}"))),
    }
}

async fn all_containers(engine: &SharedEngine) -> Vec<ContainerSummary> {
    engine
        .list_containers(true, &ContainerFilters::default())
        .await
        .unwrap_or_default()
}

/// Running, paused and stopped container counts for `/info`.
pub async fn state_counts(engine: &SharedEngine) -> (usize, usize, usize) {
    let containers = all_containers(engine).await;
    let count = |state: &str| containers.iter().filter(|c| c.state == state).count();
    let running = count("running");
    let paused = count("paused");
    (running, paused, containers.len() - running - paused)
}

/// Volume name → IDs of the containers (any state) whose mounts use it.
pub fn volumes_in_use(engine: &SharedEngine) -> HashMap<String, Vec<String>> {
    engine.volumes_in_use()
}

/// The image IDs that containers (any state) were created from.
pub async fn image_in_use(engine: &SharedEngine) -> Vec<String> {
    all_containers(engine)
        .await
        .into_iter()
        .map(|c| c.image_id)
        .collect()
}

async fn create(
    State(engine): State<SharedEngine>,
    params: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ContainerCreateRequest = json_body(&body)?;
    if req.image.is_empty() {
        return Err(ApiError::bad_request("config.Image is required"));
    }
    let name = params
        .get("name")
        .map(String::as_str)
        .filter(|n| !n.is_empty());
    let created = engine.create_container(name, req).await?;
    Ok(json_response(StatusCode::CREATED, &created))
}

async fn list(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = ContainerFilters::from_docker_json(
        params.get("filters").map(String::as_str).unwrap_or(""),
    )?;
    let mut containers = engine
        .list_containers(flag(&params, "all"), &filters)
        .await?;
    if let Some(limit) = params.get("limit").and_then(|l| l.parse::<i64>().ok()) {
        if limit > 0 {
            containers.truncate(limit as usize);
        }
    }
    Ok(json_response(StatusCode::OK, &containers))
}

async fn inspect(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let container = engine.inspect_container(&id).await?;
    Ok(json_response(StatusCode::OK, &container))
}

async fn start(State(engine): State<SharedEngine>, Path(id): Path<String>) -> ApiResult<Response> {
    done(engine.start_container(&id).await)
}

async fn stop(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let timeout = timeout_param(&params)?;
    done(engine.stop_container(&id, timeout).await)
}

async fn restart(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let timeout = timeout_param(&params)?;
    match engine.stop_container(&id, timeout).await {
        Ok(()) | Err(ContainerError::NotModified(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match engine.start_container(&id).await {
        Ok(()) | Err(ContainerError::NotModified(_)) => Ok(empty(StatusCode::NO_CONTENT)),
        Err(e) => Err(e.into()),
    }
}

async fn kill(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let signal = params
        .get("signal")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    done(engine.kill_container(&id, signal).await)
}

/// Headers go out at once and the body when the container stops, as Docker does: a client that
/// waits and then starts (`docker run`) knows the wait is registered before it starts.
async fn wait(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let condition = WaitCondition::parse(params.get("condition").map_or("", String::as_str))?;
    // Unknown containers are a proper 404, not a status buried in the body.
    let container = engine.inspect_container(&id).await?;
    let body = futures_util::stream::once(async move {
        let answer = match engine.wait_container_for(&container.id, condition).await {
            Ok(code) => serde_json::to_vec(&ContainerWaitResponse { status_code: code }),
            Err(e) => serde_json::to_vec(&serde_json::json!({
                "StatusCode": -1,
                "Error": { "Message": e.to_string() },
            })),
        };
        let mut bytes = answer.unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_default())
}

async fn remove(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    engine
        .remove_container(&id, flag(&params, "force"), flag(&params, "v"))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A time as the Docker CLI sends it: Unix seconds with an optional fraction of up to nine
/// digits (`1700000000.123456789`).
fn unix_param(
    params: &HashMap<String, String>,
    key: &str,
) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    let Some(v) = params.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = || ApiError::bad_request(format!("invalid value for {key}: {v:?}"));
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let secs: i64 = secs.parse().map_err(|_| invalid())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| invalid())?
    };
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(Some)
        .ok_or_else(invalid)
}

async fn logs(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let options = LogOptions {
        follow: flag(&params, "follow"),
        stdout: flag(&params, "stdout"),
        stderr: flag(&params, "stderr"),
        timestamps: flag(&params, "timestamps"),
        tail: match params.get("tail").map(String::as_str) {
            None | Some("" | "all") => None,
            Some(n) => Some(n.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid value for tail: {n:?}: a number or all"))
            })?),
        },
        since: unix_param(&params, "since")?,
        until: unix_param(&params, "until")?,
    };
    if !options.stdout && !options.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let container = engine.inspect_container(&id).await?;
    let tty = container.config.tty;
    let receiver = engine.container_logs(&container.id, options).await?;
    let chunks = tokio_stream_from(receiver);
    let (content_type, body) = if tty {
        // A TTY merges the streams: Docker sends the raw bytes, unframed.
        let raw = chunks.map(|c| Ok::<_, Infallible>(Bytes::from(c.bytes)));
        ("application/vnd.docker.raw-stream", Body::from_stream(raw))
    } else {
        let framed = chunks.map(|c| Ok::<_, Infallible>(multiplexed_frame(&c)));
        (
            "application/vnd.docker.multiplexed-stream",
            Body::from_stream(framed),
        )
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_default())
}
