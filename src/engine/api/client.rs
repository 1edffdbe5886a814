//! HTTP client for the engine's UNIX socket, used by the CLI (and by tests).

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to the berth engine at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine answered with an error status and Docker's `{"message": …}` body.
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Other(String),
}

pub struct EngineClient {
    pub socket: PathBuf,
}
