//! Stage 5 and 6, validate and normalise: the merged raw model (a [`Node`] tree) is checked field by
//! field, with errors as model paths plus file:line:col, and rewritten to long syntax (ports,
//! volumes, depends_on, environment + env_file, build, networks) in the canonical tree that
//! `berth config` prints and that the typed [`Project`] is read from.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::error::ComposeError;
use super::files::{clean_path, read_env_file, read_text};
// Re-exported: the CLI and the plan read these notations through `normalize`.
use super::model::Project;
pub use super::notation::{
    cast_bool, format_duration, parse_bytes, parse_duration, shell_split, split_volume_spec,
};
use super::schema;
use super::yaml::{Mark, Node, Value};

pub struct Settings {
    pub project_name: String,
    pub project_dir: PathBuf,
    pub env: IndexMap<String, String>,
    /// Default network, implicit dependencies, resource names (`config --no-normalize` = off).
    pub normalize: bool,
    /// False under `config --no-interpolate`: values may still hold `${VAR}`, which short
    /// syntax must keep whole instead of splitting on the `:` and `-` inside it.
    pub interpolated: bool,
}

type Result<T> = std::result::Result<T, ComposeError>;

fn err(node: &Node, path: &str, msg: impl Into<String>) -> ComposeError {
    ComposeError::invalid(node, path, msg)
}

fn s(v: impl Into<String>, mark: &Mark) -> Node {
    Node::new(Value::String(v.into()), mark.clone())
}
fn b(v: bool, mark: &Mark) -> Node {
    Node::new(Value::Bool(v), mark.clone())
}
fn map(mark: &Mark) -> IndexMap<String, Node> {
    let _ = mark;
    IndexMap::new()
}
fn mapn(m: IndexMap<String, Node>, mark: &Mark) -> Node {
    Node::new(Value::Map(m), mark.clone())
}

/// The raw model → the normalised typed project (and its canonical tree in `canonical`).
pub fn project(raw: &Node, settings: &Settings) -> Result<Project> {
    let canonical = canonical(raw, settings)?;
    from_canonical(&canonical)
}

/// Read the typed project from a canonical tree.
pub fn from_canonical(canonical: &Node) -> Result<Project> {
    serde_json::from_value(canonical.to_json()).map_err(|e| ComposeError::Invalid {
        mark: None,
        path: "(model)".into(),
        message: format!("internal error reading the normalised model: {e}"),
    })
}

/// The raw model → the canonical tree (`berth config` output).
pub fn canonical(raw: &Node, settings: &Settings) -> Result<Node> {
    let top = raw
        .as_map()
        .ok_or_else(|| err(raw, "(top level)", "top-level object must be a mapping"))?;
    schema::check_keys(raw, "", schema::TOP_LEVEL_KEYS)?;
    let mark = raw.mark.clone();
    let mut out = map(&mark);
    out.insert("name".into(), s(&settings.project_name, &mark));

    let mut services = IndexMap::new();
    if let Some(sv) = top.get("services") {
        match &sv.value {
            Value::Null => {}
            Value::Map(m) => {
                for (name, node) in m {
                    let path = format!("services.{name}");
                    services.insert(name.clone(), service(name, node, &path, settings)?);
                }
            }
            _ => return Err(err(sv, "services", "services must be a mapping")),
        }
    }
    let mut resources: IndexMap<&str, Node> = IndexMap::new();
    for kind in ["networks", "volumes", "secrets", "configs"] {
        if let Some(n) = top.get(kind) {
            let mut m = IndexMap::new();
            match &n.value {
                Value::Null => {}
                Value::Map(entries) => {
                    for (key, def) in entries {
                        let path = format!("{kind}.{key}");
                        m.insert(key.clone(), resource(kind, key, def, &path, settings)?);
                    }
                }
                _ => return Err(err(n, kind, format!("{kind} must be a mapping"))),
            }
            resources.insert(kind, mapn(m, &n.mark));
        }
    }
    if settings.normalize {
        // The implicit `default` network, declared when some service uses it.
        let uses_default = services.values().any(|s| {
            s.get("networks")
                .and_then(Node::as_map)
                .is_some_and(|n| n.contains_key("default"))
        });
        if uses_default {
            let nets = resources
                .entry("networks")
                .or_insert_with(|| mapn(IndexMap::new(), &mark));
            if let Some(m) = nets.as_map_mut() {
                if !m.contains_key("default") {
                    let mut d = IndexMap::new();
                    d.insert(
                        "name".into(),
                        s(format!("{}_default", settings.project_name), &mark),
                    );
                    m.insert("default".into(), mapn(d, &mark));
                }
            }
        }
    }
    out.insert("services".into(), mapn(services, &mark));
    for (k, v) in resources {
        if v.as_map().is_some_and(|m| !m.is_empty()) {
            out.insert(k.to_string(), v);
        }
    }
    for (k, v) in top {
        if k.starts_with("x-") || k == "models" {
            out.insert(k.clone(), v.clone());
        }
    }
    let mut doc = mapn(out, &mark);
    cast_typed(&mut doc, &mut Vec::new());
    Ok(doc)
}

/// Typed fields that interpolation may have left as strings (compose-go's cast table):
/// (path pattern, target type). `*` matches any one key or index.
const CASTS: &[(&str, char)] = &[
    ("services.*.deploy.replicas", 'i'),
    ("services.*.deploy.update_config.parallelism", 'i'),
    ("services.*.deploy.update_config.max_failure_ratio", 'f'),
    ("services.*.deploy.rollback_config.parallelism", 'i'),
    ("services.*.deploy.rollback_config.max_failure_ratio", 'f'),
    ("services.*.deploy.restart_policy.max_attempts", 'i'),
    ("services.*.deploy.placement.max_replicas_per_node", 'i'),
    ("services.*.deploy.resources.limits.pids", 'i'),
    ("services.*.deploy.resources.reservations.pids", 'i'),
    ("services.*.volumes.*.volume.nocopy", 'b'),
    ("services.*.volumes.*.bind.create_host_path", 'b'),
    ("services.*.volumes.*.tmpfs.mode", 'o'),
    ("services.*.blkio_config.weight", 'i'),
    ("services.*.blkio_config.weight_device.*.weight", 'i'),
    ("networks.*.internal", 'b'),
    ("networks.*.attachable", 'b'),
    ("networks.*.enable_ipv6", 'b'),
    ("networks.*.enable_ipv4", 'b'),
    ("networks.*.external", 'b'),
    ("volumes.*.external", 'b'),
    ("secrets.*.external", 'b'),
    ("configs.*.external", 'b'),
];

fn cast_typed(node: &mut Node, path: &mut Vec<String>) {
    // Patterns are split once; this runs over the whole project, so subtrees no pattern can
    // reach are skipped (most service attributes hold no typed field).
    static SPLIT: std::sync::OnceLock<Vec<(Vec<&'static str>, char)>> = std::sync::OnceLock::new();
    let patterns = SPLIT.get_or_init(|| {
        CASTS
            .iter()
            .map(|(pat, ty)| (pat.split('.').collect(), *ty))
            .collect()
    });
    let matches_prefix = |segs: &[&str], path: &[String]| {
        segs.len() >= path.len()
            && segs
                .iter()
                .zip(path.iter())
                .all(|(s, p)| *s == "*" || s == p)
    };
    if let Value::String(t) = &node.value {
        let hit = patterns
            .iter()
            .find(|(segs, _)| segs.len() == path.len() && matches_prefix(segs, path));
        if let Some((_, ty)) = hit {
            let t = t.trim().to_string();
            let cast = match ty {
                'i' => t.parse::<i64>().ok().map(Value::Int),
                // A mode read from text the way Go's ParseUint(s, 0, 32) does: `01777` is octal.
                'o' => match t.strip_prefix("0o").or_else(|| t.strip_prefix('0')) {
                    Some(oct) if !oct.is_empty() => i64::from_str_radix(oct, 8).ok(),
                    _ => t.parse::<i64>().ok(),
                }
                .map(Value::Int),
                'f' => t.parse::<f64>().ok().map(Value::Float),
                _ => cast_bool(&t).map(Value::Bool),
            };
            if let Some(v) = cast {
                node.value = v;
            }
        }
        return;
    }
    // Whether a child named `seg` lies on some pattern's way; asked before the child's path is
    // built, so the many unreachable attributes cost no allocation.
    let reachable = |path: &[String], seg: &str| {
        patterns.iter().any(|(segs, _)| {
            segs.get(path.len()).is_some_and(|s| *s == "*" || *s == seg)
                && matches_prefix(segs, path)
        })
    };
    match &mut node.value {
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                if reachable(path, k) {
                    path.push(k.clone());
                    cast_typed(v, path);
                    path.pop();
                }
            }
        }
        Value::Seq(items) if reachable(path, "*") => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                cast_typed(v, path);
                path.pop();
            }
        }
        _ => {}
    }
}

