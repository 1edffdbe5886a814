//! List: `GET /containers/json` summaries with Docker's filters and status texts.

use chrono::{DateTime, Utc};
use indexmap::IndexMap;

use super::mounts::{self, MountSource};
use super::state::{ContainerRecord, StateRecord, Status};
use super::{ContainerError, ContainerStore, Result};
use crate::engine::wire::{
    ContainerSummary, MountPoint, PortSummary, SummaryHostConfig, SummaryNetworkSettings,
};
use crate::engine::Engine;

/// Docker's list filters that berth supports; every given kind must match (values of one kind
/// are alternatives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilters {
    /// `label=key` (`None`) or `label=key=value`.
    pub labels: Vec<(String, Option<String>)>,
    /// Substring of the name (without `/`); `^`/`$` anchors allowed as in Docker's regex use.
    pub names: Vec<String>,
    /// ID prefixes.
    pub ids: Vec<String>,
    /// `created`, `running`, `exited`, …
    pub statuses: Vec<String>,
}

impl ContainerFilters {
    /// Parse Docker's `filters` query value: `{"label":["a=b"]}` or the older
    /// `{"label":{"a=b":true}}`.
    pub fn from_docker_json(text: &str) -> Result<Self> {
        let parsed = crate::engine::wire::filters::parse_docker_filters(text)
            .map_err(|why| ContainerError::BadRequest(format!("invalid filters: {why}")))?;
        let mut filters = Self::default();
        for (kind, vals) in parsed {
            match kind.as_str() {
                "label" => {
                    filters
                        .labels
                        .extend(vals.into_iter().map(|v| match v.split_once('=') {
                            Some((k, v)) => (k.to_string(), Some(v.to_string())),
                            None => (v, None),
                        }))
                }
                "name" => filters.names.extend(vals),
                "id" => filters.ids.extend(vals),
                "status" => filters.statuses.extend(vals),
                other => {
                    return Err(ContainerError::BadRequest(format!(
                        "invalid filters: unsupported filter {other:?}"
                    )))
                }
            }
        }
        Ok(filters)
    }

    pub fn matches(&self, record: &ContainerRecord, status: &str) -> bool {
        let labels_ok = self.labels.iter().all(|(k, v)| match v {
            None => record.labels.contains_key(k),
            Some(v) => record.labels.get(k) == Some(v),
        });
        let name_ok = self.names.is_empty()
            || self.names.iter().any(|pat| {
                let pat = pat.strip_prefix('/').unwrap_or(pat);
                let name = &record.name;
                match (pat.strip_prefix('^'), pat.strip_suffix('$')) {
                    (Some(p), _) if p.ends_with('$') => name == &p[..p.len() - 1],
                    (Some(p), _) => name.starts_with(p),
                    (None, Some(p)) => name.ends_with(p),
                    (None, None) => name.contains(pat),
                }
            });
        let id_ok = self.ids.is_empty() || self.ids.iter().any(|p| record.id.starts_with(p));
        let status_ok = self.statuses.is_empty() || self.statuses.iter().any(|s| s == status);
        labels_ok && name_ok && id_ok && status_ok
    }
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (mins, hours) = (secs / 60, secs / 3600);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `Up 3 seconds`, `Exited (0) 5 seconds ago`, `Created`.
pub fn status_text(state: &StateRecord, now: DateTime<Utc>) -> String {
    match state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = match parse_time(&state.started_at) {
                Some(t) => format!("Up {}", human_duration(now - t)),
                None => "Up".into(),
            };
            if state.paused {
                return format!("{up} (Paused)");
            }
            // Docker: `Up 5 seconds (healthy)`, `Up 1 second (health: starting)`.
            match state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => format!("{up} (health: starting)"),
                Some(status) => format!("{up} ({status})"),
                None => up,
            }
        }
        Status::Exited => match parse_time(&state.finished_at) {
            Some(t) => format!(
                "Exited ({}) {} ago",
                state.exit_code,
                human_duration(now - t)
            ),
            None => format!("Exited ({})", state.exit_code),
        },
    }
}

/// Docker's `Mounts` entries; volume sources come from `volume_path`.
pub(crate) fn mount_points(
    record: &ContainerRecord,
    volume_path: &dyn Fn(&str) -> String,
) -> Vec<MountPoint> {
    let Ok(planned) = mounts::plan(
        record.request.host_config.as_ref(),
        &record.anonymous_volumes,
    ) else {
        return Vec::new();
    };
    planned
        .into_iter()
        .map(|m| {
            let (kind, name, source) = match &m.source {
                MountSource::HostPath(p) => ("bind", String::new(), super::path_str(p)),
                MountSource::Volume(n) => ("volume", n.clone(), volume_path(n)),
                MountSource::Tmpfs(_) => ("tmpfs", String::new(), String::new()),
            };
            MountPoint {
                kind: kind.into(),
                name,
                source,
                destination: m.destination,
                mode: m.mode,
                rw: !m.read_only,
            }
        })
        .collect()
}

/// Published ports as `docker ps` lists them.
pub(crate) fn port_summaries(record: &ContainerRecord, running: bool) -> Vec<PortSummary> {
    let bindings = record
        .request
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.clone())
        .unwrap_or_default();
    let mut out = summaries_of_bound(&bindings);
    if !running {
        // Nothing is bound while the container is not running.
        out.iter_mut().for_each(|p| p.public_port = None);
    }
    out
}

