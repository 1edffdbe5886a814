//! `berth up --dry-run`: what `up` would pull, create and (re)start, taken from the same
//! converge plan `up` carries out (each action with its reason) — the engine is only read.
//! `down --dry-run` lives with `down`, whose plan is its own.

use std::collections::HashMap;
use std::process::ExitCode;

use super::project::exists;
use crate::compose::converge::{self, ActionKind, Existing, Flags, Observed, Plan};
use crate::compose::model::Project;
use crate::compose::plan;
use crate::engine::api::client::{ClientError, EngineClient};

/// What would be made that does not exist yet, besides containers.
#[derive(Debug, Default, PartialEq)]
struct Missing {
    /// `(service, image)` whose image is not present.
    images: Vec<(String, String)>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

/// What `up` knows before it would act: the services named, its converge flags, the project's
/// containers, and the network and volume keys the services use.
pub struct UpInputs<'a> {
    pub services: &'a [String],
    pub flags: Flags,
    pub existing: Vec<Existing>,
    pub network_keys: Vec<String>,
    pub volume_keys: Vec<String>,
}

/// Print `up`'s plan for `order` and change nothing.
pub async fn up(
    client: &EngineClient,
    project: &Project,
    order: &[String],
    up: UpInputs<'_>,
) -> anyhow::Result<ExitCode> {
    let mut missing = Missing::default();
    let mut image_ids = HashMap::new();
    for name in order {
        let image = plan::service_image(project, name, &project.services[name]);
        match client.inspect_image(&image).await {
            Ok(inspect) => {
                image_ids.insert(name.clone(), inspect.id);
            }
            Err(ClientError::Api { status: 404, .. }) => {
                missing.images.push((name.clone(), image));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for key in &up.network_keys {
        let network = &project.networks[key];
        if !network.external && !exists(client.inspect_network(&network.name).await)? {
            missing.networks.push(network.name.clone());
        }
    }
    for key in &up.volume_keys {
        let name = plan::volume_name(project, key);
        if !project.volumes[key].external && !exists(client.inspect_volume(&name).await)? {
            missing.volumes.push(name);
        }
    }
    let observed = Observed {
        containers: up.existing,
        image_ids,
    };
    let plan = converge::converge(project, order, up.services, &observed, &up.flags)?;
    for line in report(&missing, &plan) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One `DRY-RUN MODE - …` line per change, in the order `up` would make them; containers
/// kept as they are get no line.
fn report(missing: &Missing, plan: &Plan) -> Vec<String> {
    let images = missing
        .images
        .iter()
        .map(|(service, image)| format!("would pull image {image} (service {service})"));
    let networks = missing
        .networks
        .iter()
        .map(|n| format!("would create network {n}"));
    let volumes = missing
        .volumes
        .iter()
        .map(|v| format!("would create volume {v}"));
    let containers = plan
        .actions()
        .filter(|a| !matches!(a.kind, ActionKind::Keep { .. }))
        .map(|a| format!("would {a}"));
    images
        .chain(networks)
        .chain(volumes)
        .chain(containers)
        .map(|line| format!("DRY-RUN MODE - {line}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::converge::{Action, Reason, ServicePlan};

    fn action(name: &str, kind: ActionKind, reason: Reason) -> Action {
        Action {
            service: "web".into(),
            number: 1,
            name: name.into(),
            kind,
            reason,
        }
    }

    #[test]
    fn the_report_lists_changes_with_their_reasons_and_skips_kept_containers() {
        let missing = Missing {
            images: vec![("web".into(), "busybox:1".into())],
            networks: vec!["demo_default".into()],
            volumes: vec![],
        };
        let plan = Plan {
            levels: vec![vec![ServicePlan {
                service: "web".into(),
                actions: vec![
                    action("demo-web-1", ActionKind::Create, Reason::Missing),
                    action(
                        "demo-web-2",
                        ActionKind::Keep { id: "x".into() },
                        Reason::UpToDate,
                    ),
                ],
            }]],
            ..Default::default()
        };
        let lines = report(&missing, &plan);
        assert_eq!(
            lines[..2],
            [
                "DRY-RUN MODE - would pull image busybox:1 (service web)",
                "DRY-RUN MODE - would create network demo_default",
            ]
        );
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[2].starts_with("DRY-RUN MODE - would demo-web-1: create ("),
            "{lines:?}"
        );
    }
}
