//! HTTP client for the engine's UNIX socket, used by the CLI (and by tests).
//!
//! One connection per request (hyper's HTTP/1 client over `tokio::net::UnixStream`): the engine is
//! local, so connection setup is cheap and no pool state can go stale across engine restarts.
//! Streamed answers (pull progress, logs, events) are returned as `Stream`s that decode as data
//! arrives. [`EngineClient::connect_or_start`] starts the daemon when nobody answers the socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio::net::UnixStream;

use super::API_VERSION;
use crate::engine::auth::AuthConfig;
use crate::engine::wire::{
    ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerSummary,
    ContainerWaitResponse, EndpointSettings, ErrorResponse, EventMessage, ExecConfig,
    ExecCreateResponse, ExecInspect, ExecStartConfig, ImageInspect, ImageSummary,
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkResource, ProgressMessage, VersionResponse, Volume, VolumeCreateRequest,
    VolumeListResponse,
};
use crate::engine::{EngineRoots, EngineSettings};

mod archive;
mod attach;
pub use attach::{AttachOptions, Hijacked};
mod build;
mod commit;
mod lifecycle;
mod sync;
pub use build::{BuildEvent, BuildMessage, BuildOptions};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the berth engine at {path}: {source} (is `berth engine` running? \
         berth commands start it by themselves; its log is engine.log next to the socket)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine answered with an error status and Docker's `{"message": …}` body.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// An error the engine reported inside a streamed answer (pull progress, import).
    #[error("{message}")]
    Stream { message: String },
    /// The engine was started but never answered.
    #[error(
        "the berth engine did not come up on {socket} within {waited:?}; see its log {log}{tail}"
    )]
    Start {
        socket: PathBuf,
        log: PathBuf,
        waited: Duration,
        /// The last lines of the log, prefixed with `:\n`, or empty.
        tail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the berth engine at {path}: {source}")]
    Http {
        path: PathBuf,
        #[source]
        source: hyper::Error,
    },
    #[error("unexpected answer from the berth engine to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, ClientError>;

type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Which stream a log chunk came from (the first byte of a multiplexed frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdin,
    Stdout,
    Stderr,
}

/// A piece of container output as the engine sent it (not necessarily a whole line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub bytes: Bytes,
}

/// The upgraded connection of an interactive exec.
pub type ExecConnection = TokioIo<hyper::upgrade::Upgraded>;

/// Both directions of an interactive exec ([`EngineClient::start_exec_interactive`]).
pub struct ExecSession {
    /// The process's output, until it exits.
    pub output: BoxStream<'static, Result<LogChunk>>,
    /// The process's stdin; shut it down for EOF.
    pub stdin: tokio::io::WriteHalf<ExecConnection>,
}

/// Multiplexed frames read from a raw (upgraded) connection.
fn raw_frames(reader: tokio::io::ReadHalf<ExecConnection>) -> BoxStream<'static, Result<LogChunk>> {
    use tokio::io::AsyncReadExt;
    let state = (reader, BytesMut::new(), false);
    futures_util::stream::unfold(state, |(mut reader, mut buffer, done)| async move {
        if done {
            return None;
        }
        loop {
            match decode_frame(&mut buffer) {
                Ok(Some(chunk)) => return Some((Ok(chunk), (reader, buffer, false))),
                Ok(None) => {}
                Err(detail) => {
                    let err = ClientError::Decode {
                        what: "exec output".into(),
                        detail,
                    };
                    return Some((Err(err), (reader, buffer, true)));
                }
            }
            match reader.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .boxed()
}

/// `GET /containers/{id}/logs` parameters.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub timestamps: bool,
    /// `all` or a number of lines.
    pub tail: Option<String>,
    /// Unix seconds with an optional fraction (`1700000000.5`): only lines logged since.
    pub since: Option<String>,
    /// The same, for lines logged until then.
    pub until: Option<String>,
}

impl Default for LogsOptions {
    fn default() -> Self {
        LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            timestamps: false,
            tail: None,
            since: None,
            until: None,
        }
    }
}

/// Docker filters as `(name, value)` pairs: `[("label", "com.docker.compose.project=demo")]`.
pub type FilterPairs<'a> = &'a [(&'a str, &'a str)];

