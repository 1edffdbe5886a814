//! Remove: refuse a running container unless forced, then delete its cgroups and its directory;
//! the engine side detaches the network and removes anonymous volumes when asked.

use super::state::{ContainerRecord, Status};
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::Engine;

impl ContainerStore {
    /// Remove container `id`; returns its record so the caller can clean up what it owns.
    pub async fn remove(&self, id: &str, force: bool) -> Result<ContainerRecord> {
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
            self.kill_everything(id, state.init, state.shim).await;
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

    /// Delete `containers/<id>/` (also used to undo a create that failed half-way).
    pub(crate) fn remove_files(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        // config.json goes first, so a crash mid-way leaves a directory `ids()` ignores.
        let _ = std::fs::remove_file(dir.join("config.json"));
        let removed = match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContainerError::io(format!("remove {}", dir.display()))(e)),
        };
        self.inner.records_changed.notify_waiters();
        removed
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
        let record = self.containers.remove(&id, force).await?;
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