fn resource(kind: &str, key: &str, def: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let mark = def.mark.clone();
    let mut m = match &def.value {
        Value::Null => IndexMap::new(),
        Value::Map(m) => m.clone(),
        _ => return Err(err(def, path, format!("{path} must be a mapping"))),
    };
    schema::check_resource(def, kind, path)?;
    // `name: ${UNSET}` leaves an empty name: treat it as not set.
    if m.get("name").and_then(Node::as_str) == Some("") {
        m.shift_remove("name");
    }
    let external = resource_external(&mut m, path)?;
    if external {
        external_conflicts(&m, kind, def, path)?;
    }
    for lk in ["labels", "driver_opts"] {
        if let Some(l) = m.get(lk).cloned() {
            m.insert(
                lk.into(),
                null_to_empty(string_map(l, &format!("{path}.{lk}"), '=')?),
            );
        }
    }
    if settings.normalize
        && !m.contains_key("name")
        && (kind == "networks" || kind == "volumes" || !external)
    {
        let n = if external {
            key.to_string()
        } else {
            format!("{}_{}", settings.project_name, key)
        };
        m.insert("name".into(), s(n, &mark));
    }
    if !external {
        file_object_source(&m, kind, def, path)?;
    }
    if (kind == "secrets" || kind == "configs") && m.contains_key("file") {
        if let Some(f) = m.get("file").and_then(Node::as_str) {
            let p = resolve_path(&settings.project_dir, f);
            m.insert("file".into(), s(p, &mark));
        }
    }
    Ok(mapn(m, &mark))
}

/// Whether the resource is external, with `external` normalised to a boolean.
fn resource_external(m: &mut IndexMap<String, Node>, path: &str) -> Result<bool> {
    // `external: {name: x}` is the legacy spelling of `external: true` + `name: x`.
    let mut external = false;
    if let Some(e) = m.get("external").cloned() {
        match &e.value {
            Value::Bool(v) => external = *v,
            Value::Map(em) => {
                external = true;
                if let Some(n) = em.get("name") {
                    if m.contains_key("name") {
                        return Err(err(
                            &e,
                            path,
                            format!("{path}: name and external.name conflict; only use name"),
                        ));
                    }
                    m.insert("name".into(), n.clone());
                }
                m.insert("external".into(), b(true, &e.mark));
            }
            Value::String(t) => {
                external = cast_bool(t)
                    .ok_or_else(|| err(&e, &format!("{path}.external"), "must be a boolean"))?;
                m.insert("external".into(), b(external, &e.mark));
            }
            _ => return Err(err(&e, &format!("{path}.external"), "must be a boolean")),
        }
        if !external {
            m.shift_remove("external");
        }
    }
    Ok(external)
}

/// An external volume or network is defined elsewhere: it cannot say how to create it.
fn external_conflicts(
    m: &IndexMap<String, Node>,
    kind: &str,
    def: &Node,
    path: &str,
) -> Result<()> {
    for other in m.keys() {
        if matches!(other.as_str(), "driver" | "driver_opts" | "labels" | "ipam")
            && (kind == "volumes" || kind == "networks")
        {
            return Err(err(
                def,
                path,
                format!("conflicting parameters \"external\" and \"{other}\" specified"),
            ));
        }
    }
    Ok(())
}

/// A secret or config that is not external needs a source (or a driver).
fn file_object_source(
    m: &IndexMap<String, Node>,
    kind: &str,
    def: &Node,
    path: &str,
) -> Result<()> {
    if !m.contains_key("driver")
        && (kind == "secrets" || kind == "configs")
        && !["file", "environment", "content"]
            .iter()
            .any(|k| m.contains_key(*k) && (*k != "content" || kind == "configs"))
    {
        let what = if kind == "secrets" {
            "`file` or `environment`"
        } else {
            "`file`, `environment` or `content`"
        };
        return Err(err(
            def,
            path,
            format!("{path} has no source; set {what}, or `external: true`"),
        ));
    }
    Ok(())
}

/// Resolve a host path against `base` (`~` = home), keeping Windows paths and URLs verbatim.
pub fn resolve_path(base: &Path, p: &str) -> String {
    if let (Some(rest), Some(home)) = (p.strip_prefix('~'), dirs::home_dir()) {
        return format!("{}{rest}", home.display());
    }
    if is_windows_path(p) || p.contains("://") {
        return p.to_string();
    }
    clean_path(&base.join(p)).display().to_string()
}

fn is_windows_path(p: &str) -> bool {
    let b = p.as_bytes();
    (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') || p.starts_with("\\\\")
}

/// `KEY=VALUE` list or mapping → mapping of strings (null kept for "no value").
fn string_map(node: Node, path: &str, sep: char) -> Result<Node> {
    let mark = node.mark.clone();
    let m = super::merge::to_mapping(node, sep);
    let Value::Map(entries) = m.value else {
        return Err(err(
            &m,
            path,
            format!("{path} must be a mapping or a list of KEY{sep}VALUE strings"),
        ));
    };
    let mut out = IndexMap::new();
    for (k, v) in entries {
        let nv = match &v.value {
            Value::Null => Node::new(Value::Null, v.mark.clone()),
            Value::Seq(_) | Value::Map(_) => {
                return Err(err(
                    &v,
                    &format!("{path}.{k}"),
                    format!("{path}.{k} must be a boolean, null, number or string"),
                ))
            }
            _ => s(v.scalar_text().unwrap_or_default(), &v.mark),
        };
        out.insert(k, nv);
    }
    Ok(mapn(out, &mark))
}

/// Labels and the like have no "unset" state: a key without a value is the empty string.
fn null_to_empty(mut node: Node) -> Node {
    if let Some(m) = node.as_map_mut() {
        for v in m.values_mut() {
            if v.is_null() {
                v.value = Value::String(String::new());
            }
        }
    }
    node
}

fn as_string(node: &Node, path: &str) -> Result<String> {
    match &node.value {
        Value::String(t) => Ok(t.clone()),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            Ok(node.scalar_text().unwrap_or_default())
        }
        _ => Err(err(node, path, format!("{path} must be a string"))),
    }
}

fn as_string_strict(node: &Node, path: &str) -> Result<String> {
    match &node.value {
        Value::String(t) => Ok(t.clone()),
        _ => Err(err(node, path, format!("{path} must be a string"))),
    }
}

fn as_int(node: &Node, path: &str) -> Result<i64> {
    match &node.value {
        Value::Int(i) => Ok(*i),
        Value::String(t) => t
            .trim()
            .parse()
            .map_err(|_| err(node, path, format!("{path} must be an integer, got {t:?}"))),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        _ => Err(err(node, path, format!("{path} must be an integer"))),
    }
}

fn as_bool(node: &Node, path: &str) -> Result<bool> {
    match &node.value {
        Value::Bool(v) => Ok(*v),
        Value::String(t) => cast_bool(t)
            .ok_or_else(|| err(node, path, format!("{path} must be a boolean, got {t:?}"))),
        _ => Err(err(node, path, format!("{path} must be a boolean"))),
    }
}

fn string_list(node: &Node, path: &str) -> Result<Vec<Node>> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| Ok(s(as_string(it, &format!("{path}[{i}]"))?, &it.mark)))
            .collect(),
        Value::String(_) | Value::Int(_) => Ok(vec![s(as_string(node, path)?, &node.mark)]),
        _ => Err(err(
            node,
            path,
            format!("{path} must be a string or a list of strings"),
        )),
    }
}

fn command(node: &Node, path: &str) -> Result<Node> {
    match &node.value {
        Value::Null => Ok(node.clone()),
        Value::String(t) => {
            let words =
                shell_split(t).map_err(|e| err(node, path, format!("cannot split {t:?}: {e}")))?;
            Ok(Node::new(
                Value::Seq(words.into_iter().map(|w| s(w, &node.mark)).collect()),
                node.mark.clone(),
            ))
        }
        Value::Seq(_) => Ok(Node::new(
            Value::Seq(string_list(node, path)?),
            node.mark.clone(),
        )),
        _ => Err(err(
            node,
            path,
            format!("{path} must be a string or a list of strings"),
        )),
    }
}

fn duration(node: &Node, path: &str) -> Result<Node> {
    let t = match &node.value {
        Value::Int(i) => i.to_string(),
        Value::String(t) => t.clone(),
        Value::Float(f) => format!("{f}s"),
        _ => {
            return Err(err(
                node,
                path,
                format!("{path} must be a duration string like 10s"),
            ))
        }
    };
    // Go's time.ParseDuration (which compose-go uses) wants a unit on every number but a bare 0.
    let bare = t.trim();
    if !bare.is_empty() && bare != "0" && bare.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return Err(err(
            node,
            path,
            format!(
                "{path}: invalid duration {t:?}: missing unit in duration; use a value like {}s",
                t.trim()
            ),
        ));
    }
    let d = parse_duration(&t).ok_or_else(|| {
        err(
            node,
            path,
            format!("invalid duration {t:?}; use a value like 10s, 1m30s or 500ms"),
        )
    })?;
    Ok(s(format_duration(d), &node.mark))
}

fn bytes(node: &Node, path: &str) -> Result<Node> {
    match &node.value {
        Value::Int(_) => Ok(node.clone()),
        Value::String(t) => parse_bytes(t)
            .map(|v| Node::new(Value::Int(v), node.mark.clone()))
            .ok_or_else(|| {
                err(
                    node,
                    path,
                    format!("invalid size {t:?}; use a value like 512m or 1gb"),
                )
            }),
        _ => Err(err(node, path, format!("{path} must be a size like 512m"))),
    }
}

