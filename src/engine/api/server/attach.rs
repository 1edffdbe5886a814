//! `POST /containers/{id}/attach`: the container's output over the connection the client
//! hijacks (`Upgrade: tcp`, answered 101) or, for plain HTTP clients, as a streamed 200 body:
//! Docker's multiplexed stream, or for a TTY container the terminal's raw bytes. The stream
//! ends when the container next exits, which is how `docker run` (attach, wait `next-exit`,
//! start) prints the output and returns.
//!
//! The client's bytes on a hijacked connection go to the container's stdin when it was created
//! with `OpenStdin` and the attach asks for `stdin`; the engine closes that stdin when the client
//! half-closes, for `StdinOnce` containers (`docker run -i`), as Docker does. A TTY container's
//! shim relays that stdin to the terminal; typing the detach keys (`detachKeys`, default
//! `ctrl-p,ctrl-q`) ends the attach and leaves the container running.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::body::{multiplexed_frame, tokio_stream_from};
use super::detach_keys::{self, DetachMatcher, Scan};
use super::{flag, ApiError, ApiResult, Params};
use crate::engine::container::logs::LogChunk;
use crate::engine::SharedEngine;

pub fn routes() -> axum::Router<SharedEngine> {
    axum::Router::new().route("/containers/{id}/attach", axum::routing::post(attach))
}

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

/// The bytes of an output chunk on the wire: framed, or raw for a TTY.
fn encode(tty: bool, chunk: &LogChunk) -> Vec<u8> {
    if tty {
        chunk.bytes.clone()
    } else {
        multiplexed_frame(chunk).to_vec()
    }
}

pub async fn attach(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    params: Params,
    mut req: Request,
) -> ApiResult<Response> {
    let container = engine.inspect_container(&id).await?;
    let tty = container.config.tty;
    // Checked before anything is opened, so a typo is an error rather than a stuck terminal.
    let detach_keys = detach_keys::parse_or_default(params.get("detachKeys").map(String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
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
    let content_type = if tty { RAW_STREAM } else { MULTIPLEXED };
    if !req.headers().contains_key(header::UPGRADE) {
        let frames = tokio_stream_from(output)
            .map(move |chunk| Ok::<_, Infallible>(axum::body::Bytes::from(encode(tty, &chunk))));
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from_stream(frames))
            .map_err(|e| ApiError::new(500, format!("build attach response: {e}")));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let session = Session {
        engine,
        id: container.id,
        tty,
        detach: tty.then(|| DetachMatcher::new(detach_keys)),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        session.run(TokioIo::new(upgraded), output, stdin).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::empty())
        .map_err(|e| ApiError::new(500, format!("build attach response: {e}")))
}

/// One hijacked attach.
struct Session {
    engine: SharedEngine,
    id: String,
    tty: bool,
    /// A TTY attach watches its input for the detach keys.
    detach: Option<DetachMatcher>,
}

impl Session {
    async fn run<C>(
        self,
        conn: C,
        mut output: tokio::sync::mpsc::Receiver<LogChunk>,
        stdin: Option<(pipe::Sender, String)>,
    ) where
        C: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (reader, mut writer) = tokio::io::split(conn);
        let Session {
            engine,
            id,
            tty,
            detach,
        } = self;
        let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
        // Completes only on a detach (an input that just ended must not end the output).
        let mut detached = std::pin::pin!(async move {
            if detached_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        let feeding = stdin.map(|(mut stdin, finished_before)| {
            tokio::spawn(async move {
                if feed(reader, &mut stdin, detach).await {
                    let _ = detached_tx.send(());
                }
                // The client's input ended: for a `StdinOnce` container, closing our end is
                // the EOF it reads; otherwise the shim's end keeps its stdin open.
                engine.release_stdin(&id, stdin, &finished_before).await;
            })
        });
        loop {
            tokio::select! {
                chunk = output.recv() => {
                    let Some(chunk) = chunk else { break };
                    if writer.write_all(&encode(tty, &chunk)).await.is_err() {
                        break;
                    }
                }
                () = &mut detached => break,
            }
        }
        if let Some(feeding) = feeding {
            // Detached, the container gone or the client gone: our stdin writer is released
            // by the task itself only when the client's input ended, else dropped here.
            if !feeding.is_finished() {
                feeding.abort();
            }
        }
        let _ = writer.shutdown().await;
    }
}

/// Copy the client's input into the container's (or an exec's) stdin; true when it ended with
/// the detach keys.
pub(super) async fn feed(
    mut reader: impl AsyncRead + Unpin,
    stdin: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut detach: Option<DetachMatcher>,
) -> bool {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let scan = match detach.as_mut() {
            Some(matcher) => matcher.feed(&buf[..n]),
            None => Scan::Forward(buf[..n].to_vec()),
        };
        let (bytes, detached) = match scan {
            Scan::Forward(bytes) => (bytes, false),
            Scan::Detach(bytes) => (bytes, true),
        };
        if stdin.write_all(&bytes).await.is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
}
