//! `berth commit SERVICE [REPOSITORY[:TAG]]`: a service container's changes become a new image,
//! as docker compose v2's `commit` (the engine's `POST /commit`).

use std::process::ExitCode;

use anyhow::{bail, Context};

use super::containers::{check_services, numbered, of_project, service_of};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::api::client::split_repo_tag;
use crate::engine::container::commit::CommitOptions;
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// The service whose container is committed
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The new image's name (untagged when omitted; TAG defaults to "latest")
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply Dockerfile instruction to the created image (repeatable)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Pause container during commit
    #[arg(
        short = 'p',
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub pause: bool,
    /// Index of the container if the service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u32,
}

pub async fn run(project_args: &ProjectArgs, args: &CommitArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(
        project.as_ref(),
        &containers,
        std::slice::from_ref(&args.service),
    )?;
    let container = container_to_commit(&containers, &args.service, args.index)?;
    let opts = commit_options(args);
    let id = client
        .commit_container(&container.id, &opts)
        .await
        .with_context(|| format!("cannot commit service \"{}\"", args.service))?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Replica `index` of `service`, in whatever state (docker commits stopped containers too).
fn container_to_commit<'a>(
    containers: &'a [ContainerSummary],
    service: &str,
    index: u32,
) -> anyhow::Result<&'a ContainerSummary> {
    if let Some(c) = numbered(containers, service, index) {
        return Ok(c);
    }
    if containers.iter().any(|c| service_of(c) == service) {
        bail!("service \"{service}\" has no container #{index}");
    }
    bail!("service \"{service}\" has no container to commit (create it with `berth up` or `berth create`)")
}

/// The engine's options from the flags: `REPOSITORY[:TAG]` split as the client splits every
/// reference (a colon before a `/` belongs to a registry's port, not a tag).
fn commit_options(args: &CommitArgs) -> CommitOptions {
    let (repo, tag) = match args.repository.as_deref() {
        None => (None, None),
        Some(reference) => {
            let (repo, tag) = split_repo_tag(reference);
            (Some(repo), tag)
        }
    };
    CommitOptions {
        repo: repo.map(str::to_string),
        tag: tag.map(str::to_string),
        comment: args.message.clone().unwrap_or_default(),
        author: args.author.clone().unwrap_or_default(),
        pause: args.pause,
        changes: args.changes.clone(),
        config: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::plan::{LABEL_CONTAINER_NUMBER, LABEL_SERVICE};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CommitArgs,
    }

    fn parse(argv: &[&str]) -> CommitArgs {
        Cli::try_parse_from(std::iter::once("commit").chain(argv.iter().copied()))
            .expect("parses")
            .args
    }

    fn container(service: &str, number: &str) -> ContainerSummary {
        let mut c = ContainerSummary {
            id: format!("{service}-{number}"),
            ..Default::default()
        };
        c.labels.insert(LABEL_SERVICE.into(), service.into());
        c.labels
            .insert(LABEL_CONTAINER_NUMBER.into(), number.into());
        c
    }

    #[test]
    fn flags_map_to_the_engine_options_as_docker_spells_them() {
        let o = commit_options(&parse(&[
            "web",
            "localhost:5000/app:v1",
            "-a",
            "me",
            "-m",
            "msg",
            "-c",
            "ENV X=1",
            "--change",
            "CMD [\"sh\"]",
        ]));
        assert_eq!(o.repo.as_deref(), Some("localhost:5000/app"));
        assert_eq!(o.tag.as_deref(), Some("v1"));
        assert_eq!((o.author.as_str(), o.comment.as_str()), ("me", "msg"));
        assert_eq!(o.changes, ["ENV X=1", "CMD [\"sh\"]"]);
        assert!(o.pause, "pause is on by default, as docker's");

        let o = commit_options(&parse(&["web", "localhost:5000/app", "--pause=false"]));
        assert_eq!(
            (o.repo.as_deref(), o.tag),
            (Some("localhost:5000/app"), None)
        );
        assert!(!o.pause);
        let o = commit_options(&parse(&["web", "-p"]));
        assert_eq!((o.repo, o.pause), (None, true));
        assert_eq!(parse(&["web"]).index, 1);
    }

    #[test]
    fn the_replica_is_chosen_by_index_and_a_missing_one_names_the_service() {
        let containers = [
            container("web", "1"),
            container("web", "2"),
            container("db", "1"),
        ];
        assert_eq!(
            container_to_commit(&containers, "web", 2).unwrap().id,
            "web-2"
        );
        let e = container_to_commit(&containers, "web", 3).unwrap_err();
        assert_eq!(e.to_string(), "service \"web\" has no container #3");
        let e = container_to_commit(&containers, "cache", 1).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("service \"cache\" has no container to commit"));
    }
}
