//! Service attributes berth accepts in a compose file but does not implement. `up` must not
//! ignore them silently: each one is either a warning (the service runs without it, which is
//! safe and only less than asked for) or a refusal (running without it would weaken security
//! or run something else than asked for). README.md lists the same decisions.
//!
//! Resource limits (`mem_limit`, `cpus`, `pids_limit`, `deploy.resources`, …) are not judged
//! here: they are implemented (`plan::apply_resource_limits`, the engine's cgroups).

use std::fmt;

use super::model::{Project, Service};

/// One attribute of one service that berth does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub service: String,
    /// The attribute as the user wrote it (`devices`, `security_opt: no-new-privileges:true`).
    pub field: String,
    /// True when `up` must refuse the service rather than run it without the attribute.
    pub refused: bool,
    /// True when berth implements the attribute in part; `note` says what is missing.
    pub partial: bool,
    /// Why it is refused, or what happens instead; may be empty.
    pub note: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.partial {
            return write!(
                f,
                "WARN service \"{}\": berth implements `{}` only in part: {}",
                self.service, self.field, self.note
            );
        }
        if self.refused {
            write!(
                f,
                "service \"{}\": berth does not support `{}` yet; {}",
                self.service, self.field, self.note
            )
        } else {
            write!(
                f,
                "WARN service \"{}\": berth does not support `{}` yet; ignored",
                self.service, self.field
            )?;
            if !self.note.is_empty() {
                write!(f, " ({})", self.note)?;
            }
            Ok(())
        }
    }
}

/// Attributes that berth ignores whenever they are present, with what happens instead.
const IGNORED_IF_PRESENT: &[(&str, &str)] = &[
    ("annotations", ""),
    ("blkio_config", ""),
    (
        "cgroup",
        "the container gets its own cgroup namespace view as usual",
    ),
    ("cgroup_parent", "the container's cgroup is berth's"),
    ("cpu_count", ""),
    ("cpu_percent", ""),
    ("cpu_rt_period", ""),
    ("cpu_rt_runtime", ""),
    ("credential_spec", ""),
    ("device_cgroup_rules", ""),
    ("external_links", ""),
    ("gpus", ""),
    ("group_add", ""),
    ("mac_address", "the address is random"),
    ("mem_swappiness", ""),
    ("oom_score_adj", ""),
    ("post_start", "no hook runs"),
    ("pre_start", "no hook runs"),
    ("pre_stop", "no hook runs"),
    ("storage_opt", ""),
    ("use_api_socket", ""),
];

/// The `secrets` and `configs` of service `name` that berth cannot mount: file-based ones are
/// bind-mounted read-only (see `plan::file_object_mounts`), or copied in when they set `uid`,
/// `gid` or `mode`; those made from an environment variable or inline `content` are copied in
/// with their mode and owner (see `plan::inline_file_objects`); `external` (swarm) ones are not
/// supported.
pub fn unsupported_file_objects(project: &Project, name: &str) -> Vec<Unsupported> {
    let Some(service) = project.services.get(name) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (kind, refs, defined) in [
        ("secrets", &service.secrets, &project.secrets),
        ("configs", &service.configs, &project.configs),
    ] {
        for r in refs {
            let def = defined.get(&r.source);
            let file_based = def
                .and_then(|d| d.get("file"))
                .is_some_and(|f| f.is_string());
            let inline =
                def.is_some_and(|d| d.get("content").is_some() || d.get("environment").is_some());
            let note = if inline || file_based {
                continue;
            } else {
                "only file-based, inline (`content`) and `environment` ones are mounted"
            };
            found.push(Unsupported {
                service: name.to_string(),
                field: format!("{kind}: {}", r.source),
                refused: false,
                partial: false,
                note: note.into(),
            });
        }
    }
    found
}

/// Every attribute of `service` berth does not implement, in a stable order.
pub fn unsupported_fields(name: &str, service: &Service) -> Vec<Unsupported> {
    let mut found = Vec::new();
    if service.privileged == Some(true) {
        found.push(Unsupported {
            service: name.to_string(),
            field: "privileged".into(),
            refused: false,
            partial: true,
            note: "the container gets every capability, no seccomp filter and unmasked /proc \
                   paths, but not the host's devices"
                .into(),
        });
    }
    ignored_attributes(name, service, &mut found);
    ignored_logging_deploy_and_networks(name, service, &mut found);
    refused_attributes(name, service, &mut found);
    found
}

