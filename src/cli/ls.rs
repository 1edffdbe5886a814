//! `berth ls`: the compose projects the engine knows of, from their containers' labels.

use std::process::ExitCode;

use indexmap::IndexMap;

use super::output::table;
use super::project::{engine, ProjectArgs};
use crate::compose::plan::{LABEL_CONFIG_FILES, LABEL_PROJECT};
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    /// Show all stopped projects too
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display project names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format the output: "table" or "json"
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// One project as `ls` shows it.
#[derive(Debug, PartialEq, Eq)]
struct Stack {
    name: String,
    status: String,
    config_files: String,
}

pub async fn run(project_args: &ProjectArgs, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    let containers = client
        .list_containers(args.all, &[("label", LABEL_PROJECT)])
        .await?;
    let stacks = stacks(&containers);
    if args.quiet {
        for s in &stacks {
            println!("{}", s.name);
        }
    } else if args.format == "json" {
        let rows: Vec<serde_json::Value> = stacks
            .iter()
            .map(|s| {
                serde_json::json!({
                    "Name": s.name,
                    "Status": s.status,
                    "ConfigFiles": s.config_files,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        let rows: Vec<Vec<String>> = stacks
            .iter()
            .map(|s| vec![s.name.clone(), s.status.clone(), s.config_files.clone()])
            .collect();
        print!("{}", table(&["NAME", "STATUS", "CONFIG FILES"], &rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// Containers grouped by project, sorted by name; the status counts containers per state
/// (`exited(1), running(2)`, states sorted, as docker compose prints them) and the config files
/// are those the containers were created from, each once.
fn stacks(containers: &[ContainerSummary]) -> Vec<Stack> {
    let mut by_project: IndexMap<&str, Vec<&ContainerSummary>> = IndexMap::new();
    for c in containers {
        if let Some(project) = c.labels.get(LABEL_PROJECT) {
            by_project.entry(project).or_default().push(c);
        }
    }
    by_project.sort_keys();
    by_project
        .into_iter()
        .map(|(name, members)| {
            let mut counts: IndexMap<&str, usize> = IndexMap::new();
            let mut files: Vec<&str> = Vec::new();
            for c in &members {
                *counts.entry(c.state.as_str()).or_default() += 1;
                for f in c
                    .labels
                    .get(LABEL_CONFIG_FILES)
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                    .filter(|f| !f.is_empty())
                {
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
            counts.sort_keys();
            let status: Vec<String> = counts
                .iter()
                .map(|(state, n)| format!("{state}({n})"))
                .collect();
            Stack {
                name: name.to_string(),
                status: status.join(", "),
                config_files: files.join(","),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(project: &str, state: &str, files: &str) -> ContainerSummary {
        let mut c = ContainerSummary {
            state: state.into(),
            ..Default::default()
        };
        c.labels.insert(LABEL_PROJECT.into(), project.into());
        c.labels.insert(LABEL_CONFIG_FILES.into(), files.into());
        c
    }

    #[test]
    fn projects_are_grouped_with_state_counts() {
        let stacks = stacks(&[
            container("web", "running", "/w/compose.yaml"),
            container("api", "exited", "/a/compose.yaml,/a/override.yaml"),
            container("web", "running", "/w/compose.yaml"),
            container("api", "running", "/a/compose.yaml,/a/override.yaml"),
        ]);
        assert_eq!(
            stacks,
            [
                Stack {
                    name: "api".into(),
                    status: "exited(1), running(1)".into(),
                    config_files: "/a/compose.yaml,/a/override.yaml".into(),
                },
                Stack {
                    name: "web".into(),
                    status: "running(2)".into(),
                    config_files: "/w/compose.yaml".into(),
                },
            ]
        );
    }
}