fn filters_json(filters: FilterPairs<'_>) -> Option<String> {
    if filters.is_empty() {
        return None;
    }
    let mut map: indexmap::IndexMap<&str, Vec<&str>> = indexmap::IndexMap::new();
    for (k, v) in filters {
        map.entry(k).or_default().push(v);
    }
    serde_json::to_string(&map).ok()
}

/// Percent-encode a query value or path segment (RFC 3986 unreserved characters stay; `keep`
/// lists further characters to leave alone, like `/` and `:` inside image names).
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build `path?k=v&…` with encoded values, skipping `None`s.
fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v, &[]))))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn bool_param(b: bool) -> Option<String> {
    Some(if b { "1" } else { "0" }.to_string())
}

fn full_body(bytes: impl Into<Bytes>) -> RequestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[derive(Debug, Clone)]
pub struct EngineClient {
    pub socket: PathBuf,
}

impl EngineClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        EngineClient {
            socket: socket.into(),
        }
    }

    pub fn for_roots(roots: &EngineRoots) -> Self {
        Self::new(roots.socket_path())
    }

    /// Use the engine on `roots` if it answers, otherwise start `<this executable> engine` for
    /// those roots, detached, and wait for it (up to ~10 s).
    pub async fn connect_or_start(roots: &EngineRoots, settings: &EngineSettings) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| ClientError::Io {
            context: "find the berth executable to start the engine".into(),
            source: e,
        })?;
        Self::connect_or_start_with(roots, settings, &exe).await
    }

    /// [`connect_or_start`](Self::connect_or_start) with an explicit `berth` binary (tests run
    /// from a test executable, not from `berth`).
    pub async fn connect_or_start_with(
        roots: &EngineRoots,
        settings: &EngineSettings,
        berth: &Path,
    ) -> Result<Self> {
        let client = Self::for_roots(roots);
        if client.listening().await {
            return Ok(client);
        }
        let log = roots.run_root.join("engine.log");
        let io = |context: String| move |source| ClientError::Io { context, source };
        std::fs::create_dir_all(&roots.run_root)
            .map_err(io(format!("create {}", roots.run_root.display())))?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("open {}", log.display())))?;
        let log_err = log_file
            .try_clone()
            .map_err(io(format!("open {}", log.display())))?;
        let mut command = std::process::Command::new(berth);
        command
            .arg("engine")
            .arg("--data-root")
            .arg(&roots.data_root)
            .arg("--run-root")
            .arg(&roots.run_root);
        for registry in &settings.insecure_registries {
            command.arg("--insecure-registry").arg(registry);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // Its own session: the engine must outlive this command and not get its terminal's signals.
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(io(format!(
            "start the berth engine ({} engine)",
            berth.display()
        )))?;

        let started = Instant::now();
        let limit = Duration::from_secs(10);
        // If our engine exits (e.g. another one won a start race), allow a short grace for
        // whichever engine holds the run root to answer.
        let mut exited_at: Option<Instant> = None;
        loop {
            if client.ping().await.is_ok() {
                return Ok(client);
            }
            if exited_at.is_none() {
                if let Ok(Some(_)) = child.try_wait() {
                    exited_at = Some(Instant::now());
                }
            }
            let grace_over = exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
            if started.elapsed() > limit || grace_over {
                return Err(ClientError::Start {
                    socket: client.socket.clone(),
                    log: log.clone(),
                    waited: started.elapsed(),
                    tail: log_tail(&log, 10),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh HTTP/1 connection to the engine. It is driven with upgrades enabled, so an
    /// answer may switch it to a raw stream (interactive exec); errors surface on the request.
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, RequestBody>(TokioIo::new(stream))
                .await
                .map_err(|source| ClientError::Http {
                    path: self.socket.clone(),
                    source,
                })?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.send_with(method, path, body, content_type, None).await
    }

    /// `send` with the `X-Registry-Auth` header when there are credentials.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
        auth: Option<&AuthConfig>,
    ) -> Result<Response<Incoming>> {
        let http = |source| ClientError::Http {
            path: self.socket.clone(),
            source,
        };
        let mut sender = self.connect().await?;
        let uri = if path == "/_ping" {
            path.to_string()
        } else {
            format!("/v{API_VERSION}{path}")
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "berth");
        if let Some(ct) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        if let Some(a) = auth {
            request = request.header("X-Registry-Auth", a.to_header());
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::Other(format!("build request for {path}: {e}")))?;
        let response = sender.send_request(request).await.map_err(http)?;
        if response.status().is_client_error() || response.status().is_server_error() {
            return Err(self.api_error(response).await);
        }
        Ok(response)
    }

    async fn api_error(&self, response: Response<Incoming>) -> ClientError {
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(source) => {
                return ClientError::Http {
                    path: self.socket.clone(),
                    source,
                }
            }
        };
        let message = match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
        };
        ClientError::Api { status, message }
    }

    async fn read_all(&self, response: Response<Incoming>) -> Result<Bytes> {
        Ok(response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                path: self.socket.clone(),
                source,
            })?
            .to_bytes())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let has_body = body.is_some();
        let response = self
            .send(
                method,
                path,
                full_body(body.unwrap_or_default()),
                has_body.then_some("application/json"),
            )
            .await?;
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: path.to_string(),
            detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    async fn call_no_answer(&self, method: Method, path: &str) -> Result<StatusCode> {
        let response = self
            .send(method, path, full_body(Bytes::new()), None)
            .await?;
        let status = response.status();
        self.read_all(response).await?;
        Ok(status)
    }

    fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| ClientError::Other(format!("encode request: {e}")))
    }

    // ---- system ----

    /// Whether an engine accepts connections on the socket: what every command checks before
    /// its first request, one round trip cheaper than a ping (an engine that accepts but does
    /// not answer shows at that request anyway). A socket file left by a dead engine refuses.
    async fn listening(&self) -> bool {
        UnixStream::connect(&self.socket).await.is_ok()
    }

    /// `GET /_ping`: the engine's API version when it answers.
    pub async fn ping(&self) -> Result<String> {
        let response = self
            .send(Method::GET, "/_ping", full_body(Bytes::new()), None)
            .await?;
        let version = response
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.read_all(response).await?;
        Ok(version)
    }

    pub async fn version(&self) -> Result<VersionResponse> {
        self.call(Method::GET, "/version", None).await
    }

    pub async fn info(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, "/info", None).await
    }

    /// `GET /events`: engine events as they happen, optionally filtered.
    pub async fn events(
        &self,
        filters: FilterPairs<'_>,
    ) -> Result<BoxStream<'static, Result<EventMessage>>> {
        let path = with_query("/events", &[("filters", filters_json(filters))]);
        let response = self
            .send(Method::GET, &path, full_body(Bytes::new()), None)
            .await?;
        Ok(json_lines(response.into_body(), self.socket.clone()))
    }

    // ---- containers ----

    pub async fn create_container(
        &self,
        name: Option<&str>,
        req: &ContainerCreateRequest,
    ) -> Result<ContainerCreateResponse> {
        let path = with_query("/containers/create", &[("name", name.map(str::to_string))]);
        self.call(Method::POST, &path, Some(Self::to_json(req)?))
            .await
    }

    /// `PUT /containers/{id}/archive?path=DIR`: extract `tar` at `DIR` in the container (berth:
    /// before it starts; see `engine::container::archive`).
    pub async fn put_archive(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let path = with_query(
            &format!("/containers/{}/archive", encode(id, &[])),
            &[("path", Some(dir.to_string()))],
        );
        let response = self
            .send(
                Method::PUT,
                &path,
                full_body(tar),
                Some("application/x-tar"),
            )
            .await?;
        self.read_all(response).await.map(drop)
    }

    /// Starting a running container is not an error (Docker answers 304).
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let path = format!("/containers/{}/start", encode(id, &[]));
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    /// Stop with the container's stop signal, then SIGKILL after `timeout` seconds (engine default
    /// when `None`). Stopping a stopped container is not an error.
    pub async fn stop_container(&self, id: &str, timeout: Option<i64>) -> Result<()> {
        let path = with_query(
            &format!("/containers/{}/stop", encode(id, &[])),
            &[("t", timeout.map(|t| t.to_string()))],
        );
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    pub async fn restart_container(&self, id: &str, timeout: Option<i64>) -> Result<()> {
        let path = with_query(
            &format!("/containers/{}/restart", encode(id, &[])),
            &[("t", timeout.map(|t| t.to_string()))],
        );
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    pub async fn kill_container(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let path = with_query(
            &format!("/containers/{}/kill", encode(id, &[])),
            &[("signal", signal.map(str::to_string))],
        );
        self.call_no_answer(Method::POST, &path).await.map(drop)
    }

    /// Wait for the container to stop; its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64> {
        let path = format!("/containers/{}/wait", encode(id, &[]));
        let answer: ContainerWaitResponse = self.call(Method::POST, &path, None).await?;
        Ok(answer.status_code)
    }

    pub async fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let path = with_query(
            &format!("/containers/{}", encode(id, &[])),
            &[("force", bool_param(force)), ("v", bool_param(volumes))],
        );
        self.call_no_answer(Method::DELETE, &path).await.map(drop)
    }

    pub async fn list_containers(
        &self,
        all: bool,
        filters: FilterPairs<'_>,
    ) -> Result<Vec<ContainerSummary>> {
        let path = with_query(
            "/containers/json",
            &[("all", bool_param(all)), ("filters", filters_json(filters))],
        );
        self.call(Method::GET, &path, None).await
    }

    pub async fn inspect_container(&self, id: &str) -> Result<ContainerInspect> {
        let path = format!("/containers/{}/json", encode(id, &[]));
        self.call(Method::GET, &path, None).await
    }

    /// Container output, decoded from Docker's multiplexed framing (or raw, for TTY containers,
    /// reported as stdout). With `follow`, the stream lasts until the container stops.
    pub async fn logs(
        &self,
        id: &str,
        options: &LogsOptions,
    ) -> Result<BoxStream<'static, Result<LogChunk>>> {
        let path = with_query(
            &format!("/containers/{}/logs", encode(id, &[])),
            &[
                ("follow", bool_param(options.follow)),
                ("stdout", bool_param(options.stdout)),
                ("stderr", bool_param(options.stderr)),
                ("timestamps", bool_param(options.timestamps)),
                ("tail", options.tail.clone()),
                ("since", options.since.clone()),
                ("until", options.until.clone()),
            ],
        );
        let response = self
            .send(Method::GET, &path, full_body(Bytes::new()), None)
            .await?;
        let multiplexed = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/vnd.docker.multiplexed-stream"));
        Ok(log_chunks(
            response.into_body(),
            multiplexed,
            self.socket.clone(),
        ))
    }

    // ---- exec ----

    /// `POST /containers/{id}/exec`: the new exec instance's ID (nothing runs until start).
    pub async fn create_exec(&self, container: &str, config: &ExecConfig) -> Result<String> {
        let path = format!("/containers/{}/exec", encode(container, &[]));
        let answer: ExecCreateResponse = self
            .call(Method::POST, &path, Some(Self::to_json(config)?))
            .await?;
        Ok(answer.id)
    }

    /// Start an exec instance attached: its output until it exits. Its exit code is in
    /// [`EngineClient::inspect_exec`] once the stream has ended.
    pub async fn start_exec(&self, exec_id: &str) -> Result<BoxStream<'static, Result<LogChunk>>> {
        let path = format!("/exec/{}/start", encode(exec_id, &[]));
        let body = Self::to_json(&ExecStartConfig::default())?;
        let response = self
            .send(
                Method::POST,
                &path,
                full_body(body),
                Some("application/json"),
            )
            .await?;
        Ok(log_chunks(response.into_body(), true, self.socket.clone()))
    }

    /// Start an exec instance attached in both directions, as `docker exec -i` does: the
    /// connection is upgraded to a raw stream carrying the output (multiplexed frames) one way
    /// and the process's stdin the other. Shut the `stdin` half down to send EOF.
    pub async fn start_exec_interactive(&self, exec_id: &str) -> Result<ExecSession> {
        let path = format!("/exec/{}/start", encode(exec_id, &[]));
        let upgraded = self
            .hijack(&path, Self::to_json(&ExecStartConfig::default())?)
            .await?;
        let (reader, stdin) = tokio::io::split(upgraded);
        Ok(ExecSession {
            output: raw_frames(reader),
            stdin,
        })
    }

    /// Start an exec instance in the background.
    pub async fn start_exec_detached(&self, exec_id: &str) -> Result<()> {
        let path = format!("/exec/{}/start", encode(exec_id, &[]));
        let body = Self::to_json(&ExecStartConfig {
            detach: true,
            tty: false,
        })?;
        let response = self
            .send(
                Method::POST,
                &path,
                full_body(body),
                Some("application/json"),
            )
            .await?;
        self.read_all(response).await.map(drop)
    }

    pub async fn inspect_exec(&self, exec_id: &str) -> Result<ExecInspect> {
        let path = format!("/exec/{}/json", encode(exec_id, &[]));
        self.call(Method::GET, &path, None).await
    }

    // ---- images ----

    /// `POST /images/create?fromImage=`: progress as the engine reports it; a failure arrives as
    /// the stream's last item, an `Err(ClientError::Stream)` with the engine's message.
    pub async fn pull(&self, image: &str) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        self.pull_with_auth(image, None).await
    }

    /// [`pull`](Self::pull) with registry credentials (sent as `X-Registry-Auth`).
    pub async fn pull_with_auth(
        &self,
        image: &str,
        auth: Option<&AuthConfig>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        let path = with_query("/images/create", &[("fromImage", Some(image.to_string()))]);
        let response = self
            .send_with(Method::POST, &path, full_body(Bytes::new()), None, auth)
            .await?;
        Ok(progress_stream(response.into_body(), self.socket.clone()))
    }

    /// `POST /images/{name}/push`: pushes the local image `image` (`name[:tag]`) to its
    /// registry; progress as for a pull, a failure as the stream's last item.
    pub async fn push(
        &self,
        image: &str,
        auth: Option<&AuthConfig>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        let (repo, tag) = split_repo_tag(image);
        let name = encode(repo, b"/:");
        let path = with_query(
            &format!("/images/{name}/push"),
            &[("tag", tag.map(str::to_string))],
        );
        let response = self
            .send_with(Method::POST, &path, full_body(Bytes::new()), None, auth)
            .await?;
        Ok(progress_stream(response.into_body(), self.socket.clone()))
    }

    /// Pull and wait for the end, returning every progress message (or the engine's error).
    pub async fn pull_and_wait(&self, image: &str) -> Result<Vec<ProgressMessage>> {
        let mut stream = self.pull(image).await?;
        let mut all = Vec::new();
        while let Some(message) = stream.next().await {
            all.push(message?);
        }
        Ok(all)
    }

    /// `POST /images/create?fromSrc=-`: import a root filesystem tar (optionally gzipped) as an
    /// image named `repo_tag` (`name` or `name:tag`). Returns the final status the engine reports
    /// (the new image's ID).
    pub async fn import(&self, tar: impl Into<Bytes>, repo_tag: &str) -> Result<String> {
        self.import_body(full_body(tar), repo_tag).await
    }

    /// Like [`import`](Self::import), streaming the tar from a file.
    pub async fn import_file(&self, tar: &Path, repo_tag: &str) -> Result<String> {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|source| ClientError::Io {
                context: format!("open {}", tar.display()),
                source,
            })?;
        let frames = tokio_util::io::ReaderStream::new(file).map(|chunk| chunk.map(Frame::data));
        self.import_body(StreamBody::new(frames).boxed_unsync(), repo_tag)
            .await
    }

    async fn import_body(&self, body: RequestBody, repo_tag: &str) -> Result<String> {
        let (repo, tag) = split_repo_tag(repo_tag);
        let path = with_query(
            "/images/create",
            &[
                ("fromSrc", Some("-".to_string())),
                ("repo", Some(repo.to_string())),
                ("tag", tag.map(str::to_string)),
            ],
        );
        let response = self
            .send(Method::POST, &path, body, Some("application/x-tar"))
            .await?;
        let mut stream = progress_stream(response.into_body(), self.socket.clone());
        let mut last_status = String::new();
        while let Some(message) = stream.next().await {
            if let Some(status) = message?.status {
                last_status = status;
            }
        }
        Ok(last_status)
    }

    pub async fn list_images(&self) -> Result<Vec<ImageSummary>> {
        self.call(Method::GET, "/images/json", None).await
    }

    pub async fn inspect_image(&self, name: &str) -> Result<ImageInspect> {
        let path = format!("/images/{}/json", encode(name, b"/:@"));
        self.call(Method::GET, &path, None).await
    }

    /// `DELETE /images/{name}`: Docker's list of `{"Untagged"|"Deleted": …}` records.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<serde_json::Value> {
        let path = with_query(
            &format!("/images/{}", encode(name, b"/:@")),
            &[("force", bool_param(force))],
        );
        self.call(Method::DELETE, &path, None).await
    }

    /// `GET /images/get?names=…`: streams `docker save`'s tar into `out`.
    pub async fn save_images(
        &self,
        names: &[String],
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let query: Vec<String> = names
            .iter()
            .map(|n| format!("names={}", encode(n, &[])))
            .collect();
        let path = format!("/images/get?{}", query.join("&"));
        let response = self
            .send(Method::GET, &path, full_body(Bytes::new()), None)
            .await?;
        let mut body = response.into_body();
        let io = |source| ClientError::Io {
            context: "write the image archive".into(),
            source,
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ClientError::Http {
                path: self.socket.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await.map_err(io)?;
            }
        }
        out.flush().await.map_err(io)
    }

    /// `POST /images/load`: the archive from a file; returns the engine's `Loaded image…` lines.
    pub async fn load_images_file(&self, tar: &Path) -> Result<Vec<String>> {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|source| ClientError::Io {
                context: format!("open {}", tar.display()),
                source,
            })?;
        let frames = tokio_util::io::ReaderStream::new(file).map(|chunk| chunk.map(Frame::data));
        self.load_images(StreamBody::new(frames).boxed_unsync())
            .await
    }

    /// `POST /images/load` with the archive in memory.
    pub async fn load_images_bytes(&self, tar: impl Into<Bytes>) -> Result<Vec<String>> {
        self.load_images(full_body(tar)).await
    }

    async fn load_images(&self, body: RequestBody) -> Result<Vec<String>> {
        let response = self
            .send(
                Method::POST,
                "/images/load",
                body,
                Some("application/x-tar"),
            )
            .await?;
        let bytes = self.read_all(response).await?;
        let mut lines = Vec::new();
        for raw in bytes.split(|&b| b == b'\n') {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw.trim_ascii()) else {
                continue;
            };
            if let Some(e) = v["error"].as_str() {
                return Err(ClientError::Api {
                    status: 500,
                    message: e.to_string(),
                });
            }
            if let Some(s) = v["stream"].as_str() {
                lines.push(s.trim_end().to_string());
            }
        }
        Ok(lines)
    }

    /// `POST /images/{name}/tag`.
    pub async fn tag_image(&self, name: &str, target: &str) -> Result<()> {
        let (repo, tag) = split_repo_tag(target);
        let path = with_query(
            &format!("/images/{}/tag", encode(name, b"/:@")),
            &[
                ("repo", Some(repo.to_string())),
                ("tag", tag.map(str::to_string)),
            ],
        );
        self.call_no_answer(Method::POST, &path).await.map(|_| ())
    }

    /// `GET /images/{name}/history`: Docker's rows, newest first.
    pub async fn image_history(&self, name: &str) -> Result<Vec<serde_json::Value>> {
        let path = format!("/images/{}/history", encode(name, b"/:@"));
        self.call(Method::GET, &path, None).await
    }

    /// `POST /images/prune`: dangling images, or every unused one with `all`.
    pub async fn prune_images(&self, all: bool) -> Result<serde_json::Value> {
        let path = if all {
            with_query(
                "/images/prune",
                &[("filters", Some(r#"{"dangling":["false"]}"#.to_string()))],
            )
        } else {
            "/images/prune".to_string()
        };
        self.call(Method::POST, &path, None).await
    }

    // ---- networks ----

    pub async fn create_network(
        &self,
        req: &NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse> {
        self.call(Method::POST, "/networks/create", Some(Self::to_json(req)?))
            .await
    }

    pub async fn list_networks(&self, filters: FilterPairs<'_>) -> Result<Vec<NetworkResource>> {
        let path = with_query("/networks", &[("filters", filters_json(filters))]);
        self.call(Method::GET, &path, None).await
    }

    pub async fn inspect_network(&self, id_or_name: &str) -> Result<NetworkResource> {
        let path = format!("/networks/{}", encode(id_or_name, &[]));
        self.call(Method::GET, &path, None).await
    }

    pub async fn remove_network(&self, id_or_name: &str) -> Result<()> {
        let path = format!("/networks/{}", encode(id_or_name, &[]));
        self.call_no_answer(Method::DELETE, &path).await.map(drop)
    }

    /// Attach a running container to one more network (`docker network connect`).
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: Option<EndpointSettings>,
    ) -> Result<()> {
        let path = format!("/networks/{}/connect", encode(network, &[]));
        let body = Self::to_json(&NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: endpoint,
        })?;
        let response = self
            .send(
                Method::POST,
                &path,
                full_body(body),
                Some("application/json"),
            )
            .await?;
        self.read_all(response).await.map(drop)
    }

    /// Take a container off a network (`docker network disconnect`).
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let path = format!("/networks/{}/disconnect", encode(network, &[]));
        let body = Self::to_json(&NetworkDisconnectRequest {
            container: container.to_string(),
            force,
        })?;
        let response = self
            .send(
                Method::POST,
                &path,
                full_body(body),
                Some("application/json"),
            )
            .await?;
        self.read_all(response).await.map(drop)
    }

    // ---- volumes ----

    pub async fn create_volume(&self, req: &VolumeCreateRequest) -> Result<Volume> {
        self.call(Method::POST, "/volumes/create", Some(Self::to_json(req)?))
            .await
    }

    pub async fn list_volumes(&self, filters: FilterPairs<'_>) -> Result<Vec<Volume>> {
        let path = with_query("/volumes", &[("filters", filters_json(filters))]);
        let answer: VolumeListResponse = self.call(Method::GET, &path, None).await?;
        Ok(answer.volumes)
    }

    pub async fn inspect_volume(&self, name: &str) -> Result<Volume> {
        let path = format!("/volumes/{}", encode(name, &[]));
        self.call(Method::GET, &path, None).await
    }

    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let path = with_query(
            &format!("/volumes/{}", encode(name, &[])),
            &[("force", bool_param(force))],
        );
        self.call_no_answer(Method::DELETE, &path).await.map(drop)
    }
}

