//! Restart: the `restart` verb (stop, then start) and Docker's restart policies (`no`, `always`,
//! `unless-stopped`, `on-failure[:N]`), applied by the engine when a container exits on its own.
//!
//! As in Docker's restart manager: the delay starts at 100 ms and doubles while the container
//! keeps dying within 10 s of its start, up to one minute; a container stopped or killed by the
//! user is not restarted.

use std::time::Duration;

use super::state::{ContainerRecord, StateRecord, Status};
use super::{ContainerError, Result};
use crate::engine::Engine;

const FIRST_DELAY_MS: u64 = 100;
const MAX_DELAY_MS: u64 = 60_000;
/// A run this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(10);

/// How long to wait before the policy restarts this exited container, or `None` for no restart.
pub fn policy_delay(record: &ContainerRecord, state: &StateRecord) -> Option<Duration> {
    if state.status != Status::Exited || state.stopped_by_user {
        return None;
    }
    let policy = record
        .request
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.clone())
        .unwrap_or_default();
    let restart = match policy.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            state.exit_code != 0
                && (policy.maximum_retry_count <= 0
                    || state.restart_count < policy.maximum_retry_count)
        }
        _ => false,
    };
    if !restart {
        return None;
    }
    let ran = match (
        chrono::DateTime::parse_from_rfc3339(&state.started_at),
        chrono::DateTime::parse_from_rfc3339(&state.finished_at),
    ) {
        (Ok(start), Ok(end)) => (end - start).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let ms = if ran >= STABLE_RUN || state.restart_backoff_ms == 0 {
        FIRST_DELAY_MS
    } else {
        (state.restart_backoff_ms * 2).min(MAX_DELAY_MS)
    };
    Some(Duration::from_millis(ms))
}

/// Whether a stopped container comes back when the engine starts, as in Docker's daemon restore:
/// `always` even after a manual stop, `unless-stopped` unless stopped by the user, `on-failure`
/// after a failure with retries left. A container that exited while the engine was away, or was
/// waiting out its backoff when the engine went, is not lost.
pub fn starts_with_engine(record: &ContainerRecord, state: &StateRecord) -> bool {
    if state.status != Status::Exited {
        return false;
    }
    let policy = record
        .request
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.clone())
        .unwrap_or_default();
    match policy.name.as_str() {
        "always" => true,
        "unless-stopped" => !state.stopped_by_user,
        "on-failure" => {
            !state.stopped_by_user
                && state.exit_code != 0
                && (policy.maximum_retry_count <= 0
                    || state.restart_count < policy.maximum_retry_count)
        }
        _ => false,
    }
}

impl Engine {
    /// Start the stopped containers that [`Engine::restore_containers`] found due to run
    /// whenever the engine does. Runs once, beside the API (Docker restarts in the background
    /// too).
    pub async fn start_containers_at_engine_start(&self, ids: Vec<String>) {
        for id in ids {
            let Ok(record) = self.containers.load_record(&id) else {
                continue;
            };
            // Re-check: the user may have acted since the restore.
            if !starts_with_engine(&record, &self.containers.state(&id)) {
                continue;
            }
            match self.start_container_with(&id, Some(FIRST_DELAY_MS)).await {
                Ok(()) | Err(ContainerError::NotModified(_)) | Err(ContainerError::NotFound(_)) => {
                }
                Err(e) => eprintln!(
                    "berth engine: could not start container {} at engine start: {e}",
                    record.name
                ),
            }
        }
    }

