//! `/containers/{id}/exec` and `/exec/{id}/…`: create, start (attached or detached) and inspect
//! an exec instance.
//!
//! An attached start streams the process's output in Docker's multiplexed framing. Docker
//! clients (`docker exec`) ask to upgrade the connection (`Upgrade: tcp`) and get a 101 with the
//! raw stream; plain HTTP clients (berth's own) get a 200 with a streamed body. Either way the
//! exit code is recorded before the stream ends, so an inspect right after EOF sees it.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};

use super::body::tokio_stream_from;
use super::detach_keys::{self, DetachMatcher};
use super::{json_body, json_response, ApiError, ApiResult};
use crate::engine::container::exec::{drive, drive_terminal, ExecEnd, OutputChunk, StartedExec};
use crate::engine::wire::{ExecConfig, ExecCreateResponse, ExecStartConfig};
use crate::engine::SharedEngine;

/// Docker's content type for a non-TTY attach stream.
const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
/// Docker's content type for a TTY's stream.
const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// Request bodies here are small JSON objects.
const MAX_BODY: usize = 1 << 20;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
}

async fn create(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let config: ExecConfig = json_body(&body)?;
    // Checked at create, as Docker does, so a typo fails before a terminal goes raw.
    detach_keys::parse_or_default(Some(&config.detach_keys))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let exec_id = engine.create_exec(&id, config)?;
    Ok(json_response(
        StatusCode::CREATED,
        &ExecCreateResponse { id: exec_id },
    ))
}

async fn inspect(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(json_response(StatusCode::OK, &engine.inspect_exec(&id)?))
}

/// `[stream, 0, 0, 0, len u32 BE]` then the payload.
fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// How output goes onto the wire: Docker frames it by stream, except for a TTY, whose output
/// is one raw stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Multiplexed,
    Raw,
}

impl Wire {
    fn encode(self, stream: u8, payload: &[u8]) -> Bytes {
        match self {
            Wire::Multiplexed => frame(stream, payload),
            Wire::Raw => Bytes::copy_from_slice(payload),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Wire::Multiplexed => MULTIPLEXED,
            Wire::Raw => RAW_STREAM,
        }
    }
}

async fn start(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let on_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("read request body: {e}")))?;
    let config: ExecStartConfig = json_body(&body)?;
    let started = engine.start_exec(&id).await?;
    // The exec's own `Tty` decides (Docker ignores a start that says otherwise).
    let wire = if started.terminal.is_some() || engine.inspect_exec(&id)?.process_config.tty {
        Wire::Raw
    } else {
        Wire::Multiplexed
    };
    // Only a TTY exec watches its input for the detach keys (checked at create), as Docker's.
    let detach = match wire {
        Wire::Raw => {
            let keys = engine.inspect_exec(&id)?.detach_keys;
            let keys = detach_keys::parse_or_default(Some(&keys))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(DetachMatcher::new(keys))
        }
        Wire::Multiplexed => None,
    };
    let (process, stdin) = Process::of(started);
    let run = ExecRun { engine, id, wire };
    if config.detach {
        run.detached(process);
        return Ok((StatusCode::OK, Body::empty()).into_response());
    }
    match on_upgrade {
        // Only an upgraded connection carries the client's stdin; otherwise the process sees EOF.
        Some(on_upgrade) => {
            run.upgraded(process, stdin, on_upgrade, detach);
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "tcp")
                .header(header::CONTENT_TYPE, wire.content_type())
                .body(Body::empty())
                .map_err(|e| ApiError::new(500, format!("build upgrade response: {e}")))
        }
        None => {
            drop(stdin);
            let body = run.streamed(process);
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, wire.content_type())
                .body(body)
                .map_err(|e| ApiError::new(500, format!("build exec response: {e}")))
        }
    }
}

/// Where the process's input goes: its stdin pipe, or its terminal.
type Input = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The client's bytes to the process, raw. At the end of the client's input (it half-closes)
/// the input is closed: the process sees EOF. On the detach keys the input is handed back
/// through `detached`, open, so the terminal stays for the process that runs on.
async fn feed_exec(
    reader: impl tokio::io::AsyncRead + Unpin,
    mut input: Input,
    detach: Option<DetachMatcher>,
    detached: oneshot::Sender<Input>,
) {
    if super::attach::feed(reader, &mut input, detach).await {
        let _ = detached.send(input);
    } else {
        let _ = input.shutdown().await;
    }
}