fn service(name: &str, node: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let mark = node.mark.clone();
    let empty = IndexMap::new();
    let src = match &node.value {
        Value::Map(m) => m,
        Value::Null => &empty,
        _ => return Err(err(node, path, format!("{path} must be a mapping"))),
    };
    schema::check_keys(node, path, schema::SERVICE_KEYS)?;
    let mut out: IndexMap<String, Node> = IndexMap::with_capacity(src.len());
    for (key, v) in src {
        if v.is_null() && !matches!(key.as_str(), "environment" | "command" | "entrypoint") {
            continue;
        }
        let p = format!("{path}.{key}");
        if let Some(ty) = schema::service_field(key) {
            schema::check_type(v, ty, &p)?;
        }
        out.insert(key.clone(), attribute(key, v, &p, settings)?);
    }
    merge_label_files(&mut out, path, &settings.env, &mark)?;
    merge_env_files(&mut out, path, &settings.env, &mark)?;
    if settings.normalize {
        add_implicit_dependencies(&mut out, name, &mark);
        if !out.contains_key("networks") && !out.contains_key("network_mode") {
            let mut n = IndexMap::new();
            n.insert("default".into(), Node::new(Value::Null, mark.clone()));
            out.insert("networks".into(), mapn(n, &mark));
        }
        if out.get("pull_policy").and_then(Node::as_str) == Some("if_not_present") {
            out.insert("pull_policy".into(), s("missing", &mark));
        }
    }
    Ok(mapn(out, &mark))
}

/// How a service attribute is normalised: one transform per kind of attribute.
#[derive(Clone, Copy)]
enum Attribute {
    Text,
    Command,
    Environment,
    StringMap,
    LabelFiles,
    Ports,
    StringList,
    Volumes,
    DependsOn,
    Networks,
    Duration,
    Bool,
    Int,
    Cpus,
    Bytes,
    Healthcheck,
    Build,
    EnvFile,
    ExtraHosts,
    FileRefs,
    Ulimits,
    Deploy,
    Develop,
    BlkioConfig,
    Verbatim,
}

fn attribute_kind(key: &str) -> Attribute {
    use Attribute::*;
    match key {
        "image" | "container_name" | "hostname" | "domainname" | "user" | "working_dir"
        | "stop_signal" | "platform" | "pull_policy" | "network_mode" | "ipc" | "pid" | "uts"
        | "cgroup" | "cgroup_parent" | "userns_mode" | "isolation" | "runtime" | "mac_address"
        | "cpuset" | "restart" | "shm_size_str" => Text,
        "command" | "entrypoint" => Command,
        "environment" => Environment,
        "labels" | "annotations" | "sysctls" => StringMap,
        "label_file" => LabelFiles,
        "ports" => Ports,
        "expose"
        | "profiles"
        | "cap_add"
        | "cap_drop"
        | "dns"
        | "dns_search"
        | "dns_opt"
        | "security_opt"
        | "links"
        | "external_links"
        | "volumes_from"
        | "group_add"
        | "device_cgroup_rules"
        | "tmpfs" => StringList,
        "volumes" => Volumes,
        "depends_on" => DependsOn,
        "networks" => Networks,
        "stop_grace_period" => Duration,
        "init" | "privileged" | "read_only" | "tty" | "stdin_open" | "oom_kill_disable" => Bool,
        "scale" | "pids_limit" | "oom_score_adj" | "cpu_shares" | "cpu_period" | "cpu_quota"
        | "cpu_rt_runtime" | "cpu_rt_period" | "cpu_count" | "cpu_percent" | "mem_swappiness" => {
            Int
        }
        "cpus" => Cpus,
        "mem_limit" | "mem_reservation" | "memswap_limit" | "shm_size" => Bytes,
        "healthcheck" => Healthcheck,
        "build" => Build,
        "env_file" => EnvFile,
        "extra_hosts" => ExtraHosts,
        "secrets" | "configs" => FileRefs,
        "ulimits" => Ulimits,
        "deploy" => Deploy,
        "develop" => Develop,
        "blkio_config" => BlkioConfig,
        _ => Verbatim,
    }
}

/// One service attribute in its long syntax.
fn attribute(key: &str, v: &Node, p: &str, settings: &Settings) -> Result<Node> {
    Ok(match attribute_kind(key) {
        Attribute::Text => s(as_string_strict(v, p)?, &v.mark),
        Attribute::Command => command(v, p)?,
        Attribute::Environment => string_map(v.clone(), p, '=')?,
        Attribute::StringMap => null_to_empty(string_map(v.clone(), p, '=')?),
        Attribute::LabelFiles => label_files(v, p, settings)?,
        Attribute::Ports => ports(v, p, settings)?,
        Attribute::StringList => Node::new(Value::Seq(string_list(v, p)?), v.mark.clone()),
        Attribute::Volumes => volumes(v, p, settings)?,
        Attribute::DependsOn => depends_on(v, p)?,
        Attribute::Networks => service_networks(v, p)?,
        Attribute::Duration => duration(v, p)?,
        Attribute::Bool => b(as_bool(v, p)?, &v.mark),
        Attribute::Int => integer(key, v, p)?,
        Attribute::Cpus => cpus(v, p)?,
        Attribute::Bytes => bytes(v, p)?,
        Attribute::Healthcheck => healthcheck(v, p)?,
        Attribute::Build => build(v, p, settings)?,
        Attribute::EnvFile => env_files(v, p, settings)?,
        Attribute::ExtraHosts => extra_hosts(v, p)?,
        Attribute::FileRefs => file_refs(v, p)?,
        Attribute::Ulimits => ulimits(v, p)?,
        Attribute::Deploy => deploy(v, p)?,
        Attribute::Develop => develop(v, p)?,
        Attribute::BlkioConfig => blkio_config(v, p)?,
        Attribute::Verbatim => v.clone(),
    })
}

/// `label_file` paths, resolved against the project directory.
fn label_files(v: &Node, p: &str, settings: &Settings) -> Result<Node> {
    let files = string_list(v, p)?
        .into_iter()
        .map(|n| {
            let t = resolve_path(&settings.project_dir, n.as_str().unwrap_or_default());
            s(t, &n.mark)
        })
        .collect();
    Ok(Node::new(Value::Seq(files), v.mark.clone()))
}

fn integer(key: &str, v: &Node, p: &str) -> Result<Node> {
    let i = as_int(v, p)?;
    if key == "scale" && i < 0 {
        return Err(err(
            v,
            p,
            format!("{p}: must be greater than or equal to 0"),
        ));
    }
    Ok(Node::new(Value::Int(i), v.mark.clone()))
}

fn cpus(v: &Node, p: &str) -> Result<Node> {
    Ok(match &v.value {
        Value::String(t) => Node::new(
            Value::Float(
                t.parse()
                    .map_err(|_| err(v, p, format!("{p} must be a number")))?,
            ),
            v.mark.clone(),
        ),
        Value::Int(i) => Node::new(Value::Float(*i as f64), v.mark.clone()),
        _ => v.clone(),
    })
}

/// `develop.watch` entries need an action.
fn develop(v: &Node, p: &str) -> Result<Node> {
    if let Some(items) = v.get("watch").and_then(Node::as_seq) {
        for (i, w) in items.iter().enumerate() {
            if w.get("action").is_none() {
                return Err(err(
                    w,
                    &format!("{p}.watch[{i}]"),
                    format!("{p}.watch[{i}] missing property 'action'"),
                ));
            }
        }
    }
    Ok(v.clone())
}

/// label_file values go below `labels` (the service's own labels win).
fn merge_label_files(
    out: &mut IndexMap<String, Node>,
    path: &str,
    env: &IndexMap<String, String>,
    mark: &Mark,
) -> Result<()> {
    let Some(files) = out.get("label_file").and_then(Node::as_seq) else {
        return Ok(());
    };
    let mut labels: IndexMap<String, Node> = IndexMap::new();
    for f in files {
        let pb = PathBuf::from(f.as_str().unwrap_or_default());
        if !pb.is_file() {
            let p = format!("{path}.label_file");
            let msg = format!(
                "label file {} not found; create it or remove it from label_file",
                pb.display()
            );
            return Err(err(f, &p, msg));
        }
        for (k, v) in read_env_file(&pb, env)? {
            labels.insert(k, s(v.unwrap_or_default(), &f.mark));
        }
    }
    if let Some(l) = out.get("labels").and_then(Node::as_map) {
        for (k, v) in l {
            labels.insert(k.clone(), v.clone());
        }
    }
    out.insert("labels".into(), mapn(labels, mark));
    Ok(())
}

