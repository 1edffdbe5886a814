//! `berth up`: converge the engine to the project — images, networks, volumes, then containers in
//! dependency order — and, unless `-d`, follow their logs until they exit or the user interrupts.
//! `--wait` waits for the started services to be running (healthy, with a healthcheck);
//! `--abort-on-container-exit`/`--exit-code-from` end an attached run when one container exits.
//!
//! Everything this run creates is recorded; if the run fails, it is removed again in reverse order,
//! so a failed `up` leaves no half-made stack behind (pre-existing objects are never touched).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::build_plan::BuildOverrides;
use super::build_render::ProgressMode;
use super::output::{colours_enabled, status_line, LogPrefixer};
use super::project::{engine, exists, load_project, selected_start_order, ProjectArgs};
use crate::compose::converge::{
    self, Action, ActionKind, Existing, Flags, Observed, Plan, ServicePlan,
};
use crate::compose::model::{DependsOn, Project};
use crate::compose::plan::{
    self, LABEL_CONFIG_FIELDS, LABEL_CONFIG_HASH, LABEL_CONTAINER_NUMBER, LABEL_SERVICE,
};
use crate::compose::pull_policy::{parse_last_tag_time, PullDecision, PullPolicy};
use crate::compose::support;
use crate::engine::api::client::{ClientError, EngineClient, LogsOptions};

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
    /// Recreate dependent containers. Incompatible with --no-recreate
    #[arg(long, conflicts_with = "no_recreate")]
    pub always_recreate_deps: bool,
    /// Remove containers of services not defined in the compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances. Overrides the `scale` setting in the Compose file if present
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Seconds to wait for containers to stop when interrupted or recreated
    #[arg(short = 't', long)]
    pub timeout: Option<i64>,
    /// Pull images before running; "policy" follows each service's pull_policy (default missing)
    #[arg(long, default_value = "policy", value_parser = ["always", "missing", "never", "policy"])]
    pub pull: String,
    /// Stops all containers if any container was stopped. Incompatible with -d and --wait
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container. Implies --abort-on-container-exit
    #[arg(long, value_name = "SERVICE")]
    pub exit_code_from: Option<String>,
    /// Wait for services to be running|healthy. Implies detached mode
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
    /// Build images before starting containers
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long, conflicts_with_all = ["wait", "abort_on_container_exit", "exit_code_from"])]
    pub no_start: bool,
    /// Watch source code and rebuild/refresh containers when files are updated
    #[arg(short = 'w', long, conflicts_with_all = ["detach", "no_start", "wait"])]
    pub watch: bool,
    /// Services to start (default: all), with their dependencies
    pub services: Vec<String>,
}

impl UpArgs {
    /// `up -d SERVICES --pull PULL` with every other flag at its default, for the commands that
    /// converge part of the project the way `up` does (`create`, `run`).
    fn detached(services: Vec<String>, pull: &str) -> Self {
        UpArgs {
            detach: true,
            no_color: false,
            no_log_prefix: false,
            force_recreate: false,
            no_recreate: false,
            always_recreate_deps: false,
            remove_orphans: false,
            scale: Vec::new(),
            timeout: None,
            pull: pull.to_string(),
            abort_on_container_exit: false,
            exit_code_from: None,
            wait: false,
            wait_timeout: None,
            quiet_pull: false,
            build: false,
            no_build: false,
            no_deps: false,
            no_start: false,
            watch: false,
            services,
        }
    }

    /// What steers the converge decision: the recreate flags, `--remove-orphans`, `--scale`.
    fn flags(&self) -> anyhow::Result<Flags> {
        let mut flags = Flags::new(
            self.force_recreate,
            self.no_recreate,
            self.always_recreate_deps,
        );
        flags.remove_orphans = self.remove_orphans;
        for entry in &self.scale {
            let parsed = entry
                .split_once('=')
                .and_then(|(service, n)| Some((service.to_string(), n.parse::<u32>().ok()?)));
            let Some((service, count)) = parsed else {
                bail!("invalid --scale {entry:?}: expected SERVICE=NUM");
            };
            flags.scale.insert(service, count);
        }
        Ok(flags)
    }

    /// `--exit-code-from` implies `--abort-on-container-exit`, as in docker compose.
    fn abort_on_exit(&self) -> bool {
        self.abort_on_container_exit || self.exit_code_from.is_some()
    }

    /// The combinations docker compose refuses, with its wording (berth has no `--attach`
    /// flags, so they are not named). Checked here rather than by clap so the wording and the
    /// exit code (1) are compose's.
    fn check(&self) -> anyhow::Result<()> {
        if self.wait && self.abort_on_exit() {
            bail!("--wait cannot be combined with --abort-on-container-exit");
        }
        if self.detach && self.abort_on_exit() {
            bail!("--detach cannot be combined with --abort-on-container-exit");
        }
        Ok(())
    }
}

/// Objects this run made, so a failure can take them back.
enum Made {
    Network(String),
    Volume(String),
    Container(String),
}