/// A started exec's process and, for a TTY, the terminal its output comes from.
struct Process {
    child: Child,
    terminal_output: Option<tokio::net::unix::pipe::Receiver>,
}

impl Process {
    fn of(started: StartedExec) -> (Self, Option<Input>) {
        let StartedExec {
            mut child,
            terminal,
        } = started;
        let (terminal_output, input) = match terminal {
            Some(t) => (Some(t.output), Some(Box::new(t.input) as Input)),
            None => (None, child.stdin.take().map(|s| Box::new(s) as Input)),
        };
        (
            Self {
                child,
                terminal_output,
            },
            input,
        )
    }

    async fn drive(self, out: mpsc::UnboundedSender<OutputChunk>) -> ExecEnd {
        match self.terminal_output {
            Some(output) => drive_terminal(self.child, output, out).await,
            None => drive(self.child, None, out).await,
        }
    }
}

/// A started exec process, driven to its end in a task of its own that records its exit.
struct ExecRun {
    engine: SharedEngine,
    id: String,
    wire: Wire,
}

impl ExecRun {
    /// `Detach`: the output is read and dropped.
    fn detached(self, process: Process) {
        let (tx, mut rx) = mpsc::unbounded_channel::<OutputChunk>();
        tokio::spawn(async move {
            let drain = async { while rx.recv().await.is_some() {} };
            let (end, ()) = tokio::join!(process.drive(tx), drain);
            self.engine.finish_exec(&self.id, end);
        });
    }

    /// A hijacked connection (`docker exec`): output onto it, its input to the process. The
    /// detach keys typed on a TTY exec end the connection; the process runs on (its output
    /// read and dropped, its terminal kept open) and its exit is recorded when it comes.
    fn upgraded(
        self,
        process: Process,
        stdin: Option<Input>,
        on_upgrade: OnUpgrade,
        detach: Option<DetachMatcher>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<OutputChunk>();
        tokio::spawn(async move {
            let (reader, mut writer) = match on_upgrade.await {
                Ok(upgraded) => {
                    let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                    (Some(r), Some(w))
                }
                Err(_) => (None, None),
            };
            let (detached_tx, mut detached_rx) = oneshot::channel::<Input>();
            let feeding = match (reader, stdin) {
                (Some(reader), Some(stdin)) => {
                    Some(tokio::spawn(feed_exec(reader, stdin, detach, detached_tx)))
                }
                _ => None,
            };
            let wire = self.wire;
            let write = async {
                let (mut watching, mut kept_input) = (true, None);
                loop {
                    tokio::select! {
                        chunk = rx.recv() => {
                            let Some((stream, bytes)) = chunk else { break };
                            let Some(conn) = writer.as_mut() else { continue };
                            if conn.write_all(&wire.encode(stream, &bytes)).await.is_err() {
                                // The client went away; the process runs on, its output dropped.
                                writer = None;
                            }
                        }
                        input = &mut detached_rx, if watching => {
                            watching = false;
                            // An error: the input ended without the keys; output goes on.
                            if let Ok(input) = input {
                                kept_input = Some(input);
                                if let Some(mut conn) = writer.take() {
                                    let _ = conn.shutdown().await;
                                }
                            }
                        }
                    }
                }
                (writer, kept_input)
            };
            let (end, (writer, _kept_input)) = tokio::join!(process.drive(tx), write);
            self.engine.finish_exec(&self.id, end);
            if let Some(feeding) = feeding {
                // The process is gone: input it never read is dropped.
                feeding.abort();
            }
            if let Some(mut conn) = writer {
                let _ = conn.shutdown().await;
            }
        });
    }

    /// A plain HTTP client (berth's own): the output as a streamed body.
    fn streamed(self, process: Process) -> Body {
        let (tx, mut rx) = mpsc::unbounded_channel::<OutputChunk>();
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
        let wire = self.wire;
        tokio::spawn(async move {
            let forward = async {
                while let Some((stream, bytes)) = rx.recv().await {
                    // A closed body (client gone) only drops output.
                    let _ = body_tx.send(Ok(wire.encode(stream, &bytes))).await;
                }
                body_tx
            };
            let (end, body_tx) = tokio::join!(process.drive(tx), forward);
            self.engine.finish_exec(&self.id, end);
            drop(body_tx);
        });
        Body::from_stream(tokio_stream_from(body_rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        assert_eq!(&frame(2, b"hi")[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
