//! The typed, normalised project model (long syntax everywhere), as `berth config` prints it.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub name: String,
    #[serde(skip)]
    pub working_dir: std::path::PathBuf,
    #[serde(skip)]
    pub config_files: Vec<std::path::PathBuf>,
    /// Values of the variables that `secrets`/`configs` name with `environment:` (only those:
    /// the rest of the environment is not carried), set by the loader; never printed.
    #[serde(skip)]
    pub object_environment: IndexMap<String, String>,
    /// Services the files define that this run leaves out (profiles not active, or other
    /// services named on the command line): compose-go's `DisabledServices`, never orphans.
    #[serde(skip)]
    pub disabled_services: Vec<String>,
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, NetworkConfig>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeConfig>,
    /// Top-level `secrets`, canonical form (`file` made absolute, `name` set).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub secrets: IndexMap<String, serde_json::Value>,
    /// Top-level `configs`, canonical form.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub configs: IndexMap<String, serde_json::Value>,
    /// `x-*` extensions and `models`, kept verbatim.
    #[serde(flatten)]
    pub extensions: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `None` value = variable named without a value and not set in the environment.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    /// Network key → per-service settings.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, Option<ServiceNetwork>>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub depends_on: IndexMap<String, DependsOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `env_file` entries (already read into `environment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<EnvFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// Host name → address(es); printed as docker compose prints it (sorted `HOST=IP` lines).
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        with = "hosts_list"
    )]
    pub extra_hosts: IndexMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileReference>,
    /// Every other spec field, in canonical form (`deploy`, `logging`, `ulimits`, `develop`, …).
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

impl Service {
    /// How many containers the service runs: `scale`, else `deploy.replicas`, else 1 (the
    /// loader refuses the two when they disagree).
    pub fn replicas(&self) -> u32 {
        let replicas = self
            .extra
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .and_then(serde_json::Value::as_i64);
        self.scale
            .or(replicas)
            .map_or(1, |n| u32::try_from(n).unwrap_or(0))
    }

    /// `stop_grace_period` as a duration (docker's default is 10 s).
    pub fn stop_grace_period_duration(&self) -> std::time::Duration {
        self.stop_grace_period
            .as_deref()
            .and_then(super::notation::parse_duration)
            .unwrap_or(std::time::Duration::from_secs(10))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildConfig {
    /// Absolute directory (or a remote URL).
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, Option<String>>,
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", cmd]` or `["NONE"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Go duration strings (`30s`, `1m0s`); see `normalize::parse_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EnvFile {
    pub path: String,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn yes() -> bool {
    true
}

/// A service's use of a top-level secret or config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileReference {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServicePort {
    pub target: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub protocol: String,
    pub mode: String,
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceVolume {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// Bind options (`create_host_path`, `propagation`, `selinux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IndexMap<String, serde_json::Value>>,
    /// Volume options (`nocopy`, `subpath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<IndexMap<String, serde_json::Value>>,
    /// tmpfs options (`size` in bytes, `mode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<IndexMap<String, serde_json::Value>>,
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DependsOn {
    /// `service_started`, `service_healthy`, `service_completed_successfully`.
    pub condition: String,
    pub required: bool,
    /// Printed only when set, as compose-go (`restart,omitempty`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkConfig {
    /// Actual engine name: `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// `driver_opts`, `ipam`, `attachable`, `enable_ipv6`, …
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VolumeConfig {
    /// Actual engine name: `<project>_<key>` unless set or external.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// `driver_opts`, …
    #[serde(flatten)]
    pub extra: IndexMap<String, serde_json::Value>,
}

/// `extra_hosts` as compose-go's `HostsList.MarshalYAML`: one `HOST=IP` string per address,
/// sorted. Read back from the mapping the normalise stage produces, or from that list.
mod hosts_list {
    use indexmap::IndexMap;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(
        hosts: &IndexMap<String, Value>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        let mut lines: Vec<String> = Vec::new();
        for (host, ips) in hosts {
            match ips {
                Value::Array(list) => {
                    for ip in list {
                        lines.push(format!("{host}={}", ip.as_str().unwrap_or_default()));
                    }
                }
                Value::String(ip) => lines.push(format!("{host}={ip}")),
                other => lines.push(format!("{host}={other}")),
            }
        }
        lines.sort();
        ser.collect_seq(lines)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<IndexMap<String, Value>, D::Error> {
        Ok(match Value::deserialize(de)? {
            Value::Object(m) => m.into_iter().collect(),
            Value::Array(lines) => {
                let mut out: IndexMap<String, Value> = IndexMap::new();
                for line in lines.iter().filter_map(Value::as_str) {
                    let (host, ip) = line.split_once('=').unwrap_or((line, ""));
                    let ip = Value::String(ip.to_string());
                    match out.get_mut(host) {
                        Some(Value::Array(list)) => list.push(ip),
                        Some(single) => *single = Value::Array(vec![single.clone(), ip]),
                        None => {
                            out.insert(host.to_string(), ip);
                        }
                    }
                }
                out
            }
            _ => IndexMap::new(),
        })
    }
}
