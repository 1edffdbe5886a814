//! `POST /containers/{id}/attach`: the container's output as Docker's multiplexed stream, over
//! the connection the client hijacks (`Upgrade: tcp`, answered 101) or, for plain HTTP clients,
//! as a streamed 200 body. The stream ends when the container next exits, which is how
//! `docker run` (attach, wait `next-exit`, start) prints the output and returns.
//!
//! The client's bytes on a hijacked connection go to the container's stdin when it was created
//! with `OpenStdin` and the attach asks for `stdin`; the engine closes that stdin when the client
//! half-closes, for `StdinOnce` containers (`docker run -i`), as Docker does.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::body::{multiplexed_frame, tokio_stream_from};
use super::{flag, ApiError, ApiResult, Params};
use crate::engine::SharedEngine;

pub fn routes() -> axum::Router<SharedEngine> {
    axum::Router::new().route("/containers/{id}/attach", axum::routing::post(attach))
}

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

pub async fn attach(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
    mut req: Request,
) -> ApiResult<Response> {
    let container = engine.inspect_container(&id).await?;
    if container.config.tty {
        return Err(ApiError::bad_request(format!(
            "cannot attach to container {}: berth does not support TTYs yet",
            container.name.trim_start_matches('/')
        )));
    }
    // Docker's `stream` is about live output; berth always streams, and `logs` adds the past.
    let (stdout, stderr) = (flag(&params, "stdout"), flag(&params, "stderr"));
    let output =
        engine.attach_container_output(&container.id, stdout, stderr, flag(&params, "logs"))?;
    let wants_stdin = flag(&params, "stdin") && container.config.open_stdin;
    let stdin = if wants_stdin {
        Some(engine.container_stdin(&container.id)?)
    } else {
        None
    };
    if !req.headers().contains_key(header::UPGRADE) {
        let frames =
            tokio_stream_from(output).map(|chunk| Ok::<_, Infallible>(multiplexed_frame(&chunk)));
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, MULTIPLEXED)
            .body(Body::from_stream(frames))
            .map_err(|e| ApiError::new(500, format!("build attach response: {e}")));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let feeding = stdin.map(|(mut stdin, finished_before)| {
            let engine = engine.clone();
            let id = container.id.clone();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut reader, &mut stdin).await;
                // The client's input ended: for a `StdinOnce` container, closing our end is
                // the EOF it reads; otherwise the shim's end keeps its stdin open.
                engine.release_stdin(&id, stdin, &finished_before).await;
            })
        });
        let mut output = output;
        while let Some(chunk) = output.recv().await {
            if writer.write_all(&multiplexed_frame(&chunk)).await.is_err() {
                break;
            }
        }
        if let Some(feeding) = feeding {
            feeding.abort();
        }
        let _ = writer.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, MULTIPLEXED)
        .body(Body::empty())
        .map_err(|e| ApiError::new(500, format!("build attach response: {e}")))
}
