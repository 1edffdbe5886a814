//! Kill: send a signal (default SIGKILL) to the container's init, as `docker kill` does.

use super::pause::OnThaw;
use super::state::Status;
use super::{parse_signal, ContainerError, ContainerStore, Result};
use crate::engine::Engine;

impl ContainerStore {
    pub async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        self.kill_announcing(id, signal, &|| {}).await
    }

    /// [`Self::kill`], telling `on_thaw` when the signal thaws a paused container.
    pub(crate) async fn kill_announcing(
        &self,
        id: &str,
        signal: Option<&str>,
        on_thaw: OnThaw<'_>,
    ) -> Result<()> {
        let _guard = self.lock(id).await;
        let signal = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        self.settle_and_notify(id)?;
        let mut state = self.load_raw_state(id);
        if state.status != Status::Running || !state.init.signal(signal) {
            return Err(ContainerError::Conflict(format!(
                "container {id} is not running"
            )));
        }
        state.stopped_by_user = true;
        self.save_state(id, &state)?;
        // A frozen process acts on the signal only once thawed; Docker thaws for these.
        let record = self.load_record(id)?;
        if super::pause::signal_thaws(signal, super::pause::configured_stop_signal(&record)) {
            self.thaw_for_kill(id, on_thaw).await?;
        }
        Ok(())
    }
}

impl Engine {
    pub async fn kill_container(&self, id_or_name: &str, signal: Option<&str>) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        self.containers
            .kill_announcing(&id, signal, &self.announce_thaw(&record))
            .await?;
        self.container_event("kill", &record, &[("signal", event_signal(signal))]);
        Ok(())
    }
}

/// The `signal` attribute of a `kill` event: the number, as dockerd gives it ("15", not "TERM"),
/// so scripts filtering the event stream see the same value with berth and docker.
fn event_signal(signal: Option<&str>) -> String {
    let name = signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL");
    parse_signal(name).map_or_else(|_| name.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::event_signal;

    #[test]
    fn kill_events_name_the_signal_by_number_as_dockerd_does() {
        assert_eq!(event_signal(None), "9");
        assert_eq!(event_signal(Some("")), "9");
        assert_eq!(event_signal(Some("SIGTERM")), "15");
        assert_eq!(event_signal(Some("HUP")), "1");
        assert_eq!(event_signal(Some("10")), "10");
    }
}
