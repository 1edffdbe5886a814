//! The `berth` command line: clap definitions and one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod config;

use crate::engine::{EngineRoots, EngineSettings};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Compose-style multi-container orchestrator with its own engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the container engine daemon (started by the CLI when its socket is absent)
    Engine(EngineArgs),
}

#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// Persistent state (images, containers, volumes)
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = crate::engine::paths::DEFAULT_DATA_ROOT)]
    pub data_root: std::path::PathBuf,
    /// Runtime state (socket, shim state)
    #[arg(long, env = "BERTH_RUN_ROOT", default_value = crate::engine::paths::DEFAULT_RUN_ROOT)]
    pub run_root: std::path::PathBuf,
    /// Registry reached over plain HTTP besides loopback ones (host:port); repeatable
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Engine(args) => {
            let roots = EngineRoots::new(args.data_root, args.run_root);
            let settings = EngineSettings {
                insecure_registries: args.insecure_registries,
            };
            match crate::engine::daemon::run(roots, settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth engine: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
