//! Pull and push progress as docker compose shows it. On a terminal: a line per image and one per
//! layer under it, with a bar and sizes while bytes move (`Downloading [=====>    ] 12.3 MB/45.6
//! MB`), the state otherwise (`Pulling fs layer`, `Extracting`, `Pull complete`). Elsewhere: one
//! plain line per layer state, never a bar. Quiet: nothing.

use std::collections::HashMap;
use std::io::IsTerminal;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::api::client::ClientError;
use crate::engine::wire::ProgressMessage;

/// The layer states of a pull worth a plain line (every state but the byte counts).
pub const PULL_STATES: &[&str] = &[
    "Pulling fs layer",
    "Already exists",
    "Waiting",
    "Verifying Checksum",
    "Download complete",
    "Extracting",
    "Pull complete",
];

pub type ProgressStream =
    futures_util::stream::BoxStream<'static, Result<ProgressMessage, ClientError>>;

/// Where progress goes: bars on a terminal, plain lines, or nowhere. Cloned into each of the
/// pulls running at once, so their lines share one screen.
#[derive(Clone)]
pub struct ProgressView {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl ProgressView {
    pub fn new(quiet: bool) -> Self {
        // `--progress plain|json|quiet` never draws bars; bars need a terminal to draw on, so
        // `tty` is `auto` (indicatif draws nothing off a terminal, which would lose the lines).
        let mode = super::globals().progress;
        let quiet = quiet || mode == super::Progress::Quiet;
        let terminal = matches!(mode, super::Progress::Auto | super::Progress::Tty)
            && std::io::stderr().is_terminal();
        let bars = (!quiet && terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        ProgressView { bars, quiet }
    }

    /// The header line of one image (`web Pulling`), above its layers.
    pub fn task(&self, title: &str, doing: &str) -> TaskLine {
        let header = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(" {spinner} {prefix} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(title.to_string());
            bar.set_message(doing.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            bar
        });
        TaskLine {
            header,
            title: title.to_string(),
            quiet: self.quiet,
        }
    }

    /// A line printed above the bars (or plainly), unless quiet.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// One image's header line; `finish` turns it into docker compose's ` ✔ web Pulled`.
pub struct TaskLine {
    header: Option<ProgressBar>,
    title: String,
    quiet: bool,
}

impl TaskLine {
    pub fn finish(&self, done: &str) {
        match &self.header {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        " {} {{prefix}} {{msg}}",
                        super::output::done_mark()
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(done.to_string());
            }
            None if !self.quiet => super::output::status_line(&self.title, "", done),
            None => {}
        }
    }

    pub fn fail(&self, why: &str) {
        if let Some(bar) = &self.header {
            bar.abandon_with_message(format!("Error {why}"));
        }
    }
}

/// How a layer's line looks for one message.
#[derive(Debug, PartialEq)]
enum LayerLook {
    /// Bytes moving: a bar with `current/total`.
    Bytes { current: u64, total: u64 },
    /// A state without a byte count.
    State,
}

fn look(message: &ProgressMessage) -> LayerLook {
    match message.progress_detail.as_ref() {
        Some(d) => match (d.current, d.total) {
            (Some(current), Some(total)) if total > 0 => LayerLook::Bytes { current, total },
            _ => LayerLook::State,
        },
        None => LayerLook::State,
    }
}

/// Whether a plain (non-terminal) line is due: the state is one worth a line, and the layer
/// was not already shown in it (`Downloading` repeats for every chunk).
fn plain_line_due(last: Option<&str>, status: &str, plain: &[&str]) -> bool {
    plain.iter().any(|p| status.contains(p)) && last != Some(status)
}

/// Layers are named by their short digest (12 hex digits); other IDs (`Pulling from
/// library/busybox` carries the tag) get no layer line.
fn is_layer_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The layers of one image on screen.
struct Layers<'v> {
    view: &'v ProgressView,
    plain: &'v [&'v str],
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
}