/// env_file values go below `environment`; unresolved `KEY` entries come from the project env.
fn merge_env_files(
    out: &mut IndexMap<String, Node>,
    path: &str,
    env: &IndexMap<String, String>,
    mark: &Mark,
) -> Result<()> {
    let mut environment: IndexMap<String, Node> = IndexMap::new();
    if let Some(files) = out.get("env_file").and_then(Node::as_seq) {
        let lookup = env_file_lookup(out, env);
        for f in files {
            read_service_env_file(f, path, &lookup, &mut environment)?;
        }
    }
    if let Some(e) = out.get("environment").and_then(Node::as_map) {
        for (k, v) in e {
            environment.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in environment.iter_mut() {
        if v.is_null() {
            if let Some(val) = env.get(k) {
                *v = s(val, &v.mark);
            }
        }
    }
    if !environment.is_empty() {
        out.insert("environment".into(), mapn(environment, mark));
    } else {
        out.shift_remove("environment");
    }
    Ok(())
}

/// `${VAR}` inside an env file: the project environment (shell, then `.env`) first, then the
/// service's own `environment` values (compose-go `WithServicesEnvironmentResolved`).
fn env_file_lookup(
    out: &IndexMap<String, Node>,
    env: &IndexMap<String, String>,
) -> IndexMap<String, String> {
    let mut lookup = env.clone();
    if let Some(e) = out.get("environment").and_then(Node::as_map) {
        for (k, v) in e {
            if let Some(t) = v.scalar_text().filter(|_| !v.is_null()) {
                lookup.entry(k.clone()).or_insert(t);
            }
        }
    }
    lookup
}

/// One normalised `env_file` entry's variables into `environment`.
fn read_service_env_file(
    f: &Node,
    path: &str,
    lookup: &IndexMap<String, String>,
    environment: &mut IndexMap<String, Node>,
) -> Result<()> {
    let Some(fp) = f.get("path").and_then(Node::as_str) else {
        return Ok(());
    };
    let required = f
        .get("required")
        .map(|r| matches!(r.value, Value::Bool(true)))
        .unwrap_or(true);
    let raw = f.get("format").and_then(Node::as_str) == Some("raw");
    let pb = PathBuf::from(fp);
    if !pb.is_file() {
        if required {
            return Err(err(
                f,
                &format!("{path}.env_file"),
                format!(
                    "env file {} not found; create it or mark it `required: false`",
                    pb.display()
                ),
            ));
        }
        return Ok(());
    }
    let vars = if raw {
        let text = read_text(&pb)?;
        text.lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            })
            .collect()
    } else {
        read_env_file(&pb, lookup)?
    };
    for (k, v) in vars {
        let node = match v {
            Some(v) => s(v, &f.mark),
            None => Node::new(Value::Null, f.mark.clone()),
        };
        environment.insert(k, node);
    }
    Ok(())
}

/// Implicit dependencies (links, network_mode/ipc/pid/… `service:X`, volumes_from) join
/// `depends_on` unless declared there.
fn add_implicit_dependencies(out: &mut IndexMap<String, Node>, name: &str, mark: &Mark) {
    let mut implicit: Vec<(String, bool)> = Vec::new();
    let first_part = |t: &str| t.split(':').next().unwrap_or(t).to_string();
    for l in out
        .get("links")
        .and_then(Node::as_seq)
        .into_iter()
        .flatten()
    {
        if let Some(t) = l.as_str() {
            implicit.push((first_part(t), true));
        }
    }
    for k in ["network_mode", "ipc", "pid", "uts", "cgroup"] {
        if let Some(t) = out.get(k).and_then(Node::as_str) {
            if let Some(svc) = t.strip_prefix("service:") {
                implicit.push((svc.to_string(), true));
            }
        }
    }
    for v in out
        .get("volumes_from")
        .and_then(Node::as_seq)
        .into_iter()
        .flatten()
    {
        if let Some(t) = v.as_str().filter(|t| !t.starts_with("container:")) {
            implicit.push((first_part(t), false));
        }
    }
    if implicit.is_empty() {
        return;
    }
    let deps = out
        .entry("depends_on".to_string())
        .or_insert_with(|| mapn(IndexMap::new(), mark));
    let Some(dm) = deps.as_map_mut() else { return };
    for (svc, restart) in implicit.into_iter().filter(|(svc, _)| svc != name) {
        dm.entry(svc).or_insert_with(|| {
            let mut d = IndexMap::new();
            d.insert("condition".into(), s("service_started", mark));
            d.insert("required".into(), b(true, mark));
            d.insert("restart".into(), b(restart, mark));
            mapn(d, mark)
        });
    }
}

fn env_files(v: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let items: Vec<Node> = match &v.value {
        Value::String(_) => vec![v.clone()],
        Value::Seq(s) => s.clone(),
        _ => return Err(err(v, path, format!("{path} must be a string or a list"))),
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mut m = IndexMap::new();
        match &it.value {
            Value::String(t) => {
                m.insert(
                    "path".into(),
                    s(resolve_path(&settings.project_dir, t), &it.mark),
                );
                m.insert("required".into(), b(true, &it.mark));
            }
            Value::Map(src) => {
                let fp = src
                    .get("path")
                    .ok_or_else(|| err(it, &p, format!("{p} missing property 'path'")))?;
                m.insert(
                    "path".into(),
                    s(
                        resolve_path(&settings.project_dir, &as_string(fp, &p)?),
                        &fp.mark,
                    ),
                );
                let req = match src.get("required") {
                    Some(r) => as_bool(r, &format!("{p}.required"))?,
                    None => true,
                };
                m.insert("required".into(), b(req, &it.mark));
                if let Some(f) = src.get("format") {
                    m.insert("format".into(), s(as_string(f, &p)?, &f.mark));
                }
            }
            _ => return Err(err(it, &p, format!("{p} must be a string or a mapping"))),
        }
        out.push(mapn(m, &it.mark));
    }
    Ok(Node::new(Value::Seq(out), v.mark.clone()))
}

fn healthcheck(v: &Node, path: &str) -> Result<Node> {
    let Some(src) = v.as_map() else {
        return Err(err(v, path, format!("{path} must be a mapping")));
    };
    let mut out = IndexMap::new();
    for (k, x) in src {
        let p = format!("{path}.{k}");
        let nv = match k.as_str() {
            "test" => match &x.value {
                Value::String(t) => Node::new(
                    Value::Seq(vec![s("CMD-SHELL", &x.mark), s(t, &x.mark)]),
                    x.mark.clone(),
                ),
                _ => {
                    let items = string_list(x, &p)?;
                    let first = items.first().and_then(Node::as_str).unwrap_or_default();
                    if !matches!(first, "CMD" | "CMD-SHELL" | "NONE") {
                        return Err(err(x, &p, format!("{p} must start with CMD, CMD-SHELL or NONE, got {first:?}; or give the command as a string")));
                    }
                    Node::new(Value::Seq(items), x.mark.clone())
                }
            },
            "interval" | "timeout" | "start_period" | "start_interval" => duration(x, &p)?,
            "retries" => Node::new(Value::Int(as_int(x, &p)?), x.mark.clone()),
            "disable" => b(as_bool(x, &p)?, &x.mark),
            _ if k.starts_with("x-") => x.clone(),
            _ => {
                return Err(err(
                    x,
                    &p,
                    format!("{path} additional properties '{k}' not allowed"),
                ))
            }
        };
        out.insert(k.clone(), nv);
    }
    Ok(mapn(out, &v.mark))
}

fn is_remote_context(c: &str) -> bool {
    c.contains("://") || c.starts_with("git@") || c.starts_with("github.com/")
}

fn build(v: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let src = match &v.value {
        Value::String(t) => {
            let mut m = IndexMap::new();
            m.insert("context".to_string(), s(t, &v.mark));
            m
        }
        Value::Map(m) => m.clone(),
        _ => {
            return Err(err(
                v,
                path,
                format!("{path} must be a string or a mapping"),
            ))
        }
    };
    let mut out = IndexMap::new();
    for (k, x) in &src {
        let p = format!("{path}.{k}");
        let nv = match k.as_str() {
            "context" => {
                let c = as_string(x, &p)?;
                if is_remote_context(&c) {
                    s(c, &x.mark)
                } else {
                    s(resolve_path(&settings.project_dir, &c), &x.mark)
                }
            }
            "args" | "labels" | "additional_contexts" => {
                let m = string_map(x.clone(), &p, '=')?;
                let mut resolved = IndexMap::new();
                for (ak, av) in m.as_map().cloned().unwrap_or_default() {
                    if av.is_null() && k == "args" && settings.normalize {
                        if let Some(val) = settings.env.get(&ak) {
                            resolved.insert(ak, s(val, &av.mark));
                        }
                        continue;
                    }
                    resolved.insert(ak, av);
                }
                mapn(resolved, &x.mark)
            }
            "ssh" => match &x.value {
                Value::Map(_) => string_map(x.clone(), &p, '=')?,
                Value::Seq(_) => string_map(x.clone(), &p, '=')?,
                _ => return Err(err(x, &p, format!("{p} must be a mapping"))),
            },
            "cache_from" | "cache_to" | "tags" | "platforms" => {
                Node::new(Value::Seq(string_list(x, &p)?), x.mark.clone())
            }
            "shm_size" => bytes(x, &p)?,
            "no_cache" | "pull" | "privileged" => b(as_bool(x, &p)?, &x.mark),
            "extra_hosts" => extra_hosts(x, &p)?,
            _ => x.clone(),
        };
        out.insert(k.clone(), nv);
    }
    if !out.contains_key("context") {
        out.insert(
            "context".into(),
            s(resolve_path(&settings.project_dir, "."), &v.mark),
        );
    }
    if !out.contains_key("dockerfile") && !out.contains_key("dockerfile_inline") {
        out.insert("dockerfile".into(), s("Dockerfile", &v.mark));
    }
    Ok(mapn(out, &v.mark))
}

