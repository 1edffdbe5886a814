//! Pause and unpause (`docker pause`): every process of a running container is frozen with the
//! cgroup freezer — v2's `cgroup.freeze` on its own cgroup when the host has a cgroup2 tree, else
//! v1's freezer in a group made for the pause — and `state.json` says `paused`.
//!
//! The freeze is the kernel's, so it outlives the engine: a paused container is still paused
//! (and still says so) after an engine restart, and unpause finds the freezer again from the
//! container's ID. A SIGKILL (kill, the end of a stop's grace period, `rm -f`) thaws the
//! container so the signal takes effect, as Docker does.

use std::path::PathBuf;
use std::time::Duration;

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup::{self, CgroupError};
use crate::engine::Engine;

/// How long a freeze or thaw may take before the verb gives up on it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Freeze every process of container `id` (cgroup directories `paths`).
fn freeze(id: &str, paths: &[PathBuf]) -> Result<()> {
    let err = |e: CgroupError| ContainerError::Other(format!("cannot pause container {id}: {e}"));
    if cgroup::set_frozen(paths, true, FREEZE_TIMEOUT).map_err(err)? {
        return Ok(());
    }
    let Some(root) = cgroup::v1_freezer_root() else {
        return Err(ContainerError::Other(format!(
            "cannot pause container {id}: this host has no cgroup freezer (neither a cgroup2 \
             tree nor a v1 freezer hierarchy)"
        )));
    };
    // The handle is not kept: the frozen group is found again by ID when the container thaws.
    cgroup::V1Freeze::freeze(&root, id, paths, FREEZE_TIMEOUT)
        .map(drop)
        .map_err(err)
}

/// Thaw container `id` whichever freezer holds it; a container that is not frozen is left as is.
pub(crate) fn thaw(id: &str, paths: &[PathBuf]) -> std::result::Result<(), CgroupError> {
    match cgroup::set_frozen(paths, false, FREEZE_TIMEOUT) {
        Ok(_) => {}
        // Thawed, its processes acted on a pending signal at once and exited, and the shim
        // removed the cgroup before the thaw was confirmed: nothing is frozen any more.
        Err(_) if !paths.iter().any(|p| p.join("cgroup.freeze").exists()) => {}
        Err(e) => return Err(e),
    }
    if let Some(frozen) =
        cgroup::v1_freezer_root().and_then(|root| cgroup::V1Freeze::existing(&root, id))
    {
        frozen.thaw()?;
    }
    Ok(())
}

/// Whether a signal sent to a paused container thaws it, as Docker's `killWithSignal` decides:
/// SIGKILL always; with a stop signal configured (container or image), that signal; without one,
/// any signal (Docker marks the container to exit on its next event and resumes it). So a
/// `docker stop` of a paused container thaws it and its process sees the stop signal.
pub fn signal_thaws(signal: i32, configured_stop_signal: Option<i32>) -> bool {
    match configured_stop_signal {
        Some(stop) if signal != libc::SIGKILL => signal == stop,
        _ => true,
    }
}

/// The stop signal the container or its image configured (not berth's SIGTERM default).
pub(crate) fn configured_stop_signal(record: &super::state::ContainerRecord) -> Option<i32> {
    record
        .request
        .stop_signal
        .clone()
        .or_else(|| record.image_config.stop_signal.clone())
        .filter(|s| !s.is_empty())
        .and_then(|s| super::parse_signal(&s).ok())
}

/// Called when a kill, stop or forced remove thaws a paused container, while the container's
/// lock is held: the engine announces `unpause` then, as Docker's resumed-event handler does,
/// and so before the `die` the thaw lets happen (`die` waits for that lock).
pub(crate) type OnThaw<'a> = &'a (dyn Fn() + Send + Sync);

/// Docker's refusal of an exec into a paused container.
pub(crate) fn exec_refusal(name: &str) -> ContainerError {
    ContainerError::Conflict(format!(
        "Container {name} is paused, unpause the container before exec"
    ))
}

impl ContainerStore {
    pub async fn pause(&self, id: &str) -> Result<()> {
        let _guard = self.lock(id).await;
        self.settle_and_notify(id)?;
        let mut state = self.load_raw_state(id);
        if state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        if state.paused {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is already paused"
            )));
        }
        let paths = self.cgroup_paths(id);
        let owned_id = id.to_string();
        tokio::task::spawn_blocking(move || freeze(&owned_id, &paths))
            .await
            .map_err(|e| ContainerError::Other(format!("pause task failed: {e}")))??;
        state.paused = true;
        self.save_state(id, &state)
    }

    pub async fn unpause(&self, id: &str) -> Result<()> {
        let _guard = self.lock(id).await;
        self.settle_and_notify(id)?;
        let mut state = self.load_raw_state(id);
        if !state.is_paused() {
            return Err(ContainerError::Conflict(format!(
                "Container {id} is not paused"
            )));
        }
        self.thaw_blocking(id).await?;
        state.paused = false;
        self.save_state(id, &state)
    }

    /// Thaw on a blocking thread (the freezer waits for the kernel).
    async fn thaw_blocking(&self, id: &str) -> Result<()> {
        let paths = self.cgroup_paths(id);
        let owned_id = id.to_string();
        tokio::task::spawn_blocking(move || thaw(&owned_id, &paths))
            .await
            .map_err(|e| ContainerError::Other(format!("unpause task failed: {e}")))?
            .map_err(|e| ContainerError::Other(format!("cannot unpause container {id}: {e}")))
    }

    /// After a signal that [`signal_thaws`] a paused container: thaw it so the signal is acted
    /// on (v1's freezer holds even a SIGKILL until then), and record that it is no longer paused
    /// (a process that ignores the signal runs on, thawed, as under Docker); `on_thaw` is told
    /// when it was paused. Callers hold the container's lock.
    pub(crate) async fn thaw_for_kill(&self, id: &str, on_thaw: OnThaw<'_>) -> Result<()> {
        let mut state = self.load_raw_state(id);
        if !state.is_paused() {
            return Ok(());
        }
        self.thaw_blocking(id).await?;
        state.paused = false;
        self.save_state(id, &state)?;
        on_thaw();
        Ok(())
    }
}

impl Engine {
    pub async fn pause_container(&self, id_or_name: &str) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        self.containers.pause(&id).await?;
        self.container_event("pause", &record, &[]);
        Ok(())
    }

    pub async fn unpause_container(&self, id_or_name: &str) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        self.containers.unpause(&id).await?;
        self.container_event("unpause", &record, &[]);
        Ok(())
    }

    /// The `unpause` event a kill, stop or forced remove sends when it thaws `record`'s
    /// container (see [`OnThaw`]).
    pub(crate) fn announce_thaw<'a>(
        &'a self,
        record: &'a super::state::ContainerRecord,
    ) -> impl Fn() + Send + Sync + 'a {
        move || self.container_event("unpause", record, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_thaw_a_paused_container_as_dockers_kill_decides() {
        // No stop signal configured: any signal thaws.
        assert!(signal_thaws(libc::SIGKILL, None));
        assert!(signal_thaws(libc::SIGUSR1, None));
        // With one: that signal and SIGKILL thaw, others stay pending in the frozen container.
        let quit = Some(libc::SIGQUIT);
        assert!(signal_thaws(libc::SIGQUIT, quit));
        assert!(signal_thaws(libc::SIGKILL, quit));
        assert!(!signal_thaws(libc::SIGUSR1, quit));
    }
}