/// Attributes berth accepts and ignores (or does anyway), with why.
fn ignored_attributes(name: &str, service: &Service, found: &mut Vec<Unsupported>) {
    let mut ignore = |field: &str, note: &str| {
        found.push(Unsupported {
            service: name.to_string(),
            field: field.to_string(),
            refused: false,
            partial: false,
            note: note.to_string(),
        })
    };
    let text = |key: &str| service.extra.get(key).and_then(|v| v.as_str());

    for (field, note) in IGNORED_IF_PRESENT {
        if service.extra.contains_key(*field) {
            ignore(field, note);
        }
    }
    if service.extra.get("oom_kill_disable") == Some(&serde_json::Value::Bool(true)) {
        ignore("oom_kill_disable", "");
    }
    if service.extra.get("attach") == Some(&serde_json::Value::Bool(false)) {
        ignore("attach: false", "its logs are shown with the others");
    }
    if let Some(runtime) = text("runtime") {
        ignore(&format!("runtime: {runtime}"), "berth runs it itself");
    }
    if let Some(isolation) = text("isolation").filter(|i| *i != "default") {
        ignore(&format!("isolation: {isolation}"), "");
    }
    // Values that ask for what berth does anyway are not worth a warning.
    if let Some(pid) = text("pid").filter(|p| !p.is_empty()) {
        ignore(
            &format!("pid: {pid}"),
            "the container has its own PID namespace",
        );
    }
    if let Some(ipc) = text("ipc").filter(|i| !matches!(*i, "" | "private" | "shareable")) {
        ignore(
            &format!("ipc: {ipc}"),
            "the container has its own IPC namespace",
        );
    }
    if let Some(uts) = text("uts").filter(|u| !u.is_empty()) {
        ignore(
            &format!("uts: {uts}"),
            "the container has its own UTS namespace",
        );
    }
    if let Some(userns) = text("userns_mode").filter(|u| *u != "host") {
        ignore(&format!("userns_mode: {userns}"), "");
    }
    if !service.dns.is_empty() {
        ignore(
            "dns",
            "names are resolved by berth's DNS, which forwards to the host's name servers",
        );
    }
    if !service.links.is_empty() {
        ignore("links", "services still reach each other by service name");
    }
    if !service.volumes_from.is_empty() {
        ignore("volumes_from", "");
    }
}

/// Logging, deploy and per-network options berth ignores.
fn ignored_logging_deploy_and_networks(
    name: &str,
    service: &Service,
    found: &mut Vec<Unsupported>,
) {
    let mut ignore = |field: &str, note: &str| {
        found.push(Unsupported {
            service: name.to_string(),
            field: field.to_string(),
            refused: false,
            partial: false,
            note: note.to_string(),
        })
    };

    if let Some(logging) = service.extra.get("logging").and_then(|v| v.as_object()) {
        let driver = logging.get("driver").and_then(|d| d.as_str());
        if let Some(d) = driver.filter(|d| !matches!(*d, "json-file" | "local")) {
            ignore(
                &format!("logging.driver: {d}"),
                "logs are kept in berth's json-file log",
            );
        }
        let options = logging.get("options").and_then(|o| o.as_object());
        if driver.is_some_and(|d| !matches!(d, "json-file" | "local")) {
            if options.is_some_and(|o| !o.is_empty()) {
                ignore(
                    "logging.options",
                    "they belong to the driver berth does not use",
                );
            }
        } else {
            // max-size and max-file rotate the log; the other json-file options are accepted
            // and have no effect yet.
            for key in options.into_iter().flat_map(|o| o.keys()) {
                let note = match key.as_str() {
                    "max-size" | "max-file" => continue,
                    "compress" => "rotated log files are kept uncompressed",
                    _ => "log lines carry no attributes",
                };
                ignore(&format!("logging.options.{key}"), note);
            }
        }
    }
    if let Some(deploy) = service.extra.get("deploy").and_then(|v| v.as_object()) {
        // The condition and max_attempts are the container's restart policy; these two are
        // swarm-only and docker compose drops them too.
        let policy = deploy.get("restart_policy").and_then(|p| p.as_object());
        for field in ["delay", "window"] {
            if policy.is_some_and(|p| p.contains_key(field)) {
                ignore(&format!("deploy.restart_policy.{field}"), "");
            }
        }
    }
    for (key, network) in &service.networks {
        let Some(network) = network else { continue };
        for field in [
            "ipv6_address",
            "link_local_ips",
            "mac_address",
            "driver_opts",
        ] {
            if network.extra.contains_key(field) {
                ignore(&format!("networks.{key}.{field}"), "");
            }
        }
    }
}

