//! Healthchecks: Docker's `Config.Healthcheck` (the request's, over the image's) run through the
//! exec path on a schedule while the container runs, with the result kept in `state.json`
//! (`State.Health`: status, failing streak, last five probes) so it is crash-safe and survives an
//! engine restart, which re-arms the schedule.
//!
//! Docker's rules: the first probe runs one interval after start; during the start period probes
//! run every start interval and failures do not count until the first success; `retries`
//! consecutive failures make the container unhealthy; a probe running past its timeout is killed
//! and counts as a failure (exit code -1). Every status change sends a `health_status: <status>`
//! event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::exec::{drive, ExecEnd, ExecRequest, OutputChunk};
use super::process::ProcIdentity;
use super::state::{ContainerRecord, Status};
use super::{now_rfc3339, ContainerError, ContainerStore};
use crate::engine::wire::{EventActor, EventMessage, Health, HealthConfig, HealthcheckResult};

pub(super) type HealthTasks = Mutex<HashMap<String, tokio::task::AbortHandle>>;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: i64 = 3;
/// Docker keeps the last five probe results.
const MAX_LOG_ENTRIES: usize = 5;
/// Docker keeps at most 4 KiB of a probe's output.
const MAX_OUTPUT: usize = 4096;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// A healthcheck with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// argv run in the container (`CMD-SHELL` becomes `/bin/sh -c`).
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

/// The request's healthcheck over the image's, field by field (Docker's merge: a zero or empty
/// field inherits).
pub fn merged(req: Option<&HealthConfig>, image: Option<&HealthConfig>) -> Option<HealthConfig> {
    let (req, image) = match (req, image) {
        (None, None) => return None,
        (Some(r), None) => return Some(r.clone()),
        (None, Some(i)) => return Some(i.clone()),
        (Some(r), Some(i)) => (r, i),
    };
    let pick = |a: i64, b: i64| if a != 0 { a } else { b };
    Some(HealthConfig {
        test: req
            .test
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| image.test.clone()),
        interval: pick(req.interval, image.interval),
        timeout: pick(req.timeout, image.timeout),
        start_period: pick(req.start_period, image.start_period),
        start_interval: pick(req.start_interval, image.start_interval),
        retries: pick(req.retries, image.retries),
    })
}

fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

/// The probe container `record` runs, or `None` (no healthcheck, or `["NONE"]`).
pub fn probe_for(record: &ContainerRecord) -> Option<Probe> {
    let config = merged(
        record.request.healthcheck.as_ref(),
        record.image_config.healthcheck.as_ref(),
    )?;
    let test = config.test.unwrap_or_default();
    let args = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return None,
    };
    if args.is_empty() {
        return None;
    }
    Some(Probe {
        args,
        interval: nanos(config.interval, DEFAULT_INTERVAL),
        timeout: nanos(config.timeout, DEFAULT_TIMEOUT),
        start_period: nanos(config.start_period, Duration::ZERO),
        start_interval: nanos(config.start_interval, DEFAULT_START_INTERVAL),
        retries: if config.retries > 0 {
            config.retries
        } else {
            DEFAULT_RETRIES
        },
    })
}

/// `State.Health` of a container that just started: `starting` when it has a healthcheck.
pub fn initial(record: &ContainerRecord) -> Option<Health> {
    probe_for(record).map(|_| Health {
        status: STARTING.into(),
        failing_streak: 0,
        log: Vec::new(),
    })
}

