//! Hijacked connections for interactive sessions: attaching to a container (`berth run`,
//! `berth attach`) and starting a TTY exec, and the window-size calls that go with a terminal.

use futures_util::stream::{BoxStream, StreamExt};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{
    bool_param, encode, full_body, raw_frames, with_query, ClientError, EngineClient,
    ExecConnection, LogChunk, LogStream, Result,
};
use crate::engine::api::API_VERSION;
use crate::engine::wire::ExecStartConfig;

/// What an attach asks for (`POST /containers/{id}/attach`).
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Docker's `detachKeys` (`None`: the engine's default, `ctrl-p,ctrl-q`).
    pub detach_keys: Option<String>,
}

/// Both directions of a hijacked connection.
pub struct Hijacked {
    /// The output: multiplexed frames decoded, or a TTY's raw bytes as stdout chunks.
    pub output: BoxStream<'static, Result<LogChunk>>,
    /// The input; shut it down for EOF.
    pub input: tokio::io::WriteHalf<ExecConnection>,
}

/// A TTY's raw output as stdout chunks, until the connection ends.
fn raw_output(reader: tokio::io::ReadHalf<ExecConnection>) -> BoxStream<'static, Result<LogChunk>> {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 8192];
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                let chunk = LogChunk {
                    stream: LogStream::Stdout,
                    bytes: buf.into(),
                };
                Some((Ok(chunk), reader))
            }
        }
    })
    .boxed()
}

impl EngineClient {
    /// `POST path` with `Upgrade: tcp`; the connection once the engine has switched it.
    pub(super) async fn hijack(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let http = |source| ClientError::Http {
            path: self.socket.clone(),
            source,
        };
        let mut sender = self.connect().await?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/v{API_VERSION}{path}"))
            .header(hyper::header::HOST, "berth")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "tcp")
            .body(full_body(body))
            .map_err(|e| ClientError::Other(format!("build request for {path}: {e}")))?;
        let mut response = sender.send_request(request).await.map_err(http)?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            if response.status().is_client_error() || response.status().is_server_error() {
                return Err(self.api_error(response).await);
            }
            return Err(ClientError::Other(format!(
                "the engine did not upgrade the connection for {path} (status {})",
                response.status()
            )));
        }
        let upgraded = hyper::upgrade::on(&mut response).await.map_err(http)?;
        Ok(TokioIo::new(upgraded))
    }

    /// Attach to container `id` as `docker attach` does; `tty` says how its output is framed.
    /// Attached before a start, the session sees everything the container writes.
    pub async fn attach(&self, id: &str, options: &AttachOptions, tty: bool) -> Result<Hijacked> {
        let path = with_query(
            &format!("/containers/{}/attach", encode(id, &[])),
            &[
                ("stream", bool_param(true)),
                ("stdin", bool_param(options.stdin)),
                ("stdout", bool_param(options.stdout)),
                ("stderr", bool_param(options.stderr)),
                ("detachKeys", options.detach_keys.clone()),
            ],
        );
        let conn = self.hijack(&path, Vec::new()).await?;
        let (reader, input) = tokio::io::split(conn);
        let output = if tty {
            raw_output(reader)
        } else {
            raw_frames(reader)
        };
        Ok(Hijacked { output, input })
    }

    /// Start a TTY exec attached in both directions: its terminal's raw output, its input.
    pub async fn start_exec_tty(&self, exec_id: &str) -> Result<Hijacked> {
        let path = format!("/exec/{}/start", encode(exec_id, &[]));
        let body = Self::to_json(&ExecStartConfig {
            detach: false,
            tty: true,
        })?;
        let conn = self.hijack(&path, body).await?;
        let (reader, input) = tokio::io::split(conn);
        Ok(Hijacked {
            output: raw_output(reader),
            input,
        })
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize_container(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let path = format!("/containers/{}/resize?h={rows}&w={cols}", encode(id, &[]));
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    /// `POST /exec/{id}/resize`.
    pub async fn resize_exec(&self, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        let path = format!("/exec/{}/resize?h={rows}&w={cols}", encode(exec_id, &[]));
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }
}
