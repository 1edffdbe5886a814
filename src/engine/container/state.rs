//! What the engine keeps on disk per container: `config.json` (fixed at create) and
//! `state.json` (changes with the lifecycle), both written crash-safely; plus `exit.json`,
//! written by the shim. The effective state is always derived from these files, so a restarted
//! engine (or one that never noticed an exit) reports the truth.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::process::ProcIdentity;
use crate::engine::runtime::json_log::Rotation;
use crate::engine::runtime::spec::ExitRecord;
use crate::engine::wire::{ContainerCreateRequest, EndpointSettings, Health, ImageContainerConfig};

/// `config.json`: the container as created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The request as sent (`Config.Image` keeps the name the user gave).
    pub request: ContainerCreateRequest,
    /// `sha256:…` of the image config.
    pub image_id: String,
    /// The image's runnable defaults at create time.
    pub image_config: ImageContainerConfig,
    /// Entrypoint + cmd merged by Docker's rules; `args[0]` is the program.
    pub args: Vec<String>,
    /// Image env, then request env (request wins), with a default `PATH`.
    pub env: Vec<String>,
    pub hostname: String,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
    /// Image labels overlaid with the request's.
    pub labels: IndexMap<String, String>,
    /// Volumes created for this container alone (image `VOLUME`s, `Mounts` without a source).
    #[serde(default)]
    pub anonymous_volumes: Vec<AnonymousVolume>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AnonymousVolume {
    pub name: String,
    pub destination: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl ContainerRecord {
    /// When its log is rotated, from `HostConfig.LogConfig` (checked at create; a record that
    /// somehow holds a bad option is not rotated).
    pub fn log_rotation(&self) -> Rotation {
        self.request
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref())
            .and_then(|c| Rotation::from_options(&c.config).ok())
            .unwrap_or_default()
    }
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StateRecord {
    pub status: Status,
    /// The container's init, as seen from the host.
    pub init: ProcIdentity,
    pub shim: ProcIdentity,
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: i64,
    pub error: String,
    /// Network name → endpoint, as the network module attached it.
    #[serde(default)]
    pub endpoints: IndexMap<String, EndpointSettings>,
    /// Where the network namespace is bind-mounted (empty for `host`).
    #[serde(default)]
    pub sandbox_key: String,
    /// Set by stop/kill so the exit is not taken for a crash.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Restarts done by the restart policy since the last manual start.
    #[serde(default)]
    pub restart_count: i64,
    /// The delay before the last policy restart (doubles while the container keeps failing fast).
    #[serde(default)]
    pub restart_backoff_ms: u64,
    /// `State.Health`, for containers with a healthcheck (see `health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// `State.OOMKilled`: the last run ended with the OOM killer acting in its memory cgroup.
    #[serde(default)]
    pub oom_killed: bool,
    /// `State.Paused`: the running container's processes are frozen (see `pause`). The status
    /// stays `running`, as Docker keeps `State.Running` true while paused.
    #[serde(default)]
    pub paused: bool,
}

impl StateRecord {
    /// Docker's `State.Status`: `paused` for a paused running container.
    pub fn status_name(&self) -> &'static str {
        if self.is_paused() {
            "paused"
        } else {
            self.status.as_str()
        }
    }

    /// Running with its processes frozen.
    pub fn is_paused(&self) -> bool {
        self.status == Status::Running && self.paused
    }

    /// The state the files on disk imply: a `running` record whose shim has written an exit
    /// record (or died without one) is exited.
    pub fn effective(&self, exit: Option<&ExitRecord>) -> StateRecord {
        if self.status != Status::Running {
            return self.clone();
        }
        let mut st = self.clone();
        match exit {
            Some(rec) if rec.pid == self.init.pid => {
                st.status = Status::Exited;
                st.paused = false;
                st.exit_code = rec.exit_code;
                st.finished_at = rec.finished_at.clone();
                st.oom_killed = rec.oom_killed;
            }
            _ if !self.shim.alive() && !self.init.alive() => {
                st.status = Status::Exited;
                st.paused = false;
                st.exit_code = 255;
                st.finished_at =
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                st.error = "berth shim exited without recording the container's exit status".into();
            }
            _ => {}
        }
        st
    }
}