/// `extra_hosts` as compose-go reads it (`types.HostsList`): `HOST=IP` or `HOST:IP` (the first
/// `=` wins), several addresses by commas or repeated entries, `[::1]` unbracketed; a host name
/// that is empty or holds a separator is refused (`bad host name`).
fn extra_hosts(v: &Node, path: &str) -> Result<Node> {
    let mut hosts: IndexMap<String, (Vec<String>, Mark)> = IndexMap::new();
    let mut add = |host: &str, ips: Vec<String>, node: &Node, p: &str| -> Result<()> {
        if host.is_empty() || host.contains([':', '=']) {
            return Err(err(node, p, format!("{p}: bad host name '{host}'")));
        }
        let ips = ips.into_iter().map(|ip| unbracket(&ip).to_string());
        let entry = hosts
            .entry(host.to_string())
            .or_insert_with(|| (Vec::new(), node.mark.clone()));
        entry.0.extend(ips);
        Ok(())
    };
    match &v.value {
        Value::Map(m) => {
            for (k, x) in m {
                let ips = match &x.value {
                    Value::Seq(_) => string_list(x, path)?
                        .iter()
                        .map(|n| n.scalar_text().unwrap_or_default())
                        .collect(),
                    Value::Null => vec![String::new()],
                    _ => vec![as_string(x, path)?],
                };
                add(k, ips, x, &format!("{path}.{k}"))?;
            }
        }
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let t = as_string(it, &p)?;
                let Some((h, ip)) = t.split_once('=').or_else(|| t.split_once(':')) else {
                    return Err(err(
                        it,
                        &p,
                        format!("{p}: invalid additional host, missing IP: {t}; use HOST=IP"),
                    ));
                };
                add(h, ip.split(',').map(String::from).collect(), it, &p)?;
            }
        }
        _ => return Err(err(v, path, format!("{path} must be a mapping or a list"))),
    }
    let mut out = IndexMap::new();
    for (h, (mut ips, mark)) in hosts {
        let val = if ips.len() == 1 {
            s(ips.remove(0), &mark)
        } else {
            Node::new(
                Value::Seq(ips.into_iter().map(|ip| s(ip, &mark)).collect()),
                mark.clone(),
            )
        };
        out.insert(h, val);
    }
    Ok(mapn(out, &v.mark))
}

fn unbracket(ip: &str) -> &str {
    if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
        &ip[1..ip.len() - 1]
    } else {
        ip
    }
}

fn file_refs(v: &Node, path: &str) -> Result<Node> {
    let Some(items) = v.as_seq() else {
        return Err(err(v, path, format!("{path} must be a list")));
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match &it.value {
            Value::String(t) => {
                let mut m = IndexMap::new();
                m.insert("source".into(), s(t, &it.mark));
                if path.ends_with(".secrets") {
                    m.insert("target".into(), s(format!("/run/secrets/{t}"), &it.mark));
                }
                out.push(mapn(m, &it.mark));
            }
            Value::Map(m) => {
                let Some(src) = m.get("source").and_then(Node::scalar_text) else {
                    return Err(err(it, &p, format!("{p} missing property 'source'")));
                };
                let mut m = m.clone();
                // A secret without a target lands in /run/secrets/<source>; a target is kept as
                // written (compose-go `ServiceSecretConfig`): the plan puts a relative one under
                // /run/secrets at run time.
                if path.ends_with(".secrets") && !m.contains_key("target") {
                    m.insert("target".into(), s(format!("/run/secrets/{src}"), &it.mark));
                }
                if let Some(mode) = m.get("mode").cloned() {
                    m.insert("mode".into(), file_mode(&mode, &format!("{p}.mode"))?);
                }
                out.push(mapn(m, &it.mark));
            }
            _ => return Err(err(it, &p, format!("{p} must be a string or a mapping"))),
        }
    }
    Ok(Node::new(Value::Seq(out), v.mark.clone()))
}

fn ulimits(v: &Node, path: &str) -> Result<Node> {
    let Some(m) = v.as_map() else {
        return Err(err(v, path, format!("{path} must be a mapping")));
    };
    let mut out = IndexMap::new();
    for (k, x) in m {
        let p = format!("{path}.{k}");
        let nv = match &x.value {
            Value::Map(lim) => {
                let mut l = IndexMap::new();
                for (lk, lv) in lim {
                    l.insert(
                        lk.clone(),
                        Node::new(
                            Value::Int(as_int(lv, &format!("{p}.{lk}"))?),
                            lv.mark.clone(),
                        ),
                    );
                }
                mapn(l, &x.mark)
            }
            _ => {
                // A single number sets soft and hard alike; docker compose prints the number.
                Node::new(Value::Int(as_int(x, &p)?), x.mark.clone())
            }
        };
        out.insert(k.clone(), nv);
    }
    Ok(mapn(out, &v.mark))
}

fn deploy(v: &Node, path: &str) -> Result<Node> {
    let Some(m) = v.as_map() else {
        return Err(err(v, path, format!("{path} must be a mapping")));
    };
    if let Some(r) = m.get("replicas") {
        let n = as_int(r, &format!("{path}.replicas"))?;
        if n < 0 {
            return Err(err(
                r,
                &format!("{path}.replicas"),
                format!("{path}.replicas: must be greater than or equal to 0"),
            ));
        }
    }
    schema::check_deploy(v, path)?;
    canonical_deploy(v, path)
}

fn depends_on(v: &Node, path: &str) -> Result<Node> {
    let mut out = IndexMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                let svc = as_string_strict(it, &format!("{path}[{i}]"))?;
                let mut d = IndexMap::new();
                d.insert("condition".into(), s("service_started", &it.mark));
                d.insert("required".into(), b(true, &it.mark));
                out.insert(svc, mapn(d, &it.mark));
            }
        }
        Value::Map(m) => {
            for (svc, x) in m {
                let p = format!("{path}.{svc}");
                let mut d = IndexMap::new();
                let src = x.as_map().cloned().unwrap_or_default();
                for k in src.keys() {
                    if !matches!(k.as_str(), "condition" | "required" | "restart")
                        && !k.starts_with("x-")
                    {
                        return Err(err(
                            x,
                            &p,
                            format!("{p} additional properties '{k}' not allowed"),
                        ));
                    }
                }
                let cond = match src.get("condition") {
                    Some(c) => {
                        let t = as_string(c, &format!("{p}.condition"))?;
                        if !matches!(
                            t.as_str(),
                            "service_started"
                                | "service_healthy"
                                | "service_completed_successfully"
                        ) {
                            return Err(err(c, &format!("{p}.condition"), format!("{p}.condition must be one of service_started, service_healthy, service_completed_successfully, got {t:?}")));
                        }
                        t
                    }
                    None => "service_started".into(),
                };
                d.insert("condition".into(), s(cond, &x.mark));
                let req = match src.get("required") {
                    Some(r) => as_bool(r, &format!("{p}.required"))?,
                    None => true,
                };
                d.insert("required".into(), b(req, &x.mark));
                if let Some(r) = src.get("restart") {
                    d.insert(
                        "restart".into(),
                        b(as_bool(r, &format!("{p}.restart"))?, &r.mark),
                    );
                }
                out.insert(svc.clone(), mapn(d, &x.mark));
            }
        }
        _ => return Err(err(v, path, format!("{path} must be a list or a mapping"))),
    }
    Ok(mapn(out, &v.mark))
}

fn service_networks(v: &Node, path: &str) -> Result<Node> {
    let mut out = IndexMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                out.insert(
                    as_string_strict(it, &format!("{path}[{i}]"))?,
                    Node::new(Value::Null, it.mark.clone()),
                );
            }
        }
        Value::Map(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                let nv = match &x.value {
                    Value::Null => x.clone(),
                    Value::Map(nm) => {
                        let mut o = IndexMap::new();
                        for (nk, nx) in nm {
                            let np = format!("{p}.{nk}");
                            let val = match nk.as_str() {
                                "aliases" | "link_local_ips" => {
                                    Node::new(Value::Seq(string_list(nx, &np)?), nx.mark.clone())
                                }
                                "ipv4_address" | "ipv6_address" | "interface_name"
                                | "mac_address" => s(as_string(nx, &np)?, &nx.mark),
                                "priority" | "gw_priority" => {
                                    Node::new(Value::Int(as_int(nx, &np)?), nx.mark.clone())
                                }
                                "driver_opts" => string_map(nx.clone(), &np, '=')?,
                                _ if nk.starts_with("x-") => nx.clone(),
                                _ => {
                                    return Err(err(
                                        nx,
                                        &np,
                                        format!("{p} additional properties '{nk}' not allowed"),
                                    ))
                                }
                            };
                            o.insert(nk.clone(), val);
                        }
                        mapn(o, &x.mark)
                    }
                    _ => return Err(err(x, &p, format!("{p} must be a mapping or null"))),
                };
                out.insert(k.clone(), nv);
            }
        }
        _ => return Err(err(v, path, format!("{path} must be a list or a mapping"))),
    }
    Ok(mapn(out, &v.mark))
}

/// One expanded short-syntax port: (host_ip, published, target, protocol).
pub type PortSpec = (Option<String>, Option<String>, u16, String);

/// Characters that separate short-syntax fields, hidden while they sit inside `${…}` so that
/// `${PORT:-8080}:80` splits into two fields, not four.
const HIDDEN_SEPARATORS: [(char, char); 3] =
    [(':', '\u{E000}'), ('/', '\u{E001}'), ('-', '\u{E002}')];

