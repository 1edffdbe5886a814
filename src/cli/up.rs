//! `berth up`: converge the engine to the project — images, networks, volumes, then containers in
//! dependency order — and, unless `-d`, follow their logs until they exit or the user interrupts.
//!
//! Everything this run creates is recorded; if the run fails, it is removed again in reverse order,
//! so a failed `up` leaves no half-made stack behind (pre-existing objects are never touched).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use tokio::sync::mpsc;

use super::output::{colours_enabled, status_line, LogPrefixer};
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::compose::model::Project;
use crate::compose::plan::{self, LABEL_CONFIG_HASH, LABEL_CONTAINER_NUMBER, LABEL_SERVICE};
use crate::compose::support;
use crate::engine::api::client::{ClientError, EngineClient, LogsOptions};
use crate::engine::api::types::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't prefix log lines with the container name
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Recreate containers even if their configuration hasn't changed
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Don't recreate containers that already exist
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers of services not defined in the compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Seconds to wait for containers to stop when interrupted or recreated
    #[arg(short = 't', long)]
    pub timeout: Option<i64>,
    /// Pull images before running: "always", "missing" (default) or "never"
    #[arg(long, default_value = "missing", value_parser = ["always", "missing", "never"])]
    pub pull: String,
    /// Services to start (default: all), with their dependencies
    pub services: Vec<String>,
}

/// Objects this run made, so a failure can take them back.
enum Made {
    Network(String),
    Volume(String),
    Container(String),
}

pub async fn run(project_args: &ProjectArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, &args.services)?;
    let order = selected_start_order(&project, &args.services)?;
    check_supported(&project, &order)?;
    let client = engine(project_args).await?;

    ensure_images(&client, &project, &order, &args.pull).await?;

    let mut made = Vec::new();
    let started = match converge(&client, &project, &order, args, &mut made).await {
        Ok(started) => started,
        Err(err) => {
            roll_back(&client, made).await;
            return Err(err);
        }
    };

    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    attach(&client, &project, &started, args).await
}

/// Warn about every attribute berth ignores, one line per service and attribute, and refuse
/// (before anything is made) the services whose attributes cannot safely be ignored.
fn check_supported(project: &Project, order: &[String]) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for name in order {
        for finding in support::unsupported_fields(name, &project.services[name]) {
            if finding.refused {
                refused.push(finding.to_string());
            } else {
                eprintln!("{finding}");
            }
        }
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("\n"));
    }
    Ok(())
}

