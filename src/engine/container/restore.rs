//! Restore at daemon start: reattach to shims still running, and mark containers whose shim
//! finished (or vanished) while the engine was away as exited.

use std::time::Duration;

use super::state::Status;
use super::{ContainerStore, Result};
use crate::engine::Engine;

impl ContainerStore {
    /// Settle every container's state; watch the running ones again. Returns the IDs that turned
    /// out to have exited.
    pub async fn restore(&self) -> Vec<String> {
        let mut exited = Vec::new();
        for id in self.ids() {
            let _guard = self.lock(&id).await;
            let before = self.load_raw_state(&id);
            if before.status != Status::Running {
                continue;
            }
            if self.settle_state(&id).unwrap_or(false) {
                exited.push(id.clone());
                continue;
            }
            self.spawn_monitor(&id, before.shim);
        }
        exited
    }
}

impl Engine {
    /// Called once at daemon start, before serving. Containers that died while the engine was
    /// away are announced to [`Engine::process_container_exits`] too, so their restart policy
    /// applies. Returns the containers that were already stopped and whose policy starts them
    /// with the engine (see [`super::restart::starts_with_engine`]), for
    /// [`Engine::start_containers_at_engine_start`].
    pub async fn restore_containers(&self) -> Result<Vec<String>> {
        let exited = self.containers.restore().await;
        let revive = self
            .containers
            .ids()
            .into_iter()
            .filter(|id| !exited.contains(id))
            .filter(|id| {
                self.containers.load_record(id).is_ok_and(|record| {
                    super::restart::starts_with_engine(&record, &self.containers.state(id))
                })
            })
            .collect();
        for id in exited {
            self.containers.notify_exit(&id);
        }
        // Healthchecks of the containers still running resume on their schedule.
        for id in self.containers.ids() {
            if self.containers.state(&id).status == Status::Running {
                self.containers.arm_health(&id, self.events.clone());
            }
        }
        Ok(revive)
    }

    /// Handle exits noticed by the container monitors: detach the network, send `die`, and apply
    /// the restart policy. The daemon runs this for its whole life:
    /// `tokio::spawn(async move { engine.process_container_exits().await })`.
    pub async fn process_container_exits(&self) {
        let Some(mut rx) = self.containers.take_exit_notices() else {
            return;
        };
        // (when, container, delay) of restarts waiting for their backoff.
        let mut pending: Vec<(tokio::time::Instant, String, Duration)> = Vec::new();
        loop {
            let next = pending.iter().map(|p| p.0).min();
            tokio::select! {
                notice = rx.recv() => {
                    let Some(id) = notice else { return };
                    self.after_exit(&id).await;
                    if let Some(delay) = self.restart_due(&id) {
                        pending.push((tokio::time::Instant::now() + delay, id, delay));
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)),
                    if next.is_some() => {
                    let now = tokio::time::Instant::now();
                    let (due, waiting): (Vec<_>, Vec<_>) =
                        pending.into_iter().partition(|p| p.0 <= now);
                    pending = waiting;
                    for (_, id, delay) in due {
                        self.restart_by_policy(&id, delay).await;
                    }
                }
            }
        }
    }

    async fn after_exit(&self, id: &str) {
        self.containers.disarm_health(id);
        // As Docker releases the network before it wakes waiters: after `stop` or `wait`
        // returns, the container's endpoints are gone from the books (inspect, DNS), and a
        // `network rm` or an attach right after waits for the veths to go. The kernel work
        // (~10-30 ms a container) runs in the background, so `down` does not pay it once per
        // dependency level.
        self.networks.detach_in_background(id).await;
        if let Ok(record) = self.containers.load_record(id) {
            let state = self.containers.state(id);
            // Docker announces the OOM kill before the exit it caused.
            if state.oom_killed {
                self.container_event("oom", &record, &[]);
            }
            let code = state.exit_code;
            self.container_event("die", &record, &[("exitCode", code.to_string())]);
        }
        self.containers.exit_processed(id);
        self.auto_remove(id).await;
    }

    /// `HostConfig.AutoRemove` (`docker run --rm`): the engine removes the container, with its
    /// anonymous volumes, once it has exited on its own (or failed to start) — unless its restart
    /// policy restarts it.
    pub(crate) async fn auto_remove(&self, id: &str) {
        let Ok(record) = self.containers.load_record(id) else {
            return;
        };
        let wanted = record
            .request
            .host_config
            .as_ref()
            .is_some_and(|h| h.auto_remove);
        if !wanted || self.restart_due(id).is_some() {
            return;
        }
        // Removal deletes the log an attached `docker run --rm` is still reading.
        self.containers
            .until_attaches_done(id, Duration::from_secs(10))
            .await;
        match self.remove_container(id, true, true).await {
            Ok(()) | Err(super::ContainerError::NotFound(_)) => {}
            Err(e) => eprintln!(
                "berth engine: could not auto-remove container {}: {e}",
                record.name
            ),
        }
    }
}