/// `spec` with the separators inside every `${…}` replaced by private-use characters.
fn hide_separators_in_variables(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len());
    let mut depth = 0usize;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek() == Some(&'{') => {
                depth += 1;
                out.push(c);
                out.push(chars.next().unwrap_or('{'));
                continue;
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth > 0 => {
                if let Some((_, hidden)) = HIDDEN_SEPARATORS.iter().find(|(sep, _)| *sep == c) {
                    out.push(*hidden);
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn reveal_separators(part: &str) -> String {
    part.chars()
        .map(|c| {
            HIDDEN_SEPARATORS
                .iter()
                .find(|(_, hidden)| *hidden == c)
                .map_or(c, |(sep, _)| *sep)
        })
        .collect()
}

/// A port spec that still holds variables (`config --no-interpolate`): the host IP and the
/// published port stay as written; the container port must be a number, since the model
/// (and the engine) needs it as one.
fn parse_uninterpolated_port_spec(spec: &str) -> std::result::Result<Vec<PortSpec>, String> {
    let hidden = hide_separators_in_variables(spec);
    let (rest, protocol) = match hidden.rsplit_once('/') {
        Some((r, p)) => (r.to_string(), reveal_separators(p)),
        None => (hidden.clone(), "tcp".to_string()),
    };
    let mut parts: Vec<String> = rest.split(':').map(reveal_separators).collect();
    let target = parts.pop().unwrap_or_default();
    let target: u16 = target.parse().map_err(|_| {
        format!(
            "Invalid containerPort: {target}; the container port needs a value, so this file \
             can only be printed with interpolation (drop --no-interpolate)"
        )
    })?;
    let published = parts.pop().filter(|p| !p.is_empty());
    let host_ip = Some(parts.join(":")).filter(|h| !h.is_empty());
    Ok(vec![(host_ip, published, target, protocol)])
}

/// `[HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]` → long-form entries (ranges expand).
pub fn parse_port_spec(spec: &str) -> std::result::Result<Vec<PortSpec>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    let (host_ip, rest) = split_host_ip(spec, rest)?;
    let (published, target) = match rest.rsplit_once(':') {
        Some((p, t)) => (Some(p.to_string()).filter(|p| !p.is_empty()), t.to_string()),
        None => (None, rest),
    };
    if target.is_empty() {
        return Err(format!("No port specified: {spec}"));
    }
    let (t0, t1) = port_range(&target).map_err(|_| format!("Invalid containerPort: {target}"))?;
    let host_ip = host_ip.filter(|h| !h.is_empty());
    // docker's nat.ParsePortSpec: the host part must be an address, not a name.
    if let Some(h) = &host_ip {
        if h.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {h}"));
        }
    }
    let out = expand_port_range(&host_ip, published.as_deref(), (t0, t1), &target, &protocol)?;
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol {protocol:?} in {spec:?}; use tcp, udp or sctp"
        ));
    }
    Ok(out)
}

/// Split off an IPv6 host in brackets, else split on the last two colons.
fn split_host_ip(spec: &str, rest: &str) -> std::result::Result<(Option<String>, String), String> {
    Ok(if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid IPv6 address in {spec:?}"))?;
        (
            Some(ip.to_string()),
            after.strip_prefix(':').unwrap_or(after).to_string(),
        )
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest.to_string()),
            3 => (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            ),
            _ => {
                // IPv6 without brackets: everything before the last two colons.
                let n = parts.len();
                (
                    Some(parts[..n - 2].join(":")),
                    format!("{}:{}", parts[n - 2], parts[n - 1]),
                )
            }
        }
    })
}

/// `8000` or `8000-8010`.
fn port_range(t: &str) -> std::result::Result<(u16, u16), String> {
    let (a, b) = t.split_once('-').unwrap_or((t, t));
    let a: u16 = a
        .parse()
        .map_err(|_| format!("Invalid containerPort: {t}"))?;
    let b: u16 = b
        .parse()
        .map_err(|_| format!("Invalid containerPort: {t}"))?;
    if b < a {
        return Err(format!("invalid port range {t}"));
    }
    Ok((a, b))
}