pub async fn run(project_args: &ProjectArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    let project = load_project(project_args, &args.services)?;
    // Nothing to watch is refused before anything is made.
    let watch_rules = if args.watch {
        Some(super::watch_session::rules_for(
            project_args,
            &project,
            &args.services,
        )?)
    } else {
        None
    };
    let (client, started) = match bring_up(project_args, args, &project).await? {
        BroughtUp::Done(code) => return Ok(code),
        BroughtUp::Attachable(client, started) => (client, started),
    };
    // The watch lives as long as the attached run: Ctrl-C stops the stack and ends it.
    let (watching, joining) = match watch_rules {
        Some(rules) => {
            let (recreate, joining) = recreate_and_rejoin(&client, &project);
            let options = super::watch_actions::WatchOptions::default();
            let session = super::watch_session::start(
                project_args.clone(),
                project.clone(),
                client.clone(),
                rules,
                options,
                recreate,
            )?;
            (Some(session), Some(joining))
        }
        None => (None, None),
    };
    let watch = watching.zip(joining);
    attach(&client, &project, &started, args, watch).await
}

/// How `up --watch` recreates a rebuilt service: as `berth watch` does, then the service's new
/// containers are handed to the attached run to follow.
fn recreate_and_rejoin(
    client: &EngineClient,
    project: &Project,
) -> (super::watch_actions::Recreate, Joining) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, project) = (client.clone(), project.clone());
    let recreate: super::watch_actions::Recreate = Arc::new(move |project_args, service| {
        let (tx, client, project) = (tx.clone(), client.clone(), project.clone());
        Box::pin(async move {
            recreate_service(&project_args, &service).await?;
            for c in existing_containers(&client, &project).await? {
                if c.service == service && c.running {
                    let _ = tx.send(Started::new(&project, &service, &c.id, &c.name));
                }
            }
            Ok(())
        })
    });
    (recreate, rx)
}

/// How far `bring_up` took the run: done (detached, `--wait`, dry run), or containers to attach to.
enum BroughtUp {
    Done(ExitCode),
    Attachable(EngineClient, Vec<Started>),
}

/// Everything `up` does before attaching: images, networks, volumes, containers.
async fn bring_up(
    project_args: &ProjectArgs,
    args: &UpArgs,
    project: &Project,
) -> anyhow::Result<BroughtUp> {
    let order = if args.no_deps && !args.services.is_empty() {
        // Only the named services, in start order among themselves.
        selected_start_order(project, &[])?
            .into_iter()
            .filter(|s| args.services.contains(s))
            .collect()
    } else {
        selected_start_order(project, &args.services)?
    };
    if let Some(service) = &args.exit_code_from {
        if !order.contains(service) {
            bail!(
                "no such service: {service} (--exit-code-from must name a service this run starts)"
            );
        }
    }
    check_supported(project, &order)?;
    // A replica count that cannot be met (`container_name` with more than one) fails before
    // anything is pulled or made.
    let flags = args.flags()?;
    for service in &order {
        converge::replicas(project, service, &flags)?;
    }
    let client = engine(project_args).await?;
    if super::globals().dry_run {
        let up = super::dry_run::UpInputs {
            services: &args.services,
            flags: args.flags()?,
            existing: existing_containers(&client, project).await?,
            network_keys: used_networks(project, &order),
            volume_keys: used_volumes(project, &order),
        };
        return super::dry_run::up(&client, project, &order, up)
            .await
            .map(BroughtUp::Done);
    }

    let wanted = ImageFlags {
        pull: &args.pull,
        quiet_pull: args.quiet_pull,
        build: BuildFlag::of(args.build, args.no_build),
    };
    let image_ids = ensure_images(&client, project, &order, &wanted).await?;

    let mut made = Vec::new();
    let started = match converge(&client, project, &order, args, image_ids, &mut made).await {
        Ok(started) => started,
        Err(err) => {
            roll_back(&client, made).await;
            return Err(err);
        }
    };

    if args.wait {
        wait_until_ready(&client, project, &started, args.wait_timeout).await?;
        return Ok(BroughtUp::Done(ExitCode::SUCCESS));
    }
    if args.detach || args.no_start {
        return Ok(BroughtUp::Done(ExitCode::SUCCESS));
    }
    Ok(BroughtUp::Attachable(client, started))
}

/// `up -d SERVICES`: what `berth watch` runs before watching (unless `--no-up`).
pub(super) async fn start_detached(
    project_args: &ProjectArgs,
    services: Vec<String>,
) -> anyhow::Result<()> {
    let args = UpArgs::detached(services, "policy");
    let project = load_project(project_args, &args.services)?;
    bring_up(project_args, &args, &project).await?;
    Ok(())
}

/// `up -d --no-deps --no-build SERVICE` after the watch rebuilt its image: the plan recreates
/// only that service's containers (the image id changed), keeping their volumes.
pub(super) async fn recreate_service(
    project_args: &ProjectArgs,
    service: &str,
) -> anyhow::Result<()> {
    let mut args = UpArgs::detached(vec![service.to_string()], "policy");
    args.no_deps = true;
    args.no_build = true;
    // The whole project, so that the services not recreated are not taken for orphans; one
    // that only naming it activates (its profiles) is loaded by name.
    let whole = load_project(project_args, &[])?;
    let project = if whole.services.contains_key(service) {
        whole
    } else {
        load_project(project_args, &args.services)?
    };
    bring_up(project_args, &args, &project).await?;
    Ok(())
}

