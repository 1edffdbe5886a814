//! Build progress in BuildKit's plain style (`#4 [builder 2/4] RUN make`, `#4 0.812 …`,
//! `#4 CACHED`, `#4 DONE 0.8s`, `#4 ERROR: …`), rendered from the `berth` event of each message
//! of `POST /build`. Several builds run at once; each engine numbers its vertices from 1, so the
//! renderer gives every (build, vertex) a number of its own in order of first appearance.
//! Messages without an event (an engine that is not berth's, warnings) print as their text.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::engine::api::client::BuildMessage;

/// How progress is shown (`--progress`, `COMPOSE_PROGRESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// BuildKit's plain lines (also what `tty` and `auto` show: berth has no live view).
    Plain,
    /// Nothing but errors.
    Quiet,
}

impl ProgressMode {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "auto" | "tty" | "plain" | "json" => Ok(ProgressMode::Plain),
            "quiet" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "invalid progress mode {other:?}: use auto, tty, plain, json or quiet"
            )),
        }
    }
}

/// The global `--progress` (`COMPOSE_PROGRESS`) for build output: berth has no live or JSON
/// build view, so everything but `quiet` prints the plain lines.
impl From<super::Progress> for ProgressMode {
    fn from(p: super::Progress) -> Self {
        match p {
            super::Progress::Quiet => ProgressMode::Quiet,
            super::Progress::Auto
            | super::Progress::Tty
            | super::Progress::Plain
            | super::Progress::Json => ProgressMode::Plain,
        }
    }
}

struct Vertex {
    number: u64,
    started: Instant,
}

/// The state of the rendering: vertex numbers and start times.
pub struct Renderer {
    mode: ProgressMode,
    vertices: HashMap<(usize, u64), Vertex>,
    next_number: u64,
}

impl Renderer {
    pub fn new(mode: ProgressMode) -> Self {
        Renderer {
            mode,
            vertices: HashMap::new(),
            next_number: 1,
        }
    }

    /// The lines `message` of build number `build` prints, at `now`.
    pub fn lines(&mut self, build: usize, message: &BuildMessage, now: Instant) -> Vec<String> {
        if self.mode == ProgressMode::Quiet {
            return Vec::new();
        }
        let Some(event) = &message.berth else {
            return message
                .stream
                .iter()
                .flat_map(|s| s.lines())
                .filter(|l| !l.trim().is_empty() && !is_classic_summary(l))
                .map(str::to_string)
                .collect();
        };
        let key = (build, event.vertex);
        if !self.vertices.contains_key(&key) {
            let number = self.next_number;
            self.next_number += 1;
            self.vertices.insert(
                key,
                Vertex {
                    number,
                    started: now,
                },
            );
        }
        let vertex = &self.vertices[&key];
        let n = vertex.number;
        let text = event.text.as_deref().unwrap_or("");
        match event.event.as_str() {
            "start" => vec![format!("#{n} {}", event.name.as_deref().unwrap_or(""))],
            "cached" => vec![format!("#{n} CACHED"), String::new()],
            "log" => {
                let at = now.duration_since(vertex.started).as_secs_f64();
                text.lines().map(|l| format!("#{n} {at:.3} {l}")).collect()
            }
            "done" => {
                let elapsed = event
                    .elapsed_ms
                    .map(Duration::from_millis)
                    .unwrap_or_else(|| now.duration_since(vertex.started));
                vec![
                    format!("#{n} DONE {:.1}s", elapsed.as_secs_f64()),
                    String::new(),
                ]
            }
            "error" => vec![format!("#{n} ERROR: {text}"), String::new()],
            _ => Vec::new(),
        }
    }
}

