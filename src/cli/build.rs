//! `berth build`: build the services' images with the engine's builder (`POST /build`), as
//! `docker compose build` does with the classic builder — the context tar made here (see
//! `build_context`), distinct builds at once (a few at a time), progress in BuildKit's plain style,
//! then compose's ` ✔ Service web  Built` lines. `up` builds through the same [`build_services`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use futures_util::stream::{self, StreamExt};

use super::build_context::{self, Context, ContextError, DockerfileSource, Exclusions};
use super::build_plan::{plan_service, BuildOverrides, ServiceBuild};
use super::build_render::{ProgressMode, Renderer};
use super::output::status_line;
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::compose::model::Project;
use crate::engine::api::client::EngineClient;
use crate::engine::auth;

/// Builds sent to the engine at once: enough to overlap a slow step of one service with the
/// others, few enough not to start every RUN of a big project together.
const PARALLEL_BUILDS: usize = 4;

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set build-time variables for services (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Don't print anything to STDOUT
    #[arg(short, long)]
    pub quiet: bool,
    /// Set type of progress output (auto, tty, plain, json, quiet; default: the global
    /// --progress, i.e. COMPOSE_PROGRESS)
    #[arg(long)]
    pub progress: Option<String>,
    /// Services to build (default: all that have a build section)
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let mode = match (&args.progress, args.quiet) {
        (_, true) => ProgressMode::Quiet,
        (Some(p), false) => ProgressMode::parse(p).map_err(|e| anyhow!(e))?,
        (None, false) => ProgressMode::from(super::globals().progress),
    };
    let project = load_project(project_args, &args.services)?;
    let order: Vec<String> = selected_start_order(&project, &[])?
        .into_iter()
        .filter(|s| args.services.is_empty() || args.services.contains(s))
        .filter(|s| project.services[s].build.is_some())
        .collect();
    let overrides = BuildOverrides {
        build_args: args.build_args.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        quiet: args.quiet,
    };
    let plans = plan_builds(&project, &order, &overrides)?;
    if plans.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let client = engine(project_args).await?;
    build_services(&client, plans, mode).await?;
    Ok(ExitCode::SUCCESS)
}

/// The builds of `services` (in that order), one per distinct image: services that name the same
/// image are built once, as docker compose does.
pub fn plan_builds(
    project: &Project,
    services: &[String],
    overrides: &BuildOverrides,
) -> anyhow::Result<Vec<ServiceBuild>> {
    let env = |key: &str| std::env::var(key).ok();
    let mut plans: Vec<ServiceBuild> = Vec::new();
    for service in services {
        let plan = plan_service(project, service, overrides, &env)?;
        if !plans.iter().any(|p| p.image == plan.image) {
            plans.push(plan);
        }
    }
    Ok(plans)
}

/// Run `plans` (a few at a time, started in order), print their progress and a `Built` line
/// each; returns each built service's image id. Every build runs to its end even when another
/// fails (so no half-sent context is cut off), then the first failure is returned.
pub async fn build_services(
    client: &EngineClient,
    plans: Vec<ServiceBuild>,
    mode: ProgressMode,
) -> anyhow::Result<HashMap<String, String>> {
    let renderer = Arc::new(Mutex::new(Renderer::new(mode)));
    let results: Vec<(String, anyhow::Result<String>)> =
        stream::iter(plans.into_iter().enumerate())
            .map(|(index, plan)| {
                let renderer = renderer.clone();
                async move {
                    let result = build_one(client, &plan, index, &renderer).await;
                    if result.is_ok() && mode != ProgressMode::Quiet {
                        status_line("Service", &plan.service, "Built");
                    }
                    (plan.service, result)
                }
            })
            .buffered(PARALLEL_BUILDS.min(super::globals().parallel_limit()))
            .collect()
            .await;
    let mut ids = HashMap::new();
    for (service, result) in results {
        ids.insert(service, result?);
    }
    Ok(ids)
}

