//! berth's own description of the compose specification's shape: which keys each object allows.
//! The normalise stage checks types field by field; this module owns the key sets, so unknown
//! keys are reported as docker compose reports them (`additional properties 'x' not allowed`),
//! and it renders the JSON schema kept in `schema/compose.schema.json`.

use super::error::ComposeError;
use super::yaml::Node;

/// The shape a field's value may take (after interpolation, so numbers and booleans may still be
/// strings that the normalise stage casts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Bool,
    Int,
    /// An integer or a string (`cpu_shares: "512"`).
    IntOrStr,
    /// A number (integer or float) or a numeric string.
    Num,
    /// A byte size: an integer or a string like `512m`.
    Bytes,
    /// A string or a list of strings; null allowed (`command`, `entrypoint`).
    Command,
    StrList,
    StrOrList,
    /// A string, or a list of strings and mappings (`env_file`).
    StrOrSeq,
    /// `KEY=VALUE` strings or a mapping of scalars.
    ListOrDict,
    /// A list of names or a mapping of name → settings.
    ListOrMap,
    StrOrMap,
    Map,
    Seq,
    Any,
}

pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

/// Every service attribute of the compose specification with its shape.
pub const SERVICE_FIELDS: &[(&str, Ty)] = &[
    ("annotations", Ty::ListOrDict),
    ("attach", Ty::Bool),
    ("build", Ty::StrOrMap),
    ("blkio_config", Ty::Map),
    ("cap_add", Ty::StrList),
    ("cap_drop", Ty::StrList),
    ("cgroup", Ty::Str),
    ("cgroup_parent", Ty::Str),
    ("command", Ty::Command),
    ("configs", Ty::Seq),
    ("container_name", Ty::Str),
    ("cpu_count", Ty::Int),
    ("cpu_percent", Ty::Int),
    ("cpu_shares", Ty::IntOrStr),
    ("cpu_quota", Ty::IntOrStr),
    ("cpu_period", Ty::IntOrStr),
    ("cpu_rt_period", Ty::IntOrStr),
    ("cpu_rt_runtime", Ty::IntOrStr),
    ("cpus", Ty::Num),
    ("cpuset", Ty::Str),
    ("credential_spec", Ty::Map),
    ("depends_on", Ty::ListOrMap),
    ("deploy", Ty::Map),
    ("develop", Ty::Map),
    ("device_cgroup_rules", Ty::StrList),
    ("devices", Ty::Seq),
    ("dns", Ty::StrOrList),
    ("dns_opt", Ty::StrList),
    ("dns_search", Ty::StrOrList),
    ("domainname", Ty::Str),
    ("entrypoint", Ty::Command),
    ("env_file", Ty::StrOrSeq),
    ("label_file", Ty::StrOrList),
    ("environment", Ty::ListOrDict),
    ("expose", Ty::Seq),
    ("extends", Ty::StrOrMap),
    ("external_links", Ty::StrList),
    ("extra_hosts", Ty::ListOrDict),
    ("gpus", Ty::Any),
    ("group_add", Ty::Seq),
    ("healthcheck", Ty::Map),
    ("hostname", Ty::Str),
    ("image", Ty::Str),
    ("init", Ty::Bool),
    ("ipc", Ty::Str),
    ("isolation", Ty::Str),
    ("labels", Ty::ListOrDict),
    ("links", Ty::StrList),
    ("logging", Ty::Map),
    ("mac_address", Ty::Str),
    ("mem_limit", Ty::Bytes),
    ("mem_reservation", Ty::Bytes),
    ("mem_swappiness", Ty::Int),
    ("memswap_limit", Ty::Bytes),
    ("network_mode", Ty::Str),
    ("networks", Ty::ListOrMap),
    ("oom_kill_disable", Ty::Bool),
    ("oom_score_adj", Ty::Int),
    ("pid", Ty::Str),
    ("pids_limit", Ty::Int),
    ("platform", Ty::Str),
    ("ports", Ty::Seq),
    ("post_start", Ty::Seq),
    ("pre_start", Ty::Seq),
    ("pre_stop", Ty::Seq),
    ("privileged", Ty::Bool),
    ("profiles", Ty::StrList),
    ("provider", Ty::Map),
    ("pull_policy", Ty::Str),
    ("pull_refresh_after", Ty::Str),
    ("read_only", Ty::Bool),
    ("restart", Ty::Str),
    ("runtime", Ty::Str),
    ("scale", Ty::Int),
    ("security_opt", Ty::StrList),
    ("shm_size", Ty::Bytes),
    ("secrets", Ty::Seq),
    ("sysctls", Ty::ListOrDict),
    ("stdin_open", Ty::Bool),
    ("stop_grace_period", Ty::Str),
    ("stop_signal", Ty::Str),
    ("storage_opt", Ty::Map),
    ("tmpfs", Ty::StrOrList),
    ("tty", Ty::Bool),
    ("ulimits", Ty::Map),
    ("use_api_socket", Ty::Bool),
    ("user", Ty::Str),
    ("uts", Ty::Str),
    ("userns_mode", Ty::Str),
    ("volumes", Ty::Seq),
    ("volumes_from", Ty::StrList),
    ("working_dir", Ty::Str),
    ("models", Ty::ListOrMap),
];

/// The service attribute names (for key checks).
pub const SERVICE_KEYS: &[&str] = &{
    let mut names = [""; SERVICE_FIELDS.len()];
    let mut i = 0;
    while i < SERVICE_FIELDS.len() {
        names[i] = SERVICE_FIELDS[i].0;
        i += 1;
    }
    names
};