/// One port mapping per container port of the range (a single container port may take a
/// range of host ports).
fn expand_port_range(
    host_ip: &Option<String>,
    published: Option<&str>,
    (t0, t1): (u16, u16),
    target: &str,
    protocol: &str,
) -> std::result::Result<Vec<PortSpec>, String> {
    let mut out = Vec::new();
    match published {
        None => {
            for t in t0..=t1 {
                out.push((host_ip.clone(), None, t, protocol.to_string()));
            }
        }
        Some(p) => {
            let (p0, p1) = port_range(p).map_err(|_| format!("Invalid hostPort: {p}"))?;
            if t0 == t1 {
                let pubs = if p0 == p1 {
                    p0.to_string()
                } else {
                    format!("{p0}-{p1}")
                };
                out.push((host_ip.clone(), Some(pubs), t0, protocol.to_string()));
            } else {
                if p1 - p0 != t1 - t0 {
                    return Err(format!(
                        "Invalid ranges specified for container and host Ports: {target} and {p}"
                    ));
                }
                for (i, t) in (t0..=t1).enumerate() {
                    out.push((
                        host_ip.clone(),
                        Some((p0 + i as u16).to_string()),
                        t,
                        protocol.to_string(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn ports(v: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let Some(items) = v.as_seq() else {
        return Err(err(v, path, format!("{path} must be a list")));
    };
    let mut out: Vec<Node> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match &it.value {
            Value::String(_) | Value::Int(_) => short_ports(it, &p, settings, &mut out)?,
            Value::Map(src) => out.push(long_port(it, src, &p)?),
            _ => {
                return Err(err(
                    it,
                    &p,
                    format!("{p} must be a string, a number or a mapping"),
                ))
            }
        }
    }
    // Unique by (host_ip, target, published, protocol), as docker compose enforces after expanding.
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(format!("{:?}", n.to_json())));
    Ok(Node::new(Value::Seq(out), v.mark.clone()))
}

/// A short-syntax port (`127.0.0.1:8000-8001:80-81/udp`) as one long-syntax entry per port.
fn short_ports(it: &Node, p: &str, settings: &Settings, out: &mut Vec<Node>) -> Result<()> {
    let spec = it.scalar_text().unwrap_or_default();
    let parsed = if !settings.interpolated && spec.contains('$') {
        parse_uninterpolated_port_spec(&spec)
    } else {
        parse_port_spec(&spec)
    }
    .map_err(|e| err(it, p, format!("invalid port {spec:?}: {e}")))?;
    for (host_ip, published, target, protocol) in parsed {
        let mut m = IndexMap::new();
        m.insert("mode".into(), s("ingress", &it.mark));
        if let Some(h) = host_ip {
            m.insert("host_ip".into(), s(h, &it.mark));
        }
        m.insert(
            "target".into(),
            Node::new(Value::Int(target as i64), it.mark.clone()),
        );
        if let Some(pb) = published {
            m.insert("published".into(), s(pb, &it.mark));
        }
        m.insert("protocol".into(), s(protocol, &it.mark));
        out.push(mapn(m, &it.mark));
    }
    Ok(())
}

/// A long-syntax port, checked, with `mode` and `protocol` defaulted.
fn long_port(it: &Node, src: &IndexMap<String, Node>, p: &str) -> Result<Node> {
    let mut m = IndexMap::new();
    for (k, x) in src {
        let kp = format!("{p}.{k}");
        let nv = match k.as_str() {
            "target" => {
                let t = as_int(x, &kp)?;
                if !(0..=65535).contains(&t) {
                    return Err(err(x, &kp, format!("{kp}: port {t} out of range 0-65535")));
                }
                Node::new(Value::Int(t), x.mark.clone())
            }
            "published" => s(as_string(x, &kp)?, &x.mark),
            "host_ip" | "protocol" | "mode" | "app_protocol" | "name" => {
                s(as_string(x, &kp)?, &x.mark)
            }
            _ if k.starts_with("x-") => x.clone(),
            _ => {
                return Err(err(
                    x,
                    &kp,
                    format!("{p} additional properties '{k}' not allowed"),
                ))
            }
        };
        m.insert(k.clone(), nv);
    }
    if !m.contains_key("target") {
        return Err(err(it, p, format!("{p} missing property 'target'")));
    }
    m.entry("mode".into())
        .or_insert_with(|| s("ingress", &it.mark));
    m.entry("protocol".into())
        .or_insert_with(|| s("tcp", &it.mark));
    Ok(mapn(m, &it.mark))
}

fn is_host_path(src: &str) -> bool {
    src.starts_with('/')
        || src.starts_with('.')
        || src.starts_with('~')
        || is_windows_path(src)
        || src.starts_with("\\\\")
        || src.contains('/')
        || src.contains('\\')
}

fn volumes(v: &Node, path: &str, settings: &Settings) -> Result<Node> {
    let Some(items) = v.as_seq() else {
        return Err(err(v, path, format!("{path} must be a list")));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        out.push(match &it.value {
            Value::String(spec) => short_volume(it, spec, &p, settings)?,
            Value::Map(src) => long_volume(it, src, &p, settings)?,
            _ => return Err(err(it, &p, format!("{p} must be a string or a mapping"))),
        });
    }
    Ok(Node::new(Value::Seq(out), v.mark.clone()))
}

/// `SOURCE:TARGET:MODE` split into its (non-empty) parts.
fn short_volume_parts(it: &Node, spec: &str, p: &str, settings: &Settings) -> Result<Vec<String>> {
    if spec.is_empty() {
        return Err(err(it, p, "invalid empty volume spec"));
    }
    let mut parts = if settings.interpolated {
        split_volume_spec(spec)
    } else {
        split_volume_spec(&hide_separators_in_variables(spec))
            .iter()
            .map(|p| reveal_separators(p))
            .collect()
    };
    // `${UNSET}:/path` leaves an empty source: docker compose reads it as an anonymous volume.
    if parts.len() == 2 && parts[0].is_empty() && parts[1].starts_with('/') {
        parts.remove(0);
    }
    if parts.iter().any(String::is_empty) {
        return Err(err(
            it,
            p,
            format!("invalid spec: {spec}: empty section between colons"),
        ));
    }
    if parts.len() > 3 {
        return Err(err(it, p, format!("invalid spec: {spec}: too many colons")));
    }
    Ok(parts)
}

/// A short-syntax volume (`./data:/data:ro`) in its long syntax.
fn short_volume(it: &Node, spec: &str, p: &str, settings: &Settings) -> Result<Node> {
    let mark = &it.mark;
    let parts = short_volume_parts(it, spec, p, settings)?;
    let mut m = IndexMap::new();
    let (source, target, mode) = match parts.len() {
        1 => (None, parts[0].clone(), None),
        2 => (Some(parts[0].clone()), parts[1].clone(), None),
        _ => (
            Some(parts[0].clone()),
            parts[1].clone(),
            Some(parts[2].clone()),
        ),
    };
    let kind = match &source {
        None => "volume",
        // Uninterpolated, `${DATA:-./data}` may become either; print it as written.
        Some(src) if !settings.interpolated && src.contains('$') => "bind",
        Some(src) if src.starts_with("\\\\.\\pipe\\") => "bind",
        Some(src) if is_host_path(src) => "bind",
        Some(_) => "volume",
    };
    m.insert("type".into(), s(kind, mark));
    if let Some(src) = &source {
        let src = if kind == "bind" && (settings.interpolated || !src.contains('$')) {
            resolve_path(&settings.project_dir, src)
        } else {
            src.clone()
        };
        m.insert("source".into(), s(src, mark));
    }
    m.insert("target".into(), s(target, mark));
    let mut bind: IndexMap<String, Node> = IndexMap::new();
    let mut vol: IndexMap<String, Node> = IndexMap::new();
    if let Some(mode) = mode {
        short_volume_mode(it, spec, &mode, p, &mut m, &mut bind, &mut vol)?;
    }
    if kind == "bind" {
        bind.insert("create_host_path".into(), b(true, mark));
        // Keep the keys in docker compose's order.
        let mut ordered = IndexMap::new();
        for k in ["propagation", "create_host_path", "selinux"] {
            if let Some(x) = bind.shift_remove(k) {
                ordered.insert(k.to_string(), x);
            }
        }
        m.insert("bind".into(), mapn(ordered, mark));
    } else {
        m.insert("volume".into(), mapn(vol, mark));
    }
    Ok(mapn(m, mark))
}

/// The mode part of a short volume (`ro,z,nocopy`) as long-syntax options.
fn short_volume_mode(
    it: &Node,
    spec: &str,
    mode: &str,
    p: &str,
    m: &mut IndexMap<String, Node>,
    bind: &mut IndexMap<String, Node>,
    vol: &mut IndexMap<String, Node>,
) -> Result<()> {
    let mark = &it.mark;
    for opt in mode.split(',') {
        match opt {
            "ro" => {
                m.insert("read_only".into(), b(true, mark));
            }
            "rw" => {}
            "z" | "Z" => {
                bind.insert("selinux".into(), s(opt, mark));
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                bind.insert("propagation".into(), s(opt, mark));
            }
            "nocopy" => {
                vol.insert("nocopy".into(), b(true, mark));
            }
            "cached" | "delegated" | "consistent" => {
                m.insert("consistency".into(), s(opt, mark));
            }
            _ => {
                return Err(err(
                    it,
                    p,
                    format!("invalid spec: {spec}: unknown mode {opt:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// A long-syntax volume, checked and with its paths, sizes and flags normalised.
fn long_volume(
    it: &Node,
    src: &IndexMap<String, Node>,
    p: &str,
    settings: &Settings,
) -> Result<Node> {
    let mark = &it.mark;
    let mut m = src.clone();
    let kind = src
        .get("type")
        .map(|t| as_string(t, &format!("{p}.type")))
        .transpose()?
        .unwrap_or_else(|| "volume".into());
    if !matches!(
        kind.as_str(),
        "volume" | "bind" | "tmpfs" | "npipe" | "image" | "cluster"
    ) {
        return Err(err(
            it,
            &format!("{p}.type"),
            format!("{p}.type must be one of volume, bind, tmpfs, npipe, image, cluster"),
        ));
    }
    for k in src.keys() {
        let allowed = matches!(
            k.as_str(),
            "type"
                | "source"
                | "target"
                | "read_only"
                | "consistency"
                | "bind"
                | "volume"
                | "tmpfs"
                | "image"
        ) || k.starts_with("x-");
        if !allowed {
            return Err(err(
                it,
                p,
                format!("{p} additional properties '{k}' not allowed"),
            ));
        }
    }
    if let Some(t) = src.get("target") {
        m.insert(
            "target".into(),
            s(as_string(t, &format!("{p}.target"))?, &t.mark),
        );
    }
    if kind == "bind" {
        let source = src
            .get("source")
            .and_then(Node::scalar_text)
            .unwrap_or_default();
        if source.is_empty() {
            return Err(err(
                it,
                p,
                "invalid mount config for type \"bind\": field Source must not be empty",
            ));
        }
        m.insert(
            "source".into(),
            s(resolve_path(&settings.project_dir, &source), mark),
        );
    }
    if let Some(ro) = src.get("read_only") {
        let v = as_bool(ro, &format!("{p}.read_only"))?;
        if v {
            m.insert("read_only".into(), b(true, mark));
        } else {
            m.shift_remove("read_only");
        }
    }
    long_volume_tmpfs(it, src, p, &mut m)?;
    long_volume_options(&mut m, p)?;
    m.insert("type".into(), s(kind, mark));
    Ok(mapn(m, mark))
}

/// A long-syntax volume's `tmpfs` options: size in bytes, nothing but size and mode.
fn long_volume_tmpfs(
    it: &Node,
    src: &IndexMap<String, Node>,
    p: &str,
    m: &mut IndexMap<String, Node>,
) -> Result<()> {
    let mark = &it.mark;
    if let Some(tm) = src.get("tmpfs").and_then(Node::as_map) {
        let mut t = tm.clone();
        if let Some(size) = tm.get("size") {
            if matches!(size.value, Value::Float(_)) {
                return Err(err(
                    size,
                    &format!("{p}.tmpfs.size"),
                    format!("{p}.tmpfs.size must be an integer"),
                ));
            }
            t.insert("size".into(), bytes(size, &format!("{p}.tmpfs.size"))?);
        }
        for k in tm.keys() {
            if !matches!(k.as_str(), "size" | "mode") && !k.starts_with("x-") {
                return Err(err(
                    it,
                    &format!("{p}.tmpfs"),
                    format!("{p}.tmpfs additional properties '{k}' not allowed"),
                ));
            }
        }
        m.insert("tmpfs".into(), mapn(t, mark));
    }
    Ok(())
}

/// Long-syntax `bind` and `volume` options in compose-go's canonical form: a `bind:` mapping
/// gets `create_host_path: true` unless it says otherwise (`transform/defaults.go`
/// `defaultVolumeBind`), `volume.labels` is a mapping.
fn long_volume_options(m: &mut IndexMap<String, Node>, p: &str) -> Result<()> {
    if let Some(bind) = m.get_mut("bind") {
        if let Value::Map(bm) = &mut bind.value {
            if !bm.contains_key("create_host_path") {
                let mark = bind.mark.clone();
                bm.insert("create_host_path".into(), b(true, &mark));
            }
        }
    }
    if let Some(vol) = m.get_mut("volume") {
        if let Some(labels) = vol.get("labels").cloned() {
            let lp = format!("{p}.volume.labels");
            let l = null_to_empty(string_map(labels, &lp, '=')?);
            if let Some(vm) = vol.as_map_mut() {
                vm.insert("labels".into(), l);
            }
        }
    }
    Ok(())
}

/// `deploy` in compose-go's canonical form: labels as a mapping, memory as bytes, delays and
/// windows as Go durations (`DeployConfig`, `Resource.MemoryBytes`, `UpdateConfig`,
/// `RestartPolicy`).
fn canonical_deploy(v: &Node, path: &str) -> Result<Node> {
    let mut out = v.as_map().cloned().unwrap_or_default();
    if let Some(l) = out.get("labels").cloned() {
        let l = null_to_empty(string_map(l, &format!("{path}.labels"), '=')?);
        out.insert("labels".into(), l);
    }
    if let Some(r) = out.get_mut("resources") {
        for k in ["limits", "reservations"] {
            let Some(lim) = r.as_map_mut().and_then(|m| m.get_mut(k)) else {
                continue;
            };
            if let Some(mem) = lim.get("memory").cloned() {
                let mp = format!("{path}.resources.{k}.memory");
                let n = bytes(&mem, &mp)?;
                if let Some(lm) = lim.as_map_mut() {
                    lm.insert("memory".into(), n);
                }
            }
            // compose-go `NanoCPUs` is a number (`cpus: '0.50'` prints as 0.5).
            if let Some(c) = lim.get("cpus").cloned() {
                let cp = format!("{path}.resources.{k}.cpus");
                let f = match &c.value {
                    Value::Int(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    Value::String(t) => t.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| {
                    let shown = c.scalar_text().unwrap_or_default();
                    err(
                        &c,
                        &cp,
                        format!(
                            "{cp}: invalid cpus value {shown:?}; use a number of CPUs like 0.5"
                        ),
                    )
                })?;
                if let Some(lm) = lim.as_map_mut() {
                    lm.insert("cpus".into(), Node::new(Value::Float(f), c.mark.clone()));
                }
            }
        }
    }
    let timed: [(&str, &[&str]); 3] = [
        ("restart_policy", &["delay", "window"]),
        ("update_config", &["delay", "monitor"]),
        ("rollback_config", &["delay", "monitor"]),
    ];
    for (section, fields) in timed {
        let Some(sec) = out.get_mut(section).and_then(Node::as_map_mut) else {
            continue;
        };
        for f in fields {
            if let Some(d) = sec.get(*f).cloned() {
                let d = duration(&d, &format!("{path}.{section}.{f}"))?;
                sec.insert(f.to_string(), d);
            }
        }
    }
    Ok(mapn(out, &v.mark))
}

/// `blkio_config` throttles: every `rate` is a byte count (compose-go `ThrottleDevice.Rate` is
/// `UnitBytes`, for the iops lists too).
fn blkio_config(v: &Node, path: &str) -> Result<Node> {
    let mut out = v.as_map().cloned().unwrap_or_default();
    for list in [
        "device_read_bps",
        "device_write_bps",
        "device_read_iops",
        "device_write_iops",
    ] {
        let Some(items) = out.get_mut(list).and_then(|n| match &mut n.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }) else {
            continue;
        };
        for (i, it) in items.iter_mut().enumerate() {
            if let Some(rate) = it.get("rate").cloned() {
                let n = bytes(&rate, &format!("{path}.{list}[{i}].rate"))?;
                if let Some(m) = it.as_map_mut() {
                    m.insert("rate".into(), n);
                }
            }
        }
    }
    Ok(mapn(out, &v.mark))
}

/// A file mode as compose-go prints `FileMode`: octal with a leading zero (`"0440"`). YAML
/// numbers are the mode's value (`0440` reads as octal, as go-yaml does); strings are octal text.
fn file_mode(node: &Node, path: &str) -> Result<Node> {
    let n = match &node.value {
        Value::Int(i) => *i,
        Value::String(t) => i64::from_str_radix(t.trim(), 8).map_err(|_| {
            err(
                node,
                path,
                format!("{path}: invalid file mode {t:?}; use octal like \"0440\""),
            )
        })?,
        _ => {
            return Err(err(
                node,
                path,
                format!("{path} must be a number or string"),
            ))
        }
    };
    Ok(s(format!("0{n:o}"), &node.mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    // docker/go-connections nat_test.go TestParsePortSpecs (invalid IP address).
    #[test]
    fn port_host_must_be_an_address() {
        assert_eq!(
            parse_port_spec("notanip:80:80").unwrap_err(),
            "invalid IP address: notanip"
        );
        assert!(parse_port_spec("[::1]:80:80").is_ok());
        assert!(parse_port_spec("0.0.0.0:80:80").is_ok());
    }

    #[test]
    fn port_specs() {
        assert_eq!(
            parse_port_spec("80").unwrap(),
            vec![(None, None, 80, "tcp".into())]
        );
        assert_eq!(
            parse_port_spec("127.0.0.1:8080:80/udp").unwrap(),
            vec![(
                Some("127.0.0.1".into()),
                Some("8080".into()),
                80,
                "udp".into()
            )]
        );
        assert_eq!(parse_port_spec("80-81:8080-8081").unwrap().len(), 2);
        assert_eq!(
            parse_port_spec("80-90:8080").unwrap()[0].1.as_deref(),
            Some("80-90")
        );
        assert_eq!(
            parse_port_spec("[::1]:6001:6001").unwrap()[0].0.as_deref(),
            Some("::1")
        );
        assert!(parse_port_spec("80x").is_err());
        assert_eq!(
            parse_port_spec("tcp").unwrap_err(),
            "Invalid containerPort: tcp"
        );
    }

    #[test]
    fn volume_spec_split_keeps_windows_paths() {
        assert_eq!(
            split_volume_spec("C:\\a:D:\\b:ro"),
            vec!["C:\\a", "D:\\b", "ro"]
        );
        assert_eq!(split_volume_spec("./a:/b"), vec!["./a", "/b"]);
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(parse_duration("90s").unwrap()), "1m30s");
        assert_eq!(format_duration(parse_duration("1m").unwrap()), "1m0s");
        assert_eq!(format_duration(parse_duration("1h").unwrap()), "1h0m0s");
        assert_eq!(format_duration(parse_duration("500ms").unwrap()), "500ms");
        assert_eq!(format_duration(parse_duration("1.5s").unwrap()), "1.5s");
        assert_eq!(parse_bytes("1gb"), Some(1 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split("sh -c 'echo hi there'").unwrap(),
            vec!["sh", "-c", "echo hi there"]
        );
        assert_eq!(
            shell_split(r#"a "b \"c\"" d\ e"#).unwrap(),
            vec!["a", "b \"c\"", "d e"]
        );
    }

    fn load_err(files: &[(&str, &str)]) -> String {
        let t = tempfile::tempdir().unwrap();
        for (name, text) in files {
            crate::compose::test_support::write(t.path(), name, text);
        }
        crate::compose::test_support::load_dir(t.path())
            .expect_err("must be rejected")
            .to_string()
    }

    fn assert_has(got: &str, want: &str) {
        assert!(got.contains(want), "want {want:?}\n got {got}");
    }

    // compose-go types/hostList_test.go (bad host name) and TestNewHostsList (missing IP).
    #[test]
    fn extra_hosts_need_a_host_name_and_an_address() {
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    extra_hosts: ['=1.2.3.4']\n",
        )]);
        assert_has(&e, "bad host name ''");
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    extra_hosts: ['somehost']\n",
        )]);
        assert_has(&e, "invalid additional host, missing IP: somehost");
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    extra_hosts: {'a:b': 1.2.3.4}\n",
        )]);
        assert_has(&e, "bad host name 'a:b'");
    }

    #[test]
    fn extra_hosts_collect_addresses_like_compose_go() {
        let t = tempfile::tempdir().unwrap();
        crate::compose::test_support::write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: a\n    extra_hosts: ['h=[::1]', 'h:10.0.0.1', 'g=1.1.1.1,2.2.2.2']\n",
        );
        let p = crate::compose::test_support::load_dir(t.path()).unwrap();
        let hosts = &p.services["web"].extra_hosts;
        assert_eq!(hosts["h"], serde_json::json!(["::1", "10.0.0.1"]));
        assert_eq!(hosts["g"], serde_json::json!(["1.1.1.1", "2.2.2.2"]));
    }

    // Go's time.ParseDuration, which compose-go's Duration uses: a number needs a unit.
    #[test]
    fn durations_need_a_unit() {
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    stop_grace_period: '10'\n",
        )]);
        assert_has(&e, "missing unit in duration");
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    healthcheck: {interval: '30'}\n",
        )]);
        assert_has(
            &e,
            "services.web.healthcheck.interval: invalid duration \"30\": missing unit",
        );
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    deploy: {restart_policy: {delay: '5'}}\n",
        )]);
        assert_has(&e, "services.web.deploy.restart_policy.delay");
    }

    // compose-go types/project_test.go TestEnvFilesLoadOrder-style: an env file's `${VAR}` reads the
    // project environment first, then the service's `environment`.
    #[test]
    fn env_file_interpolation_prefers_project_env_then_service_environment() {
        let t = tempfile::tempdir().unwrap();
        let w = |n: &str, x: &str| crate::compose::test_support::write(t.path(), n, x);
        w(".env", "FROM_DOTENV=dotenv\nBOTH=dotenv\n");
        w("e.env", "A=${FROM_DOTENV}\nB=${ONLY_SERVICE}\nC=${BOTH}\n");
        w(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    env_file: e.env\n    environment: {ONLY_SERVICE: svc, BOTH: svc}\n",
        );
        let p = crate::compose::test_support::load_dir(t.path()).unwrap();
        let env = &p.services["web"].environment;
        assert_eq!(env["A"].as_deref(), Some("dotenv"));
        assert_eq!(env["B"].as_deref(), Some("svc"));
        assert_eq!(env["C"].as_deref(), Some("dotenv"));
        assert_eq!(env["BOTH"].as_deref(), Some("svc"));
    }

    // docker compose e2e TestUpContainerNameConflict; TestBuildPlatformsStandardErrors.
    #[test]
    fn container_names_are_unique_and_platform_is_built() {
        let e = load_err(&[("compose.yaml", "services:\n  a:\n    image: x\n    container_name: same\n  b:\n    image: x\n    container_name: same\n")]);
        assert_has(
            &e,
            "container name \"same\" is already in use by services.a",
        );
        let e = load_err(&[("compose.yaml", "services:\n  web:\n    platform: linux/riscv64\n    build: {context: ., platforms: [linux/amd64, linux/arm64]}\n")]);
        assert_has(
            &e,
            "service.build.platforms MUST include service.platform \"linux/riscv64\"",
        );
    }

    // compose-go dotenv parser_test (unexpected character ... in variable name), loader_test
    // TestLoadWithLabelFile-style (missing file), TestLoadExtendsMissingService-style.
    #[test]
    fn messages_name_what_is_wrong() {
        let e = load_err(&[
            (
                "compose.yaml",
                "services:\n  web:\n    image: a\n    env_file: e.env\n",
            ),
            ("e.env", "OK=1\nBAD$KEY=2\n"),
        ]);
        assert_has(
            &e,
            "line 2: unexpected character '$' in variable name \"BAD$KEY=2\"",
        );
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n    label_file: ./nope.labels\n",
        )]);
        assert_has(&e, "label file");
        assert_has(&e, "nope.labels not found");
        let e = load_err(&[(
            "compose.yaml",
            "services:\n  web:\n    extends: {service: ghost}\n",
        )]);
        assert_has(&e, "service \"ghost\" not found");
    }
}