/// `name:tag` → (`name`, `Some(tag)`); a `:` inside a registry host (`host:5000/app`) is not a tag.
pub fn split_repo_tag(repo_tag: &str) -> (&str, Option<&str>) {
    match repo_tag.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (repo_tag, None),
    }
}

/// The last `lines` lines of a log file, formatted to follow an error message.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n{}", tail.join("\n"))
    }
}

/// Read the next data bytes of a response body; `None` at its end.
async fn next_data(body: &mut Incoming, socket: &Path) -> Option<Result<Bytes>> {
    loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(source) => {
                return Some(Err(ClientError::Http {
                    path: socket.to_path_buf(),
                    source,
                }))
            }
        }
    }
}

/// Newline-delimited JSON objects (events, pull progress) as a stream of `T`.
fn json_lines<T: DeserializeOwned + Send + 'static>(
    body: Incoming,
    socket: PathBuf,
) -> BoxStream<'static, Result<T>> {
    struct State {
        body: Incoming,
        buffer: BytesMut,
        socket: PathBuf,
        done: bool,
    }
    let state = State {
        body,
        buffer: BytesMut::new(),
        socket,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(pos) = st.buffer.iter().position(|&b| b == b'\n') {
                let line = st.buffer.split_to(pos + 1);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let item = serde_json::from_str::<T>(text).map_err(|e| ClientError::Decode {
                    what: "a streamed message".into(),
                    detail: format!("{e}: {text}"),
                });
                return Some((item, st));
            }
            if st.done {
                let rest = std::mem::take(&mut st.buffer);
                let text = String::from_utf8_lossy(&rest).trim().to_string();
                if text.is_empty() {
                    return None;
                }
                let item = serde_json::from_str::<T>(&text).map_err(|e| ClientError::Decode {
                    what: "a streamed message".into(),
                    detail: format!("{e}: {text}"),
                });
                return Some((item, st));
            }
            match next_data(&mut st.body, &st.socket).await {
                Some(Ok(data)) => st.buffer.extend_from_slice(&data),
                Some(Err(e)) => {
                    st.done = true;
                    st.buffer.clear();
                    return Some((Err(e), st));
                }
                None => st.done = true,
            }
        }
    })
    .boxed()
}

