//! What a batch of changes does to a service, in docker compose's order: a batch that triggers
//! a `rebuild` rule only rebuilds (its syncs are dropped: the new image has the files); otherwise
//! the syncing rules' files go into every running container of the service, then `restart` and
//! `sync+restart` restart it, then `sync+exec` hooks run — after the files are in place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;

use super::build_plan::BuildOverrides;
use super::build_render::ProgressMode;
use super::project::ProjectArgs;
use super::watch_sync::batch_for;
use crate::compose::model::Project;
use crate::compose::plan::{self, LABEL_PROJECT, LABEL_SERVICE};
use crate::compose::watch::{Action, ExecHook, ServiceWatch};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::ExecConfig;

/// How a watch session acts (shared by `berth watch` and `berth up --watch`).
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub prune: bool,
    pub quiet: bool,
    pub debounce: Duration,
}

pub const DEFAULT_DEBOUNCE_MS: u64 = 30;

impl Default for WatchOptions {
    fn default() -> Self {
        let debounce = std::env::var("BERTH_WATCH_DEBOUNCE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_DEBOUNCE_MS);
        WatchOptions {
            prune: false,
            quiet: false,
            debounce: Duration::from_millis(debounce),
        }
    }
}

/// Recreates a service after its image was rebuilt (given by the caller: `up` owns the plan,
/// and this module cannot call it back without a cycle).
pub type Recreate = Arc<
    dyn Fn(ProjectArgs, String) -> futures_util::future::BoxFuture<'static, anyhow::Result<()>>
        + Send
        + Sync,
>;

/// What the actions need, shared by the service tasks.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

struct Inner {
    project_args: ProjectArgs,
    project: Project,
    client: EngineClient,
    options: WatchOptions,
    recreate: Recreate,
}

impl Services {
    pub fn new(
        project_args: ProjectArgs,
        project: Project,
        client: EngineClient,
        options: WatchOptions,
        recreate: Recreate,
    ) -> Self {
        Services {
            inner: Arc::new(Inner {
                project_args,
                project,
                client,
                options,
                recreate,
            }),
        }
    }

    /// The service's running containers.
    async fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let project = format!("{LABEL_PROJECT}={}", self.inner.project.name);
        let service = format!("{LABEL_SERVICE}={service}");
        let listed = self
            .inner
            .client
            .list_containers(
                false,
                &[("label", project.as_str()), ("label", service.as_str())],
            )
            .await?;
        Ok(listed
            .into_iter()
            .filter(|c| !super::containers::is_one_off(c))
            .map(|c| c.id)
            .collect())
    }
}

/// Act on one batch (`triggered`: rule index → changed paths relative to the rule's path).
/// Failures are reported and watching goes on, as in docker compose.
pub async fn act_on_batch(
    services: &Services,
    watch: &ServiceWatch,
    triggered: &BTreeMap<usize, BTreeSet<String>>,
) {
    if triggered.is_empty() {
        return;
    }
    let name = &watch.service;
    let action_of = |i: &usize| watch.rules[*i].action;
    if triggered.keys().any(|i| action_of(i) == Action::Rebuild) {
        if let Err(e) = rebuild(services, name).await {
            eprintln!("Build failed. Error: {e:#}");
            eprintln!("service \"{name}\" keeps running its previous container");
        }
        return;
    }
    let changes: usize = triggered
        .iter()
        .filter(|(i, _)| action_of(i).syncs())
        .map(|(_, paths)| paths.len())
        .sum();
    if changes > 0 {
        eprintln!("Syncing service \"{name}\" after {changes} changes were detected");
    }
    if let Err(e) = sync_rules(services, watch, triggered).await {
        eprintln!("service \"{name}\": sync failed: {e:#}");
        return;
    }
    let restarts = triggered
        .keys()
        .any(|i| matches!(action_of(i), Action::Restart | Action::SyncRestart));
    if restarts {
        if let Err(e) = restart(services, name).await {
            eprintln!("service \"{name}\": restart failed: {e:#}");
        }
    }
    for index in triggered.keys() {
        if let Some(hook) = &watch.rules[*index].exec {
            if let Err(e) = exec_hook(services, name, hook).await {
                eprintln!("service \"{name}\": exec failed: {e:#}");
            }
        }
    }
}

