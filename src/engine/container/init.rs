//! `berth init`: the single-threaded re-exec that becomes the container's PID 1 after setting up
//! namespaces and the root filesystem, then `execve`s the workload.

/// Entry point; called from `main` before anything else runs (no tokio, no threads).
pub fn main() -> ! {
    todo!("helper: runtime")
}
