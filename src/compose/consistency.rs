//! Stages 7 and 8: profiles / service selection, then the consistency checks docker compose
//! makes on a loaded project (references to undefined services, networks, volumes, secrets and
//! configs; `network_mode` with `networks`; mount target conflicts; dependency cycles).

use std::collections::HashSet;

use super::error::ComposeError;
use super::model::{Project, Service};
use super::yaml::{Node, Value};

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
    // Dependencies of services named on the command line come along, whatever their profiles;
    // otherwise a required dependency on a service its profiles disable is an error.
    let mut stack: Vec<String> = keep.iter().cloned().collect();
    while let Some(n) = stack.pop() {
        let Some(svc) = project.services.get(&n) else {
            continue;
        };
        for (dep, d) in &svc.depends_on {
            let Some(dep_svc) = project.services.get(dep) else {
                continue;
            };
            if keep.contains(dep) {
                continue;
            }
            if !selected.is_empty() || enabled(dep_svc) {
                keep.insert(dep.clone());
                stack.push(dep.clone());
            } else if d.required {
                return Err(ComposeError::Consistency(format!(
                    "service {n:?} depends on service {dep:?}, which is disabled by its profiles [{}]; enable one with --profile or name {dep:?} on the command line",
                    dep_svc.profiles.join(", ")
                )));
            }
        }
    }
    // Optional dependencies on services this run disables are dropped (compose-go
    // `WithServicesDisabled`); one on a service the project never defines stays, and the
    // consistency check reports it as compose-go `checkConsistency` does.
    let disabled: HashSet<String> = project
        .services
        .keys()
        .filter(|n| !keep.contains(*n))
        .cloned()
        .collect();
    project.services.retain(|n, _| keep.contains(n));
    project.disabled_services = disabled.iter().cloned().collect();
    project.disabled_services.sort();
    for svc in project.services.values_mut() {
        svc.depends_on
            .retain(|dep, d| !disabled.contains(dep) || d.required);
    }
    Ok(())
}