impl Layers<'_> {
    fn show(&mut self, message: &ProgressMessage) {
        let Some(status) = &message.status else {
            return;
        };
        let Some(id) = message.id.as_deref().filter(|id| is_layer_id(id)) else {
            // A line of its own (a push's final `tag: digest: … size: …`).
            if self.view.bars.is_none() && plain_line_due(None, status, self.plain) {
                self.view.println(&format!("   {status}"));
            }
            return;
        };
        match &self.view.bars {
            Some(bars) => self.bar(bars, id, status, look(message)),
            None => {
                if plain_line_due(self.last.get(id).map(String::as_str), status, self.plain) {
                    self.view.println(&format!("   {id} {status}"));
                    self.last.insert(id.to_string(), status.clone());
                }
            }
        }
    }

    fn bar(&mut self, bars: &MultiProgress, id: &str, status: &str, look: LayerLook) {
        let bar = self.bars.entry(id.to_string()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(0));
            bar.set_prefix(id.to_string());
            bar
        });
        let template = match look {
            LayerLook::Bytes { .. } => {
                "   {prefix} {msg:<18} [{bar:30}] {decimal_bytes}/{decimal_total_bytes}"
            }
            LayerLook::State => "   {prefix} {msg}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(status.to_string());
        if let LayerLook::Bytes { current, total } = look {
            bar.set_length(total);
            bar.set_position(current);
        }
    }

    fn finish(self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

/// Follows an engine progress stream (pull or push) to its end, on `view`; a line for each
/// layer reaching one of the `plain` states when not on a terminal. The stream's error (or an
/// in-band `error`) is returned.
pub async fn follow(
    mut stream: ProgressStream,
    view: &ProgressView,
    plain: &[&str],
) -> anyhow::Result<()> {
    let mut layers = Layers {
        view,
        plain,
        bars: HashMap::new(),
        last: HashMap::new(),
    };
    let result = async {
        while let Some(message) = stream.next().await {
            let message = message?;
            if let Some(error) = message
                .error
                .clone()
                .or(message.error_detail.clone().map(|d| d.message))
            {
                anyhow::bail!(error);
            }
            if !view.quiet {
                layers.show(&message);
            }
        }
        Ok(())
    }
    .await;
    layers.finish();
    result
}

/// [`follow`] on a view of its own.
pub async fn follow_progress(
    stream: ProgressStream,
    quiet: bool,
    plain: &[&str],
) -> anyhow::Result<()> {
    follow(stream, &ProgressView::new(quiet), plain).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::ProgressDetail;

    fn message(status: &str, detail: Option<(u64, u64)>) -> ProgressMessage {
        ProgressMessage {
            status: Some(status.into()),
            id: Some("0123456789ab".into()),
            progress_detail: detail.map(|(current, total)| ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn bytes_get_a_bar_and_states_a_plain_word() {
        assert_eq!(
            look(&message("Downloading", Some((12, 45)))),
            LayerLook::Bytes {
                current: 12,
                total: 45
            }
        );
        assert_eq!(look(&message("Pull complete", None)), LayerLook::State);
        // An empty layer reports 0 of 0: no bar to draw.
        assert_eq!(look(&message("Extracting", Some((0, 0)))), LayerLook::State);
    }

    #[test]
    fn plain_output_prints_each_state_of_a_layer_once() {
        let mut last: Option<&str> = None;
        let mut printed = Vec::new();
        for status in [
            "Pulling fs layer",
            "Downloading",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Extracting",
            "Pull complete",
        ] {
            if plain_line_due(last, status, PULL_STATES) {
                printed.push(status);
                last = Some(status);
            }
        }
        assert_eq!(
            printed,
            [
                "Pulling fs layer",
                "Verifying Checksum",
                "Download complete",
                "Extracting",
                "Pull complete"
            ]
        );
    }

    #[test]
    fn only_layer_digests_are_layer_lines() {
        assert!(is_layer_id("0123456789ab"));
        assert!(!is_layer_id("latest"));
        assert!(!is_layer_id("1"), "a tag of hex digits is not a layer");
        assert!(!is_layer_id("sha256:0123"));
        assert!(!is_layer_id("127.0.0.1:5000/app"));
        assert!(!is_layer_id(""));
    }
}