/// Pull/import progress: an in-band error line becomes `Err(ClientError::Stream)`.
fn progress_stream(body: Incoming, socket: PathBuf) -> BoxStream<'static, Result<ProgressMessage>> {
    json_lines::<ProgressMessage>(body, socket)
        .map(|item| {
            let message = item?;
            match (&message.error_detail, &message.error) {
                (Some(detail), _) if !detail.message.is_empty() => Err(ClientError::Stream {
                    message: detail.message.clone(),
                }),
                (_, Some(error)) => Err(ClientError::Stream {
                    message: error.clone(),
                }),
                _ => Ok(message),
            }
        })
        .boxed()
}

/// Split Docker's multiplexed framing (`[stream, 0, 0, 0, len u32 BE]` + payload) out of `buffer`.
/// `Ok(None)` when the buffer does not yet hold a whole frame.
pub fn decode_frame(buffer: &mut BytesMut) -> std::result::Result<Option<LogChunk>, String> {
    if buffer.len() < 8 {
        return Ok(None);
    }
    let stream = match buffer[0] {
        0 => LogStream::Stdin,
        1 => LogStream::Stdout,
        2 => LogStream::Stderr,
        other => {
            return Err(format!(
                "bad stream type {other} in a multiplexed log frame"
            ))
        }
    };
    let len = u32::from_be_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]) as usize;
    if buffer.len() < 8 + len {
        return Ok(None);
    }
    buffer.advance(8);
    let bytes = buffer.split_to(len).freeze();
    Ok(Some(LogChunk { stream, bytes }))
}

