//! Containers: state on disk, lifecycle verbs (one file each), the shim and the init re-exec.
//!
//! Layering: [`ContainerStore`] does the container work given plain inputs (an image's config
//! and lower dirs, a netns path, mount sources), so it can be driven without the image, network
//! and volume modules; the `impl Engine` blocks in the verb files gather those inputs from the
//! other modules, call the store, and send events.
//!
//! On disk (`containers/<id>/` under the data root): `config.json` ([`state::ContainerRecord`]),
//! `state.json` ([`state::StateRecord`]), `runtime.json` ([`spec::RuntimeSpec`]), `exit.json`
//! (written by the shim), `<id>-json.log`, `hostname`, `hosts`, `resolv.conf`, and the overlay's
//! `upper/`, `work/`, `rootfs/`, `l/`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::{mpsc, OwnedMutexGuard};

use super::paths::{replace_atomic, write_atomic, write_volatile, EngineRoots};
use crate::engine::runtime::cgroup::CgroupLayout;
use crate::engine::runtime::spec::ExitRecord;
use state::{ContainerRecord, StateRecord};

pub mod archive;
pub mod archive_changes;
pub mod archive_io;
pub mod archive_root;
pub mod archive_stat;
mod archive_tar;
pub mod commit;
pub mod connect;
pub mod create;
pub mod exec;
pub mod health;
pub mod inspect;
pub mod kill;
pub mod list;
pub mod logs;
pub mod mounts;
pub mod pause;
pub mod process;
pub mod remove;
pub mod resources;
pub mod restart;
pub mod restore;
pub mod security;
pub mod start;
pub mod state;
pub mod stats;
pub mod stdin;
pub mod stop;
pub mod sync;
pub mod top;
pub mod update;
pub mod wait;

pub use list::ContainerFilters;
pub use logs::{LogChunk, LogOptions, LogStream};
pub use start::StartPlan;

#[derive(Debug, Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// The container is already in the requested state (Docker answers 304).
    #[error("container {0} is already in that state")]
    NotModified(String),
    /// The container could not be started; `reason` is init's or the shim's message.
    #[error("cannot start container {name}: {reason}")]
    StartFailed { name: String, reason: String },
    /// The container's command could not be executed (`exec: "x": …`): the request is at fault.
    #[error("cannot start container {name}: {reason}")]
    NotExecutable { name: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl ContainerError {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Io { what, source }
    }
}

type Result<T> = std::result::Result<T, ContainerError>;

/// The containers of one engine: an index over `containers/<id>/`, per-container operation locks,
/// and the channel on which exits noticed by monitor tasks are announced.
#[derive(Clone)]
pub struct ContainerStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    roots: EngineRoots,
    cgroups: CgroupLayout,
    /// Serialises creates, so two requests cannot take the same name.
    create_lock: tokio::sync::Mutex<()>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    exits_tx: mpsc::UnboundedSender<String>,
    exits_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Containers being watched whose exit the exit handler has not finished with (`die` not
    /// sent yet), and a wake-up for those waiting on it: `wait`, `stop` and `remove` answer
    /// only after `die`, as Docker's do, so clients see events in Docker's order.
    exits_pending: Mutex<std::collections::HashSet<String>>,
    exits_done: tokio::sync::Notify,
    /// Woken whenever a state record is saved or a container's files are removed, for waits on
    /// a start or a removal (`wait` under `next-exit` and `removed`).
    records_changed: tokio::sync::Notify,
    /// Docker's exec records, by exec ID (in memory, as Docker keeps them).
    execs: exec::ExecTable,
    /// The healthcheck schedule of each running container with one.
    health_tasks: health::HealthTasks,
    /// Attaches streaming output, so auto-remove waits for them.
    attaches: logs::ActiveAttaches,
}