/// Warn about every attribute berth ignores, one line per service and attribute, and refuse
/// (before anything is made) the services whose attributes cannot safely be ignored.
fn check_supported(project: &Project, order: &[String]) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for name in order {
        let findings = support::unsupported_fields(name, &project.services[name])
            .into_iter()
            .chain(support::unsupported_file_objects(project, name));
        for finding in findings {
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

/// `berth create`: `up --no-start` under docker compose's name for it.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Recreate containers even if their configuration hasn't changed
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Don't recreate containers that already exist
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers of services not defined in the compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Scale SERVICE to NUM instances. Overrides the `scale` setting in the Compose file if present
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Pull images before creating: "always", "missing", "never" or "policy"
    #[arg(long, default_value = "policy", value_parser = ["always", "missing", "never", "policy"])]
    pub pull: String,
    /// Build images before starting containers
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long)]
    pub no_build: bool,
    /// Services to create (default: all), with their dependencies
    pub services: Vec<String>,
}

pub async fn create(project_args: &ProjectArgs, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let up = UpArgs {
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        remove_orphans: args.remove_orphans,
        scale: args.scale.clone(),
        build: args.build,
        no_build: args.no_build,
        no_start: true,
        ..UpArgs::detached(args.services.clone(), &args.pull)
    };
    run(project_args, &up).await
}

/// When `up` builds images (`--build`, `--no-build`, or neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuildFlag {
    /// `--build`: every service with a build section.
    Always,
    /// The default: images that are missing, and services whose `pull_policy` is `build`.
    Missing,
    /// `--no-build`: none; a missing image that must be built fails the run.
    Never,
}

impl BuildFlag {
    pub(super) fn of(build: bool, no_build: bool) -> Self {
        match (build, no_build) {
            (true, _) => BuildFlag::Always,
            (false, true) => BuildFlag::Never,
            (false, false) => BuildFlag::Missing,
        }
    }
}

/// What a service's image comes from in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildDecision {
    Build,
    /// Use the local image or pull it, as the pull policy says.
    NotBuilt,
    /// It must be built but `--no-build` was given.
    Refused,
}

/// Whether a service is built, as docker compose decides it.
fn build_decision(
    flag: BuildFlag,
    has_build: bool,
    policy_is_build: bool,
    present: bool,
) -> BuildDecision {
    match (has_build, flag) {
        (false, _) => BuildDecision::NotBuilt,
        (true, BuildFlag::Never) if !present => BuildDecision::Refused,
        (true, BuildFlag::Never) => BuildDecision::NotBuilt,
        (true, BuildFlag::Always) => BuildDecision::Build,
        (true, BuildFlag::Missing) if policy_is_build || !present => BuildDecision::Build,
        (true, BuildFlag::Missing) => BuildDecision::NotBuilt,
    }
}

/// How `up`, `create` and `run` get images: `--pull`, `--quiet-pull`, `--build`/`--no-build`.
pub(super) struct ImageFlags<'a> {
    pub pull: &'a str,
    pub quiet_pull: bool,
    pub build: BuildFlag,
}

