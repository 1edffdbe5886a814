//! `/images`: pull (`POST /images/create?fromImage=`), push (`POST /images/{name}/push`), list,
//! inspect and remove. Pull and push take per-request credentials from `X-Registry-Auth`.
//!
//! Image names contain `/` and `:` (`127.0.0.1:5000/team/app:1`), so the per-image routes take
//! the rest of the path and split off the verb (`/json`) themselves.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::body::{spool, tokio_stream_from};
use super::{emit_event, flag, json_response, ApiError, ApiResult, Filters, Params, JSON_STREAM};
use crate::engine::auth::AuthConfig;
use crate::engine::reference::ImageReference;
use crate::engine::registry::{RegistryClient, RegistryError};
use crate::engine::wire::{ErrorDetail, ProgressMessage};
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/auth", post(auth))
        .merge(super::image_archive::routes())
        .route("/images/{*rest}", any(by_name))
}

/// `fromImage` and `tag` as Docker clients send them: the tag may be separate (`busybox` +
/// `latest`), part of the name (`busybox:1`, tag empty), or a digest (`sha256:…`).
pub fn pull_reference(from_image: &str, tag: &str) -> String {
    if tag.is_empty() {
        from_image.to_string()
    } else if tag.contains(':') {
        format!("{from_image}@{tag}")
    } else {
        format!("{from_image}:{tag}")
    }
}

fn progress_line(message: &ProgressMessage) -> Bytes {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}

/// The per-request credentials of `X-Registry-Auth` (base64url JSON `AuthConfig`), as the
/// Docker CLI sends them; used for this request only, never stored.
pub fn registry_auth(headers: &HeaderMap) -> ApiResult<Option<AuthConfig>> {
    match headers.get("x-registry-auth") {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::bad_request("X-Registry-Auth is not ASCII"))?;
            AuthConfig::from_header(text).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// `POST /auth` (`docker login` through berth's socket): checks an `AuthConfig` against its
/// registry; nothing is stored (the CLI keeps credentials).
async fn auth(State(engine): State<SharedEngine>, body: Bytes) -> ApiResult<Response> {
    let config: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid auth configuration: {e}")))?;
    let registry = crate::engine::auth::normalize_key(&config.serveraddress);
    let registry = if registry.is_empty() {
        crate::engine::reference::DOCKER_HUB.to_string()
    } else {
        registry
    };
    let client = RegistryClient::for_registry(&registry, &engine.settings)
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .with_credentials(Some(config));
    match client.check_login().await {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(e @ RegistryError::Unauthorized { .. }) => Err(ApiError::new(401, e.to_string())),
        Err(e) => Err(ApiError::new(500, e.to_string())),
    }
}

/// A streamed JSON-lines answer fed by `rx` (pull and push progress).
fn progress_response(rx: mpsc::Receiver<ProgressMessage>) -> Response {
    let lines = tokio_stream_from(rx).map(|m| Ok::<_, Infallible>(progress_line(&m)));
    Response::builder()
        .status(StatusCode::OK)
        .header(JSON_STREAM.0, JSON_STREAM.1)
        .body(Body::from_stream(lines))
        .unwrap_or_default()
}

/// Docker reports pull and push failures in-band: the status is already 200.
async fn send_error(tx: &mpsc::Sender<ProgressMessage>, message: String) {
    let _ = tx
        .send(ProgressMessage {
            error: Some(message.clone()),
            error_detail: Some(ErrorDetail { message }),
            ..Default::default()
        })
        .await;
}

async fn create(
    State(engine): State<SharedEngine>,
    headers: HeaderMap,
    params: Params,
    body: Body,
) -> ApiResult<Response> {
    let from_image = params.get("fromImage").map(String::as_str).unwrap_or("");
    let tag = params.get("tag").map(String::as_str).unwrap_or("");
    if params.get("fromSrc").map(String::as_str) == Some("-") {
        let repo = params.get("repo").map(String::as_str).unwrap_or("");
        return import(engine, repo, tag, body).await;
    }
    if params.contains_key("fromSrc") {
        return Err(ApiError::bad_request(
            "importing from a URL is not supported: send the tar as the request body with fromSrc=-",
        ));
    }
    if from_image.is_empty() {
        return Err(ApiError::bad_request(
            "fromImage (pull) or fromSrc=- (import) is required",
        ));
    }
    let name = pull_reference(from_image, tag);
    let reference = ImageReference::parse(&name)?;
    let credentials = registry_auth(&headers)?;

    let (tx, rx) = mpsc::channel::<ProgressMessage>(64);
    let puller = engine.clone();
    tokio::spawn(async move {
        let result = puller
            .images
            .pull_with_auth(&reference, &puller.settings, credentials, tx.clone())
            .await;
        match result {
            Ok(image) => emit_event(
                &puller,
                "image",
                "pull",
                &name,
                &[("name", &name), ("id", &image.id)],
            ),
            Err(e) => send_error(&tx, e.to_string()).await,
        }
    });
    Ok(progress_response(rx))
}

/// `POST /images/{name}/push?tag=`: the local image `name:tag` goes to its registry.
async fn push(
    engine: SharedEngine,
    name: &str,
    headers: &HeaderMap,
    params: &Params,
) -> ApiResult<Response> {
    let tag = params.get("tag").map(String::as_str).unwrap_or("");
    let full = pull_reference(name, tag);
    let reference = ImageReference::parse(&full)?;
    let credentials = registry_auth(headers)?;
    if engine.images.resolve(&reference.familiar()).is_none() {
        return Err(ApiError::new(
            404,
            format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar()
            ),
        ));
    }
    let (tx, rx) = mpsc::channel::<ProgressMessage>(64);
    tokio::spawn(async move {
        let pushed = crate::engine::push::push(
            &engine.images,
            &reference,
            &engine.settings,
            credentials,
            tx.clone(),
        )
        .await;
        match pushed {
            Ok(done) => emit_event(
                &engine,
                "image",
                "push",
                &full,
                &[("name", &full), ("digest", &done.digest)],
            ),
            Err(e) => send_error(&tx, e.to_string()).await,
        }
    });
    Ok(progress_response(rx))
}

