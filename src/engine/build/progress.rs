//! The build's progress stream: Docker's jsonmessage lines (`stream`, `aux`, `error`) that the
//! Docker CLI prints as the classic builder's output, each with a `berth` field (ignored by the
//! Docker CLI) that berth's CLI renders in BuildKit's plain style (`#4 [2/4] RUN make`).
//!
//! Vertex ids are integers from 1 in order of first appearance; stages build in parallel, so the
//! counter is shared and every [`Vertex`] carries its own id.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

/// One line of the `POST /build` answer.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BuildMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<AuxId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub berth: Option<VertexEvent>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorText {
    pub message: String,
}

/// `{"aux":{"ID":"sha256:…"}}`: how `docker build -q` and `--iidfile` learn the image id.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuxId {
    #[serde(rename = "ID")]
    pub id: String,
}

/// What happened to one vertex (a step of the build).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VertexEvent {
    pub vertex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

impl BuildMessage {
    pub fn stream(text: impl Into<String>) -> Self {
        BuildMessage {
            stream: Some(text.into()),
            ..Default::default()
        }
    }

    /// The final error line, as Docker's builder reports a failed build in-band.
    pub fn failure(message: impl Into<String>) -> Self {
        let message = message.into();
        BuildMessage {
            error_detail: Some(ErrorText {
                message: message.clone(),
            }),
            error: Some(message),
            ..Default::default()
        }
    }

    /// One NDJSON line of the response body.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The sending side of a build's progress; cheap to clone into parallel stages.
#[derive(Clone)]
pub struct Progress {
    tx: mpsc::Sender<BuildMessage>,
    next_vertex: Arc<AtomicU32>,
    /// `q=1`: only the final id goes to the client (errors too).
    quiet: bool,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<BuildMessage>, quiet: bool) -> Self {
        Progress {
            tx,
            next_vertex: Arc::new(AtomicU32::new(1)),
            quiet,
        }
    }

    /// Sends a message; a client gone away is not the build's failure (Docker finishes it).
    pub async fn send(&self, message: BuildMessage) {
        let _ = self.tx.send(message).await;
    }

    /// A plain line of text (warnings, `Successfully built`), hidden under `q=1`.
    pub async fn line(&self, text: impl Into<String>) {
        if !self.quiet {
            self.send(BuildMessage::stream(text)).await;
        }
    }

    /// Opens a vertex: `Step i/N : <instruction>` on the Docker side, `start` on berth's.
    pub async fn vertex(&self, name: String, step_line: Option<String>) -> Vertex {
        let id = self.next_vertex.fetch_add(1, Ordering::Relaxed);
        let vertex = Vertex {
            progress: self.clone(),
            id,
            started: Instant::now(),
        };
        vertex
            .emit(step_line, "start", Some(name), None, None)
            .await;
        vertex
    }
}

/// One step of the build as the client sees it.
pub struct Vertex {
    progress: Progress,
    id: u32,
    started: Instant,
}

impl Vertex {
    async fn emit(
        &self,
        stream: Option<String>,
        event: &'static str,
        name: Option<String>,
        text: Option<String>,
        elapsed_ms: Option<u64>,
    ) {
        if self.progress.quiet {
            return;
        }
        let berth = VertexEvent {
            vertex: self.id,
            name,
            event,
            text,
            elapsed_ms,
        };
        self.progress
            .send(BuildMessage {
                stream,
                berth: Some(berth),
                ..Default::default()
            })
            .await;
    }

    pub async fn cached(&self) {
        self.emit(
            Some(" ---> Using cache\n".into()),
            "cached",
            None,
            None,
            None,
        )
        .await;
    }

    /// One line of a RUN's output (without its newline).
    pub async fn log(&self, line: &str) {
        self.emit(
            Some(format!("{line}\n")),
            "log",
            None,
            Some(line.to_string()),
            None,
        )
        .await;
    }

