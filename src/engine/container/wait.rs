//! Wait: block until the container is not running (or has gone) and return its exit code, with
//! Docker's three conditions.

use std::time::Duration;

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::Engine;

/// Docker's `?condition=` of `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// At once for a container that is not running.
    #[default]
    NotRunning,
    /// The next exit after the call: a created container is first started (`docker run` waits
    /// this way before it starts the container).
    NextExit,
    /// The container is gone (`docker run --rm`, whose engine removes it on exit).
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "not-running" => Ok(Self::NotRunning),
            "next-exit" => Ok(Self::NextExit),
            "removed" => Ok(Self::Removed),
            other => Err(ContainerError::BadRequest(format!(
                "invalid condition: {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// A start or a removal is announced (`records_changed`); this re-reads the files anyway now
/// and then, in case a change came from outside this engine.
const RECHECK: Duration = Duration::from_secs(1);

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
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Exit code of the first exit that finishes after this call.
    async fn wait_next_exit(&self, id: &str) -> Result<i64> {
        let before = self.state(id).finished_at;
        loop {
            let changed = self.records_changed();
            self.load_record(id)?;
            let state = self.state(id);
            match state.status {
                Status::Running => {
                    self.wait(id).await?;
                }
                _ if state.finished_at != before && !state.finished_at.is_empty() => {
                    self.until_exit_processed(id).await;
                    return Ok(state.exit_code);
                }
                _ => {
                    let _ = tokio::time::timeout(RECHECK, changed).await;
                }
            }
        }
    }

    /// Exit code once `id` has exited and its record is gone.
    async fn wait_removed(&self, id: &str) -> Result<i64> {
        let mut code = 0;
        loop {
            let changed = self.records_changed();
            match self.load_record(id) {
                Ok(_) => {}
                Err(ContainerError::NotFound(_)) => return Ok(code),
                Err(e) => return Err(e),
            }
            let state = self.state(id);
            if state.status == Status::Running {
                // The shim records the exit before it exits: read it at once, before an
                // auto-remove deletes the record (`wait` could find the record gone and leave
                // the code of the running state, 0).
                state.shim.exited().await;
                let after = self.state(id);
                if after.status != Status::Running {
                    code = after.exit_code;
                } else {
                    // A shim gone without a record: the engine's monitor settles the state.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } else {
                code = state.exit_code;
                let _ = tokio::time::timeout(RECHECK, changed).await;
            }
        }
    }
}

impl Engine {
    pub async fn wait_container(&self, id_or_name: &str) -> Result<i64> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.wait(&id).await
    }

    /// Wait for `id` (a full ID) under Docker's `condition`.
    pub async fn wait_container_for(&self, id: &str, condition: WaitCondition) -> Result<i64> {
        match condition {
            WaitCondition::NotRunning => self.containers.wait(id).await,
            WaitCondition::NextExit => self.containers.wait_next_exit(id).await,
            WaitCondition::Removed => self.containers.wait_removed(id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_as_docker_names_them() {
        assert_eq!(WaitCondition::parse("").unwrap(), WaitCondition::NotRunning);
        assert_eq!(
            WaitCondition::parse("next-exit").unwrap(),
            WaitCondition::NextExit
        );
        assert_eq!(
            WaitCondition::parse("removed").unwrap(),
            WaitCondition::Removed
        );
        let err = WaitCondition::parse("gone").unwrap_err().to_string();
        assert!(err.contains("invalid condition: \"gone\""), "{err}");
    }
}
