//! berth as a library: the modules behind the `berth` binary, exposed so that integration tests
//! (and the binary itself) can use the engine client, compose loader and friends directly.

pub mod cli;
pub mod compose;
pub mod engine;
pub mod fs_at;
pub mod network;
pub mod paths;
pub mod volume;
