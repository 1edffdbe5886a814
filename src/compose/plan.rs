//! From the project model to engine objects: names, labels, config hashes, and the container
//! create requests that `up` sends. Pure functions: no engine calls here, so the mapping is
//! unit-tested without root.

use std::collections::HashMap;
use std::path::Path;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::model::{FileReference, Healthcheck, Project, Service};
use crate::engine::wire::{
    ContainerCreateRequest, DeviceMapping, EmptyObject, EndpointIpamConfig, EndpointSettings,
    HealthConfig, HostConfig, LogConfig, Mount, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, TmpfsOptions, Ulimit, VolumeCreateRequest, VolumeOptions,
};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// berth's own: [`service_field_digests`], so `up` can name what changed.
pub const LABEL_CONFIG_FIELDS: &str = "io.berth.config-fields";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_VERSION: &str = "com.docker.compose.version";

/// Docker's default grace period between the stop signal and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_SECS: i64 = 10;

/// `<project>-<service>-<n>`, or the service's `container_name`.
pub fn container_name(project: &Project, service_name: &str, number: u32) -> String {
    match project
        .services
        .get(service_name)
        .and_then(|s| s.container_name.clone())
    {
        Some(name) => name,
        None => format!("{}-{}-{}", project.name, service_name, number),
    }
}

/// The image a service runs: `image:`, or `<project>-<service>` for a build-only service.
pub fn service_image(project: &Project, service_name: &str, service: &Service) -> String {
    service
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{}", project.name, service_name))
}

/// sha256 of the service's canonical JSON, with the fields that must not force a recreate blanked
/// (as docker compose's `ServiceHash`: depends_on, profiles and the replica count do not change
/// a container).
pub fn service_config_hash(service: &Service) -> String {
    let json = serde_json::to_vec(&hashed_config(service)).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// The service as [`service_config_hash`] sees it.
fn hashed_config(service: &Service) -> Service {
    let mut hashed = service.clone();
    hashed.depends_on.clear();
    hashed.profiles.clear();
    hashed.scale = None;
    if let Some(deploy) = hashed
        .extra
        .get_mut("deploy")
        .and_then(serde_json::Value::as_object_mut)
    {
        deploy.remove("replicas");
        if deploy.is_empty() {
            hashed.extra.shift_remove("deploy");
        }
    }
    hashed
}

/// A short digest of each top-level attribute the config hash covers (`command=1a2b3c4d,…`),
/// kept on the container so that a recreate can say which attributes changed; the config hash
/// alone only says that something did.
pub fn service_field_digests(service: &Service) -> String {
    let value = serde_json::to_value(hashed_config(service)).unwrap_or_default();
    let mut fields: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, v)| {
            let digest = Sha256::digest(serde_json::to_vec(v).unwrap_or_default());
            format!("{key}={}", &hex::encode(digest)[..8])
        })
        .collect();
    fields.sort();
    fields.join(",")
}

/// Parse a compose duration (`10s`, `1m30s`, `500ms`, `1h`) into whole seconds, rounding up.
pub fn parse_duration_secs(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let d = humantime::parse_duration(text).ok()?;
    let secs = d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0);
    Some(secs)
}

/// The service's `healthcheck` as the engine's `Config.Healthcheck`, as docker compose sends it:
/// durations in nanoseconds, unset fields 0 so the engine takes the image's or Docker's defaults
/// (interval 30s, timeout 30s, retries 3); `disable: true` is `["NONE"]`.
pub fn health_config(h: &Healthcheck) -> HealthConfig {
    let nanos = |d: &Option<String>| {
        d.as_deref()
            .and_then(super::normalize::parse_duration)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    if h.disable {
        return HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
    }
    HealthConfig {
        test: (!h.test.is_empty()).then(|| h.test.clone()),
        interval: nanos(&h.interval),
        timeout: nanos(&h.timeout),
        start_period: nanos(&h.start_period),
        start_interval: nanos(&h.start_interval),
        retries: h.retries.unwrap_or(0),
    }
}

/// Labels every project resource carries.
fn project_labels(project: &Project) -> IndexMap<String, String> {
    let mut labels = IndexMap::new();
    labels.insert(LABEL_PROJECT.to_string(), project.name.clone());
    labels.insert(
        LABEL_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    labels
}

/// The engine request that creates the network `key` of the project.
pub fn network_create_request(project: &Project, key: &str) -> Option<NetworkCreateRequest> {
    let network = project.networks.get(key)?;
    if network.external {
        return None;
    }
    let mut labels = project_labels(project);
    labels.insert(LABEL_NETWORK.to_string(), key.to_string());
    labels.extend(network.labels.clone());
    Some(NetworkCreateRequest {
        name: network.name.clone(),
        check_duplicate: true,
        driver: network
            .driver
            .clone()
            .unwrap_or_else(|| "bridge".to_string()),
        internal: network.internal,
        attachable: false,
        labels,
        ..Default::default()
    })
}

/// The engine request that creates the named volume `key` of the project.
pub fn volume_create_request(project: &Project, key: &str) -> Option<VolumeCreateRequest> {
    let volume = project.volumes.get(key)?;
    if volume.external {
        return None;
    }
    let mut labels = project_labels(project);
    labels.insert(LABEL_VOLUME.to_string(), key.to_string());
    labels.extend(volume.labels.clone());
    Some(VolumeCreateRequest {
        name: volume.name.clone(),
        driver: volume.driver.clone().unwrap_or_else(|| "local".to_string()),
        labels,
        ..Default::default()
    })
}

/// Engine name of a project network key (falls back to `<project>_<key>` for undeclared keys).
pub fn network_name(project: &Project, key: &str) -> String {
    project
        .networks
        .get(key)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{}", project.name, key))
}

/// Engine name of a project volume key.
pub fn volume_name(project: &Project, key: &str) -> String {
    project
        .volumes
        .get(key)
        .map(|v| v.name.clone())
        .unwrap_or_else(|| format!("{}_{}", project.name, key))
}

/// Everything `up` sends to create one container of a service: its labels, environment,
/// ports, mounts, networks and host options, each from a stage below.
pub fn container_create_request(
    project: &Project,
    service_name: &str,
    number: u32,
) -> Option<ContainerCreateRequest> {
    let service = project.services.get(service_name)?;
    let name = container_name(project, service_name, number);
    let image = service_image(project, service_name, service);
    let labels = container_labels(project, service_name, number, &image);
    let env: Vec<String> = service
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let (exposed_ports, port_bindings) = ports(service);
    let mounts = mounts(project, service);
    let (network_mode, endpoints) = network_endpoints(project, service_name, &name);
    let restart_policy =
        deploy_restart_policy(service).or_else(|| service.restart.as_deref().map(restart_policy));
    let mut host_config = HostConfig {
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        network_mode,
        restart_policy,
        ..service_options_host_config(service)
    };
    apply_resource_limits(service, &mut host_config);

    Some(ContainerCreateRequest {
        hostname: service.hostname.clone().unwrap_or_default(),
        domainname: extra_str(service, "domainname").unwrap_or_default(),
        user: service.user.clone().unwrap_or_default(),
        exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
        env: Some(env),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        image,
        labels: Some(labels),
        working_dir: service.working_dir.clone().unwrap_or_default(),
        stop_signal: service.stop_signal.clone(),
        stop_timeout: service
            .stop_grace_period
            .as_deref()
            .and_then(parse_duration_secs),
        healthcheck: service.healthcheck.as_ref().map(health_config),
        // As docker compose creates them: `attach` reaches a terminal and a stdin.
        tty: service.tty.unwrap_or(false),
        open_stdin: service.stdin_open.unwrap_or(false),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: endpoints,
        }),
        ..Default::default()
    })
}