/// Pull and build the images the services need, as `--pull`, `--build` and each service's
/// `pull_policy` say (all of them before anything is created, so an unknown or unavailable image
/// or a failing build fails the run with nothing made). Returns the id each service's image has
/// now, which decides recreates: a rebuilt image with a new id recreates only its services.
async fn ensure_images(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    flags: &ImageFlags<'_>,
) -> anyhow::Result<HashMap<String, String>> {
    let mut image_ids = HashMap::new();
    let now = chrono::Utc::now();
    let mut to_pull = Vec::new();
    let mut to_build = Vec::new();
    for name in order {
        let service = &project.services[name];
        let image = plan::service_image(project, name, service);
        let (policy, policy_source) = match flags.pull {
            "policy" => (
                PullPolicy::of_service(service.pull_policy.as_deref())
                    .map_err(|e| anyhow!("service \"{name}\": {e}"))?,
                "its pull_policy is never",
            ),
            flag => (PullPolicy::parse(flag)?, "--pull never was given"),
        };
        let local = match client.inspect_image(&image).await {
            Ok(inspect) => Some(inspect),
            Err(ClientError::Api { status: 404, .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let building = build_decision(
            flags.build,
            service.build.is_some(),
            policy == PullPolicy::Build,
            local.is_some(),
        );
        match building {
            BuildDecision::Build => {
                to_build.push(name.clone());
                continue;
            }
            BuildDecision::Refused => bail!(
                "service \"{name}\": image {image} is not present and must be built, but --no-build was given; build it first (berth build) or leave out --no-build"
            ),
            BuildDecision::NotBuilt => {}
        }
        let last_tagged = local
            .as_ref()
            .and_then(|i| parse_last_tag_time(&i.metadata.last_tag_time));
        let decision = if service.image.is_none() {
            // A build-only service whose image is here: nothing to pull.
            PullDecision::UseLocal
        } else {
            policy.decide(local.is_some(), last_tagged, now)
        };
        match decision {
            PullDecision::UseLocal => {
                if let Some(inspect) = local {
                    image_ids.insert(name.clone(), inspect.id);
                }
            }
            PullDecision::Pull => to_pull.push((name.clone(), image)),
            PullDecision::AbsentNeverPull => bail!(
                "service \"{name}\": image {image} is not present and {policy_source}; bring it in first (docker pull, berth import) or allow pulling"
            ),
            PullDecision::AbsentNeedsBuild => bail!(
                "service \"{name}\": image {image} is not present and its pull_policy is build, but it has no build section"
            ),
        }
    }
    pull_images(client, &to_pull, flags.quiet_pull, &mut image_ids).await?;
    build_images(client, project, &to_build, &mut image_ids).await?;
    Ok(image_ids)
}

/// Build `services`' images (after the pulls, as docker compose does) and note their new ids.
async fn build_images(
    client: &EngineClient,
    project: &Project,
    services: &[String],
    image_ids: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    let plans = super::build::plan_builds(project, services, &BuildOverrides::default())?;
    let mode = ProgressMode::from(super::globals().progress);
    let built = super::build::build_services(client, plans, mode).await?;
    for name in services {
        // Services sharing an image were built once, under the first one's name.
        let id = match built.get(name) {
            Some(id) => id.clone(),
            None => {
                let image = plan::service_image(project, name, &project.services[name]);
                client.inspect_image(&image).await?.id
            }
        };
        image_ids.insert(name.clone(), id);
    }
    Ok(())
}

/// Distinct images pull at once (pull.rs), as docker compose pulls them.
async fn pull_images(
    client: &EngineClient,
    to_pull: &[(String, String)],
    quiet: bool,
    image_ids: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    let view = super::progress::ProgressView::new(quiet);
    let pulled = super::pull::pull_all(client, to_pull, &view).await;
    for ((name, image), result) in to_pull.iter().zip(pulled) {
        if let Err(e) = result {
            return Err(e.context(format!("service \"{name}\": cannot pull image {image}")));
        }
        if let Ok(pulled) = client.inspect_image(image).await {
            image_ids.insert(name.clone(), pulled.id);
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
    image_ids: HashMap<String, String>,
    made: &mut Vec<Made>,
) -> anyhow::Result<Vec<Started>> {
    ensure_networks_and_volumes(client, project, order, made).await?;
    start_containers(client, project, order, args, image_ids, made).await
}

/// What `berth run` needs before its one-off container of `service`: the images, the networks
/// and volumes it uses and, unless `no_deps`, its dependencies up and their `depends_on`
/// conditions met, as `up -d` would leave them. If this fails, what it made is removed again.
pub(super) async fn prepare_one_off(
    client: &EngineClient,
    project: &Project,
    service: &str,
    no_deps: bool,
    flags: &ImageFlags<'_>,
) -> anyhow::Result<()> {
    let dependencies: Vec<String> = if no_deps {
        Vec::new()
    } else {
        selected_start_order(project, &[service.to_string()])?
            .into_iter()
            .filter(|s| s != service)
            .collect()
    };
    let mut needed = dependencies.clone();
    needed.push(service.to_string());
    check_supported(project, &needed)?;
    let image_ids = ensure_images(client, project, &needed, flags).await?;
    let args = UpArgs::detached(dependencies.clone(), flags.pull);
    let mut made = Vec::new();
    let prepared = async {
        ensure_networks_and_volumes(client, project, &needed, &mut made).await?;
        let started = if dependencies.is_empty() {
            Vec::new()
        } else {
            start_containers(client, project, &dependencies, &args, image_ids, &mut made).await?
        };
        wait_for_dependencies(client, project, service, &started).await
    }
    .await;
    if let Err(e) = prepared {
        roll_back(client, made).await;
        return Err(e);
    }
    Ok(())
}

/// The networks and volumes `services` use, created unless they exist (external ones must).
async fn ensure_networks_and_volumes(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    made: &mut Vec<Made>,
) -> anyhow::Result<()> {
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

    Ok(())
}

/// The containers of `order` as [`converge::converge`] plans them, carried out level by level.
async fn start_containers(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    args: &UpArgs,
    image_ids: HashMap<String, String>,
    made: &mut Vec<Made>,
) -> anyhow::Result<Vec<Started>> {
    let observed = Observed {
        containers: existing_containers(client, project).await?,
        image_ids,
    };
    let plan = converge::converge(project, order, &args.services, &observed, &args.flags()?)?;
    remove_orphans(client, &plan).await?;

    // Services whose dependencies are all up start together, level by level, as docker compose
    // walks its dependency graph in parallel.
    let made_here = std::sync::Mutex::new(Vec::new());
    let mut started = Vec::new();
    for level in &plan.levels {
        let results = futures_util::future::join_all(level.iter().map(|service| {
            carry_out_service(client, project, service, order, args, &started, &made_here)
        }))
        .await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(containers) => started.extend(containers),
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

/// The project's service containers as the decision sees them (one-off `run` containers are
/// never a service's container).
async fn existing_containers(
    client: &EngineClient,
    project: &Project,
) -> anyhow::Result<Vec<Existing>> {
    let label = format!("{}={}", plan::LABEL_PROJECT, project.name);
    let listed = client
        .list_containers(true, &[("label", label.as_str())])
        .await?;
    Ok(listed
        .iter()
        .filter(|c| !super::containers::is_one_off(c))
        .map(|c| {
            let label = |key: &str| c.labels.get(key).cloned().unwrap_or_default();
            Existing {
                id: c.id.clone(),
                name: super::containers::display_name(c),
                service: label(LABEL_SERVICE),
                number: label(LABEL_CONTAINER_NUMBER).parse().unwrap_or(0),
                config_hash: label(LABEL_CONFIG_HASH),
                config_fields: label(LABEL_CONFIG_FIELDS),
                running: super::containers::is_running(c),
                image_id: c.image_id.clone(),
            }
        })
        .collect())
}

/// `--remove-orphans` removes them; otherwise docker compose's warning names them.
async fn remove_orphans(client: &EngineClient, plan: &Plan) -> anyhow::Result<()> {
    for orphan in &plan.orphans_removed {
        if let ActionKind::Remove { id } = &orphan.kind {
            client.stop_container(id, None).await?;
            client.remove_container(id, true, false).await?;
            status_line("Container", &orphan.name, "Removed");
        }
    }
    if !plan.orphans_kept.is_empty() {
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            plan.orphans_kept.join(", ")
        );
    }
    Ok(())
}

/// One service's actions, once its dependencies allow; returns its containers that stay.
async fn carry_out_service(
    client: &EngineClient,
    project: &Project,
    service: &ServicePlan,
    order: &[String],
    args: &UpArgs,
    started_before: &[Started],
    made: &std::sync::Mutex<Vec<Made>>,
) -> anyhow::Result<Vec<Started>> {
    // `--no-start` only creates, so there is nothing to wait for (as `docker compose create`).
    if !args.no_start && service.actions.iter().any(|a| !is_removal(a)) {
        // With `--no-deps` the dependencies this run does not start are not waited for.
        let awaited: Vec<Started> = started_before
            .iter()
            .filter(|c| !args.no_deps || order.contains(&c.service))
            .cloned()
            .collect();
        wait_for_dependencies(client, project, &service.service, &awaited).await?;
    }
    let mut kept = Vec::new();
    for action in &service.actions {
        if let Some(id) = carry_out(client, project, action, args, made).await? {
            kept.push(Started::new(project, &action.service, &id, &action.name));
        }
    }
    Ok(kept)
}

fn is_removal(action: &Action) -> bool {
    matches!(action.kind, ActionKind::Remove { .. })
}

/// One action, with docker compose's progress lines; returns the container that stays.
async fn carry_out(
    client: &EngineClient,
    project: &Project,
    action: &Action,
    args: &UpArgs,
    made: &std::sync::Mutex<Vec<Made>>,
) -> anyhow::Result<Option<String>> {
    let name = &action.name;
    let id = match &action.kind {
        ActionKind::Remove { id } => {
            client.stop_container(id, args.timeout).await?;
            status_line("Container", name, "Stopped");
            client.remove_container(id, true, false).await?;
            status_line("Container", name, "Removed");
            return Ok(None);
        }
        ActionKind::Keep { id } => {
            status_line("Container", name, "Running");
            return Ok(Some(id.clone()));
        }
        ActionKind::Start { id } if args.no_start => {
            status_line("Container", name, "Created");
            return Ok(Some(id.clone()));
        }
        ActionKind::Start { id } => id.clone(),
        ActionKind::Restart { id } => {
            client.stop_container(id, args.timeout).await?;
            status_line("Container", name, "Restarting");
            id.clone()
        }
        ActionKind::Recreate { old } => {
            status_line("Container", name, "Recreate");
            client.stop_container(old, args.timeout).await?;
            client.remove_container(old, true, false).await?;
            let id = create_replica(client, project, action, made).await?;
            status_line("Container", name, "Recreated");
            id
        }
        ActionKind::Create => {
            let id = create_replica(client, project, action, made).await?;
            status_line("Container", name, "Created");
            id
        }
    };
    if !args.no_start {
        client.start_container(&id).await.with_context(|| {
            format!("cannot start container {name} (service {})", action.service)
        })?;
        status_line("Container", name, "Started");
    }
    Ok(Some(id))
}

/// A new container for the action's replica, remembered so a failed run removes it.
async fn create_replica(
    client: &EngineClient,
    project: &Project,
    action: &Action,
    made: &std::sync::Mutex<Vec<Made>>,
) -> anyhow::Result<String> {
    let service = &action.service;
    let request = plan::container_create_request(project, service, action.number)
        .ok_or_else(|| anyhow!("no such service: {service}"))?;
    let created = client
        .create_container(Some(&action.name), &request)
        .await
        .with_context(|| format!("cannot create container for service {service}"))?;
    made.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Made::Container(created.id.clone()));
    copy_inline_objects(client, project, service, &created.id).await?;
    Ok(created.id)
}

/// Inline and environment-made `secrets`/`configs` go into the created container through the
/// archive API, as docker compose puts them, with their mode and owner in the tar header.
pub async fn copy_inline_objects(
    client: &EngineClient,
    project: &Project,
    service_name: &str,
    container_id: &str,
) -> anyhow::Result<()> {
    let Some(service) = project.services.get(service_name) else {
        return Ok(());
    };
    let files = plan::inline_file_objects(project, service)
        .map_err(|e| anyhow!("service {service_name}: {e}"))?;
    for file in files {
        let relative = file.target.trim_start_matches('/');
        let tar = crate::engine::api::archive::single_file_tar(
            relative,
            &file.content,
            file.mode,
            (file.uid, file.gid),
            chrono::Utc::now().timestamp().max(0) as u64,
        );
        client
            .put_archive(container_id, "/", tar)
            .await
            .with_context(|| {
                format!(
                    "cannot copy {} into the container of service {service_name}",
                    file.target
                )
            })?;
    }
    Ok(())
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

/// Wait for `depends_on` conditions of one service before its containers start: every replica
/// of each dependency among `dependencies` (the containers this run brought up before). A
/// dependency scaled to 0, or one this run does not start, is not waited for.
async fn wait_for_dependencies(
    client: &EngineClient,
    project: &Project,
    service_name: &str,
    dependencies: &[Started],
) -> anyhow::Result<()> {
    let service = &project.services[service_name];
    for (dep, condition) in &service.depends_on {
        if !project.services.contains_key(dep) {
            if condition.required {
                bail!("service \"{service_name}\" depends on undefined service \"{dep}\"");
            }
            continue;
        }
        for dep_container in dependencies.iter().filter(|c| &c.service == dep) {
            wait_for_condition(
                client,
                service_name,
                dep,
                condition,
                &dep_container.container_name,
            )
            .await?;
        }
    }
    Ok(())
}

/// One dependency container's `depends_on` condition.
async fn wait_for_condition(
    client: &EngineClient,
    service_name: &str,
    dep: &str,
    condition: &DependsOn,
    dep_container: &str,
) -> anyhow::Result<()> {
    match condition.condition.as_str() {
        "service_completed_successfully" => {
            let code = client.wait_container(dep_container).await?;
            if code != 0 && condition.required {
                bail!("service \"{dep}\" didn't complete successfully: exit {code}");
            }
        }
        "service_healthy" => {
            status_line("Container", dep_container, "Waiting");
            match wait_ready(client, dep_container, Readiness::Healthy).await {
                Ok(()) => status_line("Container", dep_container, "Healthy"),
                Err(e) if !condition.required => {
                    eprintln!(
                        "warning: optional dependency \"{dep}\" of service \"{service_name}\": {e}"
                    );
                }
                Err(e) => bail!("dependency failed to start: {e:#}"),
            }
        }
        _ => {}
    }
    Ok(())
}

/// How often `service_healthy` dependencies (and `--wait`) are polled (docker compose's interval).
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// What a container must reach before the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    /// `service_healthy`: its healthcheck passed (no healthcheck is an error).
    Healthy,
    /// `--wait`: healthy when it has a healthcheck, otherwise running.
    RunningOrHealthy,
}

/// Poll a container's inspect until it is ready; fails (with docker compose's wording) when it
/// turns unhealthy, exits, or has no healthcheck while one is required.
async fn wait_ready(
    client: &EngineClient,
    container: &str,
    readiness: Readiness,
) -> anyhow::Result<()> {
    loop {
        let inspect = client.inspect_container(container).await?;
        let state = &inspect.state;
        if state.status == "exited" || state.status == "dead" {
            bail!("container {container} exited ({})", state.exit_code);
        }
        match state.health.as_ref().map(|h| h.status.as_str()) {
            None if readiness == Readiness::RunningOrHealthy => {
                if state.status == "running" {
                    return Ok(());
                }
            }
            None => bail!("container {container} has no healthcheck configured"),
            Some("healthy") => return Ok(()),
            Some("unhealthy") => bail!("container {container} is unhealthy"),
            Some(_) => {}
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// `up --wait`: every started service running (healthy, when it has a healthcheck), or done
/// with exit 0 when another service waits for it with `service_completed_successfully`, as
/// docker compose picks the condition. Containers are left as they are on failure, as docker
/// compose leaves them, so their logs can be read.
async fn wait_until_ready(
    client: &EngineClient,
    project: &Project,
    started: &[Started],
    timeout_seconds: Option<u64>,
) -> anyhow::Result<()> {
    let ready = std::sync::Mutex::new(Vec::<String>::new());
    let waits = started.iter().map(|c| {
        let ready = &ready;
        async move {
            status_line("Container", &c.container_name, "Waiting");
            let one_shot = project.services.values().any(|s| {
                s.depends_on
                    .get(&c.service)
                    .is_some_and(|d| d.condition == "service_completed_successfully")
            });
            let result = if one_shot {
                match client.wait_container(&c.id).await {
                    Ok(0) => Ok(()),
                    Err(e) => Err(e.into()),
                    Ok(code) => Err(anyhow!(
                        "container {} didn't complete successfully: exit {code}",
                        c.container_name
                    )),
                }
            } else {
                wait_ready(client, &c.container_name, Readiness::RunningOrHealthy).await
            };
            match result {
                Ok(()) => {
                    status_line(
                        "Container",
                        &c.container_name,
                        if one_shot { "Exited" } else { "Healthy" },
                    );
                    ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c.service.clone());
                    Ok(())
                }
                Err(e) => Err(anyhow!("service \"{}\": {e:#}", c.service)),
            }
        }
    });
    let all = futures_util::future::try_join_all(waits);
    let result = match timeout_seconds.filter(|s| *s > 0) {
        None => all.await,
        Some(seconds) => {
            match tokio::time::timeout(std::time::Duration::from_secs(seconds), all).await {
                Ok(result) => result,
                Err(_) => {
                    let ready = ready.lock().unwrap_or_else(|p| p.into_inner());
                    let waiting: Vec<String> = started
                        .iter()
                        .filter(|c| !ready.contains(&c.service))
                        .map(|c| format!("\"{}\"", c.service))
                        .collect();
                    bail!(
                        "application not healthy after {}: still waiting for service {}",
                        go_duration(seconds),
                        waiting.join(", ")
                    );
                }
            }
        }
    };
    result.map(drop)
}

/// Seconds as Go prints a `time.Duration` (`10s`, `1m30s`, `2h0m0s`), the way docker compose
/// reports its timeouts.
fn go_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
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

/// Containers a watch made while `up --watch` is attached (a rebuild recreates them).
type Joining = mpsc::UnboundedReceiver<Started>;

/// `up --watch`'s watch while attached, with the containers it recreates.
type AttachedWatch = (super::watch_session::Watching, Joining);

/// Follow the logs of the started containers until all have exited; Ctrl-C stops them
/// gracefully (a second Ctrl-C kills them), as docker compose does. With a watch (`joining`),
/// containers it recreates are followed too, and only a stop ends the run.
async fn attach(
    client: &EngineClient,
    project: &Project,
    started: &[Started],
    args: &UpArgs,
    watch: Option<AttachedWatch>,
) -> anyhow::Result<ExitCode> {
    let (mut watching, mut joining) = match watch {
        Some((w, j)) => (Some(w), Some(j)),
        None => (None, None),
    };
    // Both listeners live for the whole loop: a fresh `ctrl_c()` per select iteration would miss
    // a SIGINT that lands while a log line is being written (tokio delivers a signal only to
    // listeners that exist when it arrives), and `up` would run on until its containers exit.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let names: Vec<String> = started.iter().map(|c| c.short_name.clone()).collect();
    let mut prefixer =
        LogPrefixer::new(&names, colours_enabled(args.no_color), !args.no_log_prefix);
    let (tx, mut events) = mpsc::channel::<AttachEvent>(256);
    for c in started {
        follow(client, c, tx.clone());
    }
    // Without a watch the channel closes when every container's task has ended.
    let tx = joining.is_some().then_some(tx);
    let mut started = started.to_vec();
    let mut run = AttachedRun::default();
    let mut running = started.len();
    let mut stdout = std::io::stdout();
    while running > 0 || (joining.is_some() && run.stopping.is_none()) {
        let stop = |mode, started: &[Started]| spawn_stop(client, project, started, args, mode);
        tokio::select! {
            event = events.recv() => match event {
                Some(AttachEvent::Output(name, text)) => prefixer.write_lines(&mut stdout, &name, &text)?,
                Some(AttachEvent::Exited(name, code)) => {
                    running -= 1;
                    println!("{name} exited with code {code}");
                    let service = started.iter().find(|c| c.short_name == name).map(|c| c.service.as_str());
                    if run.exited(args, service, code) {
                        eprintln!("Aborting on container exit...");
                        run.stopping = Some(stop(StopMode::Stop, &started));
                    }
                }
                None => break,
            },
            Some(c) = next_joining(&mut joining), if tx.is_some() => {
                if let Some(tx) = &tx {
                    follow(client, &c, tx.clone());
                }
                running += 1;
                started.retain(|s| s.container_name != c.container_name);
                started.push(c);
            }
            _ = sigint.recv() => {
                let mode = run.interrupted(130);
                stop_watching(&mut watching).await;
                run.stopping = Some(stop(mode, &started));
            }
            _ = sigterm.recv() => {
                let mode = run.interrupted(143);
                stop_watching(&mut watching).await;
                run.stopping = Some(stop(mode, &started));
            }
        }
    }
    if let Some(task) = run.stopping.take() {
        let _ = task.await;
    }
    Ok(run.exit_status())
}

/// The watch ends before the stack is stopped: a rebuild or restart it is carrying out finishes
/// first, so it cannot start a container again behind the stop.
async fn stop_watching(watching: &mut Option<super::watch_session::Watching>) {
    if let Some(w) = watching.take() {
        w.stop().await;
    }
}

async fn next_joining(joining: &mut Option<Joining>) -> Option<Started> {
    match joining {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A task for one started container: its log lines, then its exit status, as events.
fn follow(client: &EngineClient, c: &Started, tx: mpsc::Sender<AttachEvent>) {
    let client = client.clone();
    let (id, name) = (c.id.clone(), c.short_name.clone());
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

/// What an attached run has seen so far, which decides how it ends.
#[derive(Default)]
struct AttachedRun {
    interrupts: u32,
    aborting: bool,
    /// The last stop or kill in flight: awaited before returning, so its progress lines are all
    /// printed and the containers are stopped when `up` exits.
    stopping: Option<tokio::task::JoinHandle<()>>,
    /// docker compose's exit code: the container that ended the run (abort), or the one named
    /// by --exit-code-from, whatever made it exit.
    exit_code: Option<i64>,
    /// Interrupted runs end like docker compose's: 130 after Ctrl-C, 143 after SIGTERM.
    interrupted_code: Option<u8>,
}

impl AttachedRun {
    /// A container of `service` exited with `code`; true when that ends the run
    /// (`--abort-on-container-exit`, `--exit-code-from`) and the rest must be stopped.
    fn exited(&mut self, args: &UpArgs, service: Option<&str>, code: i64) -> bool {
        let abort_on_exit = args.abort_on_exit();
        match &args.exit_code_from {
            Some(wanted) if service == Some(wanted.as_str()) => self.exit_code = Some(code),
            Some(_) => {}
            None if abort_on_exit && !self.aborting => self.exit_code = Some(code),
            None => {}
        }
        if !abort_on_exit || self.aborting {
            return false;
        }
        self.aborting = true;
        self.interrupts = self.interrupts.max(1);
        true
    }

    /// A SIGINT (130) or SIGTERM (143): the first stops the containers gracefully, the next
    /// kills them.
    fn interrupted(&mut self, code: u8) -> StopMode {
        self.interrupts += 1;
        self.interrupted_code.get_or_insert(code);
        if self.interrupts == 1 {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            StopMode::Stop
        } else {
            StopMode::Kill
        }
    }

    fn exit_status(&self) -> ExitCode {
        if let (None, Some(code)) = (self.exit_code, self.interrupted_code) {
            return ExitCode::from(code);
        }
        let code = self.exit_code.unwrap_or(0);
        // Exit statuses are a byte; anything else (an unknown code is -1) is a failure.
        ExitCode::from(u8::try_from(code).unwrap_or(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopMode {
    Stop,
    Kill,
}

/// Stop or kill the attached containers, dependents first, in the background so their last
/// log lines keep flowing to the terminal.
fn spawn_stop(
    client: &EngineClient,
    project: &Project,
    started: &[Started],
    args: &UpArgs,
    mode: StopMode,
) -> tokio::task::JoinHandle<()> {
    let order = selected_start_order(project, &[]).unwrap_or_default();
    let mut targets: Vec<Started> = started.to_vec();
    targets.sort_by_key(|c| std::cmp::Reverse(order.iter().position(|s| *s == c.service)));
    let client = client.clone();
    let timeout = args.timeout;
    tokio::spawn(async move {
        for c in targets {
            let result = match mode {
                StopMode::Stop => client.stop_container(&c.id, timeout).await,
                StopMode::Kill => client.kill_container(&c.id, Some("SIGKILL")).await,
            };
            match result {
                Ok(()) => status_line("Container", &c.container_name, "Stopped"),
                // Killing one that already stopped is not worth a warning.
                Err(_) if mode == StopMode::Kill => {}
                Err(e) => eprintln!("warning: cannot stop {}: {e}", c.container_name),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn up(args: &[&str]) -> Result<UpArgs, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("berth")
                .chain(std::iter::once("up"))
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            crate::cli::Command::Up(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn exit_flags_conflict_with_detached_runs_in_compose_wording() {
        let e = up(&["-d", "--exit-code-from", "web"])
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--detach cannot be combined with --abort-on-container-exit"
        );
        let e = up(&["--wait", "--abort-on-container-exit"])
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--wait cannot be combined with --abort-on-container-exit"
        );
        let args = up(&["--exit-code-from", "web"]).unwrap();
        assert!(args.abort_on_exit() && args.check().is_ok());
        assert!(up(&["--no-start", "--wait"]).is_err());
        assert_eq!(up(&[]).unwrap().pull, "policy");
        assert!(up(&["--pull", "sometimes"]).is_err());
    }

    #[test]
    fn scale_and_recreate_flags_become_the_converge_flags() {
        let flags = up(&[
            "--scale",
            "web=3",
            "--scale",
            "db=0",
            "--always-recreate-deps",
        ])
        .unwrap()
        .flags()
        .unwrap();
        assert_eq!(flags.scale.get("web"), Some(&3));
        assert_eq!(flags.scale.get("db"), Some(&0));
        assert_eq!(flags.recreate, converge::Recreate::Diverged);
        assert_eq!(flags.recreate_dependencies, converge::Recreate::Force);
        let e = up(&["--scale", "web"]).unwrap().flags().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --scale \"web\": expected SERVICE=NUM"
        );
        assert!(up(&["--no-recreate", "--always-recreate-deps"]).is_err());
    }

    #[test]
    fn build_flags_and_pull_policy_decide_what_up_builds() {
        use BuildDecision::*;
        use BuildFlag::*;
        // (flag, has build, pull_policy build, image present) -> decision
        let cases = [
            (Missing, false, false, false, NotBuilt),
            (Always, false, false, false, NotBuilt),
            (Missing, true, false, false, Build),
            (Missing, true, false, true, NotBuilt),
            (Missing, true, true, true, Build),
            (Always, true, false, true, Build),
            (Never, true, true, true, NotBuilt),
            (Never, true, false, false, Refused),
        ];
        for (flag, has_build, policy_build, present, want) in cases {
            assert_eq!(
                build_decision(flag, has_build, policy_build, present),
                want,
                "{flag:?} build={has_build} policy_build={policy_build} present={present}"
            );
        }
        assert_eq!(BuildFlag::of(true, false), Always);
        assert_eq!(BuildFlag::of(false, true), Never);
        assert_eq!(BuildFlag::of(false, false), Missing);
    }

    #[test]
    fn timeouts_print_as_go_durations() {
        assert_eq!(go_duration(2), "2s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }
}