/// `fromSrc=-`: the body is a root filesystem tar (plain or gzip). It is spooled to disk, so an
/// import of any size does not sit in memory, then handed to the image store's blocking import.
async fn import(engine: SharedEngine, repo: &str, tag: &str, body: Body) -> ApiResult<Response> {
    let repo_tag = match (repo, tag) {
        ("", _) => None,
        (repo, "") => Some(repo.to_string()),
        (repo, tag) => Some(format!("{repo}:{tag}")),
    };
    let path = spool(&engine, body).await?;
    let store = engine.clone();
    let name = repo_tag.clone();
    let tar = path.clone();
    let imported = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&tar).map_err(|e| {
            ApiError::new(500, format!("open spooled import {}: {e}", tar.display()))
        })?;
        store
            .images
            .import(std::io::BufReader::new(file), name.as_deref())
            .map_err(ApiError::from)
    })
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let image =
        imported.map_err(|e| ApiError::new(500, format!("image import task failed: {e}")))??;
    let name = repo_tag.unwrap_or_else(|| image.id.clone());
    emit_event(&engine, "image", "import", &image.id, &[("name", &name)]);
    let status = ProgressMessage {
        status: Some(image.id.clone()),
        ..Default::default()
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(JSON_STREAM.0, JSON_STREAM.1)
        .body(Body::from(progress_line(&status)))
        .unwrap_or_default())
}