/// Apply one probe result by Docker's rules; the new status.
pub fn record_result(
    health: &mut Health,
    result: HealthcheckResult,
    in_start_period: bool,
    retries: i64,
) {
    if result.exit_code == 0 {
        health.failing_streak = 0;
        health.status = HEALTHY.into();
    } else if !(health.status == STARTING && in_start_period) {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = UNHEALTHY.into();
        }
    }
    health.log.push(result);
    let excess = health.log.len().saturating_sub(MAX_LOG_ENTRIES);
    health.log.drain(..excess);
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn lock_tasks(
    tasks: &HealthTasks,
) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
    match tasks.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ContainerStore {
    /// (Re)start the healthcheck schedule of running container `id`, if it has a healthcheck.
    pub fn arm_health(&self, id: &str, events: crate::engine::events::EventBus) {
        self.disarm_health(id);
        let Ok(record) = self.load_record(id) else {
            return;
        };
        let Some(probe) = probe_for(&record) else {
            return;
        };
        let state = self.state(id);
        if state.status != Status::Running {
            return;
        }
        let store = self.clone();
        let started_at = parse_time(&state.started_at).unwrap_or_else(Utc::now);
        let task = tokio::spawn(async move {
            store
                .run_health(record, probe, state.init, started_at, events)
                .await
        });
        lock_tasks(&self.inner.health_tasks).insert(id.to_string(), task.abort_handle());
    }

    /// Stop the healthcheck schedule of `id` (a probe in flight is killed with its task).
    pub fn disarm_health(&self, id: &str) {
        if let Some(task) = lock_tasks(&self.inner.health_tasks).remove(id) {
            task.abort();
        }
    }

    async fn run_health(
        self,
        record: ContainerRecord,
        probe: Probe,
        init: ProcIdentity,
        started_at: DateTime<Utc>,
        events: crate::engine::events::EventBus,
    ) {
        let id = record.id.clone();
        let start_period_end = started_at
            + chrono::Duration::from_std(probe.start_period).unwrap_or(chrono::Duration::zero());
        loop {
            let current = self.state(&id);
            if current.status != Status::Running || current.init != init {
                return;
            }
            let starting = current.health.as_ref().is_none_or(|h| h.status == STARTING);
            let wait = if starting && !probe.start_period.is_zero() && Utc::now() < start_period_end
            {
                probe.start_interval
            } else {
                probe.interval
            };
            tokio::time::sleep(wait).await;
            // Docker stops probing a paused container and resumes when it is unpaused.
            if self.state(&id).paused {
                continue;
            }

            let start = Utc::now();
            let start_text = now_rfc3339();
            let Some((exit_code, output)) = self.probe_once(&id, &probe).await else {
                return;
            };
            let result = HealthcheckResult {
                start: start_text,
                end: now_rfc3339(),
                exit_code,
                output,
            };
            let in_start_period = start < start_period_end;
            let Some(changed) = self
                .record_probe(&record, init, result, in_start_period, probe.retries)
                .await
            else {
                return;
            };
            if let Some(status) = changed {
                send_health_event(&events, &record, &status);
            }
        }
    }

    /// Run the probe once in the container: its exit code and output, or `None` once the
    /// container is gone or stopped.
    async fn probe_once(&self, id: &str, probe: &Probe) -> Option<(i64, String)> {
        let request = ExecRequest {
            args: probe.args.clone(),
            ..Default::default()
        };
        match self.spawn_exec(id, &request) {
            Ok(child) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let (end, output) =
                    tokio::join!(drive(child, Some(probe.timeout), tx), collect(rx));
                Some(match end {
                    ExecEnd::Exited(code) => (code, output),
                    ExecEnd::TimedOut => (
                        -1,
                        format!(
                            "Health check exceeded timeout ({})",
                            humantime_secs(probe.timeout)
                        ),
                    ),
                })
            }
            Err(ContainerError::Conflict(_)) | Err(ContainerError::NotFound(_)) => None,
            Err(e) => Some((-1, e.to_string())),
        }
    }

    /// Add a probe's result to the state of the run `init` belongs to: the new health status if
    /// it changed, or `None` if that run is over.
    async fn record_probe(
        &self,
        record: &ContainerRecord,
        init: ProcIdentity,
        result: HealthcheckResult,
        in_start_period: bool,
        retries: i64,
    ) -> Option<Option<String>> {
        let _guard = self.lock(&record.id).await;
        let mut st = self.load_raw_state(&record.id);
        if st.status != Status::Running || st.init != init {
            return None;
        }
        let health = st.health.get_or_insert_with(|| Health {
            status: STARTING.into(),
            ..Default::default()
        });
        let before = health.status.clone();
        record_result(health, result, in_start_period, retries);
        let after = health.status.clone();
        if let Err(e) = self.save_state(&record.id, &st) {
            eprintln!(
                "berth engine: record health of container {}: {e}",
                record.name
            );
        }
        Some((before != after).then_some(after))
    }
}

/// Combined stdout and stderr, cut at Docker's 4 KiB.
async fn collect(mut rx: mpsc::UnboundedReceiver<OutputChunk>) -> String {
    let mut out = Vec::new();
    while let Some((_, bytes)) = rx.recv().await {
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `30s`, `1.5s`: Go's duration text for whole and fractional seconds.
fn humantime_secs(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{secs}s")
    }
}

fn send_health_event(
    events: &crate::engine::events::EventBus,
    record: &ContainerRecord,
    status: &str,
) {
    let now = Utc::now();
    let mut attributes: IndexMap<String, String> = record.labels.clone();
    attributes.insert("image".into(), record.request.image.clone());
    attributes.insert("name".into(), record.name.clone());
    events.send(EventMessage {
        kind: "container".into(),
        action: format!("health_status: {status}"),
        actor: EventActor {
            id: record.id.clone(),
            attributes,
        },
        time: now.timestamp(),
        time_nano: now.timestamp_nanos_opt().unwrap_or_default(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthcheckResult {
        HealthcheckResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn failures_count_after_the_start_period_and_retries_make_unhealthy() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        record_result(&mut h, result(1), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        record_result(&mut h, result(1), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        record_result(&mut h, result(1), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 2));
        record_result(&mut h, result(0), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        for _ in 0..4 {
            record_result(&mut h, result(3), false, 2);
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(h.status, UNHEALTHY);
    }

    #[test]
    fn request_healthcheck_overrides_the_image_field_by_field() {
        let mut record = ContainerRecord::default();
        record.image_config.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "curl -f localhost".into()]),
            interval: 5_000_000_000,
            retries: 7,
            ..Default::default()
        });
        record.request.healthcheck = Some(HealthConfig {
            interval: 1_000_000_000,
            ..Default::default()
        });
        let p = probe_for(&record).expect("probe");
        assert_eq!(p.args, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.retries, 7);
        record.request.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        assert_eq!(probe_for(&record), None);
        assert_eq!(initial(&record), None);
    }
}
