//! What `up` must do to bring a project's containers to what its compose file says: a pure
//! decision from (the project, the containers the engine has, the flags) to an ordered plan of
//! actions — create, recreate, start, restart, keep, remove — each with its reason. The CLI only
//! carries the plan out and prints it, so the decision table is unit-tested here without an
//! engine, and `run`, `create` and a future `watch` reuse it.
//!
//! The rules are docker compose's (`convergence.go`, `reconcile.go`): a container is recreated
//! when its config hash or its image differs (`--force-recreate`: always, `--no-recreate`:
//! never); services brought in as dependencies follow `--always-recreate-deps` instead; a
//! dependant that declares `depends_on: {x: {restart: true}}` is restarted when `x` is recreated;
//! replicas are numbered from 1, new ones after the highest kept, and scaling down keeps the
//! up-to-date, lowest-numbered containers.

use std::collections::HashMap;
use std::fmt;

use indexmap::IndexMap;

use super::graph::{GraphError, ServiceGraph};
use super::model::Project;
use super::plan;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvergeError {
    /// docker compose's wording (`getScale`).
    #[error("The \"{service}\" service is using the custom container name \"{name}\". Docker requires each container to have a unique name. Remove the custom name to scale the service")]
    ContainerNameWithScale { service: String, name: String },
    #[error("no such service: {0}")]
    UnknownService(String),
    #[error("{0}")]
    Graph(String),
}

impl From<GraphError> for ConvergeError {
    fn from(e: GraphError) -> Self {
        ConvergeError::Graph(e.to_string())
    }
}

/// A service container the engine has, as its labels and state describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Existing {
    pub id: String,
    /// `demo-web-1`, without Docker's leading `/`.
    pub name: String,
    pub service: String,
    /// `com.docker.compose.container-number` (0 when absent).
    pub number: u32,
    pub config_hash: String,
    /// [`plan::service_field_digests`] as recorded when it was created (empty when absent).
    pub config_fields: String,
    pub running: bool,
    pub image_id: String,
}

/// When an existing container is replaced by a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recreate {
    /// When its configuration or image changed (the default).
    #[default]
    Diverged,
    /// Always (`--force-recreate`, `--always-recreate-deps`).
    Force,
    /// Never (`--no-recreate`).
    Never,
}

/// The flags of `up`/`create` that steer the decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags {
    /// For the services named on the command line (all of them when none is named).
    pub recreate: Recreate,
    /// For the services brought in only as their dependencies.
    pub recreate_dependencies: Recreate,
    pub remove_orphans: bool,
    /// `--scale SERVICE=N`, over `scale`/`deploy.replicas`.
    pub scale: IndexMap<String, u32>,
}

impl Flags {
    /// The strategies from docker compose's three flags (`create.go`: `--no-recreate` wins).
    pub fn new(force_recreate: bool, no_recreate: bool, always_recreate_deps: bool) -> Self {
        let pick = |force| match (no_recreate, force) {
            (true, _) => Recreate::Never,
            (false, true) => Recreate::Force,
            (false, false) => Recreate::Diverged,
        };
        Flags {
            recreate: pick(force_recreate),
            recreate_dependencies: pick(always_recreate_deps),
            ..Flags::default()
        }
    }
}

/// Why an action was chosen; printed as docker compose's plan prints its causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No container for this replica yet.
    Missing,
    /// A replica added by scaling up to this count.
    ScaleUp(u32),
    /// Removed by scaling down to this count.
    ScaleDown(u32),
    /// The config hash differs; the attributes that changed, when the container recorded them.
    ConfigChanged(Vec<String>),
    ImageChanged,
    ForceRecreate,
    /// A dependency this plan recreates, on which the service declares `restart: true`.
    DependencyRecreated(String),
    /// Up to date but not running.
    NotRunning,
    UpToDate,
    /// Diverged, but `--no-recreate` keeps it.
    NoRecreate,
    /// Its service is not in the compose file.
    Orphan,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "not found"),
            Reason::ScaleUp(n) => write!(f, "scale up to {n}"),
            Reason::ScaleDown(n) => write!(f, "scale down to {n}"),
            Reason::ConfigChanged(fields) if fields.is_empty() => write!(f, "config changed"),
            Reason::ConfigChanged(fields) => write!(f, "config changed: {}", fields.join(", ")),
            Reason::ImageChanged => write!(f, "image changed"),
            Reason::ForceRecreate => write!(f, "forced recreate"),
            Reason::DependencyRecreated(dep) => write!(f, "dependency {dep} recreated"),
            Reason::NotRunning => write!(f, "not running"),
            Reason::UpToDate => write!(f, "up to date"),
            Reason::NoRecreate => write!(f, "changed, kept by --no-recreate"),
            Reason::Orphan => write!(f, "orphaned container"),
        }
    }
}