/// The shape of service attribute `key`, if it is one.
pub fn service_field(key: &str) -> Option<Ty> {
    SERVICE_FIELDS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, t)| *t)
}

/// Check a value against its shape; the message is docker compose's (`services.web.image must be
/// a string`), the position the value's.
pub fn check_type(node: &Node, ty: Ty, path: &str) -> Result<(), ComposeError> {
    if fits(node, ty) {
        return Ok(());
    }
    use super::yaml::Value as V;
    let got = match &node.value {
        V::String(s) => format!(", got {s:?}"),
        V::Seq(_) => ", got an array".to_string(),
        V::Map(_) => ", got a mapping".to_string(),
        V::Null => ", got null".to_string(),
        _ => format!(", got {}", node.scalar_text().unwrap_or_default()),
    };
    let want = described(ty);
    Err(ComposeError::invalid(
        node,
        path,
        format!("{path} must be {want}{got}"),
    ))
}

/// Whether `node` has shape `ty` (text that casts to a boolean or number counts as one).
fn fits(node: &Node, ty: Ty) -> bool {
    use super::yaml::Value as V;
    let scalar = |n: &Node| matches!(n.value, V::String(_) | V::Int(_) | V::Float(_) | V::Bool(_));
    match ty {
        Ty::Any => true,
        Ty::Str => matches!(node.value, V::String(_)),
        Ty::Bool => match &node.value {
            V::Bool(_) => true,
            V::String(s) => super::notation::cast_bool(s).is_some(),
            _ => false,
        },
        Ty::Int => match &node.value {
            V::Int(_) => true,
            V::String(s) => s.trim().parse::<i64>().is_ok(),
            _ => false,
        },
        Ty::IntOrStr | Ty::Bytes => matches!(node.value, V::Int(_) | V::String(_)),
        Ty::Num => match &node.value {
            V::Int(_) | V::Float(_) => true,
            V::String(s) => s.trim().parse::<f64>().is_ok(),
            _ => false,
        },
        Ty::Command => match &node.value {
            V::Null | V::String(_) => true,
            V::Seq(items) => items.iter().all(scalar),
            _ => false,
        },
        Ty::StrList => node.as_seq().is_some_and(|items| items.iter().all(scalar)),
        Ty::StrOrList => match &node.value {
            V::String(_) => true,
            V::Seq(items) => items.iter().all(scalar),
            _ => false,
        },
        Ty::StrOrSeq => matches!(node.value, V::String(_) | V::Seq(_)),
        Ty::ListOrDict | Ty::ListOrMap => matches!(node.value, V::Seq(_) | V::Map(_)),
        Ty::StrOrMap => matches!(node.value, V::String(_) | V::Map(_)),
        Ty::Map => matches!(node.value, V::Map(_)),
        Ty::Seq => matches!(node.value, V::Seq(_)),
    }
}

/// What a value of shape `ty` is, as the messages say it.
fn described(ty: Ty) -> &'static str {
    match ty {
        Ty::Any => "",
        Ty::Str => "a string",
        Ty::Bool => "a boolean",
        Ty::Int => "an integer",
        Ty::IntOrStr => "an integer or a string",
        Ty::Num => "a number",
        Ty::Bytes => "a size (an integer or a string like 512m)",
        Ty::Command | Ty::StrOrList => "a string or a list of strings",
        Ty::StrList => "a list of strings",
        Ty::StrOrSeq => "a string or a list",
        Ty::ListOrDict => "a list of KEY=VALUE strings or a mapping",
        Ty::ListOrMap => "a list or a mapping",
        Ty::StrOrMap => "a string or a mapping",
        Ty::Map => "a mapping",
        Ty::Seq => "a list",
    }
}

fn ty_schema(ty: Ty) -> serde_json::Value {
    use serde_json::json;
    let scalar = json!({"type": ["string", "number", "boolean"]});
    match ty {
        Ty::Any => json!({}),
        Ty::Str => json!({"type": "string"}),
        Ty::Bool => json!({"type": ["boolean", "string"]}),
        Ty::Int | Ty::IntOrStr | Ty::Bytes => json!({"type": ["integer", "string"]}),
        Ty::Num => json!({"type": ["number", "string"]}),
        Ty::Command => json!({"oneOf": [
            {"type": "null"}, {"type": "string"}, {"type": "array", "items": scalar}
        ]}),
        Ty::StrList => json!({"type": "array", "items": scalar}),
        Ty::StrOrList => json!({"oneOf": [{"type": "string"}, {"type": "array", "items": scalar}]}),
        Ty::StrOrSeq => json!({"type": ["string", "array"]}),
        Ty::ListOrDict | Ty::ListOrMap => json!({"type": ["array", "object"]}),
        Ty::StrOrMap => json!({"type": ["string", "object"]}),
        Ty::Map => json!({"type": "object"}),
        Ty::Seq => json!({"type": "array"}),
    }
}

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
                path.to_string()
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
        let mut service = object(&[]);
        for (k, ty) in SERVICE_FIELDS {
            service["properties"][*k] = ty_schema(*ty);
        }
        p["services"] = json!({
            "type": "object",
            "patternProperties": {"^[a-zA-Z0-9._-]+$": {"oneOf": [service, {"type": "null"}]}},
        });
        p["networks"] = named(NETWORK_KEYS);
        p["volumes"] = named(VOLUME_KEYS);
        p["secrets"] = named(SECRET_KEYS);
        p["configs"] = named(CONFIG_KEYS);
    }
    top["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    top["$id"] = json!("https://berth.invalid/compose.schema.json");
    top["title"] = json!("berth compose file (generated by `berth` from src/compose/schema.rs)");
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
