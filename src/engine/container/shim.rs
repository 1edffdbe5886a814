//! `berth shim`: the per-container parent that outlives the engine: holds stdio and the log file,
//! reaps the container, records its exit status.

/// Entry point; called from `main` before anything else runs (no tokio, no threads).
pub fn main() -> ! {
    todo!("helper: runtime")
}