/// The classic builder's closing lines, which the Docker CLI prints and BuildKit's plain view
/// does not (compose's `Built` line says it instead).
fn is_classic_summary(line: &str) -> bool {
    line.starts_with("Successfully built ") || line.starts_with("Successfully tagged ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_progress_quiets_builds_and_json_prints_plain_lines() {
        use crate::cli::Progress;
        assert_eq!(ProgressMode::from(Progress::Quiet), ProgressMode::Quiet);
        for p in [
            Progress::Auto,
            Progress::Tty,
            Progress::Plain,
            Progress::Json,
        ] {
            assert_eq!(ProgressMode::from(p), ProgressMode::Plain);
        }
        assert_eq!(ProgressMode::parse("json"), Ok(ProgressMode::Plain));
        assert!(ProgressMode::parse("fancy").is_err());
    }
    use crate::engine::api::client::BuildEvent;

    fn event(vertex: u64, name: Option<&str>, kind: &str, text: Option<&str>) -> BuildMessage {
        BuildMessage {
            berth: Some(BuildEvent {
                vertex,
                name: name.map(str::to_string),
                event: kind.to_string(),
                text: text.map(str::to_string),
                elapsed_ms: (kind == "done").then_some(812),
            }),
            ..BuildMessage::default()
        }
    }

    #[test]
    fn events_render_as_buildkit_plain_lines() {
        let mut r = Renderer::new(ProgressMode::Plain);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let start = event(4, Some("[builder 2/4] RUN make"), "start", None);
        assert_eq!(r.lines(0, &start, t0), ["#1 [builder 2/4] RUN make"]);
        let log = event(4, None, "log", Some("cc -o hello hello.c"));
        assert_eq!(r.lines(0, &log, at(812)), ["#1 0.812 cc -o hello hello.c"]);
        assert_eq!(
            r.lines(0, &event(4, None, "done", None), at(900)),
            ["#1 DONE 0.8s", ""]
        );
        let other = event(2, Some("[2/2] COPY . ."), "start", None);
        assert_eq!(r.lines(0, &other, at(901)), ["#2 [2/2] COPY . ."]);
        assert_eq!(
            r.lines(0, &event(2, None, "cached", None), at(902)),
            ["#2 CACHED", ""]
        );
        let failed = event(2, None, "error", Some("exit code: 2"));
        assert_eq!(r.lines(0, &failed, at(903)), ["#2 ERROR: exit code: 2", ""]);
    }

    #[test]
    fn parallel_builds_get_distinct_numbers_for_the_same_engine_vertex() {
        let mut r = Renderer::new(ProgressMode::Plain);
        let now = Instant::now();
        let a = r.lines(
            0,
            &event(
                1,
                Some("[internal] load build definition from Dockerfile"),
                "start",
                None,
            ),
            now,
        );
        let b = r.lines(
            1,
            &event(
                1,
                Some("[internal] load build definition from Dockerfile"),
                "start",
                None,
            ),
            now,
        );
        assert_eq!(a, ["#1 [internal] load build definition from Dockerfile"]);
        assert_eq!(b, ["#2 [internal] load build definition from Dockerfile"]);
    }

    #[test]
    fn quiet_shows_nothing_and_plain_messages_show_their_text() {
        let warning = BuildMessage {
            stream: Some("[Warning] One or more build-args [X] were not consumed\n".into()),
            ..BuildMessage::default()
        };
        let now = Instant::now();
        assert!(Renderer::new(ProgressMode::Quiet)
            .lines(0, &warning, now)
            .is_empty());
        assert_eq!(
            Renderer::new(ProgressMode::Plain).lines(0, &warning, now),
            ["[Warning] One or more build-args [X] were not consumed"]
        );
        let summary = BuildMessage {
            stream: Some("Successfully built 1a2b3c4d5e6f\n".into()),
            ..BuildMessage::default()
        };
        assert!(Renderer::new(ProgressMode::Plain)
            .lines(0, &summary, now)
            .is_empty());
        assert_eq!(ProgressMode::parse("tty"), Ok(ProgressMode::Plain));
        assert!(ProgressMode::parse("fancy").is_err());
    }
}
