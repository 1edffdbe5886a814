//! berth's own description of the compose specification's shape: which keys each object allows.
//! The normalise stage checks types field by field; this module owns the key sets, so unknown
//! keys are reported as docker compose reports them (`additional properties 'x' not allowed`),
//! and it renders the JSON schema kept in `schema/compose.schema.json`.

use super::load::ComposeError;
use super::yaml::Node;

/// The kinds of top-level resources.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Network,
    Volume,
    Secret,
    Config,
}

pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

pub const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "build",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "label_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "secrets",
    "sysctls",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "uts",
    "userns_mode",
    "volumes",
    "volumes_from",
    "working_dir",
    "models",
];

pub const NETWORK_KEYS: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "ipam",
    "external",
    "internal",
    "enable_ipv4",
    "enable_ipv6",
    "attachable",
    "labels",
];
pub const VOLUME_KEYS: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];
pub const SECRET_KEYS: &[&str] = &[
    "name",
    "environment",
    "file",
    "external",
    "labels",
    "driver",
    "driver_opts",
    "template_driver",
];
pub const CONFIG_KEYS: &[&str] = &[
    "name",
    "content",
    "environment",
    "file",
    "external",
    "labels",
    "template_driver",
];
pub const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "endpoint_mode",
    "replicas",
    "labels",
    "rollback_config",
    "update_config",
    "resources",
    "restart_policy",
    "placement",
];
pub const RESOURCES_KEYS: &[&str] = &["limits", "reservations"];
pub const RESOURCE_LIMIT_KEYS: &[&str] =
    &["cpus", "memory", "pids", "devices", "generic_resources"];

/// Unknown keys (other than `x-*` extensions) are errors naming the path.
pub fn check_keys(node: &Node, path: &str, allowed: &[&str]) -> Result<(), ComposeError> {
    let Some(m) = node.as_map() else {
        return Ok(());
    };
    for (k, v) in m {
        if !k.starts_with("x-") && !allowed.contains(&k.as_str()) {
            let shown = if path.is_empty() {
                format!("additional properties '{k}' not allowed")
            } else {
                format!("{path} additional properties '{k}' not allowed")
            };
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            return Err(ComposeError::invalid(v, &at, shown));
        }
    }
    Ok(())
}

pub fn check_resource(node: &Node, kind: &str, path: &str) -> Result<(), ComposeError> {
    let keys = match kind {
        "networks" => NETWORK_KEYS,
        "volumes" => VOLUME_KEYS,
        "secrets" => SECRET_KEYS,
        _ => CONFIG_KEYS,
    };
    check_keys(node, path, keys)
}

pub fn check_deploy(node: &Node, path: &str) -> Result<(), ComposeError> {
    check_keys(node, path, DEPLOY_KEYS)?;
    if let Some(r) = node.get("resources") {
        let rp = format!("{path}.resources");
        check_keys(r, &rp, RESOURCES_KEYS)?;
        for k in ["limits", "reservations"] {
            if let Some(l) = r.get(k) {
                check_keys(l, &format!("{rp}.{k}"), RESOURCE_LIMIT_KEYS)?;
            }
        }
        let devices = r
            .get("reservations")
            .and_then(|x| x.get("devices"))
            .and_then(Node::as_seq);
        for (i, d) in devices.into_iter().flatten().enumerate() {
            let dp = format!("{rp}.reservations.devices[{i}]");
            if d.get("capabilities").is_none() {
                return Err(ComposeError::invalid(
                    d,
                    &dp,
                    format!("{dp} missing property 'capabilities'"),
                ));
            }
            if let Some(c) = d.get("count") {
                let ok = matches!(c.value, super::yaml::Value::Int(_))
                    || c.as_str()
                        .is_some_and(|s| s == "all" || s.parse::<i64>().is_ok());
                if !ok {
                    return Err(ComposeError::invalid(
                        c,
                        &format!("{dp}.count"),
                        format!(
                            "invalid value {:?}, the only value allowed is 'all' or a number",
                            c.scalar_text().unwrap_or_default()
                        ),
                    ));
                }
                if d.get("device_ids").is_some() {
                    return Err(ComposeError::invalid(
                        d,
                        &dp,
                        "\"count\" and \"device_ids\" attributes are exclusive",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The JSON schema rendered from the key sets above (what `schema/compose.schema.json` holds).
pub fn json_schema() -> serde_json::Value {
    use serde_json::{json, Map, Value};
    fn object(keys: &[&str]) -> Value {
        let mut props = Map::new();
        for k in keys {
            props.insert((*k).to_string(), json!({}));
        }
        json!({
            "type": "object",
            "properties": props,
            "patternProperties": {"^x-": {}},
            "additionalProperties": false
        })
    }
    let mut top = object(TOP_LEVEL_KEYS);
    let named = |keys: &[&str]| {
        json!({
            "type": "object",
            "patternProperties": {"^[a-zA-Z0-9._-]+$": {"oneOf": [object(keys), {"type": "null"}]}},
        })
    };
    if let Some(p) = top.get_mut("properties") {
        p["name"] = json!({"type": "string"});
        p["services"] = json!({
            "type": "object",
            "patternProperties": {"^[a-zA-Z0-9._-]+$": {"oneOf": [object(SERVICE_KEYS), {"type": "null"}]}},
        });
        p["networks"] = named(NETWORK_KEYS);
        p["volumes"] = named(VOLUME_KEYS);
        p["secrets"] = named(SECRET_KEYS);
        p["configs"] = named(CONFIG_KEYS);
    }
    top["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    top["$id"] = json!("https://berth.invalid/compose.schema.json");
    top["title"] = json!("berth compose file (generated by `berth` from src/compose/schema.rs)");
    let _ = Kind::Network;
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema/compose.schema.json` is generated from this module; keep it in sync.
    #[test]
    fn checked_in_schema_matches_generated() {
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/compose.schema.json");
        if std::env::var("BERTH_BLESS").is_ok() {
            std::fs::write(path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            on_disk, generated,
            "run with BERTH_BLESS=1 to regenerate {path}"
        );
    }
}
