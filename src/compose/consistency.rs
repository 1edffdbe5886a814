//! Stages 7 and 8: profiles / service selection, then the consistency checks docker compose
//! makes on a loaded project (references to undefined services, networks, volumes, secrets and
//! configs; `network_mode` with `networks`; mount target conflicts; dependency cycles).

use std::collections::HashSet;

use super::load::ComposeError;
use super::model::Project;

/// Keep the services enabled by `profiles` (plus those named in `selected` and, transitively,
/// what they depend on); with `selected` non-empty, keep only those and their dependencies.
pub fn apply_profiles(
    project: &mut Project,
    profiles: &[String],
    selected: &[String],
) -> Result<(), ComposeError> {
    let all_profiles = profiles.iter().any(|p| p == "*");
    for name in selected {
        if !project.services.contains_key(name) {
            return Err(ComposeError::Consistency(format!(
                "no such service: {name}; the project defines {}",
                project
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let enabled = |svc: &super::model::Service| {
        svc.profiles.is_empty() || all_profiles || svc.profiles.iter().any(|p| profiles.contains(p))
    };
    let mut keep: HashSet<String> = if selected.is_empty() {
        project
            .services
            .iter()
            .filter(|(_, s)| enabled(s))
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        selected.iter().cloned().collect()
    };
    // Dependencies of kept services come along, whatever their profiles.
    let mut stack: Vec<String> = keep.iter().cloned().collect();
    while let Some(n) = stack.pop() {
        let Some(svc) = project.services.get(&n) else {
            continue;
        };
        for (dep, d) in &svc.depends_on {
            if !project.services.contains_key(dep) {
                continue;
            }
            let dep_enabled = project.services.get(dep).is_some_and(enabled);
            if !selected.is_empty() || dep_enabled || d.required {
                if keep.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    project.services.retain(|n, _| keep.contains(n));
    // Optional dependencies on services that are not part of this run are dropped.
    let names: HashSet<String> = project.services.keys().cloned().collect();
    for svc in project.services.values_mut() {
        svc.depends_on
            .retain(|dep, d| names.contains(dep) || d.required);
    }
    Ok(())
}

pub fn check(project: &Project) -> Result<(), ComposeError> {
    let services: HashSet<&str> = project.services.keys().map(String::as_str).collect();
    for (name, svc) in &project.services {
        if svc.image.is_none() && svc.build.is_none() && !svc.extra.contains_key("provider") {
            return Err(ComposeError::Consistency(format!(
                "service {name:?} has neither an image nor a build context specified; add `image:` or `build:`"
            )));
        }
        for dep in svc.depends_on.keys() {
            if !services.contains(dep.as_str()) {
                return Err(ComposeError::Consistency(format!(
                    "service {name:?} depends on undefined service {dep:?}: invalid compose project"
                )));
            }
        }
        if let Some(nm) = &svc.network_mode {
            if !svc.networks.is_empty() {
                return Err(ComposeError::Consistency(format!(
                    "service {name} declares mutually exclusive `network_mode` and `networks`: invalid compose project"
                )));
            }
            if let Some(other) = nm.strip_prefix("service:") {
                if !services.contains(other) {
                    return Err(ComposeError::Consistency(format!(
                        "service {other:?} not found for network_mode 'service:{other}'"
                    )));
                }
            }
        }
        for key in ["ipc", "pid"] {
            if let Some(other) = svc
                .extra
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|v| v.strip_prefix("service:"))
            {
                if !services.contains(other) {
                    return Err(ComposeError::Consistency(format!(
                        "service {other:?} not found for {key} 'service:{other}'"
                    )));
                }
            }
        }
        for vf in &svc.volumes_from {
            if vf.starts_with("container:") {
                continue;
            }
            let other = vf.split(':').next().unwrap_or(vf);
            if !services.contains(other) {
                return Err(ComposeError::Consistency(format!(
                    "service {name:?} depends on undefined service {other:?} (volumes_from): invalid compose project"
                )));
            }
        }
        for link in &svc.links {
            let other = link.split(':').next().unwrap_or(link);
            if !services.contains(other) {
                return Err(ComposeError::Consistency(format!(
                    "service {name:?} depends on undefined service {other:?} (links): invalid compose project"
                )));
            }
        }
        for net in svc.networks.keys() {
            if !project.networks.contains_key(net) {
                return Err(ComposeError::Consistency(format!(
                    "service {name:?} refers to undefined network {net}: invalid compose project"
                )));
            }
        }
        let mut targets: HashSet<&str> = HashSet::new();
        for (i, v) in svc.volumes.iter().enumerate() {
            if v.kind == "volume" {
                if let Some(src) = &v.source {
                    if !project.volumes.contains_key(src) {
                        return Err(ComposeError::Consistency(format!(
                            "service {name:?} refers to undefined volume {src}: invalid compose project"
                        )));
                    }
                }
            }
            if !targets.insert(v.target.as_str()) {
                return Err(ComposeError::Consistency(format!(
                    "services.{name}.volumes[{i}]: target {} already mounted",
                    v.target
                )));
            }
        }
        for (i, t) in svc.tmpfs.iter().enumerate() {
            let target = t.split(':').next().unwrap_or(t);
            if targets.contains(target) {
                return Err(ComposeError::Consistency(format!(
                    "services.{name}.tmpfs[{i}]: target {target} already mounted as services.{name}.volumes"
                )));
            }
        }
        for (kind, refs, defined) in [
            ("secret", &svc.secrets, &project.secrets),
            ("config", &svc.configs, &project.configs),
        ] {
            for r in refs {
                if !defined.contains_key(&r.source) {
                    return Err(ComposeError::Consistency(format!(
                        "service {name:?} refers to undefined {kind} {}: invalid compose project",
                        r.source
                    )));
                }
            }
        }
        if let (Some(scale), Some(_)) = (svc.scale, &svc.container_name) {
            if scale > 1 {
                return Err(ComposeError::Consistency(format!(
                    "services.{name}: container_name {:?} cannot be used with scale {scale}; remove one",
                    svc.container_name.as_deref().unwrap_or_default()
                )));
            }
        }
    }
    super::graph::ServiceGraph::new(project)?;
    Ok(())
}