/// Whether an inspect found the object: a 404 answer means absent, other errors are errors.
fn exists<T>(inspected: Result<T, ClientError>) -> anyhow::Result<bool> {
    match inspected {
        Ok(_) => Ok(true),
        Err(ClientError::Api { status: 404, .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Pull the images the services need (all of them before anything is created, so an unknown
/// image fails the run with nothing made).
async fn ensure_images(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    policy: &str,
) -> anyhow::Result<()> {
    for name in order {
        let service = &project.services[name];
        let image = plan::service_image(project, name, service);
        let present = exists(client.inspect_image(&image).await)?;
        let must_pull = match policy {
            "always" => true,
            "never" => false,
            _ => !present,
        };
        if must_pull {
            super::pull::pull_image(client, name, &image, false)
                .await
                .with_context(|| format!("service \"{name}\": cannot pull image {image}"))?;
        } else if !present {
            bail!("service \"{name}\": image {image} is not present and --pull never was given");
        }
    }
    Ok(())
}

/// Networks, volumes, then containers in dependency order; returns the containers to attach to
/// as `(container id, short name)`.
async fn converge(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    args: &UpArgs,
    made: &mut Vec<Made>,
) -> anyhow::Result<Vec<Started>> {
    for key in used_networks(project, order) {
        let network = &project.networks[&key];
        let exists = exists(client.inspect_network(&network.name).await)?;
        if network.external {
            if !exists {
                bail!(
                    "network {} declared as external, but could not be found; create it first with `docker network create {}`",
                    network.name,
                    network.name
                );
            }
            continue;
        }
        if !exists {
            if let Some(request) = plan::network_create_request(project, &key) {
                client.create_network(&request).await?;
                made.push(Made::Network(network.name.clone()));
                status_line("Network", &network.name, "Created");
            }
        }
    }

    for key in used_volumes(project, order) {
        let volume = &project.volumes[&key];
        let exists = exists(client.inspect_volume(&volume.name).await)?;
        if volume.external {
            if !exists {
                bail!(
                    "external volume \"{}\" not found; create it first with `docker volume create {}`",
                    volume.name,
                    volume.name
                );
            }
            continue;
        }
        if !exists {
            if let Some(request) = plan::volume_create_request(project, &key) {
                client.create_volume(&request).await?;
                made.push(Made::Volume(volume.name.clone()));
                status_line("Volume", &format!("\"{}\"", volume.name), "Created");
            }
        }
    }

    let existing = {
        let label = format!("{}={}", plan::LABEL_PROJECT, project.name);
        client
            .list_containers(true, &[("label", label.as_str())])
            .await?
    };
    report_orphans(client, project, &existing, args.remove_orphans).await?;

    // Services whose dependencies are all up start together, level by level, as docker compose
    // walks its dependency graph in parallel.
    let made_here = std::sync::Mutex::new(Vec::new());
    let mut started = Vec::new();
    for level in start_levels(project, order) {
        let results = futures_util::future::join_all(level.iter().map(|service_name| {
            converge_service(client, project, service_name, args, &existing, &made_here)
        }))
        .await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(container) => started.push(container),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            made.extend(made_here.into_inner().unwrap_or_else(|p| p.into_inner()));
            return Err(e);
        }
    }
    made.extend(made_here.into_inner().unwrap_or_else(|p| p.into_inner()));
    Ok(started)
}

/// `order` grouped into levels: a service's level is one more than its deepest dependency's.
fn start_levels(project: &Project, order: &[String]) -> Vec<Vec<String>> {
    let mut level_of: std::collections::HashMap<&str, usize> = Default::default();
    let mut levels: Vec<Vec<String>> = Vec::new();
    for name in order {
        let level = project.services[name]
            .depends_on
            .keys()
            .filter_map(|dep| level_of.get(dep.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level_of.insert(name, level);
        if levels.len() <= level {
            levels.resize(level + 1, Vec::new());
        }
        levels[level].push(name.clone());
    }
    levels
}

/// Create (or recreate) and start the container of one service once its dependencies allow.
async fn converge_service(
    client: &EngineClient,
    project: &Project,
    service_name: &str,
    args: &UpArgs,
    existing: &[ContainerSummary],
    made: &std::sync::Mutex<Vec<Made>>,
) -> anyhow::Result<Started> {
    let remember = |object: Made| made.lock().unwrap_or_else(|p| p.into_inner()).push(object);
    wait_for_dependencies(client, project, service_name, existing).await?;
    let name = plan::container_name(project, service_name, 1);
    let request = plan::container_create_request(project, service_name, 1)
        .ok_or_else(|| anyhow!("no such service: {service_name}"))?;
    let wanted_hash = plan::service_config_hash(&project.services[service_name]);
    let current = existing.iter().find(|c| {
        c.labels.get(LABEL_SERVICE).map(String::as_str) == Some(service_name)
            && c.labels.get(LABEL_CONTAINER_NUMBER).map(String::as_str) == Some("1")
    });
    let id = match current {
        Some(c)
            if args.no_recreate
                || (!args.force_recreate
                    && c.labels.get(LABEL_CONFIG_HASH) == Some(&wanted_hash)) =>
        {
            if c.state == "running" {
                status_line("Container", &name, "Running");
                return Ok(Started::new(project, service_name, &c.id, &name));
            }
            c.id.clone()
        }
        Some(c) => {
            status_line("Container", &name, "Recreate");
            client.stop_container(&c.id, args.timeout).await?;
            client.remove_container(&c.id, true, false).await?;
            let created = client.create_container(Some(&name), &request).await?;
            remember(Made::Container(created.id.clone()));
            status_line("Container", &name, "Recreated");
            created.id
        }
        None => {
            let created = client
                .create_container(Some(&name), &request)
                .await
                .with_context(|| format!("cannot create container for service {service_name}"))?;
            remember(Made::Container(created.id.clone()));
            status_line("Container", &name, "Created");
            created.id
        }
    };
    client
        .start_container(&id)
        .await
        .with_context(|| format!("cannot start container {name} (service {service_name})"))?;
    status_line("Container", &name, "Started");
    Ok(Started::new(project, service_name, &id, &name))
}

impl Started {
    fn new(project: &Project, service: &str, id: &str, container_name: &str) -> Self {
        // `server-1` for `demo-server-1`, as docker compose prefixes log lines.
        let short_name = container_name
            .strip_prefix(&format!("{}-", project.name))
            .unwrap_or(container_name)
            .to_string();
        Self {
            id: id.to_string(),
            service: service.to_string(),
            container_name: container_name.to_string(),
            short_name,
        }
    }
}

/// Network keys the selected services use.
fn used_networks(project: &Project, order: &[String]) -> Vec<String> {
    let mut keys = Vec::new();
    for name in order {
        for key in project.services[name].networks.keys() {
            if !keys.contains(key) && project.networks.contains_key(key) {
                keys.push(key.clone());
            }
        }
    }
    keys
}

/// Named-volume keys the selected services mount.
fn used_volumes(project: &Project, order: &[String]) -> Vec<String> {
    let mut keys = Vec::new();
    for name in order {
        for volume in &project.services[name].volumes {
            if volume.kind != "volume" {
                continue;
            }
            if let Some(key) = &volume.source {
                if !keys.contains(key) && project.volumes.contains_key(key) {
                    keys.push(key.clone());
                }
            }
        }
    }
    keys
}

/// Wait for `depends_on` conditions of one service before its containers start.
async fn wait_for_dependencies(
    client: &EngineClient,
    project: &Project,
    service_name: &str,
    _existing: &[ContainerSummary],
) -> anyhow::Result<()> {
    let service = &project.services[service_name];
    for (dep, condition) in &service.depends_on {
        if !project.services.contains_key(dep) {
            if condition.required {
                bail!("service \"{service_name}\" depends on undefined service \"{dep}\"");
            }
            continue;
        }
        let dep_container = plan::container_name(project, dep, 1);
        match condition.condition.as_str() {
            "service_completed_successfully" => {
                let code = client.wait_container(&dep_container).await?;
                if code != 0 && condition.required {
                    bail!("service \"{dep}\" didn't complete successfully: exit {code}");
                }
            }
            "service_healthy" => {
                status_line("Container", &dep_container, "Waiting");
                match wait_healthy(client, &dep_container).await {
                    Ok(()) => status_line("Container", &dep_container, "Healthy"),
                    Err(e) if !condition.required => {
                        eprintln!("warning: optional dependency \"{dep}\" of service \"{service_name}\": {e}");
                    }
                    Err(e) => bail!("dependency failed to start: {e:#}"),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How often `service_healthy` dependencies are polled (docker compose's interval).
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Poll a dependency's inspect until its healthcheck passes; fails (with docker compose's
/// wording) when it turns unhealthy, exits, or has no healthcheck to wait for.
async fn wait_healthy(client: &EngineClient, container: &str) -> anyhow::Result<()> {
    loop {
        let inspect = client.inspect_container(container).await?;
        let state = &inspect.state;
        if state.status == "exited" || state.status == "dead" {
            bail!("container {container} exited ({})", state.exit_code);
        }
        match state.health.as_ref().map(|h| h.status.as_str()) {
            None => bail!("container {container} has no healthcheck configured"),
            Some("healthy") => return Ok(()),
            Some("unhealthy") => bail!("container {container} is unhealthy"),
            Some(_) => {}
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

async fn report_orphans(
    client: &EngineClient,
    project: &Project,
    existing: &[ContainerSummary],
    remove: bool,
) -> anyhow::Result<()> {
    let orphans: Vec<&ContainerSummary> = existing
        .iter()
        .filter(|c| {
            c.labels
                .get(LABEL_SERVICE)
                .is_some_and(|s| !project.services.contains_key(s))
        })
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    if remove {
        for orphan in orphans {
            let name = orphan
                .names
                .first()
                .map(|n| n.trim_start_matches('/'))
                .unwrap_or(&orphan.id);
            client.stop_container(&orphan.id, None).await?;
            client.remove_container(&orphan.id, true, false).await?;
            status_line("Container", name, "Removed");
        }
    } else {
        let names: Vec<&str> = orphans
            .iter()
            .filter_map(|c| c.names.first())
            .map(|n| n.trim_start_matches('/'))
            .collect();
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        );
    }
    Ok(())
}

/// Undo what a failed run made, newest first. Errors here are reported, not returned: the
/// original failure is what the user needs to see.
async fn roll_back(client: &EngineClient, made: Vec<Made>) {
    for object in made.into_iter().rev() {
        let result = match &object {
            Made::Container(id) => client.remove_container(id, true, true).await,
            Made::Network(name) => client.remove_network(name).await,
            Made::Volume(name) => client.remove_volume(name, true).await,
        };
        if let Err(e) = result {
            let what = match object {
                Made::Container(id) => format!("container {id}"),
                Made::Network(name) => format!("network {name}"),
                Made::Volume(name) => format!("volume {name}"),
            };
            eprintln!("warning: while undoing the failed up, cannot remove {what}: {e}");
        }
    }
}

/// A container this run attached to.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub service: String,
    pub container_name: String,
    /// `service-1`: what log prefixes show.
    pub short_name: String,
}

enum AttachEvent {
    Output(String, String),
    Exited(String, i64),
}

/// Follow the logs of the started containers until all have exited; Ctrl-C stops them
/// gracefully (a second Ctrl-C kills them), as docker compose does.
async fn attach(
    client: &EngineClient,
    project: &Project,
    started: &[Started],
    args: &UpArgs,
) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = started.iter().map(|c| c.short_name.clone()).collect();
    let mut prefixer =
        LogPrefixer::new(&names, colours_enabled(args.no_color), !args.no_log_prefix);
    let (tx, mut rx) = mpsc::channel::<AttachEvent>(256);
    for c in started {
        let client = client.clone();
        let (id, name, tx) = (c.id.clone(), c.short_name.clone(), tx.clone());
        tokio::spawn(async move {
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            if let Ok(mut stream) = client.logs(&id, &options).await {
                use futures_util::StreamExt;
                while let Some(Ok(chunk)) = stream.next().await {
                    let text = String::from_utf8_lossy(&chunk.bytes).into_owned();
                    if tx
                        .send(AttachEvent::Output(name.clone(), text))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let code = client.wait_container(&id).await.unwrap_or(-1);
            let _ = tx.send(AttachEvent::Exited(name, code)).await;
        });
    }
    drop(tx);

    let mut running = started.len();
    let mut interrupts = 0;
    let mut stdout = std::io::stdout();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    while running > 0 {
        tokio::select! {
            event = rx.recv() => match event {
                Some(AttachEvent::Output(name, text)) => prefixer.write_lines(&mut stdout, &name, &text)?,
                Some(AttachEvent::Exited(name, code)) => {
                    running -= 1;
                    println!("{name} exited with code {code}");
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                spawn_stop(client, project, started, args, interrupts);
            }
            _ = sigterm.recv() => {
                interrupts += 1;
                spawn_stop(client, project, started, args, interrupts);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Stop (first interrupt) or kill (second) the attached containers, dependents first, in the
/// background so their last log lines keep flowing to the terminal.
fn spawn_stop(
    client: &EngineClient,
    project: &Project,
    started: &[Started],
    args: &UpArgs,
    interrupts: u32,
) {
    if interrupts == 1 {
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
    }
    let order = selected_start_order(project, &[]).unwrap_or_default();
    let mut targets: Vec<Started> = started.to_vec();
    targets.sort_by_key(|c| std::cmp::Reverse(order.iter().position(|s| *s == c.service)));
    let client = client.clone();
    let timeout = args.timeout;
    tokio::spawn(async move {
        for c in targets {
            let result = if interrupts == 1 {
                client.stop_container(&c.id, timeout).await
            } else {
                client.kill_container(&c.id, Some("SIGKILL")).await
            };
            match result {
                Ok(()) => status_line("Container", &c.container_name, "Stopped"),
                Err(e) => eprintln!("warning: cannot stop {}: {e}", c.container_name),
            }
        }
    });
}
