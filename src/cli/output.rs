//! Terminal output shared by the commands: resource status lines (`✔ Network demo_default Created`),
//! coloured log prefixes, and human durations ("5 seconds ago").

use std::io::{IsTerminal, Write};

use super::{Ansi, Progress};

/// docker compose's palette: cyan, yellow, green, magenta, blue, then their bright variants.
const PALETTE: [&str; 10] = [
    "36", "33", "32", "35", "34", "1;36", "1;33", "1;32", "1;35", "1;34",
];

/// Whether stdout gets ANSI colours: `--no-color` turns them off; then `--ansi always|never`
/// decides, and by default `NO_COLOR` or stdout not being a terminal turns them off.
pub fn colours_enabled(no_color: bool) -> bool {
    !no_color && ansi_wanted(super::globals().ansi, std::io::stdout().is_terminal())
}

/// `--ansi`/`COMPOSE_ANSI` over `NO_COLOR` over whether the stream is a terminal.
fn ansi_wanted(ansi: Ansi, terminal: bool) -> bool {
    match ansi {
        Ansi::Always => true,
        Ansi::Never => false,
        Ansi::Auto => std::env::var_os("NO_COLOR").is_none() && terminal,
    }
}

/// The `✔` of a finished resource, green only when stderr takes colours.
pub fn done_mark() -> &'static str {
    if ansi_wanted(super::globals().ansi, std::io::stderr().is_terminal()) {
        "\x1b[32m✔\x1b[0m"
    } else {
        "✔"
    }
}

/// Prints `<name> | line` prefixes, padded to the longest name, one colour per name.
pub struct LogPrefixer {
    width: usize,
    colours: bool,
    assigned: Vec<String>,
    with_prefix: bool,
}

impl LogPrefixer {
    pub fn new(names: &[String], colours: bool, with_prefix: bool) -> Self {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0) + 1;
        Self {
            width,
            colours,
            assigned: Vec::new(),
            with_prefix,
        }
    }

    /// The prefix for `name`, coloured when enabled.
    pub fn prefix(&mut self, name: &str) -> String {
        if !self.with_prefix {
            return String::new();
        }
        let index = match self.assigned.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.assigned.push(name.to_string());
                self.assigned.len() - 1
            }
        };
        let padded = format!("{name:<width$}| ", width = self.width);
        if self.colours {
            format!("\x1b[{}m{padded}\x1b[0m", PALETTE[index % PALETTE.len()])
        } else {
            padded
        }
    }

    /// Write every complete line of `text` with the prefix of `name`.
    pub fn write_lines(
        &mut self,
        out: &mut impl Write,
        name: &str,
        text: &str,
    ) -> std::io::Result<()> {
        let prefix = self.prefix(name);
        for line in text.split_inclusive('\n') {
            write!(out, "{prefix}{line}")?;
            if !line.ends_with('\n') {
                writeln!(out)?;
            }
        }
        out.flush()
    }
}

/// One line of resource progress on stderr, as docker compose prints it: ` ✔ Container x  Started`
/// (nothing with `--progress quiet`, a JSON object with `--progress json`).
pub fn status_line(kind: &str, name: &str, status: &str) {
    if let Some(line) = progress_text(
        super::globals().progress,
        Some(done_mark()),
        kind,
        name,
        status,
    ) {
        eprintln!("{line}");
    }
}

/// A resource's in-progress line on stderr (`   Container x  Stopping`), before its
/// [`status_line`]; docker compose's plain progress shows both.
pub fn progress_line(kind: &str, name: &str, status: &str) {
    if let Some(line) = progress_text(super::globals().progress, None, kind, name, status) {
        eprintln!("{line}");
    }
}

/// The text of one progress line in `mode`; `mark` is the `✔` of a finished resource.
fn progress_text(
    mode: Progress,
    mark: Option<&str>,
    kind: &str,
    name: &str,
    status: &str,
) -> Option<String> {
    let id = format!("{kind} {name}");
    match mode {
        Progress::Quiet => None,
        Progress::Json => Some(
            serde_json::json!({"id": id.trim(), "status": status, "done": mark.is_some()})
                .to_string(),
        ),
        Progress::Auto | Progress::Tty | Progress::Plain => Some(match mark {
            Some(mark) => format!(" {mark} {kind} {name:<28} {status}"),
            None => format!("   {kind} {name:<28} {status}"),
        }),
    }
}

/// "5 seconds ago", "About a minute ago", "3 hours ago" — Docker's `HumanDuration` wording.
pub fn human_ago(seconds: i64) -> String {
    format!("{} ago", human_duration(seconds))
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_string(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if s < 7200 => "About an hour".to_string(),
        _ if s < 48 * 3600 => format!("{} hours", s / 3600),
        _ if s < 14 * 86400 => format!("{} days", s / 86400),
        _ => format!("{} weeks", s / (7 * 86400)),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits
/// (`12B`, `4.19MB`, `123kB`).
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let whole_digits = if value < 10.0 {
        1
    } else if value < 100.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.prec$}", prec = 3 - whole_digits);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[unit])
}

/// Render rows as a left-aligned table with three spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    push_row(header.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_padded_to_the_longest_name() {
        let names = vec!["server-1".to_string(), "db-1".to_string()];
        let mut p = LogPrefixer::new(&names, false, true);
        assert_eq!(p.prefix("db-1"), "db-1     | ");
        assert_eq!(p.prefix("server-1"), "server-1 | ");
        let mut out = Vec::new();
        p.write_lines(&mut out, "db-1", "a\nb").expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "db-1     | a\ndb-1     | b\n"
        );
    }

    #[test]
    fn human_durations_match_docker() {
        assert_eq!(human_ago(5), "5 seconds ago");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
    }

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(4_190_000), "4.19MB");
        assert_eq!(human_size(123_400), "123kB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn ansi_modes_and_progress_modes_shape_the_lines() {
        assert!(ansi_wanted(Ansi::Always, false));
        assert!(!ansi_wanted(Ansi::Never, true));
        assert!(!ansi_wanted(Ansi::Auto, false));
        assert_eq!(
            progress_text(Progress::Plain, Some("✔"), "Container", "a", "Started").as_deref(),
            Some(" ✔ Container a                            Started")
        );
        assert_eq!(
            progress_text(Progress::Json, None, "Network", "n", "Creating").as_deref(),
            Some(r#"{"id":"Network n","status":"Creating","done":false}"#)
        );
        assert_eq!(
            progress_text(Progress::Quiet, Some("✔"), "Container", "a", "Started"),
            None
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "STATE"],
            &[vec!["a-long-name".into(), "running".into()]],
        );
        assert_eq!(t, "NAME          STATE\na-long-name   running\n");
    }
}