    pub async fn restart_container(&self, id_or_name: &str, timeout: Option<i64>) -> Result<()> {
        match self.stop_container(id_or_name, timeout).await {
            Ok(()) | Err(ContainerError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_container(id_or_name).await
    }

    /// The restart policy's verdict for a container that just exited.
    pub(crate) fn restart_due(&self, id: &str) -> Option<Duration> {
        let record = self.containers.load_record(id).ok()?;
        policy_delay(&record, &self.containers.state(id))
    }

    /// Restart `id` by policy after `delay`, unless the user stepped in meanwhile.
    pub(crate) async fn restart_by_policy(&self, id: &str, delay: Duration) {
        let Ok(record) = self.containers.load_record(id) else {
            return;
        };
        // Re-check: a manual start, stop or remove during the delay wins.
        if self.restart_due(id).is_none() {
            return;
        }
        match self
            .start_container_with(id, Some(delay.as_millis() as u64))
            .await
        {
            Ok(()) | Err(ContainerError::NotModified(_)) | Err(ContainerError::NotFound(_)) => {}
            Err(e) => eprintln!(
                "berth engine: restart policy could not restart container {}: {e}",
                record.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::{HostConfig, RestartPolicy};

    fn record(name: &str, max: i64) -> ContainerRecord {
        let mut r = ContainerRecord::default();
        r.request.host_config = Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: name.into(),
                maximum_retry_count: max,
            }),
            ..Default::default()
        });
        r
    }

    fn exited(code: i64, ran_secs: i64, restarts: i64, backoff: u64) -> StateRecord {
        let start = chrono::Utc::now() - chrono::Duration::seconds(ran_secs);
        StateRecord {
            status: Status::Exited,
            exit_code: code,
            started_at: start.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            restart_count: restarts,
            restart_backoff_ms: backoff,
            ..Default::default()
        }
    }

    #[test]
    fn engine_start_revives_as_dockers_daemon_restore_does() {
        let by_user = |mut s: StateRecord| {
            s.stopped_by_user = true;
            s
        };
        // always: even after a manual stop.
        assert!(starts_with_engine(
            &record("always", 0),
            &exited(0, 0, 0, 0)
        ));
        assert!(starts_with_engine(
            &record("always", 0),
            &by_user(exited(0, 0, 0, 0))
        ));
        // unless-stopped: unless the user stopped it.
        assert!(starts_with_engine(
            &record("unless-stopped", 0),
            &exited(0, 0, 0, 0)
        ));
        assert!(!starts_with_engine(
            &record("unless-stopped", 0),
            &by_user(exited(0, 0, 0, 0))
        ));
        // on-failure: a failure with retries left.
        assert!(starts_with_engine(
            &record("on-failure", 3),
            &exited(1, 0, 2, 0)
        ));
        assert!(!starts_with_engine(
            &record("on-failure", 3),
            &exited(1, 0, 3, 0)
        ));
        assert!(!starts_with_engine(
            &record("on-failure", 0),
            &exited(0, 0, 0, 0)
        ));
        // no policy, or never started: stays as it is.
        assert!(!starts_with_engine(&record("no", 0), &exited(1, 0, 0, 0)));
        let created = StateRecord::default();
        assert!(!starts_with_engine(&record("always", 0), &created));
    }

    #[test]
    fn policies_follow_dockers_rules() {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        assert_eq!(
            ms(policy_delay(&record("no", 0), &exited(1, 0, 0, 0))),
            None
        );
        assert_eq!(
            ms(policy_delay(&record("always", 0), &exited(0, 0, 0, 0))),
            Some(100)
        );
        assert_eq!(
            ms(policy_delay(&record("always", 0), &exited(0, 0, 3, 400))),
            Some(800)
        );
        assert_eq!(
            ms(policy_delay(&record("always", 0), &exited(0, 0, 9, 60_000))),
            Some(60_000)
        );
        assert_eq!(
            ms(policy_delay(&record("always", 0), &exited(0, 20, 9, 6400))),
            Some(100)
        );
        assert_eq!(
            ms(policy_delay(&record("on-failure", 0), &exited(0, 0, 0, 0))),
            None
        );
        assert_eq!(
            ms(policy_delay(
                &record("on-failure", 2),
                &exited(1, 0, 1, 100)
            )),
            Some(200)
        );
        assert_eq!(
            ms(policy_delay(
                &record("on-failure", 2),
                &exited(1, 0, 2, 200)
            )),
            None
        );
        let mut stopped = exited(137, 0, 0, 0);
        stopped.stopped_by_user = true;
        assert_eq!(
            ms(policy_delay(&record("unless-stopped", 0), &stopped)),
            None
        );
    }
}
