//! `berth import`: turn a root filesystem tarball into an image, as `docker import` does — the way
//! to bring an image onto a machine without a registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::project::{engine, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Tarball of a root filesystem (plain or gzip), or "-" for stdin
    pub file: PathBuf,
    /// Name for the image: REPOSITORY[:TAG]
    pub reference: Option<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    let reference = args.reference.as_deref().unwrap_or("");
    let id = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("cannot read the tarball from stdin")?;
        client.import(buf, reference).await?
    } else {
        if !args.file.is_file() {
            anyhow::bail!("cannot import {}: no such file", args.file.display());
        }
        client.import_file(&args.file, reference).await?
    };
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