async fn list(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = Filters::from_params(&params)?;
    filters.allow_only(&["reference", "label", "dangling"])?;
    let dangling = filters.bool_value("dangling")?;
    // Build steps' images show only with `all`, as Docker's intermediate images do.
    let all = super::flag(&params, "all");
    let summaries: Vec<_> = engine
        .images
        .list()
        .iter()
        .filter(|image| all || !image.intermediate)
        .map(|image| engine.images.summary(image))
        .filter(|s| filters.labels_match(&s.labels))
        .filter(|s| match dangling {
            Some(want) => want == s.repo_tags.is_empty(),
            None => true,
        })
        .filter(|s| {
            filters.any("reference", |r| {
                s.repo_tags.iter().any(|t| reference_matches(t, r))
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &summaries))
}

async fn by_name(
    State(engine): State<SharedEngine>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    if method == Method::POST {
        if let Some(name) = rest.strip_suffix("/push") {
            return push(engine, name, &headers, &params).await;
        }
    }
    use super::image_archive as archive;
    match (&method, rest.rsplit_once('/')) {
        (&Method::GET, Some((name, "get"))) => return archive::save_one(engine, name).await,
        (&Method::GET, Some((name, "history"))) => return archive::history(engine, name).await,
        (&Method::POST, Some((name, "tag"))) => return archive::tag(engine, name, &params).await,
        _ => {}
    }
    if method == Method::GET {
        if let Some(name) = rest.strip_suffix("/json") {
            let image = engine
                .images
                .resolve(name)
                .ok_or_else(|| ApiError::new(404, format!("No such image: {name}")))?;
            return Ok(json_response(
                StatusCode::OK,
                &engine.images.inspect(&image),
            ));
        }
    }
    if method == Method::DELETE {
        let used: Vec<String> = super::containers::image_in_use(&engine).await;
        let force = flag(&params, "force");
        let store = engine.clone();
        let name = rest.clone();
        let lines = tokio::task::spawn_blocking(move || {
            store
                .images
                .remove(&name, force, &|id: &str| used.iter().any(|u| u == id))
        })
        .await
        .map_err(|e| ApiError::new(500, format!("image removal task failed: {e}")))??;
        // The store reports Docker's CLI lines (`Untagged: x`); the API answers them as objects.
        let records: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|line| line.split_once(": "))
            .map(|(kind, what)| serde_json::json!({ kind: what }))
            .collect();
        for line in &lines {
            if let Some(id) = line.strip_prefix("Deleted: ") {
                emit_event(&engine, "image", "delete", id, &[("name", &rest)]);
            } else if let Some(tag) = line.strip_prefix("Untagged: ") {
                emit_event(&engine, "image", "untag", tag, &[("name", tag)]);
            }
        }
        return Ok(json_response(StatusCode::OK, &records));
    }
    Err(super::unsupported(&method, &format!("/images/{rest}")))
}

/// Docker's `reference` filter: the full `name:tag`, or just the name (any tag).
fn reference_matches(repo_tag: &str, wanted: &str) -> bool {
    if repo_tag == wanted {
        return true;
    }
    // The tag follows the last ':' unless that ':' belongs to a registry host (`host:5000/app`).
    match repo_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name == wanted,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_matches_name_or_name_and_tag() {
        assert!(reference_matches(
            "127.0.0.1:5000/bb:1",
            "127.0.0.1:5000/bb"
        ));
        assert!(reference_matches(
            "127.0.0.1:5000/bb:1",
            "127.0.0.1:5000/bb:1"
        ));
        assert!(!reference_matches("127.0.0.1:5000/bb:1", "127.0.0.1"));
        assert!(!reference_matches("busybox:1", "busybox:2"));
    }

    #[test]
    fn pull_reference_joins_tags_and_digests() {
        assert_eq!(pull_reference("busybox", "latest"), "busybox:latest");
        assert_eq!(
            pull_reference("127.0.0.1:5000/bb:1", ""),
            "127.0.0.1:5000/bb:1"
        );
        assert_eq!(pull_reference("bb", "sha256:abc"), "bb@sha256:abc");
    }
}