    /// The step made `image_id`.
    pub async fn done(&self, image_id: &str) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let stream = format!(" ---> {}\n", short_id(image_id));
        self.emit(Some(stream), "done", None, None, Some(elapsed))
            .await;
    }

    /// The step did nothing to report beyond its start (FROM scratch, a skipped trigger).
    pub async fn finished(&self) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.emit(None, "done", None, None, Some(elapsed)).await;
    }

    pub async fn error(&self, text: &str) {
        self.emit(None, "error", None, Some(text.to_string()), None)
            .await;
    }
}

/// The 12 hex digits Docker prints for an image id.
pub fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// BuildKit's vertex name for a step: `[builder 2/4] RUN make`, `[2/4] COPY . .` in a
/// single-stage file, `[stage-1 1/3] FROM …` for an unnamed stage of a multi-stage file.
pub fn vertex_name(
    stage: Option<&str>,
    index: usize,
    multi_stage: bool,
    step: usize,
    of: usize,
    text: &str,
) -> String {
    let prefix = match (stage, multi_stage) {
        (Some(name), _) => format!("{name} "),
        (None, true) => format!("stage-{index} "),
        (None, false) => String::new(),
    };
    format!("[{prefix}{step}/{of}] {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_names_follow_buildkit() {
        assert_eq!(
            vertex_name(Some("builder"), 0, true, 2, 4, "RUN make"),
            "[builder 2/4] RUN make"
        );
        assert_eq!(
            vertex_name(None, 1, true, 1, 3, "FROM x"),
            "[stage-1 1/3] FROM x"
        );
        assert_eq!(
            vertex_name(None, 0, false, 2, 4, "COPY . ."),
            "[2/4] COPY . ."
        );
    }

    #[test]
    fn lines_are_docker_jsonmessages_with_a_berth_field() {
        let m = BuildMessage::failure("Dockerfile:7: RUN make: exit code 2");
        let text = String::from_utf8(m.to_line()).unwrap();
        assert_eq!(
            text,
            "{\"errorDetail\":{\"message\":\"Dockerfile:7: RUN make: exit code 2\"},\
             \"error\":\"Dockerfile:7: RUN make: exit code 2\"}\n"
        );
    }

    #[tokio::test]
    async fn vertices_number_from_one_and_report_their_events() {
        let (tx, mut rx) = mpsc::channel(16);
        let p = Progress::new(tx, false);
        let v = p
            .vertex(
                "[1/2] FROM busybox".into(),
                Some("Step 1/2 : FROM busybox\n".into()),
            )
            .await;
        v.cached().await;
        let w = p.vertex("[2/2] RUN true".into(), None).await;
        w.log("hello").await;
        let start = rx.recv().await.unwrap();
        assert_eq!(start.stream.as_deref(), Some("Step 1/2 : FROM busybox\n"));
        let b = start.berth.unwrap();
        assert_eq!(
            (b.vertex, b.event, b.name.as_deref()),
            (1, "start", Some("[1/2] FROM busybox"))
        );
        assert_eq!(rx.recv().await.unwrap().berth.unwrap().event, "cached");
        assert_eq!(rx.recv().await.unwrap().berth.unwrap().vertex, 2);
        let log = rx.recv().await.unwrap();
        assert_eq!(log.stream.as_deref(), Some("hello\n"));
        assert_eq!(log.berth.unwrap().text.as_deref(), Some("hello"));
    }

    #[tokio::test]
    async fn quiet_builds_send_nothing_but_what_is_sent_directly() {
        let (tx, mut rx) = mpsc::channel(16);
        let p = Progress::new(tx, true);
        let v = p.vertex("x".into(), Some("Step 1/1 : x\n".into())).await;
        v.done("sha256:0123456789abcdef").await;
        p.line("Successfully built\n").await;
        p.send(BuildMessage::failure("boom")).await;
        assert_eq!(rx.recv().await.unwrap().error.as_deref(), Some("boom"));
    }
}
