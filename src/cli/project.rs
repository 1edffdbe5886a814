//! The global flags that select a project (`-f`, `-p`, `--project-directory`, `--env-file`,
//! `--profile`) and the engine, and the helpers every command uses to load the project and reach
//! the engine.

use std::path::PathBuf;

use anyhow::Context;
use indexmap::IndexMap;

use crate::compose::graph::ServiceGraph;
use crate::compose::{LoadOptions, Project};
use crate::engine::api::client::{ClientError, EngineClient};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProjectArgs {
    /// Compose configuration files (repeatable; later files override earlier ones)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first compose file)
    #[arg(long = "project-directory", value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (repeatable; replaces the default .env)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Enable a profile (repeatable)
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profile: Vec<String>,
    /// Engine data root (default /var/lib/berth; env BERTH_DATA_ROOT)
    #[arg(long, hide = true, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Engine run root (default /run/berth; env BERTH_RUN_ROOT)
    #[arg(long, hide = true, value_name = "DIR")]
    pub run_root: Option<PathBuf>,
    /// Registry the engine may reach over plain HTTP (when the CLI starts the engine)
    #[arg(
        long = "insecure-registry",
        global = true,
        hide = true,
        value_name = "HOST:PORT"
    )]
    pub insecure_registries: Vec<String>,
}

/// Loader options from the global flags and the process environment.
pub fn load_options(args: &ProjectArgs, services: &[String]) -> anyhow::Result<LoadOptions> {
    let working_dir = std::env::current_dir().context("cannot read the current directory")?;
    let environment: IndexMap<String, String> = std::env::vars().collect();
    Ok(LoadOptions {
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        project_directory: args.project_directory.clone(),
        env_files: env_files(args, &environment),
        profiles: args.profile.clone(),
        services: services.to_vec(),
        working_dir,
        environment,
        ..Default::default()
    })
}

/// `--env-file`s, else the comma-separated `COMPOSE_ENV_FILES` (docker compose's variable).
fn env_files(args: &ProjectArgs, environment: &IndexMap<String, String>) -> Vec<PathBuf> {
    if !args.env_files.is_empty() {
        return args.env_files.clone();
    }
    environment
        .get("COMPOSE_ENV_FILES")
        .map(|list| {
            list.split(',')
                .filter(|f| !f.trim().is_empty())
                .map(|f| PathBuf::from(f.trim()))
                .collect()
        })
        .unwrap_or_default()
}

/// Load and validate the project; `services` are the ones named on the command line.
pub fn load_project(args: &ProjectArgs, services: &[String]) -> anyhow::Result<Project> {
    let options = load_options(args, services)?;
    let project = crate::compose::load(&options)?;
    for name in services {
        if !project.services.contains_key(name) {
            anyhow::bail!("no such service: {name}");
        }
    }
    Ok(project)
}

/// The services to act on, in start order: the named ones plus their dependencies, or all.
pub fn selected_start_order(project: &Project, services: &[String]) -> anyhow::Result<Vec<String>> {
    let graph = ServiceGraph::new(project)?;
    let order = graph.start_order();
    if services.is_empty() {
        return Ok(order);
    }
    let mut wanted: Vec<String> = services.to_vec();
    let mut i = 0;
    while i < wanted.len() {
        if let Some(service) = project.services.get(&wanted[i]) {
            for dep in service.depends_on.keys() {
                if !wanted.contains(dep) {
                    wanted.push(dep.clone());
                }
            }
        }
        i += 1;
    }
    Ok(order.into_iter().filter(|s| wanted.contains(s)).collect())
}

/// A client for the engine, starting the engine first when its socket does not answer.
pub async fn engine(args: &ProjectArgs) -> anyhow::Result<EngineClient> {
    let (roots, settings) = super::engine_roots(args);
    Ok(EngineClient::connect_or_start(&roots, &settings).await?)
}

/// The project name for commands that may work without a compose file (`down`, `ps`, `logs`):
/// from the loaded project when there is one, else from `-p`/`COMPOSE_PROJECT_NAME`.
pub fn project_or_name(args: &ProjectArgs) -> anyhow::Result<(Option<Project>, String)> {
    match load_project(args, &[]) {
        Ok(project) => {
            let name = project.name.clone();
            Ok((Some(project), name))
        }
        Err(err) => {
            let explicit = args
                .project_name
                .clone()
                .or_else(|| std::env::var("COMPOSE_PROJECT_NAME").ok());
            match explicit {
                Some(name) if args.files.is_empty() => Ok((None, name)),
                _ => Err(err),
            }
        }
    }
}

/// Whether an inspect found the object: a 404 answer means absent, other errors are errors.
pub(super) fn exists<T>(inspected: Result<T, ClientError>) -> anyhow::Result<bool> {
    match inspected {
        Ok(_) => Ok(true),
        Err(ClientError::Api { status: 404, .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_env_files_applies_without_env_file_flags() {
        let env: IndexMap<String, String> =
            [("COMPOSE_ENV_FILES".to_string(), "a.env, b.env".to_string())].into();
        let none = ProjectArgs::default();
        assert_eq!(
            env_files(&none, &env),
            [PathBuf::from("a.env"), PathBuf::from("b.env")]
        );
        let flagged = ProjectArgs {
            env_files: vec!["c.env".into()],
            ..Default::default()
        };
        assert_eq!(env_files(&flagged, &env), [PathBuf::from("c.env")]);
    }
}
