//! Restore at daemon start: reattach to shims still running, and mark containers whose shim
//! finished (or vanished) while the engine was away as exited.

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
    /// Called once at daemon start, before serving.
    pub async fn restore_containers(&self) -> Result<()> {
        for id in self.containers.restore().await {
            self.after_exit(&id).await;
        }
        Ok(())
    }

    /// Handle exits noticed by the container monitors (network detach, `die` event). The daemon
    /// runs this for its whole life: `tokio::spawn(async move { engine.process_container_exits().await })`.
    pub async fn process_container_exits(&self) {
        let Some(mut rx) = self.containers.take_exit_notices() else {
            return;
        };
        while let Some(id) = rx.recv().await {
            self.after_exit(&id).await;
        }
    }

    async fn after_exit(&self, id: &str) {
        let _ = self.networks.detach(id).await;
        if let Ok(record) = self.containers.load_record(id) {
            let code = self.containers.state(id).exit_code;
            self.container_event("die", &record, &[("exitCode", code.to_string())]);
        }
    }
}