/// One build: the context streamed from a thread, the answer rendered as it comes.
async fn build_one(
    client: &EngineClient,
    plan: &ServiceBuild,
    index: usize,
    renderer: &Mutex<Renderer>,
) -> anyhow::Result<String> {
    let failed = || format!("failed to build service \"{}\"", plan.service);
    let context = prepare_context(plan)
        .await
        .map_err(|e| anyhow!("service \"{}\" in {}: {e}", plan.service, plan.files))?;
    let (chunks, writer) = build_context::stream(context);
    let answer = client.build(&plan.options, chunks, registry_config()).await;
    let outcome = match answer {
        Ok(mut messages) => {
            let mut image_id = None;
            let mut error = None;
            while let Some(message) = messages.next().await {
                let message = message?;
                if let Some(e) = message.error_message() {
                    error = Some(e.to_string());
                }
                if let Some(id) = message.image_id() {
                    image_id = Some(id.to_string());
                }
                print_lines(renderer, index, &message);
            }
            match (error, image_id) {
                (Some(e), _) => Err(anyhow!(e)),
                (None, Some(id)) => Ok(id),
                (None, None) => Err(anyhow!("the engine ended the build without an image id")),
            }
        }
        Err(e) => Err(e.into()),
    };
    // The writer's own error (an unreadable file in the context) explains a cut-off request.
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| anyhow!("context writer: {e}"))?
        .map_err(|_| anyhow!("the context writer panicked"))?;
    if let Err(e) = written {
        if outcome.is_err() {
            return Err(anyhow::Error::new(e).context(failed()));
        }
    }
    outcome.with_context(failed)
}

fn print_lines(
    renderer: &Mutex<Renderer>,
    index: usize,
    message: &crate::engine::api::client::BuildMessage,
) {
    let lines = match renderer.lock() {
        Ok(mut r) => r.lines(index, message, Instant::now()),
        Err(_) => return,
    };
    for line in lines {
        eprintln!("{line}");
    }
}

/// The `X-Registry-Config` header as the Docker CLI sends it: the credentials of every registry
/// config.json knows (its `auths` and `credHelpers`), for base images the engine pulls. Reading
/// them is best effort, as for docker: a registry whose helper fails is left out (anonymous).
fn registry_config() -> Option<String> {
    use base64::Engine as _;
    let path = auth::DockerConfig::path().ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let raw: serde_json::Value = serde_json::from_str(&text).ok()?;
    let registries = config_registries(&raw);
    let credentials: BTreeMap<String, auth::AuthConfig> = registries
        .iter()
        .filter_map(|registry| {
            let found = auth::resolve(registry).ok().flatten()?;
            Some((auth::server_key(registry), found))
        })
        .collect();
    if credentials.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(&credentials).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE.encode(json))
}

/// The registries a config.json names under `auths` and `credHelpers`, normalised.
fn config_registries(raw: &serde_json::Value) -> BTreeSet<String> {
    ["auths", "credHelpers"]
        .iter()
        .filter_map(|section| raw.get(section)?.as_object())
        .flat_map(|entries| entries.keys())
        .map(|key| auth::normalize_key(key))
        .filter(|key| !key.is_empty())
        .collect()
}

/// Check the context and walk it (in a blocking task: it reads the whole tree).
async fn prepare_context(plan: &ServiceBuild) -> Result<Context, ContextError> {
    let dir = plan.context_dir.clone();
    let dockerfile = plan.dockerfile.clone();
    tokio::task::spawn_blocking(move || {
        check_context_dir(&dir)?;
        let exclusions = read_exclusions(&dir)?;
        let mut always = vec![".dockerignore"];
        if let DockerfileSource::InContext(rel) = &dockerfile {
            always.push(rel.as_str());
        }
        let entries = build_context::walk(&dir, exclusions.as_ref(), &always)?;
        Ok(Context {
            dir,
            entries,
            dockerfile,
        })
    })
    .await
    .map_err(|e| ContextError::Send(format!("context walker: {e}")))?
}

fn check_context_dir(dir: &Path) -> Result<(), ContextError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ContextError::NotADirectory {
            dir: dir.to_path_buf(),
        }),
        Err(_) => Err(ContextError::Missing {
            dir: dir.to_path_buf(),
        }),
    }
}

/// The context's `.dockerignore`, or nothing excluded without one.
fn read_exclusions(dir: &Path) -> Result<Box<dyn Exclusions>, ContextError> {
    let path = dir.join(".dockerignore");
    match std::fs::read_to_string(&path) {
        Ok(text) => build_context::ignore_file(&text).map_err(|message| ContextError::Ignore {
            dir: dir.to_path_buf(),
            message,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Box::new(build_context::NothingExcluded))
        }
        Err(e) => Err(ContextError::Ignore {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registries_of_config_json_are_its_auths_and_helpers_normalised() {
        let raw = serde_json::json!({
            "auths": {"https://index.docker.io/v1/": {"auth": "eA=="}, "127.0.0.1:5000": {}},
            "credHelpers": {"reg.example:443": "pass"},
            "credsStore": "desktop"
        });
        let found: Vec<String> = config_registries(&raw).into_iter().collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.contains(&"127.0.0.1:5000".to_string()));
        assert!(found.contains(&"reg.example:443".to_string()));
    }
}
