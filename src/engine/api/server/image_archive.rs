//! `docker save|load|tag|history|image prune` over the Engine API: `GET /images/get`,
//! `GET /images/{name}/get`, `POST /images/load`, `POST /images/{name}/tag`,
//! `GET /images/{name}/history`, `POST /images/prune`.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::mpsc;

use super::body::{spool, tokio_stream_from};
use super::{emit_event, flag, json_response, ApiError, ApiResult, Filters, Params, JSON_STREAM};
use crate::engine::image::ImageError;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/images/get", get(save_many))
        .route("/images/load", post(load))
        .route("/images/prune", post(prune))
}

/// Errors about the archive itself are the client's: a 400 with the store's message.
fn archive_error(e: ImageError) -> ApiError {
    match e {
        ImageError::InvalidImage { .. }
        | ImageError::Unpack { .. }
        | ImageError::Content { .. }
        | ImageError::DiffIdMismatch { .. } => ApiError::bad_request(e.to_string()),
        e => e.into(),
    }
}

/// A `Write` that hands 64 KiB chunks to the response body; a client gone away ends the save.
struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

async fn save_many(
    State(engine): State<SharedEngine>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("names: at least one image to save"));
    }
    save(engine, names).await
}

/// `GET /images/{name}/get` (called from the images router, which owns the path).
pub async fn save_one(engine: SharedEngine, name: &str) -> ApiResult<Response> {
    save(engine, vec![name.to_string()]).await
}

async fn save(engine: SharedEngine, names: Vec<String>) -> ApiResult<Response> {
    // Unknown names are a 404 before any byte of the archive is sent.
    for n in &names {
        if engine.images.resolve(n).is_none() {
            return Err(ApiError::new(404, format!("No such image: {n}")));
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let store = engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx,
            buf: Vec::new(),
        };
        if let Err(e) = store.images.save(&names, &mut out) {
            // The status is sent already: the archive ends short, and the log says why.
            eprintln!("berth engine: save of {names:?} failed: {e}");
        }
    });
    let chunks = futures_util::StreamExt::map(tokio_stream_from(rx), Ok::<_, std::io::Error>);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(Body::from_stream(chunks))
        .unwrap_or_default())
}

async fn load(
    State(engine): State<SharedEngine>,
    params: Params,
    body: Body,
) -> ApiResult<Response> {
    // `quiet` only hides progress bars in Docker (berth draws none): the CLI sets it whenever its
    // output is not a terminal and still prints the `Loaded image` lines.
    let _quiet = flag(&params, "quiet");
    let path = spool(&engine, body).await?;
    let store = engine.clone();
    let tar = path.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&tar).map_err(|e| {
            ApiError::new(500, format!("open spooled archive {}: {e}", tar.display()))
        })?;
        store
            .images
            .load(std::io::BufReader::new(file))
            .map_err(archive_error)
    })
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let lines =
        loaded.map_err(|e| ApiError::new(500, format!("image load task failed: {e}")))??;
    let mut out = Vec::new();
    for line in &lines {
        let name = line.rsplit(": ").next().unwrap_or(line);
        emit_event(&engine, "image", "load", name, &[("name", name)]);
        let msg = serde_json::json!({ "stream": format!("{line}\n") });
        out.extend_from_slice(msg.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(JSON_STREAM.0, JSON_STREAM.1)
        .body(Body::from(out))
        .unwrap_or_default())
}

/// `POST /images/{name}/tag?repo=…&tag=…`.
pub async fn tag(engine: SharedEngine, name: &str, params: &Params) -> ApiResult<Response> {
    let repo = params.get("repo").map(String::as_str).unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repo: the name to tag the image with is required",
        ));
    }
    let target = match params.get("tag").map(String::as_str) {
        None | Some("") => repo.to_string(),
        Some(t) => format!("{repo}:{t}"),
    };
    let store = engine.clone();
    let (src, dst) = (name.to_string(), target.clone());
    let rec = tokio::task::spawn_blocking(move || store.images.tag(&src, &dst))
        .await
        .map_err(|e| ApiError::new(500, format!("image tag task failed: {e}")))??;
    emit_event(&engine, "image", "tag", &rec.id, &[("name", &target)]);
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .body(Body::empty())
        .unwrap_or_default())
}

/// `GET /images/{name}/history`.
pub async fn history(engine: SharedEngine, name: &str) -> ApiResult<Response> {
    let rec = engine
        .images
        .resolve(name)
        .ok_or_else(|| ApiError::new(404, format!("No such image: {name}")))?;
    Ok(json_response(StatusCode::OK, &engine.images.history(&rec)?))
}

async fn prune(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = Filters::from_params(&params)?;
    filters.allow_only(&["dangling"])?;
    // Docker: `dangling=false` (what `image prune -a` sends) prunes every unused image.
    let all = filters.bool_value("dangling")? == Some(false);
    let used: Vec<String> = super::containers::image_in_use(&engine).await;
    let store = engine.clone();
    let report = tokio::task::spawn_blocking(move || {
        store
            .images
            .prune(all, &|id: &str| used.iter().any(|u| u == id))
    })
    .await
    .map_err(|e| ApiError::new(500, format!("image prune task failed: {e}")))??;
    for d in report.images_deleted.iter().flatten() {
        if let Some(id) = d.get("Deleted").and_then(|v| v.as_str()) {
            emit_event(&engine, "image", "delete", id, &[]);
        }
    }
    emit_event(&engine, "image", "prune", "", &[]);
    Ok(json_response(StatusCode::OK, &report))
}
