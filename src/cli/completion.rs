//! `berth completion SHELL`: the shell completion script, generated from the same clap
//! definitions that parse the command line, so it can never drift from the real flags.

use std::process::ExitCode;

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, Clone, clap::Args)]
pub struct CompletionArgs {
    /// The shell to print the completion script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: &CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut cli = super::Cli::command();
    // Generated into memory first: clap_complete panics on a failed write (e.g. a closed pipe),
    // where berth reports an error instead.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "berth", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}
