//! `berth top`: the processes of each of the project's running containers, one table per
//! container under its name, as docker compose prints them.

use std::process::ExitCode;

use anyhow::Context;

use super::containers::{check_services, display_name, is_running, of_project, of_services};
use super::project::{engine, project_or_name, ProjectArgs};
use super::template::align_tabs;
use crate::engine::container::top::TopResponse;

#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// Services whose processes to show (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// One container's block: its name, the aligned table, a blank line.
pub fn render_block(name: &str, top: &TopResponse) -> String {
    let lines: Vec<String> = std::iter::once(top.titles.join("\t"))
        .chain(top.processes.iter().map(|p| p.join("\t")))
        .collect();
    format!("{name}\n{}\n", align_tabs(&lines))
}

pub async fn run(project_args: &ProjectArgs, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let mut targets: Vec<_> = of_services(&containers, &args.services)
        .into_iter()
        .filter(|c| is_running(c))
        .collect();
    targets.sort_by_key(|c| display_name(c));
    let answers = futures_util::future::join_all(
        targets
            .iter()
            .map(|c| async { client.top_container(&c.id, "").await }),
    )
    .await;
    for (c, answer) in targets.iter().zip(answers) {
        let name = display_name(c);
        let top = answer.with_context(|| format!("cannot list the processes of {name}"))?;
        print!("{}", render_block(&name, &top));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_the_name_then_the_aligned_table_then_a_blank_line() {
        let top = TopResponse {
            titles: vec!["UID".into(), "PID".into(), "CMD".into()],
            processes: vec![vec!["root".into(), "4242".into(), "sleep 300".into()]],
        };
        assert_eq!(
            render_block("demo-web-1", &top),
            "demo-web-1\nUID       PID       CMD\nroot      4242      sleep 300\n\n"
        );
    }
}