/// `file:line:col: ` of the node at `path` in the raw model (the deepest one found), so a
/// consistency error points at the reference it complains about.
fn at(raw: Option<&Node>, path: &[&str]) -> String {
    let Some(mut cur) = raw else {
        return String::new();
    };
    for key in path {
        let next = match &cur.value {
            Value::Map(m) => m.get(*key),
            Value::Seq(items) => items
                .iter()
                .find(|i| {
                    i.scalar_text()
                        .is_some_and(|t| t == *key || t.split(':').next() == Some(*key))
                        || i.get("target").and_then(Node::scalar_text).as_deref() == Some(*key)
                        || i.get("source").and_then(Node::scalar_text).as_deref() == Some(*key)
                })
                .or_else(|| key.parse::<usize>().ok().and_then(|n| items.get(n))),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    if cur.mark.line == 0 {
        String::new()
    } else {
        format!("{}: ", cur.mark)
    }
}

/// What every per-service rule needs: the project, the raw model (for positions) and the set
/// of service names.
struct Scope<'a> {
    project: &'a Project,
    raw: Option<&'a Node>,
    services: HashSet<&'a str>,
}

type ServiceRule = fn(&Scope, &str, &Service) -> Result<(), ComposeError>;

/// The per-service rules, in the order their errors are reported (the first one found wins).
const SERVICE_RULES: &[ServiceRule] = &[
    image_or_build,
    depends_on_defined,
    network_mode_valid,
    namespace_services_defined,
    volumes_from_defined,
    links_defined,
    networks_declared,
    mounts_declared_and_distinct,
    watch_targets_set,
    secrets_and_configs_defined,
    build_secrets_defined,
    scale_matches_replicas,
    |scope, name, svc| check_resource_limits(name, svc, scope.raw),
    container_name_unscaled,
];

pub fn check(project: &Project, raw: Option<&Node>) -> Result<(), ComposeError> {
    let scope = Scope {
        project,
        raw,
        services: project.services.keys().map(String::as_str).collect(),
    };
    for (name, svc) in &project.services {
        for rule in SERVICE_RULES {
            rule(&scope, name, svc)?;
        }
    }
    check_container_names(project, raw)?;
    super::graph::ServiceGraph::new(project)?;
    Ok(())
}

fn image_or_build(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    if svc.image.is_none() && svc.build.is_none() && !svc.extra.contains_key("provider") {
        return Err(ComposeError::Consistency(format!(
            "{}service {name:?} has neither an image nor a build context specified; add `image:` or `build:`",
            at(scope.raw, &["services", name])
        )));
    }
    Ok(())
}

fn depends_on_defined(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    for dep in svc.depends_on.keys() {
        if !scope.services.contains(dep.as_str()) {
            // Implicit dependencies name what introduced them.
            let via = ["network_mode", "ipc", "pid", "uts", "cgroup"]
                .into_iter()
                .find(|k| {
                    let v = if *k == "network_mode" {
                        svc.network_mode.clone()
                    } else {
                        svc.extra.get(*k).and_then(|v| v.as_str()).map(String::from)
                    };
                    v.as_deref() == Some(&format!("service:{dep}"))
                });
            let (place, detail) = match via {
                Some(k) => (
                    at(scope.raw, &["services", name, k]),
                    format!(" (service {dep:?} not found for {k} 'service:{dep}')"),
                ),
                None => (
                    at(scope.raw, &["services", name, "depends_on", dep]),
                    String::new(),
                ),
            };
            return Err(ComposeError::Consistency(format!(
                "{place}service {name:?} depends on undefined service {dep:?}{detail}: invalid compose project; define it or remove the reference"
            )));
        }
    }
    Ok(())
}

fn network_mode_valid(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    if let Some(nm) = &svc.network_mode {
        if !svc.networks.is_empty() {
            return Err(ComposeError::Consistency(format!(
                "{}service {name} declares mutually exclusive `network_mode` and `networks`: invalid compose project; keep one of them",
                at(scope.raw, &["services", name, "network_mode"])
            )));
        }
        if let Some(other) = nm.strip_prefix("service:") {
            if !scope.services.contains(other) {
                return Err(ComposeError::Consistency(format!(
                    "{}service {other:?} not found for network_mode 'service:{other}'",
                    at(scope.raw, &["services", name, "network_mode"])
                )));
            }
        }
    }
    Ok(())
}

fn namespace_services_defined(
    scope: &Scope,
    name: &str,
    svc: &Service,
) -> Result<(), ComposeError> {
    for key in ["ipc", "pid"] {
        if let Some(other) = svc
            .extra
            .get(key)
            .and_then(|v| v.as_str())
            .and_then(|v| v.strip_prefix("service:"))
        {
            if !scope.services.contains(other) {
                return Err(ComposeError::Consistency(format!(
                    "{}service {other:?} not found for {key} 'service:{other}'",
                    at(scope.raw, &["services", name, key])
                )));
            }
        }
    }
    Ok(())
}

fn volumes_from_defined(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    for vf in &svc.volumes_from {
        if vf.starts_with("container:") {
            continue;
        }
        let other = vf.split(':').next().unwrap_or(vf);
        if !scope.services.contains(other) {
            return Err(ComposeError::Consistency(format!(
                "{}service {name:?} depends on undefined service {other:?} (volumes_from): invalid compose project",
                at(scope.raw, &["services", name, "volumes_from", other])
            )));
        }
    }
    Ok(())
}

fn links_defined(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    for link in &svc.links {
        let other = link.split(':').next().unwrap_or(link);
        if !scope.services.contains(other) {
            return Err(ComposeError::Consistency(format!(
                "{}service {name:?} depends on undefined service {other:?} (links): invalid compose project",
                at(scope.raw, &["services", name, "links", other])
            )));
        }
    }
    Ok(())
}

fn networks_declared(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    for net in svc.networks.keys() {
        if !scope.project.networks.contains_key(net) {
            return Err(ComposeError::Consistency(format!(
                "{}service {name:?} refers to undefined network {net}: invalid compose project; declare it under the top-level `networks`",
                at(scope.raw, &["services", name, "networks", net])
            )));
        }
    }
    Ok(())
}

fn mounts_declared_and_distinct(
    scope: &Scope,
    name: &str,
    svc: &Service,
) -> Result<(), ComposeError> {
    let mut targets: std::collections::HashMap<String, String> = Default::default();
    for (i, t) in svc.tmpfs.iter().enumerate() {
        let target = t.split(':').next().unwrap_or(t);
        targets.insert(target.to_string(), format!("services.{name}.tmpfs[{i}]"));
    }
    for (i, v) in svc.volumes.iter().enumerate() {
        if v.kind == "volume" {
            if let Some(src) = &v.source {
                if !scope.project.volumes.contains_key(src) {
                    return Err(ComposeError::Consistency(format!(
                        "{}service {name:?} refers to undefined volume {src}: invalid compose project; declare it under the top-level `volumes`",
                        at(scope.raw, &["services", name, "volumes", &i.to_string()])
                    )));
                }
            }
        }
        let here = format!("services.{name}.volumes[{i}]");
        if let Some(prev) = targets.insert(v.target.clone(), here.clone()) {
            return Err(ComposeError::Consistency(format!(
                "{}{here}: target {} already mounted as {prev}",
                at(scope.raw, &["services", name, "volumes", &i.to_string()]),
                v.target
            )));
        }
    }
    Ok(())
}

fn watch_targets_set(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    if let Some(watch) = svc
        .extra
        .get("develop")
        .and_then(|d| d.get("watch"))
        .and_then(|w| w.as_array())
    {
        for w in watch {
            let action = w.get("action").and_then(|a| a.as_str()).unwrap_or_default();
            if action != "rebuild" && w.get("target").is_none() {
                return Err(ComposeError::Consistency(format!(
                    "{}services.{name}.develop.watch: target is required for non-rebuild actions: invalid compose project",
                    at(scope.raw, &["services", name, "develop", "watch"])
                )));
            }
        }
    }
    Ok(())
}

fn secrets_and_configs_defined(
    scope: &Scope,
    name: &str,
    svc: &Service,
) -> Result<(), ComposeError> {
    for (kind, refs, defined) in [
        ("secret", &svc.secrets, &scope.project.secrets),
        ("config", &svc.configs, &scope.project.configs),
    ] {
        for r in refs {
            if !defined.contains_key(&r.source) {
                return Err(ComposeError::Consistency(format!(
                    "{}service {name:?} refers to undefined {kind} {}: invalid compose project",
                    at(
                        scope.raw,
                        &["services", name, &format!("{kind}s"), &r.source]
                    ),
                    r.source
                )));
            }
        }
    }
    Ok(())
}

fn build_secrets_defined(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    // compose-go checkConsistency: build secrets name top-level secrets too.
    let build_secrets = svc
        .build
        .as_ref()
        .and_then(|b| b.extra.get("secrets"))
        .and_then(|s| s.as_array());
    for s in build_secrets.into_iter().flatten() {
        let source = s
            .as_str()
            .or_else(|| s.get("source").and_then(|x| x.as_str()))
            .unwrap_or_default();
        if !scope.project.secrets.contains_key(source) {
            return Err(ComposeError::Consistency(format!(
                "{}service {name:?} refers to undefined build secret {source}: invalid compose project; declare it under the top-level `secrets`",
                at(scope.raw, &["services", name, "build", "secrets"]),
            )));
        }
    }
    Ok(())
}

fn scale_matches_replicas(scope: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    let replicas = svc
        .extra
        .get("deploy")
        .and_then(|d| d.get("replicas"))
        .and_then(|r| r.as_i64());
    if let (Some(scale), Some(replicas)) = (svc.scale, replicas) {
        if scale != replicas {
            return Err(ComposeError::Consistency(format!(
                "{}services.{name}: can't set distinct values on 'scale' ({scale}) and 'deploy.replicas' ({replicas}); keep one",
                at(scope.raw, &["services", name, "scale"])
            )));
        }
    }
    Ok(())
}

fn container_name_unscaled(_: &Scope, name: &str, svc: &Service) -> Result<(), ComposeError> {
    if let (Some(scale), Some(_)) = (svc.scale, &svc.container_name) {
        if scale > 1 {
            return Err(ComposeError::Consistency(format!(
                "services.{name}: container_name {:?} cannot be used with scale {scale}; remove one",
                svc.container_name.as_deref().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// Two services cannot name their containers alike (compose-go `checkConsistency`; docker
/// compose e2e `TestUpContainerNameConflict`), and a service's `platform` must be one its
/// `build.platforms` produces.
fn check_container_names(project: &Project, raw: Option<&Node>) -> Result<(), ComposeError> {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (name, svc) in &project.services {
        if let Some(cn) = svc.container_name.as_deref().filter(|c| !c.is_empty()) {
            if let Some(first) = seen.insert(cn, name) {
                return Err(ComposeError::Consistency(format!(
                    "{}services.{name}: container name {cn:?} is already in use by services.{first}; give each service its own container_name",
                    at(raw, &["services", name, "container_name"])
                )));
            }
        }
        let platform = svc.extra.get("platform").and_then(|p| p.as_str());
        let platforms = svc
            .build
            .as_ref()
            .and_then(|b| b.extra.get("platforms"))
            .and_then(|p| p.as_array());
        if let (Some(p), Some(list)) = (platform, platforms) {
            if !list.is_empty() && !list.iter().any(|x| x.as_str() == Some(p)) {
                let shown: Vec<&str> = list.iter().filter_map(|x| x.as_str()).collect();
                return Err(ComposeError::Consistency(format!(
                    "{}services.{name}: service.build.platforms MUST include service.platform {p:?} (build.platforms is [{}]); add it there or change platform",
                    at(raw, &["services", name, "platform"]),
                    shown.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// docker compose refuses a service-level resource key next to a distinct `deploy.resources`
/// value. As in compose, a `limits` (or `reservations`) block without the key counts as distinct:
/// the block is there, so its unset value is compared.
fn check_resource_limits(
    name: &str,
    svc: &super::model::Service,
    raw: Option<&Node>,
) -> Result<(), ComposeError> {
    let deploy = super::plan::deploy_resources(svc).map_err(|e| {
        ComposeError::Consistency(format!(
            "{}services.{name}.{e}",
            at(raw, &["services", name, "deploy", "resources"])
        ))
    })?;
    let int = |key: &str| svc.extra.get(key).and_then(serde_json::Value::as_i64);
    let cpus = svc.extra.get("cpus").and_then(serde_json::Value::as_f64);
    let text = |v: Option<i64>| v.map_or_else(|| "unset".to_string(), |v| v.to_string());
    // (service key, its value, deploy key, deploy value, whether the deploy block is there)
    let pairs = [
        (
            "mem_limit",
            int("mem_limit").filter(|m| *m != 0).map(|m| m.to_string()),
            "deploy.resources.limits.memory",
            text(deploy.limit_memory),
            deploy.has_limits && int("mem_limit") != Some(deploy.limit_memory.unwrap_or(0)),
        ),
        (
            "cpus",
            cpus.filter(|c| *c != 0.0).map(|c| c.to_string()),
            "deploy.resources.limits.cpus",
            deploy
                .limit_cpus
                .map_or_else(|| "unset".to_string(), |c| c.to_string()),
            deploy.has_limits && cpus != Some(deploy.limit_cpus.unwrap_or(0.0)),
        ),
        (
            "pids_limit",
            int("pids_limit").filter(|p| *p != 0).map(|p| p.to_string()),
            "deploy.resources.limits.pids",
            text(deploy.limit_pids),
            deploy.has_limits && int("pids_limit") != Some(deploy.limit_pids.unwrap_or(0)),
        ),
        (
            "mem_reservation",
            int("mem_reservation")
                .filter(|m| *m != 0)
                .map(|m| m.to_string()),
            "deploy.resources.reservations.memory",
            text(deploy.reservation_memory),
            deploy.has_reservations
                && int("mem_reservation") != Some(deploy.reservation_memory.unwrap_or(0)),
        ),
    ];
    for (key, ours, deploy_key, theirs, distinct) in pairs {
        // Only a set (non-zero) service-level value is compared, as in compose.
        let Some(ours) = ours else { continue };
        if distinct {
            return Err(ComposeError::Consistency(format!(
                "{}services.{name}: can't set distinct values on '{key}' ({ours}) and '{deploy_key}' ({theirs}); keep one",
                at(raw, &["services", name, key]),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::compose::{load, LoadOptions};

    fn load_text(
        text: &str,
        profiles: &[&str],
        services: &[&str],
    ) -> Result<crate::compose::Project, crate::compose::ComposeError> {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("compose.yaml"), text).unwrap();
        load(&LoadOptions {
            working_dir: t.path().to_path_buf(),
            project_name: Some("t".into()),
            profiles: profiles.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    const PROFILED: &str = "services:\n  web:\n    image: nginx\n  db:\n    image: pg\n    profiles: [backend]\n  admin:\n    image: adminer\n    profiles: [tools]\n    depends_on: [db]\n";

    #[test]
    fn service_resource_keys_must_agree_with_deploy_resources() {
        let with = |keys: &str, deploy: &str| {
            load_text(
                &format!("services:\n  web:\n    image: x\n{keys}    deploy:\n      resources:\n{deploy}"),
                &[],
                &[],
            )
        };
        let same = with(
            "    mem_limit: 64m\n    cpus: 0.5\n    pids_limit: 10\n",
            "        limits:\n          memory: 64M\n          cpus: '0.50'\n          pids: 10\n",
        );
        assert!(same.is_ok(), "{:?}", same.err());
        let e = with(
            "    mem_limit: 64m\n",
            "        limits:\n          memory: 128M\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("services.web: can't set distinct values on 'mem_limit' (67108864) and 'deploy.resources.limits.memory' (134217728); keep one"),
            "{e}"
        );
        // As in docker compose, a limits block without the key is a distinct (unset) value.
        let e = with(
            "    pids_limit: 10\n",
            "        limits:\n          cpus: '1'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'pids_limit' (10) and 'deploy.resources.limits.pids' (unset)"),
            "{e}"
        );
        let e = with(
            "    mem_reservation: 32m\n",
            "        reservations:\n          memory: 16M\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'mem_reservation'"), "{e}");
        let e = with("", "        limits:\n          memory: lots\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("services.web.deploy.resources.limits.memory: invalid size \"lots\""),
            "{e}"
        );
    }

    #[test]
    fn required_dependency_on_a_disabled_service_is_an_error() {
        let text = "services:\n  web:\n    image: nginx\n    depends_on: [db]\n  db:\n    image: pg\n    profiles: [backend]\n";
        let e = load_text(text, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("service \"web\" depends on service \"db\", which is disabled by its profiles [backend]"), "{e}");
        assert!(load_text(text, &["backend"], &[]).is_ok());
        let optional = text.replace(
            "depends_on: [db]",
            "depends_on: {db: {condition: service_started, required: false}}",
        );
        let p = load_text(&optional, &[], &[]).unwrap();
        assert!(p.services["web"].depends_on.is_empty());
        // With the profile on, the optional dependency stays in the model as written.
        let p = load_text(&optional, &["backend"], &[]).unwrap();
        assert!(!p.services["web"].depends_on["db"].required);
        // compose-go checkConsistency: only a *disabled* service excuses an optional dependency;
        // one the project never defines is an error.
        let undefined = optional.replace("  db:\n    image: pg\n    profiles: [backend]\n", "");
        let e = load_text(&undefined, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("depends on undefined service \"db\""), "{e}");
    }

    #[test]
    fn profiles_enable_services_and_named_services_bring_dependencies() {
        let p = load_text(PROFILED, &[], &[]).unwrap();
        assert_eq!(p.services.keys().collect::<Vec<_>>(), ["web"]);
        let p = load_text(PROFILED, &["backend"], &[]).unwrap();
        assert_eq!(p.services.keys().collect::<Vec<_>>(), ["web", "db"]);
        let p = load_text(PROFILED, &[], &["admin"]).unwrap();
        assert_eq!(p.services.keys().collect::<Vec<_>>(), ["db", "admin"]);
        // What a run leaves out stays known as defined (not an orphan).
        assert_eq!(p.disabled_services, ["web"]);
        let p = load_text(PROFILED, &["*"], &[]).unwrap();
        assert_eq!(p.services.len(), 3);
    }

    #[test]
    fn undefined_references_name_the_place() {
        let e = load_text(
            "services:\n  web:\n    image: x\n    depends_on: [zot]\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "compose.yaml:4:18: service \"web\" depends on undefined service \"zot\""
            ),
            "{e}"
        );
        let e = load_text(
            "services:\n  web:\n    image: x\n    volumes: ['data:/d']\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("compose.yaml:4:15: service \"web\" refers to undefined volume data"),
            "{e}"
        );
        let e = load_text(
            "services:\n  web:\n    image: x\n    networks: [front]\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refers to undefined network front"), "{e}");
        // compose-go loader/validate_test.go TestValidateBuildSecret-style.
        let e = load_text(
            "services:\n  web:\n    build: {context: ., secrets: [ghost]}\n",
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("service \"web\" refers to undefined build secret ghost"),
            "{e}"
        );
        let e = load_text("services:\n  web:\n    command: x\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither an image nor a build context"), "{e}");
        let e = load_text("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n", &[], &[]).unwrap_err().to_string();
        assert!(e.contains("dependency cycle detected: a -> b -> a"), "{e}");
    }
}
