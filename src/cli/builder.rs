//! `berth builder prune`: remove the engine's build cache (`POST /build/prune`), as
//! `docker builder prune` does — the cache entries and the intermediate step images only they
//! keep; `-a` also those of images still tagged.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;

use super::output::human_size;
use super::project::{engine, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    pub command: BuilderCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn run(project_args: &ProjectArgs, args: &BuilderArgs) -> anyhow::Result<ExitCode> {
    let BuilderCommand::Prune(prune) = &args.command;
    if !prune.force && !confirmed(prune.all)? {
        return Ok(ExitCode::SUCCESS);
    }
    let client = engine(project_args).await?;
    let answer = client.prune_build_cache(prune.all).await?;
    print!("{}", report(&answer));
    Ok(ExitCode::SUCCESS)
}

/// Docker's question; without a terminal to answer it, `-f` is required (as docker does not
/// wait on a closed stdin either).
fn confirmed(all: bool) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("builder prune asks for confirmation: run it with -f (--force) when no terminal answers");
    }
    let what = if all {
        "all build cache"
    } else {
        "all dangling build cache"
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `Deleted build cache objects:` with each id, then `Total reclaimed space:`, as docker prints.
fn report(answer: &serde_json::Value) -> String {
    let mut out = String::new();
    let deleted: Vec<&str> = answer["CachesDeleted"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted build cache objects:\n");
        for id in deleted {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    let reclaimed = answer["SpaceReclaimed"].as_i64().unwrap_or(0);
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reclaimed)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_deleted_entries_and_the_space_as_docker_does() {
        let answer =
            serde_json::json!({"CachesDeleted": ["abc", "def"], "SpaceReclaimed": 3000000});
        assert_eq!(
            report(&answer),
            "Deleted build cache objects:\nabc\ndef\n\nTotal reclaimed space: 3MB\n"
        );
        let nothing = serde_json::json!({"CachesDeleted": null, "SpaceReclaimed": 0});
        assert_eq!(report(&nothing), "Total reclaimed space: 0B\n");
    }
}
