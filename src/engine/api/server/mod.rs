//! The axum router serving Docker Engine API paths (with or without a `/v1.xx` prefix), and the
//! accept loop that serves it on the engine's UNIX socket.
//!
//! One file per resource (`system`, `images`, `containers`, `networks`, `volumes`, `events`);
//! this file holds what they share: the error body, query parsing, the version prefix and the
//! connection handling.

mod archive;
mod attach;
mod body;
mod build;
mod commit;
mod containers;
mod detach_keys;
pub mod errors;
mod events;
mod exec;
mod filters;
mod image_archive;
mod images;
mod lifecycle;
mod networks;
mod resize;
mod sync;
mod system;
mod volumes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::MIN_API_VERSION;
use crate::engine::wire::{ErrorResponse, EventActor, EventMessage};
use crate::engine::SharedEngine;

pub use filters::Filters;

/// An error as Docker sends it: a status and `{"message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let body = ErrorResponse {
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<crate::engine::reference::ReferenceError> for ApiError {
    fn from(e: crate::engine::reference::ReferenceError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Query parameters as Docker sends them (`?all=1&filters={...}`).
pub type Params = axum::extract::Query<HashMap<String, String>>;

/// Docker's boolean query values: `1`/`true`/`True` are true, absent, empty, `0`/`false` are not.
pub fn flag(params: &HashMap<String, String>, key: &str) -> bool {
    matches!(
        params.get(key).map(|v| v.to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes")
    )
}

/// A JSON request body; an empty body is the type's default, as Docker clients sometimes send none.
pub fn json_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A pretty-free JSON answer with the given status.
pub fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> axum::response::Response {
    (status, axum::Json(value)).into_response()
}

/// Publish an event on the engine's bus (receivers may be absent: that is fine).
pub fn emit_event(
    engine: &SharedEngine,
    kind: &str,
    action: &str,
    id: &str,
    attributes: &[(&str, &str)],
) {
    let now = chrono::Utc::now();
    let message = EventMessage {
        kind: kind.to_string(),
        action: action.to_string(),
        actor: EventActor {
            id: id.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        time: now.timestamp(),
        time_nano: now.timestamp_nanos_opt().unwrap_or_default(),
    };
    engine.events.send(message);
}

/// Where request bodies (image imports) are spooled before a blocking consumer reads them. The
/// daemon empties it at start: whatever is there belongs to requests of an engine that died.
pub fn spool_dir(roots: &crate::engine::EngineRoots) -> std::path::PathBuf {
    roots.data_root.join("tmp")
}

/// The API router, without the version prefix (that is stripped before routing).
pub fn router(engine: SharedEngine) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(containers::routes())
        .merge(commit::routes())
        .merge(attach::routes())
        .merge(archive::routes().layer(axum::middleware::from_fn(body::drain_body_after_error)))
        .merge(networks::routes())
        .merge(volumes::routes())
        .merge(events::routes())
        .merge(exec::routes())
        .merge(build::routes().layer(axum::middleware::from_fn(body::drain_body_after_error)))
        .merge(sync::routes())
        .merge(resize::routes())
        .merge(lifecycle::routes())
        .fallback(not_served)
        .method_not_allowed_fallback(method_not_served)
        .with_state(engine)
}

/// Docker answers unknown paths with an empty 404 "page not found"; a Docker client pointed at
/// berth deserves to learn which endpoint berth lacks, in Docker's error shape.
async fn not_served(method: axum::http::Method, uri: Uri) -> ApiError {
    unsupported(&method, uri.path())
}

/// The 404 for an endpoint berth does not serve, naming it.
pub(super) fn unsupported(method: &axum::http::Method, path: &str) -> ApiError {
    ApiError::new(
        404,
        format!(
            "berth does not implement {method} {path}: this part of the Docker Engine API is not \
             supported by berth yet"
        ),
    )
}

async fn method_not_served(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        405,
        format!(
            "berth does not implement {method} {}: the endpoint exists, but not for this method",
            uri.path()
        ),
    )
}

/// Split `/v1.41/containers/json` into the version and the unversioned path; `None` when the
/// path carries no version.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    let (major, minor) = version.split_once('.')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(major) || !numeric(minor) {
        return None;
    }
    Some((version, &rest[end..]))
}