/// Attributes berth refuses: running without them would be unsafe or not what was asked.
fn refused_attributes(name: &str, service: &Service, found: &mut Vec<Unsupported>) {
    let text = |key: &str| service.extra.get(key).and_then(|v| v.as_str());
    let mut refuse = |field: String, note: &str| {
        found.push(Unsupported {
            service: name.to_string(),
            field,
            refused: true,
            partial: false,
            note: note.to_string(),
        })
    };
    // Only linux/amd64 images are pulled; running another platform's image is impossible, and
    // quietly running amd64 instead is not what was asked.
    if let Some(platform) = text("platform") {
        if !matches!(platform, "linux/amd64" | "linux/x86_64" | "amd64" | "linux") {
            refuse(
                format!("platform: {platform}"),
                "berth runs linux/amd64 images only; remove `platform` or set it to linux/amd64",
            );
        }
    }
    // The engine implements no-new-privileges, seccomp=unconfined and systempaths=unconfined,
    // and does what apparmor=unconfined and label=disable ask (it applies neither). Any other
    // option asks for a hardening berth cannot apply: running without it would be unsafe.
    for opt in service
        .extra
        .get("security_opt")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
    {
        if let Err(e) = crate::engine::container::security::parse(&[opt.to_string()]) {
            refuse(format!("security_opt: {opt}"), &e.to_string());
        }
    }
    // A subpath mount would otherwise expose (and write into) the whole volume.
    for (i, volume) in service.volumes.iter().enumerate() {
        if volume
            .volume
            .as_ref()
            .is_some_and(|o| o.contains_key("subpath"))
        {
            found.push(Unsupported {
                service: name.to_string(),
                field: format!("volumes[{i}].volume.subpath"),
                refused: true,
                partial: false,
                note: "the whole volume would be mounted instead; mount it whole or use \
                       another volume"
                    .into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml_like: serde_json::Value) -> Service {
        serde_json::from_value(yaml_like).unwrap()
    }

    #[test]
    fn unimplemented_fields_are_warned_about_once_each() {
        let s = service(serde_json::json!({
            "image": "busybox",
            "devices": ["/dev/fuse:/dev/fuse"],
            "cgroup_parent": "x",
            "ipc": "private",
            "pid": "host",
            "logging": {"driver": "json-file", "options": {"max-size": "1m", "compress": "true"}},
            "dns": ["1.1.1.1"],
        }));
        let found: Vec<String> = unsupported_fields("web", &s)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            found[0],
            "WARN service \"web\": berth does not support `cgroup_parent` yet; ignored \
             (the container's cgroup is berth's)"
        );
        assert!(
            !found.iter().any(|f| f.contains("devices")),
            "implemented: {found:?}"
        );
        assert!(found.iter().any(|f| f.contains("`pid: host`")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("`dns`")), "{found:?}");
        // max-size rotates the log; compress is accepted without effect, and said so.
        assert!(!found.iter().any(|f| f.contains("max-size")), "{found:?}");
        assert!(
            found.iter().any(
                |f| f.contains("`logging.options.compress`") && f.contains("kept uncompressed")
            ),
            "{found:?}"
        );
        assert!(!found.iter().any(|f| f.contains("ipc")), "{found:?}");
        assert_eq!(found.len(), 4, "{found:?}");
    }

    #[test]
    fn unappliable_security_options_and_other_platforms_are_refused() {
        let s = service(serde_json::json!({
            "image": "busybox",
            "platform": "linux/arm64",
            "security_opt": ["no-new-privileges:true", "apparmor:docker-default", "seccomp:unconfined"],
        }));
        let found = unsupported_fields("api", &s);
        let refused: Vec<&str> = found
            .iter()
            .filter(|u| u.refused)
            .map(|u| u.field.as_str())
            .collect();
        assert_eq!(
            refused,
            [
                "platform: linux/arm64",
                "security_opt: apparmor:docker-default"
            ]
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[1].to_string(),
            "service \"api\": berth does not support `security_opt: apparmor:docker-default` \
             yet; security option \"apparmor:docker-default\" is not supported: berth does not \
             apply AppArmor profiles; leave the option out"
        );
        let plain = service(serde_json::json!({"image": "busybox", "platform": "linux/amd64"}));
        assert!(unsupported_fields("api", &plain).is_empty());
    }
}