/// Every syncing rule's batch into every running container of the service.
async fn sync_rules(
    services: &Services,
    watch: &ServiceWatch,
    triggered: &BTreeMap<usize, BTreeSet<String>>,
) -> anyhow::Result<()> {
    let containers = services.containers(&watch.service).await?;
    for (index, relatives) in triggered {
        if !watch.rules[*index].action.syncs() {
            continue;
        }
        let (w, i, r) = (watch.clone(), *index, relatives.clone());
        let batch = tokio::task::spawn_blocking(move || batch_for(&w, i, &r)).await??;
        for id in &containers {
            services
                .inner
                .client
                .sync_container(id, &batch.container_dir, batch.tar.clone())
                .await
                .with_context(|| format!("into {}", batch.container_dir))?;
        }
    }
    Ok(())
}

/// `initial_sync` rules: their whole path, once, before the first change.
pub async fn initial_sync(services: &Services, watch: &ServiceWatch) {
    let initial: BTreeMap<usize, BTreeSet<String>> = watch
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.initial_sync && r.action.syncs())
        .map(|(i, _)| (i, BTreeSet::from([String::new()])))
        .collect();
    if initial.is_empty() {
        return;
    }
    if let Err(e) = sync_rules(services, watch, &initial).await {
        eprintln!("service \"{}\": initial sync failed: {e:#}", watch.service);
    }
}

async fn restart(services: &Services, name: &str) -> anyhow::Result<()> {
    for id in services.containers(name).await? {
        services.inner.client.restart_container(&id, None).await?;
    }
    eprintln!("service(s) [\"{name}\"] restarted");
    Ok(())
}

/// The hook in every running container of the service; its output is shown, a failing exit
/// status reported.
async fn exec_hook(services: &Services, name: &str, hook: &ExecHook) -> anyhow::Result<()> {
    let client = &services.inner.client;
    for id in services.containers(name).await? {
        let config = ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            privileged: hook.privileged,
            env: Some(hook.environment.clone()),
            cmd: Some(hook.command.clone()),
            user: hook.user.clone(),
            working_dir: hook.working_dir.clone(),
            ..Default::default()
        };
        let exec_id = client.create_exec(&id, &config).await?;
        let mut output = client.start_exec(&exec_id).await?;
        while let Some(chunk) = output.next().await {
            eprint!("{}", String::from_utf8_lossy(&chunk?.bytes));
        }
        let code = client.inspect_exec(&exec_id).await?.exit_code.unwrap_or(-1);
        if code != 0 {
            anyhow::bail!("{:?} exited with code {code}", hook.command.join(" "));
        }
    }
    Ok(())
}

/// Build the service's image (the cache makes it incremental), then recreate only this
/// service through the plan (its volumes stay), then restart the dependants that asked for it
/// (`depends_on: {name: {restart: true}}`). A failed build changes nothing.
async fn rebuild(services: &Services, name: &str) -> anyhow::Result<()> {
    let inner = &services.inner;
    eprintln!("Rebuilding service(s) [\"{name}\"] after changes were detected...");
    let image = plan::service_image(&inner.project, name, &inner.project.services[name]);
    let previous = inner.client.inspect_image(&image).await.ok().map(|i| i.id);
    let plans = super::build::plan_builds(
        &inner.project,
        &[name.to_string()],
        &BuildOverrides::default(),
    )?;
    let mode = if inner.options.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::from(super::globals().progress)
    };
    super::build::build_services(&inner.client, plans, mode).await?;
    (inner.recreate)(inner.project_args.clone(), name.to_string()).await?;
    eprintln!("service(s) [\"{name}\"] successfully built");
    for (dependant, service) in &inner.project.services {
        if service.depends_on.get(name).is_some_and(|d| d.restart) {
            restart(services, dependant).await?;
        }
    }
    if inner.options.prune {
        prune_previous(&inner.client, previous, &image).await;
    }
    Ok(())
}

/// `--prune`: the image the service ran before, when the rebuild left it without a name.
async fn prune_previous(client: &EngineClient, previous: Option<String>, image: &str) {
    let Some(previous) = previous else { return };
    let now = client.inspect_image(image).await.ok().map(|i| i.id);
    if now.as_deref() == Some(previous.as_str()) {
        return;
    }
    let dangling = client
        .inspect_image(&previous)
        .await
        .is_ok_and(|i| i.repo_tags.is_empty());
    if dangling && client.remove_image(&previous, false).await.is_ok() {
        eprintln!("Pruned image {previous}");
    }
}