fn log_chunks(
    body: Incoming,
    multiplexed: bool,
    socket: PathBuf,
) -> BoxStream<'static, Result<LogChunk>> {
    struct State {
        body: Incoming,
        buffer: BytesMut,
        socket: PathBuf,
        done: bool,
    }
    let state = State {
        body,
        buffer: BytesMut::new(),
        socket,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if multiplexed {
                match decode_frame(&mut st.buffer) {
                    Ok(Some(chunk)) => return Some((Ok(chunk), st)),
                    Ok(None) => {}
                    Err(detail) => {
                        st.done = true;
                        st.buffer.clear();
                        let err = ClientError::Decode {
                            what: "container logs".into(),
                            detail,
                        };
                        return Some((Err(err), st));
                    }
                }
            } else if !st.buffer.is_empty() {
                let bytes = st.buffer.split().freeze();
                let chunk = LogChunk {
                    stream: LogStream::Stdout,
                    bytes,
                };
                return Some((Ok(chunk), st));
            }
            if st.done {
                if st.buffer.is_empty() {
                    return None;
                }
                st.buffer.clear();
                let err = ClientError::Decode {
                    what: "container logs".into(),
                    detail: "the stream ended inside a frame".into(),
                };
                return Some((Err(err), st));
            }
            match next_data(&mut st.body, &st.socket).await {
                Some(Ok(data)) => st.buffer.extend_from_slice(&data),
                Some(Err(e)) => {
                    st.done = true;
                    st.buffer.clear();
                    return Some((Err(e), st));
                }
                None => st.done = true,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_across_partial_reads() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 3]);
        wire.extend_from_slice(b"ab\n");
        wire.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        wire.extend_from_slice(b"e");
        let first = decode_frame(&mut wire).unwrap().unwrap();
        assert_eq!(first.stream, LogStream::Stdout);
        assert_eq!(&first.bytes[..], b"ab\n");
        assert_eq!(decode_frame(&mut wire).unwrap(), None);
        wire.extend_from_slice(b"!");
        let second = decode_frame(&mut wire).unwrap().unwrap();
        assert_eq!(
            (second.stream, &second.bytes[..]),
            (LogStream::Stderr, &b"e!"[..])
        );
        wire.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode_frame(&mut wire)
            .unwrap_err()
            .contains("bad stream type 7"));
    }

    #[test]
    fn queries_are_encoded() {
        let q = with_query(
            "/containers/json",
            &[
                ("all", bool_param(true)),
                ("filters", filters_json(&[("label", "a=b c")])),
                ("name", None),
            ],
        );
        assert_eq!(
            q,
            "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%20c%22%5D%7D"
        );
        assert_eq!(encode("127.0.0.1:5000/bb:1", b"/:@"), "127.0.0.1:5000/bb:1");
    }

    #[test]
    fn repo_tag_split_ignores_registry_ports() {
        assert_eq!(split_repo_tag("app:1"), ("app", Some("1")));
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", None)
        );
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/app:2"),
            ("127.0.0.1:5000/app", Some("2"))
        );
    }
}