/// What to do with one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Create (and, unless `--no-start`, start) a new container.
    Create,
    /// Stop and remove the container `old`, then create and start its replacement.
    Recreate { old: String },
    /// Start the stopped container.
    Start { id: String },
    /// Stop and start the running container.
    Restart { id: String },
    /// Leave the container as it is.
    Keep { id: String },
    /// Stop and remove the container (scale down, orphan).
    Remove { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub service: String,
    pub number: u32,
    /// The container's name (the new one's, for `Create` and `Recreate`).
    pub name: String,
    pub kind: ActionKind,
    pub reason: Reason,
}

/// One service's actions: removals first (they free names and ports), then its replicas by
/// number.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    pub service: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Orphans removed before anything else (`--remove-orphans`).
    pub orphans_removed: Vec<Action>,
    /// Orphans left in place, by name, for docker compose's warning.
    pub orphans_kept: Vec<String>,
    /// The services by dependency level: one level's services go together, after the level
    /// before.
    pub levels: Vec<Vec<ServicePlan>>,
}

impl Plan {
    /// Every action in the order it is carried out.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.orphans_removed.iter().chain(
            self.levels
                .iter()
                .flatten()
                .flat_map(|service| service.actions.iter()),
        )
    }

    /// The plan as lines of `name: action (reason)`, for tests and explanations.
    pub fn lines(&self) -> Vec<String> {
        self.actions().map(Action::to_string).collect()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            ActionKind::Create => "create",
            ActionKind::Recreate { .. } => "recreate",
            ActionKind::Start { .. } => "start",
            ActionKind::Restart { .. } => "restart",
            ActionKind::Keep { .. } => "keep",
            ActionKind::Remove { .. } => "remove",
        };
        write!(f, "{}: {verb} ({})", self.name, self.reason)
    }
}

/// What the engine has for the project, as far as the decision needs it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The project's service containers (one-off `run` containers left out).
    pub containers: Vec<Existing>,
    /// The id of the image each service's image name points at now (after pulls); a service
    /// missing here is not compared by image.
    pub image_ids: HashMap<String, String>,
}

/// How many containers `service` runs, `--scale` first; refuses `container_name` with more
/// than one, as docker compose does.
pub fn replicas(project: &Project, service: &str, flags: &Flags) -> Result<u32, ConvergeError> {
    let svc = project
        .services
        .get(service)
        .ok_or_else(|| ConvergeError::UnknownService(service.to_string()))?;
    let count = flags
        .scale
        .get(service)
        .copied()
        .unwrap_or_else(|| svc.replicas());
    match &svc.container_name {
        Some(name) if count > 1 => Err(ConvergeError::ContainerNameWithScale {
            service: service.to_string(),
            name: name.clone(),
        }),
        _ => Ok(count),
    }
}

/// The plan for the services of `order` (start order, dependencies included); `requested` are
/// the services named on the command line (empty: all of `order`).
pub fn converge(
    project: &Project,
    order: &[String],
    requested: &[String],
    observed: &Observed,
    flags: &Flags,
) -> Result<Plan, ConvergeError> {
    for service in flags.scale.keys() {
        if !project.services.contains_key(service) {
            return Err(ConvergeError::UnknownService(service.clone()));
        }
    }
    let (orphans_removed, orphans_kept) = orphans(project, observed, flags.remove_orphans);
    let mut recreated: Vec<String> = Vec::new();
    let mut levels = Vec::new();
    for level in ServiceGraph::new(project)?.levels() {
        let mut plans = Vec::new();
        for service in level.into_iter().filter(|s| order.contains(s)) {
            let strategy = if requested.is_empty() || requested.contains(&service) {
                flags.recreate
            } else {
                flags.recreate_dependencies
            };
            let count = replicas(project, &service, flags)?;
            let mut actions = service_actions(project, &service, count, strategy, observed);
            restart_for_recreated_dependencies(project, &service, &recreated, &mut actions);
            if actions
                .iter()
                .any(|a| matches!(a.kind, ActionKind::Recreate { .. }))
            {
                recreated.push(service.clone());
            }
            plans.push(ServicePlan { service, actions });
        }
        if !plans.is_empty() {
            levels.push(plans);
        }
    }
    Ok(Plan {
        orphans_removed,
        orphans_kept,
        levels,
    })
}

/// Containers of services the project does not define: removed with `--remove-orphans`,
/// otherwise only named for the warning. A service this run leaves out (`up SERVICE`, an
/// inactive profile) is still defined, so its containers are not orphans (as docker compose).
fn orphans(project: &Project, observed: &Observed, remove: bool) -> (Vec<Action>, Vec<String>) {
    let defined = |s: &str| {
        project.services.contains_key(s) || project.disabled_services.iter().any(|d| d == s)
    };
    let found = observed.containers.iter().filter(|c| !defined(&c.service));
    if !remove {
        return (Vec::new(), found.map(|c| c.name.clone()).collect());
    }
    let removed = found
        .map(|c| Action {
            service: c.service.clone(),
            number: c.number,
            name: c.name.clone(),
            kind: ActionKind::Remove { id: c.id.clone() },
            reason: Reason::Orphan,
        })
        .collect();
    (removed, Vec::new())
}