/// `restart: on-failure:3` as Docker's policy name and retry count.
fn restart_policy(restart: &str) -> RestartPolicy {
    let (name, count) = match restart.split_once(':') {
        Some((n, c)) => (n.to_string(), c.parse().unwrap_or(0)),
        None => (restart.to_string(), 0),
    };
    RestartPolicy {
        name,
        maximum_retry_count: count,
    }
}

/// `deploy.restart_policy` as Docker's policy, as docker compose maps it (`getRestartPolicy`):
/// `condition` none → `no`, any → `always`, on-failure stays, and `max_attempts` is the retry
/// count. docker compose lets it win over `restart:` and drops `delay` and `window`, which only
/// a swarm acts on; berth does the same.
fn deploy_restart_policy(service: &Service) -> Option<RestartPolicy> {
    let policy = service.extra.get("deploy")?.get("restart_policy")?;
    let condition = policy
        .get("condition")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let name = match condition {
        "none" | "no" => "no",
        "any" | "always" => "always",
        other => other,
    };
    Some(RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: policy
            .get("max_attempts")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
    })
}

/// The compose labels of replica `number` (the service's own labels, then compose's).
fn container_labels(
    project: &Project,
    service_name: &str,
    number: u32,
    image: &str,
) -> IndexMap<String, String> {
    let service = &project.services[service_name];
    let mut labels: IndexMap<String, String> = service.labels.clone();
    labels.extend(project_labels(project));
    labels.insert(LABEL_SERVICE.to_string(), service_name.to_string());
    labels.insert(LABEL_CONTAINER_NUMBER.to_string(), number.to_string());
    labels.insert(LABEL_ONEOFF.to_string(), "False".to_string());
    labels.insert(LABEL_CONFIG_HASH.to_string(), service_config_hash(service));
    labels.insert(
        LABEL_CONFIG_FIELDS.to_string(),
        service_field_digests(service),
    );
    labels.insert(
        LABEL_WORKING_DIR.to_string(),
        project.working_dir.display().to_string(),
    );
    labels.insert(
        LABEL_CONFIG_FILES.to_string(),
        project
            .config_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(
        LABEL_DEPENDS_ON.to_string(),
        service
            .depends_on
            .iter()
            .map(|(dep, d)| format!("{dep}:{}:{}", d.condition, d.restart))
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(LABEL_IMAGE.to_string(), image.to_string());

    labels
}

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// `ports` and `expose` as the exposed-port set and the host bindings.
fn ports(service: &Service) -> (HashMap<String, EmptyObject>, PortBindings) {
    let mut exposed_ports = HashMap::new();
    let mut port_bindings: PortBindings = HashMap::new();
    for port in &service.ports {
        let key = format!("{}/{}", port.target, port.protocol);
        exposed_ports.insert(key.clone(), EmptyObject {});
        let binding = PortBinding {
            host_ip: port.host_ip.clone().unwrap_or_default(),
            host_port: port.published.clone().unwrap_or_default(),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }

    for expose in &service.expose {
        for key in exposed_port_keys(expose) {
            exposed_ports.entry(key).or_insert(EmptyObject {});
        }
    }

    (exposed_ports, port_bindings)
}

/// `volumes` (named volumes by their engine name, binds resolved against the project
/// directory), then the file-based secrets and configs.
fn mounts(project: &Project, service: &Service) -> Vec<Mount> {
    service
        .volumes
        .iter()
        .map(|v| Mount {
            kind: v.kind.clone(),
            source: match (v.kind.as_str(), &v.source) {
                ("volume", Some(key)) => volume_name(project, key),
                ("tmpfs", _) => String::new(),
                (_, Some(source)) => resolve_bind_source(&project.working_dir, source),
                (_, None) => String::new(),
            },
            target: v.target.clone(),
            read_only: v.read_only,
            volume_options: v
                .volume
                .as_ref()
                .and_then(|o| o.get("nocopy"))
                .and_then(serde_json::Value::as_bool)
                .filter(|nocopy| *nocopy)
                .map(|no_copy| VolumeOptions {
                    no_copy,
                    labels: None,
                }),
            tmpfs_options: v.tmpfs.as_ref().map(tmpfs_options),
        })
        .chain(file_object_mounts(project, service))
        .collect()
}

/// `network_mode`, or the endpoints of the service's networks, each with the aliases every
/// replica answers to (its container name, the service name, the configured aliases).
fn network_endpoints(
    project: &Project,
    service_name: &str,
    name: &str,
) -> (String, IndexMap<String, EndpointSettings>) {
    let service = &project.services[service_name];
    match &service.network_mode {
        Some(mode) => (mode.clone(), IndexMap::new()),
        None => {
            let mut endpoints = IndexMap::new();
            for (key, settings) in &service.networks {
                let mut aliases = vec![name.to_string(), service_name.to_string()];
                let mut ipam_config = None;
                if let Some(settings) = settings {
                    aliases.extend(settings.aliases.iter().cloned());
                    ipam_config = settings
                        .ipv4_address
                        .clone()
                        .map(|ip| EndpointIpamConfig { ipv4_address: ip });
                }
                endpoints.insert(
                    network_name(project, key),
                    EndpointSettings {
                        aliases: Some(aliases),
                        ipam_config,
                        ..Default::default()
                    },
                );
            }
            let mode = endpoints
                .keys()
                .next()
                .cloned()
                .unwrap_or_else(|| "none".to_string());
            (mode, endpoints)
        }
    }
}

/// A service's `deploy.resources` values that map to a single container (the rest — CPU
/// reservations, devices, generic resources — are swarm options docker compose does not apply).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployResources {
    /// `deploy.resources.limits` is present (docker compose compares against it even when a key
    /// in it is unset).
    pub has_limits: bool,
    pub has_reservations: bool,
    pub limit_memory: Option<i64>,
    pub limit_cpus: Option<f64>,
    pub limit_pids: Option<i64>,
    pub reservation_memory: Option<i64>,
}

/// `deploy.resources` of a service, parsed; the error names the bad value's path.
pub fn deploy_resources(service: &Service) -> Result<DeployResources, String> {
    let mut out = DeployResources::default();
    let Some(resources) = service.extra.get("deploy").and_then(|d| d.get("resources")) else {
        return Ok(out);
    };
    let bytes = |v: &serde_json::Value, path: &str| {
        match v {
            serde_json::Value::Number(n) => n.as_i64().ok_or(()),
            serde_json::Value::String(t) => super::normalize::parse_bytes(t).ok_or(()),
            _ => Err(()),
        }
        .map_err(|_| format!("{path}: invalid size {v}; use a value like 512m or 1gb"))
    };
    if let Some(limits) = resources.get("limits").filter(|l| !l.is_null()) {
        out.has_limits = true;
        if let Some(v) = limits.get("memory").filter(|v| !v.is_null()) {
            out.limit_memory = Some(bytes(v, "deploy.resources.limits.memory")?);
        }
        if let Some(v) = limits.get("cpus").filter(|v| !v.is_null()) {
            let cpus = match v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(t) => t.trim().parse().ok(),
                _ => None,
            };
            out.limit_cpus = Some(cpus.filter(|c| *c >= 0.0).ok_or_else(|| {
                format!("deploy.resources.limits.cpus: invalid value {v}; use a number of CPUs like 0.5")
            })?);
        }
        if let Some(v) = limits.get("pids").filter(|v| !v.is_null()) {
            out.limit_pids = Some(v.as_i64().ok_or_else(|| {
                format!("deploy.resources.limits.pids: invalid value {v}; use a whole number")
            })?);
        }
    }
    if let Some(reservations) = resources.get("reservations").filter(|r| !r.is_null()) {
        out.has_reservations = true;
        if let Some(v) = reservations.get("memory").filter(|v| !v.is_null()) {
            out.reservation_memory = Some(bytes(v, "deploy.resources.reservations.memory")?);
        }
    }
    Ok(out)
}

/// CPUs as Docker's `NanoCpus`.
fn nano_cpus(cpus: f64) -> i64 {
    (cpus * 1e9).round() as i64
}

/// The service's resource keys as `HostConfig` fields, in docker compose's order: the service
/// level (`mem_limit`, `memswap_limit`, `mem_reservation`, `cpus`, `cpu_shares`, `cpu_quota`,
/// `cpu_period`, `cpuset`, `pids_limit`), then the non-zero `deploy.resources` values over them.
/// Both agree when both are set: the consistency check refuses distinct values, as compose does.
fn apply_resource_limits(service: &Service, host: &mut HostConfig) {
    let int = |key: &str| service.extra.get(key).and_then(serde_json::Value::as_i64);
    host.resources.memory = int("mem_limit").unwrap_or(0);
    host.resources.memory_swap = int("memswap_limit").unwrap_or(0);
    host.resources.memory_reservation = int("mem_reservation").unwrap_or(0);
    host.resources.nano_cpus = service
        .extra
        .get("cpus")
        .and_then(serde_json::Value::as_f64)
        .map_or(0, nano_cpus);
    host.resources.cpu_shares = int("cpu_shares").unwrap_or(0);
    host.resources.cpu_quota = int("cpu_quota").unwrap_or(0);
    host.resources.cpu_period = int("cpu_period").unwrap_or(0);
    host.resources.cpuset_cpus = service
        .extra
        .get("cpuset")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    host.resources.pids_limit = int("pids_limit").filter(|p| *p != 0);
    // A bad value was reported by the consistency check; a project loaded without it keeps the
    // service-level values.
    let deploy = deploy_resources(service).unwrap_or_default();
    if let Some(m) = deploy.limit_memory.filter(|m| *m != 0) {
        host.resources.memory = m;
    }
    if let Some(c) = deploy.limit_cpus.filter(|c| *c != 0.0) {
        host.resources.nano_cpus = nano_cpus(c);
    }
    if let Some(p) = deploy.limit_pids.filter(|p| *p > 0) {
        host.resources.pids_limit = Some(p);
    }
    if let Some(m) = deploy.reservation_memory.filter(|m| *m > 0) {
        host.resources.memory_reservation = m;
    }
}

/// A string-valued field kept in the service's `extra` map (`domainname`, …).
fn extra_str(service: &Service, key: &str) -> Option<String> {
    service
        .extra
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// A list of strings kept in the service's `extra` map (`dns_search`, `dns_opt`).
fn extra_strings(service: &Service, key: &str) -> Option<Vec<String>> {
    let list: Vec<String> = service
        .extra
        .get(key)?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (!list.is_empty()).then_some(list)
}

/// A JSON scalar as Docker's API text (`1`, `true`, `x`).
fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `expose` entries (`3000`, `8000-8002/udp`) as `Config.ExposedPorts` keys, ranges expanded
/// as docker compose does.
fn exposed_port_keys(entry: &str) -> Vec<String> {
    let (ports, proto) = entry.split_once('/').unwrap_or((entry, "tcp"));
    match ports.split_once('-') {
        Some((lo, hi)) => match (lo.parse::<u16>(), hi.parse::<u16>()) {
            (Ok(lo), Ok(hi)) if lo <= hi => (lo..=hi).map(|p| format!("{p}/{proto}")).collect(),
            _ => vec![format!("{ports}/{proto}")],
        },
        None => vec![format!("{ports}/{proto}")],
    }
}

/// A long-syntax `tmpfs:` block (`size` already in bytes, `mode` a number or an octal string)
/// as `Mount.TmpfsOptions`.
fn tmpfs_options(options: &IndexMap<String, serde_json::Value>) -> TmpfsOptions {
    let mode = options.get("mode").and_then(|m| match m {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        // compose-go reads a string mode as octal (`"1770"`, `"0o1770"`).
        serde_json::Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        _ => None,
    });
    TmpfsOptions {
        size_bytes: options
            .get("size")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        mode,
    }
}

/// The part of `HostConfig` that comes from the service's runtime options (read_only, tmpfs,
/// extra_hosts, shm_size, init, privileged, capabilities, ulimits, sysctls, DNS search and
/// options, security options), as docker compose fills it. Kept apart from mounts, ports and networks so each
/// concern has one place.
fn service_options_host_config(service: &Service) -> HostConfig {
    let tmpfs: HashMap<String, String> = service
        .tmpfs
        .iter()
        .map(|entry| match entry.split_once(':') {
            Some((path, options)) => (path.to_string(), options.to_string()),
            None => (entry.clone(), String::new()),
        })
        .collect();
    // compose's `HOST: IP` map (or list of IPs) → Docker's `HOST:IP` entries, one per address.
    let extra_hosts: Vec<String> = service
        .extra_hosts
        .iter()
        .flat_map(|(host, ips)| {
            let ips: Vec<String> = match ips {
                serde_json::Value::Array(list) => list.iter().map(scalar_text).collect(),
                other => vec![scalar_text(other)],
            };
            ips.into_iter().map(move |ip| format!("{host}:{ip}"))
        })
        .collect();
    let ulimits: Vec<Ulimit> = service
        .extra
        .get("ulimits")
        .and_then(serde_json::Value::as_object)
        .map(|limits| {
            limits
                .iter()
                .map(|(name, limit)| {
                    // A single number sets soft and hard alike.
                    let (soft, hard) = match limit {
                        serde_json::Value::Object(l) => {
                            let get = |k: &str| l.get(k).and_then(serde_json::Value::as_i64);
                            (get("soft").unwrap_or(0), get("hard").unwrap_or(0))
                        }
                        other => {
                            let n = other.as_i64().unwrap_or(0);
                            (n, n)
                        }
                    };
                    Ulimit {
                        name: name.clone(),
                        soft,
                        hard,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let sysctls: IndexMap<String, String> = service
        .extra
        .get("sysctls")
        .and_then(serde_json::Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
        .unwrap_or_default();
    HostConfig {
        privileged: service.privileged.unwrap_or(false),
        readonly_rootfs: service.read_only.unwrap_or(false),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
        init: service.init,
        shm_size: service
            .extra
            .get("shm_size")
            .and_then(serde_json::Value::as_i64),
        cap_add: (!service.cap_add.is_empty()).then(|| service.cap_add.clone()),
        cap_drop: (!service.cap_drop.is_empty()).then(|| service.cap_drop.clone()),
        ulimits: (!ulimits.is_empty()).then_some(ulimits),
        sysctls: (!sysctls.is_empty()).then_some(sysctls),
        dns_search: extra_strings(service, "dns_search"),
        dns_options: extra_strings(service, "dns_opt"),
        security_opt: extra_strings(service, "security_opt"),
        devices: Some(device_mappings(service)).filter(|d| !d.is_empty()),
        log_config: log_config(service),
        ..Default::default()
    }
}

/// `logging:` as the engine's json-file `LogConfig`, whose options rotate the log. Docker's
/// `local` driver is json-file here with local's rotation defaults (20 MB × 5 files); other
/// drivers are not passed on (`support` warns that the json-file log is kept instead).
fn log_config(service: &Service) -> Option<LogConfig> {
    let logging = service.extra.get("logging")?.as_object()?;
    let driver = logging
        .get("driver")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("json-file");
    let mut config: HashMap<String, String> = logging
        .get("options")
        .and_then(serde_json::Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
        .unwrap_or_default();
    match driver {
        "json-file" => {}
        "local" => {
            config
                .entry("max-size".into())
                .or_insert_with(|| "20m".into());
            config
                .entry("max-file".into())
                .or_insert_with(|| "5".into());
        }
        _ => return None,
    }
    Some(LogConfig {
        r#type: "json-file".into(),
        config,
    })
}

/// `devices:` in Docker's `HostConfig.Devices` shape. Short syntax `host[:container[:perms]]`
/// (a third field alone that looks like permissions, `host:rw`, is docker's `--device` form
/// too); long syntax `{source, target, permissions}`. The engine checks the host side.
fn device_mappings(service: &Service) -> Vec<DeviceMapping> {
    let Some(list) = service
        .extra
        .get("devices")
        .and_then(serde_json::Value::as_array)
    else {
        return Vec::new();
    };
    let is_perms = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    list.iter()
        .filter_map(|d| match d {
            serde_json::Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                let (host, container, perms) = match parts.as_slice() {
                    [host] => (*host, *host, "rwm"),
                    [host, p] if is_perms(p) => (*host, *host, *p),
                    [host, container] => (*host, *container, "rwm"),
                    [host, container, p, ..] => (*host, *container, *p),
                    [] => return None,
                };
                Some(DeviceMapping {
                    path_on_host: host.to_string(),
                    path_in_container: container.to_string(),
                    cgroup_permissions: perms.to_string(),
                })
            }
            serde_json::Value::Object(o) => {
                let get = |k: &str| o.get(k).and_then(serde_json::Value::as_str);
                let host = get("source")?;
                Some(DeviceMapping {
                    path_on_host: host.to_string(),
                    path_in_container: get("target").unwrap_or(host).to_string(),
                    cgroup_permissions: get("permissions").unwrap_or("rwm").to_string(),
                })
            }
            _ => None,
        })
        .collect()
}

/// File-based `secrets` and `configs` without `uid`/`gid`/`mode`, bind-mounted read-only as
/// docker compose does without swarm: a secret at `/run/secrets/<name>` (or its relative `target` there, or an absolute
/// one), a config at `/<name>` (or its `target`). Others are reported by
/// `support::unsupported_file_objects`.
fn file_object_mounts(project: &Project, service: &Service) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for (refs, defined, base) in [
        (&service.secrets, &project.secrets, "/run/secrets"),
        (&service.configs, &project.configs, ""),
    ] {
        for r in refs {
            let Some(file) = defined
                .get(&r.source)
                .and_then(|d| d.get("file"))
                .and_then(serde_json::Value::as_str)
            else {
                continue;
            };
            if sets_owner_or_mode(r) {
                // Copied in with them instead (see `inline_file_objects`).
                continue;
            }
            let target = object_target(r, base);
            mounts.push(Mount {
                kind: "bind".into(),
                source: resolve_bind_source(&project.working_dir, file),
                target,
                read_only: true,
                ..Default::default()
            });
        }
    }
    mounts
}

/// Where a secret (`base` `/run/secrets`) or config (`base` empty) lands in the container.
fn object_target(r: &FileReference, base: &str) -> String {
    match r.target.as_deref() {
        Some(t) if t.starts_with('/') => t.to_string(),
        Some(t) => format!("{base}/{t}"),
        None => format!("{base}/{}", r.source),
    }
}

/// Whether a service's use of a secret or config asks for an owner or mode of its own.
fn sets_owner_or_mode(r: &FileReference) -> bool {
    r.uid.is_some() || r.gid.is_some() || r.mode.is_some()
}

/// A `secrets`/`configs` entry made from inline `content` or an `environment` variable, or a
/// file-based one with its own `uid`/`gid`/`mode`: the client copies it into the created
/// container (the archive API), as docker compose does for the first two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// Absolute path in the container.
    pub target: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Docker compose's default for both (`r--r--r--`, owned by root).
const DEFAULT_OBJECT_MODE: u32 = 0o444;

/// A `mode` as the loader keeps it: the digits written in the file (`0440` → 440), which are
/// octal; a number that cannot be octal is taken as the mode itself.
fn object_mode(value: Option<&serde_json::Value>) -> u32 {
    // The model keeps a mode as compose-go prints it, an octal string (`"0440"`); a number is
    // the mode's value itself (YAML `0440` was read as octal already, `416` is 0o640).
    let mode = match value {
        Some(serde_json::Value::String(text)) => {
            let digits = text.trim_start_matches("0o");
            u32::from_str_radix(digits, 8).ok()
        }
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    };
    mode.unwrap_or(DEFAULT_OBJECT_MODE) & 0o7777
}

/// The inline secrets and configs of `service` (see [`InlineFile`]); an error names a secret
/// whose variable is not set or an owner that is not numeric.
pub fn inline_file_objects(
    project: &Project,
    service: &Service,
) -> Result<Vec<InlineFile>, String> {
    let mut files = Vec::new();
    for (kind, refs, defined, base) in [
        ("secret", &service.secrets, &project.secrets, "/run/secrets"),
        ("config", &service.configs, &project.configs, ""),
    ] {
        for r in refs {
            let Some(def) = defined.get(&r.source) else {
                continue;
            };
            let file = def.get("file").and_then(|c| c.as_str());
            let content = if let Some(path) = file.filter(|_| sets_owner_or_mode(r)) {
                // A bind mount cannot change a host file's owner or mode: a copy can.
                let path = resolve_bind_source(&project.working_dir, path);
                std::fs::read(&path)
                    .map_err(|e| format!("{kind} {:?}: cannot read {path}: {e}", r.source))?
            } else if let Some(text) = def.get("content").and_then(|c| c.as_str()) {
                text.as_bytes().to_vec()
            } else if let Some(var) = def.get("environment").and_then(|c| c.as_str()) {
                project
                    .object_environment
                    .get(var)
                    .ok_or_else(|| {
                        format!(
                            "{kind} {:?} is made from the environment variable {var}, which is \
                             not set: set it (or put it in .env)",
                            r.source
                        )
                    })?
                    .as_bytes()
                    .to_vec()
            } else {
                continue;
            };
            let id = |what: &str, v: &Option<String>| -> Result<u32, String> {
                v.as_deref().map_or(Ok(0), |s| {
                    s.parse().map_err(|_| {
                        format!("{kind} {:?}: {what} {s:?} must be a number", r.source)
                    })
                })
            };
            files.push(InlineFile {
                target: object_target(r, base),
                content,
                mode: object_mode(r.mode.as_ref()),
                uid: id("uid", &r.uid)?,
                gid: id("gid", &r.gid)?,
            });
        }
    }
    Ok(files)
}

/// Bind sources are relative to the project directory; `~` is the user's home.
fn resolve_bind_source(project_dir: &Path, source: &str) -> String {
    if let Some(rest) = source.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest).display().to_string();
        }
    }
    let path = Path::new(source);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        project_dir.join(path)
    };
    // Lexical clean (`./a` → `a`, `a/../b` → `b`) so labels and hashes do not depend on spelling.
    let mut clean = std::path::PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other.as_os_str()),
        }
    }
    clean.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_restart_policy_maps_as_docker_compose_does() {
        let with = |deploy: serde_json::Value, restart: Option<&str>| {
            let mut service = Service {
                restart: restart.map(str::to_string),
                ..Default::default()
            };
            service.extra.insert("deploy".into(), deploy);
            deploy_restart_policy(&service)
                .or_else(|| service.restart.as_deref().map(restart_policy))
        };
        let policy = |name: &str, n| {
            Some(RestartPolicy {
                name: name.into(),
                maximum_retry_count: n,
            })
        };
        let on_failure = serde_json::json!({"restart_policy": {"condition": "on-failure", "max_attempts": 3, "delay": "5s"}});
        assert_eq!(with(on_failure, None), policy("on-failure", 3));
        let any = serde_json::json!({"restart_policy": {"condition": "any"}});
        assert_eq!(with(any.clone(), None), policy("always", 0));
        let none = serde_json::json!({"restart_policy": {"condition": "none"}});
        assert_eq!(with(none, Some("always")), policy("no", 0));
        // Without deploy.restart_policy, `restart:` alone decides.
        let replicas = serde_json::json!({"replicas": 2});
        assert_eq!(
            with(replicas, Some("on-failure:2")),
            policy("on-failure", 2)
        );
    }

    #[test]
    fn object_modes_read_as_the_loader_leaves_them() {
        assert_eq!(object_mode(Some(&serde_json::json!("0440"))), 0o440);
        assert_eq!(object_mode(Some(&serde_json::json!("0o600"))), 0o600);
        assert_eq!(object_mode(Some(&serde_json::json!(416))), 0o640);
        assert_eq!(object_mode(None), DEFAULT_OBJECT_MODE);
        assert_eq!(
            object_mode(Some(&serde_json::json!("rw"))),
            DEFAULT_OBJECT_MODE
        );
    }

    #[test]
    fn inline_objects_carry_content_octal_mode_and_owner() {
        let mut project = Project::default();
        project
            .configs
            .insert("page".into(), serde_json::json!({"content": "hi\n"}));
        project
            .secrets
            .insert("token".into(), serde_json::json!({"environment": "TOKEN"}));
        let mut service = Service::default();
        service.configs.push(FileReference {
            source: "page".into(),
            target: Some("/www/index.html".into()),
            ..Default::default()
        });
        service.secrets.push(FileReference {
            source: "token".into(),
            // As the loader leaves it: an octal string, as compose-go prints it.
            mode: Some(serde_json::json!("0440")),
            uid: Some("1000".into()),
            ..Default::default()
        });
        let err = inline_file_objects(&project, &service).unwrap_err();
        assert!(
            err.contains("environment variable TOKEN, which is not set"),
            "{err}"
        );
        project
            .object_environment
            .insert("TOKEN".into(), "t0k".into());
        let files = inline_file_objects(&project, &service).unwrap();
        assert_eq!(
            files,
            [
                InlineFile {
                    target: "/run/secrets/token".into(),
                    content: b"t0k".to_vec(),
                    mode: 0o440,
                    uid: 1000,
                    gid: 0,
                },
                InlineFile {
                    target: "/www/index.html".into(),
                    content: b"hi\n".to_vec(),
                    mode: 0o444,
                    uid: 0,
                    gid: 0,
                },
            ]
        );
    }
    use crate::compose::model::{
        DependsOn, NetworkConfig, ServicePort, ServiceVolume, VolumeConfig,
    };

    fn two_service_project() -> Project {
        let mut project = Project {
            name: "demo".into(),
            working_dir: "/srv/demo".into(),
            ..Default::default()
        };
        project.networks.insert(
            "default".into(),
            NetworkConfig {
                name: "demo_default".into(),
                ..Default::default()
            },
        );
        project.volumes.insert(
            "data".into(),
            VolumeConfig {
                name: "demo_data".into(),
                ..Default::default()
            },
        );
        let mut server = Service {
            image: Some("busybox".into()),
            ..Default::default()
        };
        server.networks.insert("default".into(), None);
        server.ports.push(ServicePort {
            target: 80,
            published: Some("8080".into()),
            host_ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
            mode: "ingress".into(),
            ..Default::default()
        });
        server.volumes.push(ServiceVolume {
            kind: "volume".into(),
            source: Some("data".into()),
            target: "/www".into(),
            read_only: false,
            ..Default::default()
        });
        server.volumes.push(ServiceVolume {
            kind: "bind".into(),
            source: Some("./conf".into()),
            target: "/conf".into(),
            read_only: true,
            ..Default::default()
        });
        server.stop_grace_period = Some("1m30s".into());
        let mut client = Service {
            image: Some("busybox".into()),
            ..Default::default()
        };
        client.networks.insert("default".into(), None);
        client.depends_on.insert(
            "server".into(),
            DependsOn {
                condition: "service_started".into(),
                required: true,
                restart: false,
            },
        );
        client.environment.insert("A".into(), Some("1".into()));
        client.environment.insert("UNSET".into(), None);
        project.services.insert("server".into(), server);
        project.services.insert("client".into(), client);
        project
    }

    #[test]
    fn container_request_maps_names_labels_ports_and_mounts() {
        let project = two_service_project();
        let req = container_create_request(&project, "server", 1).expect("service exists");
        let labels = req.labels.as_ref().expect("labels");
        assert_eq!(labels[LABEL_PROJECT], "demo");
        assert_eq!(labels[LABEL_SERVICE], "server");
        assert_eq!(labels[LABEL_CONTAINER_NUMBER], "1");
        let host = req.host_config.as_ref().expect("host config");
        let bindings = host.port_bindings.as_ref().expect("ports")["80/tcp"]
            .clone()
            .expect("binding");
        assert_eq!(
            bindings[0],
            PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into()
            }
        );
        let mounts = host.mounts.as_ref().expect("mounts");
        assert_eq!(mounts[0].source, "demo_data");
        assert_eq!(mounts[1].source, "/srv/demo/conf");
        assert!(mounts[1].read_only);
        assert_eq!(host.network_mode, "demo_default");
        let endpoint = &req
            .networking_config
            .as_ref()
            .expect("net")
            .endpoints_config["demo_default"];
        assert_eq!(
            endpoint.aliases.as_deref(),
            Some(&["demo-server-1".to_string(), "server".to_string()][..])
        );
        assert_eq!(req.stop_timeout, Some(90));
    }

    #[test]
    fn unset_environment_variables_are_not_passed() {
        let project = two_service_project();
        let req = container_create_request(&project, "client", 1).expect("service exists");
        assert_eq!(req.env, Some(vec!["A=1".to_string()]));
        assert_eq!(
            req.labels.expect("labels")[LABEL_DEPENDS_ON],
            "server:service_started:false"
        );
    }

    #[test]
    fn config_hash_ignores_depends_on_but_not_command() {
        let project = two_service_project();
        let mut client = project.services["client"].clone();
        let base = service_config_hash(&client);
        client.depends_on.clear();
        assert_eq!(service_config_hash(&client), base);
        // Scaling is not a change of the containers either (`scale` or `deploy.replicas`).
        client.scale = Some(3);
        client
            .extra
            .insert("deploy".into(), serde_json::json!({"replicas": 3}));
        assert_eq!(service_config_hash(&client), base);
        assert!(!service_field_digests(&client).contains("deploy="));
        client.command = Some(vec!["true".into()]);
        assert_ne!(service_config_hash(&client), base);
        assert!(service_field_digests(&client).contains("command="));
    }

    #[test]
    fn service_options_reach_the_host_config() {
        let mut project = two_service_project();
        let service: Service = serde_json::from_value(serde_json::json!({
            "image": "busybox",
            "read_only": true,
            "privileged": true,
            "init": true,
            "tmpfs": ["/run:size=64m", "/tmp"],
            "extra_hosts": {"db": "10.0.0.5", "gw": "host-gateway", "multi": ["10.0.0.6", "::1"]},
            "cap_add": ["NET_ADMIN"],
            "cap_drop": ["CHOWN"],
            "shm_size": 67108864,
            "domainname": "example.org",
            "expose": ["3000", "5000-5001/udp"],
            "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 64},
            "sysctls": {"net.core.somaxconn": "1024"},
            "dns_search": ["svc.local"],
            "dns_opt": ["ndots:2"],
            "volumes": [{"type": "tmpfs", "target": "/cache", "tmpfs": {"size": 1048576, "mode": 1016}}],
        }))
        .unwrap();
        project.services.insert("opts".into(), service);
        let req = container_create_request(&project, "opts", 1).expect("service exists");
        assert_eq!(req.domainname, "example.org");
        let exposed = req.exposed_ports.as_ref().expect("exposed ports");
        let mut keys: Vec<&String> = exposed.keys().collect();
        keys.sort();
        assert_eq!(keys, ["3000/tcp", "5000/udp", "5001/udp"]);
        let host = req.host_config.expect("host config");
        assert!(host.readonly_rootfs && host.privileged);
        assert_eq!(host.init, Some(true));
        let tmpfs = host.tmpfs.expect("tmpfs");
        assert_eq!(tmpfs["/run"], "size=64m");
        assert_eq!(tmpfs["/tmp"], "");
        assert_eq!(
            host.extra_hosts.expect("extra hosts"),
            [
                "db:10.0.0.5",
                "gw:host-gateway",
                "multi:10.0.0.6",
                "multi:::1"
            ]
        );
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["CHOWN".to_string()]));
        assert_eq!(host.shm_size, Some(64 << 20));
        let ulimits = host.ulimits.expect("ulimits");
        assert_eq!(
            ulimits,
            [
                Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048
                },
                Ulimit {
                    name: "nproc".into(),
                    soft: 64,
                    hard: 64
                }
            ]
        );
        assert_eq!(host.sysctls.expect("sysctls")["net.core.somaxconn"], "1024");
        assert_eq!(host.dns_search, Some(vec!["svc.local".to_string()]));
        assert_eq!(host.dns_options, Some(vec!["ndots:2".to_string()]));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts[0].source, "");
        assert_eq!(
            mounts[0].tmpfs_options,
            Some(TmpfsOptions {
                size_bytes: 1 << 20,
                mode: Some(0o1770)
            })
        );
        // The other fields of the host config are still the plan's own.
        assert_eq!(host.network_mode, "none");
    }

    #[test]
    fn config_hash_changes_with_runtime_options() {
        let project = two_service_project();
        let base = project.services["server"].clone();
        let hash = service_config_hash(&base);
        let changed = |edit: &dyn Fn(&mut Service)| {
            let mut s = base.clone();
            edit(&mut s);
            service_config_hash(&s)
        };
        assert_ne!(changed(&|s| s.read_only = Some(true)), hash);
        assert_ne!(changed(&|s| s.cap_add.push("NET_ADMIN".into())), hash);
        assert_ne!(changed(&|s| s.tmpfs.push("/run".into())), hash);
        assert_ne!(
            changed(&|s| {
                s.extra
                    .insert("ulimits".into(), serde_json::json!({"nofile": 1024}));
            }),
            hash
        );
        assert_ne!(
            changed(&|s| {
                s.extra.insert(
                    "sysctls".into(),
                    serde_json::json!({"net.core.somaxconn": "1"}),
                );
            }),
            hash
        );
        assert_eq!(changed(&|s| s.profiles.push("debug".into())), hash);
    }

    #[test]
    fn healthcheck_maps_to_nanoseconds_and_disable_to_none() {
        let h = Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /tmp/ready".into()],
            interval: Some("200ms".into()),
            timeout: Some("1m30s".into()),
            retries: Some(5),
            start_period: Some("2s".into()),
            ..Default::default()
        };
        let c = health_config(&h);
        assert_eq!(
            c.test.as_deref(),
            Some(&["CMD-SHELL".to_string(), "test -f /tmp/ready".to_string()][..])
        );
        assert_eq!(c.interval, 200_000_000);
        assert_eq!(c.timeout, 90_000_000_000);
        assert_eq!(c.start_period, 2_000_000_000);
        assert_eq!((c.start_interval, c.retries), (0, 5));
        let off = health_config(&Healthcheck { disable: true, ..h });
        assert_eq!(off.test, Some(vec!["NONE".to_string()]));
        assert_eq!(off.interval, 0);
    }

    #[test]
    fn resource_keys_map_to_host_config_and_deploy_limits_apply_over_them() {
        let mut project = two_service_project();
        let svc = project.services.get_mut("server").expect("server");
        for (k, v) in [
            ("mem_limit", serde_json::json!(64 << 20)),
            ("memswap_limit", serde_json::json!(-1)),
            ("mem_reservation", serde_json::json!(32 << 20)),
            ("cpus", serde_json::json!(1.5)),
            ("cpu_shares", serde_json::json!(512)),
            ("cpu_period", serde_json::json!(50_000)),
            ("cpu_quota", serde_json::json!(25_000)),
            ("cpuset", serde_json::json!("0-1")),
            ("pids_limit", serde_json::json!(10)),
        ] {
            svc.extra.insert(k.into(), v);
        }
        let host = container_create_request(&project, "server", 1)
            .and_then(|r| r.host_config)
            .expect("host config");
        assert_eq!(
            (
                host.resources.memory,
                host.resources.memory_swap,
                host.resources.memory_reservation
            ),
            (64 << 20, -1, 32 << 20)
        );
        assert_eq!(
            (
                host.resources.nano_cpus,
                host.resources.cpu_shares,
                host.resources.cpu_period,
                host.resources.cpu_quota
            ),
            (1_500_000_000, 512, 50_000, 25_000)
        );
        assert_eq!(
            (
                host.resources.cpuset_cpus.as_str(),
                host.resources.pids_limit
            ),
            ("0-1", Some(10))
        );

        let svc = project.services.get_mut("client").expect("client");
        svc.extra.insert(
            "deploy".into(),
            serde_json::json!({"resources": {
                "limits": {"cpus": "0.50", "memory": "128M", "pids": 20},
                "reservations": {"memory": "20M", "cpus": "0.25"}
            }}),
        );
        let host = container_create_request(&project, "client", 1)
            .and_then(|r| r.host_config)
            .expect("host config");
        assert_eq!(
            (
                host.resources.memory,
                host.resources.nano_cpus,
                host.resources.pids_limit,
                host.resources.memory_reservation
            ),
            (128 << 20, 500_000_000, Some(20), 20 << 20)
        );
        // Nothing set: Docker's zero values, no PidsLimit.
        let plain = Service::default();
        let mut host = HostConfig::default();
        apply_resource_limits(&plain, &mut host);
        assert_eq!(host, HostConfig::default());
    }

    #[test]
    fn durations_parse_like_compose() {
        assert_eq!(parse_duration_secs("10s"), Some(10));
        assert_eq!(parse_duration_secs("1m30s"), Some(90));
        assert_eq!(parse_duration_secs("500ms"), Some(1));
        assert_eq!(parse_duration_secs("soon"), None);
    }

    #[test]
    fn logging_options_reach_the_engine_and_local_brings_its_rotation() {
        let config_of = |logging: serde_json::Value| {
            let service: Service = serde_json::from_value(serde_json::json!({
                "image": "busybox",
                "logging": logging,
            }))
            .unwrap();
            log_config(&service).map(|c| {
                let mut options: Vec<(String, String)> = c.config.into_iter().collect();
                options.sort();
                (c.r#type, options)
            })
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            config_of(serde_json::json!({"options": {"max-size": "10m", "max-file": 3}})),
            Some((
                "json-file".into(),
                vec![pair("max-file", "3"), pair("max-size", "10m")]
            ))
        );
        assert_eq!(
            config_of(serde_json::json!({"driver": "local", "options": {"max-file": "2"}})),
            Some((
                "json-file".into(),
                vec![pair("max-file", "2"), pair("max-size", "20m")]
            ))
        );
        assert_eq!(
            config_of(serde_json::json!({"driver": "syslog", "options": {"tag": "x"}})),
            None
        );
    }

    #[test]
    fn devices_short_and_long_syntax_become_docker_device_mappings() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "image": "busybox",
            "devices": [
                "/dev/fuse",
                "/dev/loop0:/dev/xloop:r",
                "/dev/zero:/dev/z",
                "/dev/null:rw",
                {"source": "/dev/kvm", "target": "/dev/kvm2", "permissions": "rw"},
                {"source": "/dev/net/tun"}
            ]
        }))
        .unwrap();
        let got: Vec<(String, String, String)> = device_mappings(&service)
            .into_iter()
            .map(|d| (d.path_on_host, d.path_in_container, d.cgroup_permissions))
            .collect();
        let want = [
            ("/dev/fuse", "/dev/fuse", "rwm"),
            ("/dev/loop0", "/dev/xloop", "r"),
            ("/dev/zero", "/dev/z", "rwm"),
            ("/dev/null", "/dev/null", "rw"),
            ("/dev/kvm", "/dev/kvm2", "rw"),
            ("/dev/net/tun", "/dev/net/tun", "rwm"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            service_options_host_config(&service)
                .devices
                .map(|d| d.len()),
            Some(6)
        );
    }
}