impl ContainerStore {
    pub fn open(roots: &EngineRoots) -> Result<Self> {
        let dir = roots.containers_dir();
        std::fs::create_dir_all(&dir)
            .map_err(ContainerError::io(format!("create {}", dir.display())))?;
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let store = Self {
            inner: Arc::new(StoreInner {
                roots: roots.clone(),
                cgroups: CgroupLayout::detect(),
                create_lock: tokio::sync::Mutex::new(()),
                locks: Mutex::new(HashMap::new()),
                exits_tx,
                exits_rx: Mutex::new(Some(exits_rx)),
                exits_pending: Mutex::new(Default::default()),
                exits_done: tokio::sync::Notify::new(),
                records_changed: tokio::sync::Notify::new(),
                execs: Default::default(),
                health_tasks: Default::default(),
                attaches: Default::default(),
            }),
        };
        store.sweep_removed();
        Ok(store)
    }

    pub fn roots(&self) -> &EngineRoots {
        &self.inner.roots
    }

    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.inner.cgroups
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.inner.roots.container_dir(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }

    fn exit_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("exit.json")
    }

    /// IDs of containers that exited while running under this engine, in the order noticed.
    /// The receiver can be taken once (by the daemon's exit handler).
    pub fn take_exit_notices(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.inner.exits_rx.lock().ok()?.take()
    }

    fn notify_exit(&self, id: &str) {
        let _ = self.inner.exits_tx.send(id.to_string());
    }

    fn pending_exits(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        match self.inner.exits_pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The exit handler is done with the latest exit of `id` (its `die` event is out).
    pub(crate) fn exit_processed(&self, id: &str) {
        self.pending_exits().remove(id);
        self.inner.exits_done.notify_waiters();
    }

    /// Wait until the exit handler has processed the exit of `id`. Without a handler (a store
    /// used on its own) there is nothing to wait for; the wait is bounded so a stuck handler
    /// delays an answer but never hangs it.
    pub(crate) async fn until_exit_processed(&self, id: &str) {
        let handler_attached = self.inner.exits_rx.lock().map_or(true, |rx| rx.is_none());
        if !handler_attached {
            return;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.pending_exits().contains(id) && tokio::time::Instant::now() < deadline {
            let woken = self.inner.exits_done.notified();
            if !self.pending_exits().contains(id) {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), woken).await;
        }
    }

    /// The per-container lock every state-changing verb holds.
    async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = match self.inner.locks.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    fn forget_lock(&self, id: &str) {
        if let Ok(mut map) = self.inner.locks.lock() {
            map.remove(id);
        }
    }

    /// Every container ID on disk.
    pub fn ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.inner.roots.containers_dir()) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("config.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    pub fn load_record(&self, id: &str) -> Result<ContainerRecord> {
        let path = self.dir(id).join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContainerError::NotFound(id.to_string())
            } else {
                ContainerError::Io {
                    what: format!("read {}", path.display()),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ContainerError::Other(format!("corrupt {}: {e}", path.display())))
    }

    fn save_record(&self, rec: &ContainerRecord) -> Result<()> {
        let path = self.dir(&rec.id).join("config.json");
        let bytes = serde_json::to_vec_pretty(rec)
            .map_err(|e| ContainerError::Other(format!("encode container record: {e}")))?;
        write_atomic(&path, &bytes)
            .map_err(ContainerError::io(format!("write {}", path.display())))?;
        self.inner.records_changed.notify_waiters();
        Ok(())
    }

    /// `state.json` as written (may say running for a container that has since exited).
    fn load_raw_state(&self, id: &str) -> StateRecord {
        std::fs::read(self.dir(id).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn load_exit(&self, id: &str) -> Option<ExitRecord> {
        let bytes = std::fs::read(self.exit_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Without a directory fsync per save (see [`replace_atomic`]): a state lost to a power cut
    /// is re-derived as after any crash ([`StateRecord::effective`]). The first save, at create,
    /// is made durable by the fsync of the directory when `config.json` is written after it.
    fn save_state(&self, id: &str, st: &StateRecord) -> Result<()> {
        let path = self.dir(id).join("state.json");
        let bytes = serde_json::to_vec_pretty(st)
            .map_err(|e| ContainerError::Other(format!("encode container state: {e}")))?;
        replace_atomic(&path, &bytes)
            .map_err(ContainerError::io(format!("write {}", path.display())))?;
        self.inner.records_changed.notify_waiters();
        Ok(())
    }

    /// [`save_state`](Self::save_state) without the fsync: the engine (and an engine restarted
    /// after a `kill -9`, the page cache being the kernel's) reads it at once; a power cut may
    /// lose it. For a stop's `stopped_by_user`, written before the signal so that the exit is
    /// never taken for a crash, and made durable by the save of the exited state after it: a
    /// stop cut short by a power cut is as if it had not begun.
    fn save_state_unsynced(&self, id: &str, st: &StateRecord) -> Result<()> {
        let path = self.dir(id).join("state.json");
        let bytes = serde_json::to_vec_pretty(st)
            .map_err(|e| ContainerError::Other(format!("encode container state: {e}")))?;
        write_volatile(&path, &bytes)
            .map_err(ContainerError::io(format!("write {}", path.display())))?;
        self.inner.records_changed.notify_waiters();
        Ok(())
    }

    /// A wake-up for the next saved state or removed container: enabled at once, so a change
    /// between this call and its `await` is not missed.
    pub(crate) fn records_changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut changed = Box::pin(self.inner.records_changed.notified());
        changed.as_mut().enable();
        changed
    }

    /// The state the files imply, without writing anything.
    pub fn state(&self, id: &str) -> StateRecord {
        let raw = self.load_raw_state(id);
        raw.effective(self.load_exit(id).as_ref())
    }

    /// Bring `state.json` in line with what happened; true if it changed from running to exited.
    /// Callers hold the container's lock.
    fn settle_state(&self, id: &str) -> Result<bool> {
        match self.settled_state(id) {
            Some((settled, exited)) => self.save_state(id, &settled).map(|()| exited),
            None => Ok(false),
        }
    }

    /// What `state.json` should say when it differs from what it says, and whether that is a
    /// running → exited change.
    fn settled_state(&self, id: &str) -> Option<(StateRecord, bool)> {
        let raw = self.load_raw_state(id);
        let eff = raw.effective(self.load_exit(id).as_ref());
        (eff != raw).then(|| (eff, raw.status == state::Status::Running))
    }

    /// Full ID from a full ID, a unique ID prefix, or a name (with or without `/`).
    pub fn resolve_id(&self, id_or_name: &str) -> Result<String> {
        let ids = self.ids();
        if ids.iter().any(|i| i == id_or_name) {
            return Ok(id_or_name.to_string());
        }
        let name = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
        for id in &ids {
            if let Ok(rec) = self.load_record(id) {
                if rec.name == name {
                    return Ok(id.clone());
                }
            }
        }
        if !id_or_name.is_empty() && id_or_name.chars().all(|c| c.is_ascii_hexdigit()) {
            let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(id_or_name)).collect();
            match matches.len() {
                1 => return Ok(matches[0].clone()),
                n if n > 1 => {
                    return Err(ContainerError::BadRequest(format!(
                        "multiple IDs found with provided prefix: {id_or_name}"
                    )))
                }
                _ => {}
            }
        }
        Err(ContainerError::NotFound(id_or_name.to_string()))
    }

    /// The cgroup directories container `id` has on this host (any hierarchy it joined).
    pub fn cgroup_paths(&self, id: &str) -> Vec<PathBuf> {
        self.inner
            .cgroups
            .all_paths(id)
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }
}

/// RFC 3339 with nanoseconds, as Docker prints times.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Parse `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let trimmed = s.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| ContainerError::BadRequest(format!("invalid signal: {s}")))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