/// The actions for one service's `count` replicas.
fn service_actions(
    project: &Project,
    service: &str,
    count: u32,
    strategy: Recreate,
    observed: &Observed,
) -> Vec<Action> {
    let wanted_hash = plan::service_config_hash(&project.services[service]);
    let wanted_fields = plan::service_field_digests(&project.services[service]);
    let image_id = observed.image_ids.get(service).map(String::as_str);
    let divergence = |c: &Existing| diverged(c, &wanted_hash, &wanted_fields, image_id);

    let mut existing: Vec<&Existing> = observed
        .containers
        .iter()
        .filter(|c| c.service == service)
        .collect();
    // Up-to-date ones first, then by number: scaling down keeps the lowest up-to-date numbers.
    existing.sort_by_key(|c| (divergence(c).is_some(), c.number));
    let keep = existing.len().min(count as usize);

    let mut actions: Vec<Action> = existing[keep..]
        .iter()
        .map(|c| Action {
            service: service.to_string(),
            number: c.number,
            name: c.name.clone(),
            kind: ActionKind::Remove { id: c.id.clone() },
            reason: Reason::ScaleDown(count),
        })
        .collect();
    let mut kept: Vec<&Existing> = existing[..keep].to_vec();
    kept.sort_by_key(|c| c.number);
    for c in &kept {
        let (kind, reason) = match (strategy, divergence(c)) {
            (Recreate::Force, _) => (recreate(c), Reason::ForceRecreate),
            (Recreate::Diverged, Some(reason)) => (recreate(c), reason),
            (Recreate::Never, Some(_)) => (keep_or_start(c), Reason::NoRecreate),
            (_, None) if c.running => (keep_or_start(c), Reason::UpToDate),
            (_, None) => (keep_or_start(c), Reason::NotRunning),
        };
        actions.push(Action {
            service: service.to_string(),
            number: c.number,
            name: c.name.clone(),
            kind,
            reason,
        });
    }
    let highest = kept.iter().map(|c| c.number).max().unwrap_or(0);
    for number in (highest + 1..).take(count as usize - keep) {
        actions.push(Action {
            service: service.to_string(),
            number,
            name: plan::container_name(project, service, number),
            kind: ActionKind::Create,
            reason: if existing.is_empty() {
                Reason::Missing
            } else {
                Reason::ScaleUp(count)
            },
        });
    }
    actions
}

fn recreate(c: &Existing) -> ActionKind {
    ActionKind::Recreate { old: c.id.clone() }
}

fn keep_or_start(c: &Existing) -> ActionKind {
    if c.running {
        ActionKind::Keep { id: c.id.clone() }
    } else {
        ActionKind::Start { id: c.id.clone() }
    }
}

/// Why the container no longer matches the service, if it does not.
fn diverged(
    c: &Existing,
    wanted_hash: &str,
    wanted_fields: &str,
    image_id: Option<&str>,
) -> Option<Reason> {
    if c.config_hash != wanted_hash {
        return Some(Reason::ConfigChanged(changed_fields(
            &c.config_fields,
            wanted_fields,
        )));
    }
    let bare = |id: &str| id.trim_start_matches("sha256:").to_string();
    match image_id {
        Some(id) if !id.is_empty() && !c.image_id.is_empty() && bare(id) != bare(&c.image_id) => {
            Some(Reason::ImageChanged)
        }
        _ => None,
    }
}

/// The attributes whose digests differ between two [`plan::service_field_digests`] values
/// (none when the container recorded none: it only says that something changed).
pub fn changed_fields(recorded: &str, wanted: &str) -> Vec<String> {
    if recorded.is_empty() {
        return Vec::new();
    }
    let parse = |text: &str| -> IndexMap<String, String> {
        text.split(',')
            .filter_map(|entry| entry.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (old, new) = (parse(recorded), parse(wanted));
    let mut changed: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// A service that declares `restart: true` on a dependency this plan recreates is restarted
/// after it (its kept, running containers; stopped ones start anyway).
fn restart_for_recreated_dependencies(
    project: &Project,
    service: &str,
    recreated: &[String],
    actions: &mut [Action],
) {
    let Some(dep) = project.services[service]
        .depends_on
        .iter()
        .find(|(dep, d)| d.restart && recreated.contains(dep))
        .map(|(dep, _)| dep.clone())
    else {
        return;
    };
    for action in actions {
        if let ActionKind::Keep { id } = &action.kind {
            action.kind = ActionKind::Restart { id: id.clone() };
            action.reason = Reason::DependencyRecreated(dep.clone());
        }
    }
}

#[cfg(test)]
#[path = "converge_tests.rs"]
mod tests;
