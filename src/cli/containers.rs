//! A project's existing containers as the engine reports them — found by the compose labels,
//! never from a state file — and their dependency order, read from the
//! `com.docker.compose.depends_on` labels (through the one [`ServiceGraph`]) so it also works
//! without the compose file. Shared by
//! the commands that act on containers which already exist (`down`, `ps`, `stop`, `start`,
//! `restart`, `kill`, `rm`).

use std::collections::HashMap;
use std::future::Future;

use anyhow::{bail, Context};

use super::output::{progress_line, status_line};
use crate::compose::graph::ServiceGraph;
use crate::compose::model::Project;
use crate::compose::plan::{
    LABEL_CONTAINER_NUMBER, LABEL_DEPENDS_ON, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE,
};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::ContainerSummary;

/// The project's containers (stopped ones too with `all`), sorted by name. One-off containers
/// (`run`) are left out, as docker compose leaves them out of the lifecycle commands.
pub async fn of_project(
    client: &EngineClient,
    project: &str,
    all: bool,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let mut containers = with_one_offs(client, project, all).await?;
    containers.retain(|c| !is_one_off(c));
    Ok(containers)
}

/// [`of_project`] with the one-off containers of `run` too (what `rm` and `ps -a` act on).
pub async fn with_one_offs(
    client: &EngineClient,
    project: &str,
    all: bool,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let label = format!("{LABEL_PROJECT}={project}");
    let mut containers = client
        .list_containers(all, &[("label", label.as_str())])
        .await?;
    containers.sort_by_key(display_name);
    Ok(containers)
}

/// Container number `index` of `service` (`--index` of `exec` and `port`).
pub fn numbered<'a>(
    containers: &'a [ContainerSummary],
    service: &str,
    index: u32,
) -> Option<&'a ContainerSummary> {
    let index = index.to_string();
    containers.iter().find(|c| {
        service_of(c) == service
            && c.labels.get(LABEL_CONTAINER_NUMBER).map(String::as_str) == Some(index.as_str())
    })
}

/// A container `berth run` made.
pub fn is_one_off(c: &ContainerSummary) -> bool {
    c.labels.get(LABEL_ONEOFF).map(String::as_str) == Some("True")
}

/// `demo-web-1`: the container's name without Docker's leading `/`.
pub fn display_name(c: &ContainerSummary) -> String {
    c.names
        .first()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| c.id.clone())
}

/// The compose service the container belongs to (empty when unlabelled).
pub fn service_of(c: &ContainerSummary) -> &str {
    c.labels
        .get(LABEL_SERVICE)
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the container has a live process (what `stop` and `kill` act on, what `rm` skips).
pub fn is_running(c: &ContainerSummary) -> bool {
    matches!(c.state.as_str(), "running" | "restarting" | "paused")
}

/// `(dependency, restart)` pairs from the `depends_on` label (`db:service_started:true,…`).
fn dependencies_of(c: &ContainerSummary) -> Vec<(String, bool)> {
    c.labels
        .get(LABEL_DEPENDS_ON)
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(':');
            let name = parts.next().filter(|n| !n.is_empty())?;
            let restart = parts.nth(1) == Some("true");
            Some((name.to_string(), restart))
        })
        .collect()
}

/// Service → the services it depends on (with their `restart` flag), over all `containers`.
fn dependency_map(containers: &[ContainerSummary]) -> HashMap<String, Vec<(String, bool)>> {
    let mut deps: HashMap<String, Vec<(String, bool)>> = HashMap::new();
    for c in containers {
        let entry = deps.entry(service_of(c).to_string()).or_default();
        for d in dependencies_of(c) {
            if !entry.contains(&d) {
                entry.push(d);
            }
        }
    }
    deps
}

/// Fail with docker compose's `no such service: x` for a SERVICE argument that the compose file
/// does not define (or, without a compose file, that no container of the project belongs to).
pub fn check_services(
    project: Option<&Project>,
    containers: &[ContainerSummary],
    services: &[String],
) -> anyhow::Result<()> {
    for name in services {
        let known = match project {
            Some(p) => p.services.contains_key(name),
            None => containers.iter().any(|c| service_of(c) == name),
        };
        if !known {
            bail!("no such service: {name}");
        }
    }
    Ok(())
}

/// The containers of `services` (all of them when `services` is empty).
pub fn of_services<'a>(
    containers: &'a [ContainerSummary],
    services: &[String],
) -> Vec<&'a ContainerSummary> {
    containers
        .iter()
        .filter(|c| services.is_empty() || services.iter().any(|s| s == service_of(c)))
        .collect()
}

/// `services` and, transitively, everything they depend on (`start web` starts its database).
pub fn with_dependencies(containers: &[ContainerSummary], services: &[String]) -> Vec<String> {
    let deps = dependency_map(containers);
    let mut wanted = services.to_vec();
    let mut i = 0;
    while i < wanted.len() {
        for (dep, _) in deps.get(&wanted[i]).into_iter().flatten() {
            if !wanted.contains(dep) {
                wanted.push(dep.clone());
            }
        }
        i += 1;
    }
    wanted
}