fn version_tuple(v: &str) -> (u32, u32) {
    let (a, b) = v.split_once('.').unwrap_or((v, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

/// Remove the `/vX.Y` prefix so that one router serves both forms. Versions older than the
/// minimum are refused as Docker does; newer ones are served leniently (the schema is open).
fn strip_version(req: &mut Request<Body>) -> ApiResult<()> {
    let path = req.uri().path();
    let Some((version, rest)) = split_version(path) else {
        return Ok(());
    };
    if version_tuple(version) < version_tuple(MIN_API_VERSION) {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is \
             {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let uri: Uri = path_and_query
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid request path {path:?}: {e}")))?;
    *req.uri_mut() = uri;
    Ok(())
}

/// `BERTH_API_TRACE=1` in the engine's environment logs every request line and its status: how
/// one finds the endpoints a Docker client calls that berth does not serve yet.
fn trace_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("BERTH_API_TRACE").is_some_and(|v| v != "0"))
}

/// Route one request (traced when asked).
async fn handle(router: Router, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if !trace_enabled() {
        return route(router, req).await;
    }
    let line = format!("{} {}", req.method(), req.uri());
    let response = route(router, req).await;
    if let Ok(r) = &response {
        eprintln!("berth engine: api {line} -> {}", r.status().as_u16());
    }
    response
}

/// Route one request; a panicking handler answers 500 instead of dropping the connection.
async fn route(router: Router, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut req = req.map(Body::new);
    if let Err(e) = strip_version(&mut req) {
        return Ok(e.into_response());
    }
    let routed = AssertUnwindSafe(router.oneshot(req)).catch_unwind().await;
    Ok(match routed {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            eprintln!("berth engine: request handler panicked: {what}");
            ApiError::new(500, format!("internal error in berth engine: {what}")).into_response()
        }
    })
}

async fn serve_connection(stream: UnixStream, router: Router) {
    let service = hyper::service::service_fn(move |req| handle(router.clone(), req));
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        // Clients hanging up mid-stream (`docker logs -f` + Ctrl-C) are routine.
        if !e.is_incomplete_message() && !e.is_canceled() {
            eprintln!("berth engine: connection error: {e}");
        }
    }
}

/// Serve the API on `listener` until `shutdown` completes. Requests in flight get a moment to
/// finish; endless streams (events, `logs -f`) are then cut, as Docker does on shutdown.
pub async fn serve(
    listener: UnixListener,
    engine: SharedEngine,
    shutdown: impl Future<Output = ()>,
) {
    let router = router(engine);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(e) => {
                    eprintln!("berth engine: accept on the API socket failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    connections.abort_all();
}

/// `Content-Type` of streamed JSON answers (pull progress, events).
pub const JSON_STREAM: (header::HeaderName, &str) = (header::CONTENT_TYPE, "application/json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_recognised_only_when_numeric() {
        assert_eq!(split_version("/v1.41/_ping"), Some(("1.41", "/_ping")));
        assert_eq!(split_version("/v1.41"), Some(("1.41", "")));
        assert_eq!(split_version("/volumes/x"), None);
        assert_eq!(split_version("/vx.1/x"), None);
        assert_eq!(split_version("/v1/x"), None);
    }

    #[test]
    fn old_versions_are_refused_with_docker_text() {
        let mut req = Request::builder()
            .uri("/v1.12/version")
            .body(Body::empty())
            .unwrap();
        let err = strip_version(&mut req).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("client version 1.12 is too old"));
        let mut req = Request::builder()
            .uri("/v1.45/images/json?all=1")
            .body(Body::empty())
            .unwrap();
        strip_version(&mut req).unwrap();
        assert_eq!(req.uri().to_string(), "/images/json?all=1");
    }

    #[test]
    fn docker_booleans() {
        let p: HashMap<String, String> = [("a", "1"), ("b", "True"), ("c", "0"), ("d", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(flag(&p, "a") && flag(&p, "b"));
        assert!(!flag(&p, "c") && !flag(&p, "d") && !flag(&p, "e"));
    }
}
