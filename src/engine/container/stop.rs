//! Stop: the stop signal (image or container `StopSignal`, default SIGTERM), a grace period
//! (`stop_timeout`, default 10 s, negative = wait forever), then SIGKILL to everything in the
//! container's cgroup.

use std::time::Duration;

use super::pause::OnThaw;
use super::process::ProcIdentity;
use super::state::Status;
use super::{parse_signal, ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::Engine;

/// Docker's `defaultStopTimeout`.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Called with each signal a stop sends (the stop signal, then SIGKILL when the grace period
/// runs out), while the container's lock is held: the engine announces `kill` then, as dockerd
/// does, and so before the `die` (which waits for that lock).
pub(crate) type OnSignal<'a> = &'a (dyn Fn(i32) + Send + Sync);

impl ContainerStore {
    /// Stop container `id`; false if it was not running (Docker's 304).
    pub async fn stop(&self, id: &str, timeout: Option<i64>) -> Result<bool> {
        self.stop_announcing(id, timeout, &|| {}, &|_| {}).await
    }

    /// [`Self::stop`], telling `on_thaw` when the stop thaws a paused container and `on_signal`
    /// each signal it sends.
    pub(crate) async fn stop_announcing(
        &self,
        id: &str,
        timeout: Option<i64>,
        on_thaw: OnThaw<'_>,
        on_signal: OnSignal<'_>,
    ) -> Result<bool> {
        let _guard = self.lock(id).await;
        let record = self.load_record(id)?;
        self.settle_and_notify(id)?;
        let mut state = self.load_raw_state(id);
        if state.status != Status::Running {
            return Ok(false);
        }
        state.stopped_by_user = true;
        // No fsync before the signal: the save of the exited state below is the durable one.
        self.save_state_unsynced(id, &state)?;
        let signal = parse_signal(&record.stop_signal)?;
        let timeout = timeout
            .or(record.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        state.init.signal(signal);
        // A paused container is thawed so it sees its stop signal, as Docker's stop does.
        self.thaw_for_kill(id, on_thaw).await?;
        on_signal(signal);
        let graceful = if timeout < 0 {
            state.shim.exited().await;
            true
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), state.shim.exited())
                .await
                .is_ok()
        };
        if !graceful {
            self.kill_everything(id, state.init, state.shim, on_thaw, on_signal)
                .await;
        }
        self.settle_and_notify(id)?;
        self.until_exit_processed(id).await;
        Ok(true)
    }

    /// SIGKILL the init and every process in the cgroup, then wait for the shim to record the
    /// exit. `on_signal` hears of the SIGKILL after the thaw, so `unpause` comes before `kill`.
    pub(crate) async fn kill_everything(
        &self,
        id: &str,
        init: ProcIdentity,
        shim: ProcIdentity,
        on_thaw: OnThaw<'_>,
        on_signal: OnSignal<'_>,
    ) {
        init.signal(libc::SIGKILL);
        // A paused container is thawed so the SIGKILL reaches its processes, as Docker does.
        let _ = self.thaw_for_kill(id, on_thaw).await;
        on_signal(libc::SIGKILL);
        let paths = self.cgroup_paths(id);
        let _ =
            tokio::task::spawn_blocking(move || cgroup::kill_all(&paths, Duration::from_secs(5)))
                .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), shim.exited()).await;
    }
}

impl Engine {
    pub async fn stop_container(&self, id_or_name: &str, timeout: Option<i64>) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        let stopped = self
            .containers
            .stop_announcing(
                &id,
                timeout,
                &self.announce_thaw(&record),
                &self.announce_kill(&record),
            )
            .await?;
        if !stopped {
            return Err(ContainerError::NotModified(record.name));
        }
        // The veths go in the background; whatever needs them gone waits (network/mod.rs).
        self.networks.detach_in_background(&id).await;
        self.container_event("stop", &record, &[]);
        Ok(())
    }
}

impl Engine {
    /// The `kill` event of each signal a stop or a forced remove sends, by number as dockerd's.
    pub(crate) fn announce_kill<'a>(
        &'a self,
        record: &'a super::state::ContainerRecord,
    ) -> impl Fn(i32) + Send + Sync + 'a {
        move |signal| self.container_event("kill", record, &[("signal", signal.to_string())])
    }
}
