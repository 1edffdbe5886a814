//! `berth logs`: the project's container output, prefixed and coloured per container.

use std::process::ExitCode;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::output::{colours_enabled, LogPrefixer};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::api::client::LogsOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs for each container ("all" by default)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print the prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Services to show (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    if let Some(project) = &project {
        for s in &args.services {
            if !project.services.contains_key(s) {
                anyhow::bail!("no such service: {s}");
            }
        }
    }
    let client = engine(project_args).await?;
    let mut containers = client
        .list_containers(
            true,
            &[("label", format!("{LABEL_PROJECT}={name}").as_str())],
        )
        .await?;
    containers.retain(|c| {
        args.services.is_empty()
            || c.labels
                .get(LABEL_SERVICE)
                .is_some_and(|s| args.services.contains(s))
    });
    containers.sort_by(|a, b| a.names.cmp(&b.names));

    let short = |full: &str| -> String {
        let full = full.trim_start_matches('/');
        full.strip_prefix(&format!("{name}-"))
            .unwrap_or(full)
            .to_string()
    };
    let names: Vec<String> = containers
        .iter()
        .filter_map(|c| c.names.first())
        .map(|n| short(n))
        .collect();
    let mut prefixer =
        LogPrefixer::new(&names, colours_enabled(args.no_color), !args.no_log_prefix);

    let (tx, mut rx) = mpsc::channel::<(String, String)>(256);
    for c in &containers {
        let client = client.clone();
        let display = c
            .names
            .first()
            .map(|n| short(n))
            .unwrap_or_else(|| c.id.clone());
        let options = LogsOptions {
            follow: args.follow,
            stdout: true,
            stderr: true,
            timestamps: args.timestamps,
            tail: Some(args.tail.clone()),
        };
        let (id, tx) = (c.id.clone(), tx.clone());
        tokio::spawn(async move {
            match client.logs(&id, &options).await {
                Ok(mut stream) => {
                    while let Some(Ok(chunk)) = stream.next().await {
                        let text = String::from_utf8_lossy(&chunk.bytes).into_owned();
                        if tx.send((display.clone(), text)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send((display, format!("error reading logs: {e}\n")))
                        .await;
                }
            }
        });
    }
    drop(tx);
    let mut stdout = std::io::stdout();
    while let Some((display, text)) = rx.recv().await {
        prefixer.write_lines(&mut stdout, &display, &text)?;
    }
    Ok(ExitCode::SUCCESS)
}
