//! `berth engine`: open the stores, reattach to running shims, serve the API on the UNIX socket.

use super::{EngineRoots, EngineSettings};

/// Run the daemon in the foreground until SIGTERM/SIGINT. Builds its own tokio runtime.
pub fn run(_roots: EngineRoots, _settings: EngineSettings) -> anyhow::Result<()> {
    todo!("helper: api")
}
