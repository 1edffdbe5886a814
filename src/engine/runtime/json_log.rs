//! The container log file's line format (Docker's `json-file` driver): the shim writes it, the
//! engine's `logs` reads it.

use std::fs::File;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// One line of `<id>-json.log`: `{"log":"hi\n","stream":"stdout","time":"…"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JsonLogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Append one line for `bytes` of `stream` (`stdout`/`stderr`), stamped now.
pub fn write_line(log: &mut File, stream: &str, bytes: &[u8]) {
    let line = JsonLogLine {
        log: String::from_utf8_lossy(bytes).into_owned(),
        stream: stream.to_string(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    if let Ok(mut json) = serde_json::to_vec(&line) {
        json.push(b'\n');
        // A full disk loses log lines, never the container.
        let _ = log.write_all(&json);
    }
}
