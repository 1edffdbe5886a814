//! Inspect: `GET /containers/{id}/json` in Docker's shape.

use super::health;
use super::list::{mount_points, port_summaries};
use std::collections::HashMap;

use super::state::{ContainerRecord, StateRecord, Status};
use super::{path_str, ContainerStore, Result};
use crate::engine::wire::{
    ContainerCreateRequest, ContainerInspect, ContainerState, NetworkSettings, PortBinding,
};
use crate::engine::Engine;

impl ContainerStore {
    pub fn inspect(
        &self,
        id: &str,
        volume_path: &dyn Fn(&str) -> String,
    ) -> Result<ContainerInspect> {
        let record = self.load_record(id)?;
        let state = self.state(id);
        let running = state.status == Status::Running;
        Ok(ContainerInspect {
            id: record.id.clone(),
            created: record.created.clone(),
            path: record.args.first().cloned().unwrap_or_default(),
            args: record.args.iter().skip(1).cloned().collect(),
            state: inspect_state(&state),
            image: record.image_id.clone(),
            name: format!("/{}", record.name),
            restart_count: state.restart_count,
            log_path: path_str(&self.log_path(id)),
            host_config: record.request.host_config.clone().unwrap_or_default(),
            network_settings: NetworkSettings {
                ports: if running {
                    published_ports(&record)
                } else {
                    Default::default()
                },
                networks: if running {
                    state.endpoints.clone()
                } else {
                    Default::default()
                },
                sandbox_key: if running {
                    state.sandbox_key.clone()
                } else {
                    String::new()
                },
            },
            mounts: mount_points(&record, volume_path),
            config: merged_config(&record),
        })
    }
}

/// Docker's `Config` shows the merged view: what will actually run.
pub(super) fn merged_config(record: &ContainerRecord) -> ContainerCreateRequest {
    ContainerCreateRequest {
        hostname: record.hostname.clone(),
        user: record.user.clone(),
        env: Some(record.env.clone()),
        working_dir: record.working_dir.clone(),
        labels: Some(record.labels.clone()),
        stop_signal: Some(record.stop_signal.clone()),
        host_config: None,
        networking_config: None,
        cmd: record.request.cmd.clone().or_else(|| {
            if record.request.entrypoint.is_some() {
                None
            } else {
                record.image_config.cmd.clone()
            }
        }),
        entrypoint: record
            .request
            .entrypoint
            .clone()
            .or_else(|| record.image_config.entrypoint.clone()),
        healthcheck: health::merged(
            record.request.healthcheck.as_ref(),
            record.image_config.healthcheck.as_ref(),
        ),
        ..record.request.clone()
    }
}

/// `NetworkSettings.Ports` of a running container, from its request.
fn published_ports(record: &ContainerRecord) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut ports = HashMap::new();
    for p in port_summaries(record, true) {
        ports
            .entry(format!("{}/{}", p.private_port, p.kind))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.ip.clone(),
                host_port: p.public_port.map(|n| n.to_string()).unwrap_or_default(),
            });
    }
    ports
}

/// `State`, with Docker's zero time for a start or finish that has not happened.
fn inspect_state(state: &StateRecord) -> ContainerState {
    let running = state.status == Status::Running;
    let time_or_zero = |t: &String| {
        if t.is_empty() {
            "0001-01-01T00:00:00Z".to_string()
        } else {
            t.clone()
        }
    };
    ContainerState {
        status: state.status_name().into(),
        running,
        paused: state.is_paused(),
        restarting: false,
        oom_killed: state.oom_killed,
        dead: false,
        pid: if running { state.init.pid as i64 } else { 0 },
        exit_code: state.exit_code,
        error: state.error.clone(),
        started_at: time_or_zero(&state.started_at),
        finished_at: time_or_zero(&state.finished_at),
        health: state.health.clone(),
    }
}

impl Engine {
    pub async fn inspect_container(&self, id_or_name: &str) -> Result<ContainerInspect> {
        let id = self.containers.resolve_id(id_or_name)?;
        let mut inspect = self.containers.inspect(&id, &|n| self.volume_source(n))?;
        if inspect.state.running {
            if let Some(bound) = self.bound_ports(&id) {
                inspect.network_settings.ports = bound;
            }
        }
        Ok(inspect)
    }

    /// The published ports as the network manager bound them: the actual host ports, also where
    /// the request left `HostPort` empty for the kernel to pick. `None` without an attachment
    /// (host network mode), where the request is all there is.
    pub(crate) fn bound_ports(
        &self,
        id: &str,
    ) -> Option<HashMap<String, Option<Vec<PortBinding>>>> {
        self.networks
            .attachment(id)
            .map(|a| crate::engine::network_wire::port_bindings(a.ports))
    }
}
