//! `berth config`: print the canonical model, as `docker compose config` does.

use std::process::ExitCode;

use crate::compose::LoadOptions;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {}

pub fn run(_args: &ConfigArgs, _options: LoadOptions) -> anyhow::Result<ExitCode> {
    todo!("helper: compose")
}
