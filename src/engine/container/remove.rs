//! Remove: refuse a running container unless forced, then delete its cgroups and its directory;
//! the engine side detaches the network and removes anonymous volumes when asked.

use super::pause::OnThaw;
use super::state::{ContainerRecord, Status};
use super::stop::OnSignal;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::Engine;

impl ContainerStore {
    /// Remove container `id`; returns its record so the caller can clean up what it owns.
    pub async fn remove(&self, id: &str, force: bool) -> Result<ContainerRecord> {
        self.remove_announcing(id, force, &|| {}, &|_| {}).await
    }

    /// [`Self::remove`], telling `on_thaw` when a forced remove thaws a paused container and
    /// `on_signal` when it kills a running one.
    pub(crate) async fn remove_announcing(
        &self,
        id: &str,
        force: bool,
        on_thaw: OnThaw<'_>,
        on_signal: OnSignal<'_>,
    ) -> Result<ContainerRecord> {
        let guard = self.lock(id).await;
        let record = self.load_record(id)?;
        self.settle_and_notify(id)?;
        let state = self.load_raw_state(id);
        if state.status == Status::Running {
            if !force {
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    record.name
                )));
            }
            self.kill_everything(id, state.init, state.shim, on_thaw, on_signal)
                .await;
            self.settle_and_notify(id)?;
            // `die` goes out before `destroy`, as Docker sends them.
            self.until_exit_processed(id).await;
            if self.state(id).status == Status::Running {
                return Err(ContainerError::Other(format!(
                    "cannot remove container \"/{}\": it did not die after SIGKILL",
                    record.name
                )));
            }
        }
        let paths = self.cgroup_paths(id);
        tokio::task::spawn_blocking(move || {
            cgroup::kill_all(&paths, std::time::Duration::from_secs(5));
            cgroup::remove(&paths)
        })
        .await
        .map_err(|e| ContainerError::Other(format!("cgroup cleanup task failed: {e}")))?
        .map_err(|e| ContainerError::Other(e.to_string()))?;
        self.remove_files(id)?;
        drop(guard);
        self.forget_lock(id);
        Ok(record)
    }

    /// Delete `containers/<id>/` (also used to undo a create that failed half-way). The
    /// container is gone once its directory is renamed into [`REMOVED_DIR`]; the delete of what
    /// is in it (the writable layer holds whatever the workload wrote) runs on a blocking thread,
    /// so a `down` or a `run --rm` does not wait for it. A delete cut short by a crash is
    /// finished by [`ContainerStore::sweep_removed`] at the next engine start.
    pub(crate) fn remove_files(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        // config.json goes first, so a crash mid-way leaves a directory `ids()` ignores.
        let _ = std::fs::remove_file(dir.join("config.json"));
        let removed = self.removed_dir();
        let moved = std::fs::create_dir_all(&removed)
            .and_then(|()| std::fs::rename(&dir, removed.join(id)));
        let result = match moved {
            Ok(()) => {
                let doomed = removed.join(id);
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn_blocking(move || delete_tree(&doomed))),
                    Err(_) => drop(delete_tree(&doomed)),
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // Renaming failed (a leftover of the same ID in the way): delete in place.
            Err(_) => delete_tree(&dir)
                .map_err(|e| ContainerError::io(format!("remove {}", dir.display()))(e)),
        };
        self.inner.records_changed.notify_waiters();
        result
    }

    fn removed_dir(&self) -> std::path::PathBuf {
        self.inner.roots.containers_dir().join(REMOVED_DIR)
    }

    /// Delete what removals left in [`REMOVED_DIR`] when the engine stopped before they were
    /// done. Runs on a thread of its own: nothing waits for it.
    pub fn sweep_removed(&self) {
        let removed = self.removed_dir();
        let Ok(entries) = std::fs::read_dir(&removed) else {
            return;
        };
        let leftovers: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        if leftovers.is_empty() {
            return;
        }
        std::thread::spawn(move || {
            for path in leftovers {
                if let Err(e) = delete_tree(&path) {
                    eprintln!("berth engine: cannot delete {}: {e}", path.display());
                }
            }
        });
    }
}

/// Where removed containers' directories wait for their delete, under the containers
/// directory (same filesystem, so the move is a rename). It has no `config.json`, so `ids()`
/// never takes it for a container.
const REMOVED_DIR: &str = ".removed";

/// `remove_dir_all`, fine if it is gone already.
fn delete_tree(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Engine {
    pub async fn remove_container(
        &self,
        id_or_name: &str,
        force: bool,
        remove_anonymous_volumes: bool,
    ) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        // The record is read first only for the `unpause` and `kill` a forced remove may announce.
        let record = self.containers.load_record(&id)?;
        let record = self
            .containers
            .remove_announcing(
                &id,
                force,
                &self.announce_thaw(&record),
                &self.announce_kill(&record),
            )
            .await?;
        self.forget_execs(&id);
        let _ = self.networks.detach(&id).await;
        if remove_anonymous_volumes {
            for vol in &record.anonymous_volumes {
                // Another container may use it (`--volumes-from`); Docker keeps it then.
                let users = self.volumes_in_use().remove(&vol.name).unwrap_or_default();
                let _ = self.volumes.remove(&vol.name, false, &users);
            }
        }
        self.container_event("destroy", &record, &[]);
        Ok(())
    }
}

impl Engine {
    /// Volume name → IDs of the containers (any state) that mount it, from their records on disk.
    pub fn volumes_in_use(&self) -> std::collections::HashMap<String, Vec<String>> {
        let mut users: std::collections::HashMap<String, Vec<String>> = Default::default();
        for id in self.containers.ids() {
            let Ok(record) = self.containers.load_record(&id) else {
                continue;
            };
            let mut names: Vec<String> = record
                .anonymous_volumes
                .iter()
                .map(|a| a.name.clone())
                .collect();
            if let Some(host) = record.request.host_config.as_ref() {
                for m in host.mounts.iter().flatten() {
                    if m.kind == "volume" && !m.source.is_empty() {
                        names.push(m.source.clone());
                    }
                }
                for bind in host.binds.iter().flatten() {
                    // `name:/path[:opts]`: a named volume when the source is not a path.
                    if let Some((source, _)) = bind.split_once(':') {
                        if !source.starts_with('/') && !source.starts_with('.') {
                            names.push(source.to_string());
                        }
                    }
                }
            }
            names.sort();
            names.dedup();
            for name in names {
                users.entry(name).or_default().push(id.clone());
            }
        }
        users
    }
}
