//! The container log file's line format (Docker's `json-file` driver): the shim writes it, the
//! engine's `logs` reads it.

use serde::{Deserialize, Serialize};

/// One line of `<id>-json.log`: `{"log":"hi\n","stream":"stdout","time":"…"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JsonLogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}
