//! Restart: stop (if running) then start, as `POST /containers/{id}/restart` does.

use super::{ContainerError, Result};
use crate::engine::Engine;

impl Engine {
    pub async fn restart_container(&self, id_or_name: &str, timeout: Option<i64>) -> Result<()> {
        match self.stop_container(id_or_name, timeout).await {
            Ok(()) | Err(ContainerError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_container(id_or_name).await
    }
}
