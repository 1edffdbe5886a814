//! Wait: block until the container is not running and return its exit code.

use super::state::Status;
use super::{ContainerStore, Result};
use crate::engine::Engine;

impl ContainerStore {
    /// Exit code once `id` is not running (at once for created or exited containers).
    pub async fn wait(&self, id: &str) -> Result<i64> {
        loop {
            self.load_record(id)?;
            let state = self.state(id);
            if state.status != Status::Running {
                self.until_exit_processed(id).await;
                return Ok(state.exit_code);
            }
            // The shim exits right after recording the exit; the state then says exited.
            state.shim.exited().await;
            if state.shim.alive() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

impl Engine {
    pub async fn wait_container(&self, id_or_name: &str) -> Result<i64> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.wait(&id).await
    }
}