/// `services` and, transitively, the services that declare `depends_on: {x: {restart: true}}`
/// on them: docker compose restarts those along with what they depend on.
pub fn with_restart_dependents(
    containers: &[ContainerSummary],
    services: &[String],
) -> Vec<String> {
    let deps = dependency_map(containers);
    let mut wanted = services.to_vec();
    let mut i = 0;
    while i < wanted.len() {
        let current = wanted[i].clone();
        let mut dependents: Vec<&String> = deps
            .iter()
            .filter(|(_, list)| list.iter().any(|(d, restart)| *d == current && *restart))
            .map(|(s, _)| s)
            .collect();
        dependents.sort();
        for s in dependents {
            if !wanted.contains(s) {
                wanted.push(s.clone());
            }
        }
        i += 1;
    }
    wanted
}

/// Containers grouped into the dependency levels of their services, dependencies first
/// ([`ServiceGraph::levels`] over the `depends_on` labels; a dependency outside `containers`
/// does not hold a level open).
pub fn start_levels<'a>(containers: &[&'a ContainerSummary]) -> Vec<Vec<&'a ContainerSummary>> {
    let mut deps: indexmap::IndexMap<String, Vec<String>> = indexmap::IndexMap::new();
    for c in containers {
        let entry = deps.entry(service_of(c).to_string()).or_default();
        entry.extend(dependencies_of(c).into_iter().map(|(d, _)| d));
    }
    ServiceGraph::from_dependencies(deps)
        .levels()
        .into_iter()
        .map(|services| {
            containers
                .iter()
                .copied()
                .filter(|c| services.iter().any(|s| s == service_of(c)))
                .collect()
        })
        .collect()
}

/// [`start_levels`] reversed: dependents first, as containers are stopped.
pub fn stop_levels<'a>(containers: &[&'a ContainerSummary]) -> Vec<Vec<&'a ContainerSummary>> {
    let mut levels = start_levels(containers);
    levels.reverse();
    levels
}

/// Run `action` on every container, level by level; the containers of one level go together
/// (docker compose walks its graph in parallel). Stops after the first level with a failure.
pub async fn for_each_level<'a, F, Fut>(
    levels: Vec<Vec<&'a ContainerSummary>>,
    action: F,
) -> anyhow::Result<()>
where
    F: Fn(&'a ContainerSummary) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for level in levels {
        let results = futures_util::future::join_all(level.into_iter().map(&action)).await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    }
    Ok(())
}

/// Stop `containers` dependents first, with docker compose's `Stopping`/`Stopped` lines.
/// `timeout` `None` lets the engine use each container's own grace period (`stop_grace_period`).
pub async fn stop_in_order(
    client: &EngineClient,
    containers: &[&ContainerSummary],
    timeout: Option<i64>,
) -> anyhow::Result<()> {
    for_each_level(stop_levels(containers), |c| async move {
        let name = display_name(c);
        progress_line("Container", &name, "Stopping");
        client
            .stop_container(&c.id, timeout)
            .await
            .with_context(|| format!("cannot stop container {name}"))?;
        status_line("Container", &name, "Stopped");
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, depends_on: &str) -> ContainerSummary {
        let mut c = ContainerSummary {
            id: format!("id-{service}"),
            names: vec![format!("/demo-{service}-1")],
            ..Default::default()
        };
        c.labels.insert(LABEL_SERVICE.into(), service.into());
        c.labels.insert(LABEL_DEPENDS_ON.into(), depends_on.into());
        c
    }

    fn services(levels: &[Vec<&ContainerSummary>]) -> Vec<Vec<String>> {
        levels
            .iter()
            .map(|l| l.iter().map(|c| service_of(c).to_string()).collect())
            .collect()
    }

    #[test]
    fn levels_follow_depends_on_labels() {
        let all = [
            container("web", "api:service_started:false"),
            container("api", "db:service_healthy:true,cache:service_started:false"),
            container("db", ""),
            container("cache", ""),
        ];
        let refs: Vec<&ContainerSummary> = all.iter().collect();
        assert_eq!(
            services(&start_levels(&refs)),
            [vec!["db", "cache"], vec!["api"], vec!["web"]]
        );
        assert_eq!(
            services(&stop_levels(&refs)),
            [vec!["web"], vec!["api"], vec!["db", "cache"]]
        );
        // A dependency outside the selection does not hold a level open.
        let some: Vec<&ContainerSummary> = vec![&all[0], &all[2]];
        assert_eq!(services(&start_levels(&some)), [vec!["web", "db"]]);
    }

    #[test]
    fn selections_follow_dependencies_and_restart_dependents() {
        let all = [
            container("web", "api:service_started:false"),
            container("api", "db:service_healthy:true"),
            container("db", ""),
        ];
        assert_eq!(
            with_dependencies(&all, &["web".to_string()]),
            ["web", "api", "db"]
        );
        // Only `api` declares `restart: true` on db; web's dependency on api does not.
        assert_eq!(
            with_restart_dependents(&all, &["db".to_string()]),
            ["db", "api"]
        );
        assert!(check_services(None, &all, &["db".to_string()]).is_ok());
        assert_eq!(
            check_services(None, &all, &["nope".to_string()])
                .unwrap_err()
                .to_string(),
            "no such service: nope"
        );
    }
}