impl ContainerStore {
    pub fn summary(
        &self,
        record: &ContainerRecord,
        state: &StateRecord,
        volume_path: &dyn Fn(&str) -> String,
    ) -> ContainerSummary {
        let running = state.status == Status::Running;
        ContainerSummary {
            id: record.id.clone(),
            names: vec![format!("/{}", record.name)],
            image: record.request.image.clone(),
            image_id: record.image_id.clone(),
            command: record.args.join(" "),
            created: parse_time(&record.created).map_or(0, |t| t.timestamp()),
            ports: port_summaries(record, running),
            labels: record.labels.clone(),
            state: state.status_name().into(),
            status: status_text(state, Utc::now()),
            host_config: SummaryHostConfig {
                network_mode: record
                    .request
                    .host_config
                    .as_ref()
                    .map(|h| h.network_mode.clone())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "bridge".into()),
            },
            network_settings: SummaryNetworkSettings {
                networks: if running {
                    state.endpoints.clone()
                } else {
                    IndexMap::new()
                },
            },
            mounts: mount_points(record, volume_path),
        }
    }

    /// Running containers, or all with `all`; newest first, as Docker lists them.
    pub fn list(
        &self,
        all: bool,
        filters: &ContainerFilters,
        volume_path: &dyn Fn(&str) -> String,
    ) -> Vec<ContainerSummary> {
        let mut out: Vec<(String, ContainerSummary)> = Vec::new();
        for id in self.ids() {
            let Ok(record) = self.load_record(&id) else {
                continue;
            };
            let state = self.state(&id);
            if !all && state.status != Status::Running && filters.statuses.is_empty() {
                continue;
            }
            if !filters.matches(&record, state.status_name()) {
                continue;
            }
            out.push((
                record.created.clone(),
                self.summary(&record, &state, volume_path),
            ));
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        out.into_iter().map(|(_, s)| s).collect()
    }
}

impl Engine {
    pub(crate) fn volume_source(&self, name: &str) -> String {
        self.volumes
            .mountpoint(name)
            .map(|p| super::path_str(&p))
            .unwrap_or_default()
    }

    pub async fn list_containers(
        &self,
        all: bool,
        filters: &ContainerFilters,
    ) -> Result<Vec<ContainerSummary>> {
        let mut list = self
            .containers
            .list(all, filters, &|n| self.volume_source(n));
        for summary in list.iter_mut().filter(|s| s.state == "running") {
            if let Some(bound) = self.bound_ports(&summary.id) {
                summary.ports = summaries_of_bound(&bound);
            }
        }
        Ok(list)
    }
}

/// `NetworkSettings.Ports`-shaped bindings as `docker ps` lists them, in a stable order.
fn summaries_of_bound(
    bound: &std::collections::HashMap<String, Option<Vec<crate::engine::wire::PortBinding>>>,
) -> Vec<PortSummary> {
    let mut keys: Vec<&String> = bound.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(private_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bound[key].iter().flatten() {
            out.push(PortSummary {
                ip: if b.host_ip.is_empty() {
                    "0.0.0.0".into()
                } else {
                    b.host_ip.clone()
                },
                private_port,
                public_port: b.host_port.parse().ok(),
                kind: proto.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_filter_json_parses_both_forms() {
        let f = ContainerFilters::from_docker_json(
            r#"{"label":["com.docker.compose.project=demo","solo"],"status":{"running":true}}"#,
        )
        .unwrap();
        assert_eq!(
            f.labels,
            vec![
                ("com.docker.compose.project".into(), Some("demo".into())),
                ("solo".into(), None)
            ]
        );
        assert_eq!(f.statuses, vec!["running"]);
        let err = ContainerFilters::from_docker_json(r#"{"colour":["red"]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid filters: unsupported filter \"colour\""
        );
    }

    #[test]
    fn status_texts_read_like_dockers() {
        let now = Utc::now();
        let st = StateRecord {
            status: Status::Exited,
            exit_code: 3,
            finished_at: (now - chrono::Duration::seconds(5)).to_rfc3339(),
            ..Default::default()
        };
        assert_eq!(status_text(&st, now), "Exited (3) 5 seconds ago");
        let up = StateRecord {
            status: Status::Running,
            started_at: (now - chrono::Duration::seconds(90)).to_rfc3339(),
            ..Default::default()
        };
        assert_eq!(status_text(&up, now), "Up About a minute");
        assert_eq!(human_duration(chrono::Duration::hours(50)), "2 days");
        let with_health = |status: &str| StateRecord {
            health: Some(crate::engine::wire::Health {
                status: status.into(),
                ..Default::default()
            }),
            ..up.clone()
        };
        assert_eq!(
            status_text(&with_health("healthy"), now),
            "Up About a minute (healthy)"
        );
        assert_eq!(
            status_text(&with_health("starting"), now),
            "Up About a minute (health: starting)"
        );
        assert_eq!(
            status_text(&with_health("unhealthy"), now),
            "Up About a minute (unhealthy)"
        );
    }
}
