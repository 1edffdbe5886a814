//! berth: a compose-style orchestrator with its own container engine, in one binary.

use berth::{cli, engine};

use std::process::ExitCode;

/// The compose loader builds and copies many small trees; mimalloc's thread-local free lists
/// make `berth config` on a 500-service project about a quarter faster than glibc's malloc
/// (measured with scripts/bench-config). It starts no threads, so `berth init` stays
/// single-threaded.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The container-side helpers must stay single-threaded from their first instruction, so they
    // are dispatched before clap, tokio or anything else that might start a thread.
    match std::env::args_os()
        .nth(1)
        .as_deref()
        .and_then(|a| a.to_str())
    {
        Some("init") => engine::runtime::init::main(),
        Some("shim") => engine::runtime::shim::main(),
        Some("exec-init") => engine::container::exec::main(),
        _ => cli::main(),
    }
}
