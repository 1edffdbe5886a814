//! Named volumes (local driver): `volumes/<name>/_data` under the data root, with their metadata
//! (driver, labels, options, creation time) in `volumes/<name>/volume.json`.
//!
//! A volume appears atomically: it is assembled under a hidden temporary name and renamed into
//! place, so a crash leaves hidden garbage (swept at the next `open`), never a half-made volume.
//! Removal renames the volume out of sight first for the same reason. Whether a container still
//! uses a volume is known to the container store, not here, so callers pass that in.

mod copy_up;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::api::types::{Volume, VolumeCreateRequest};
use crate::engine::paths::{write_atomic, EngineRoots};

pub use copy_up::{copy_dir_contents, resolve_in_root};

/// The label Docker puts on volumes it made for an anonymous mount (`-v /path`, image `VOLUME`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const METADATA_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";
/// Prefix of in-progress creations and removals; never a valid volume name (names start alnum).
const HIDDEN_PREFIX: &str = ".";
/// Read-only overlay views of an image, mounted for the length of one copy-up.
const COPY_UP_PREFIX: &str = ".copyup-";

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl VolumeError {
    pub fn http_status(&self) -> u16 {
        match self {
            VolumeError::NotFound(_) => 404,
            VolumeError::Conflict(_) => 409,
            VolumeError::BadRequest(_) => 400,
            VolumeError::Io { .. } | VolumeError::Other(_) => 500,
        }
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        VolumeError::Io {
            context: context.into(),
            source,
        }
    }
}

type Result<T> = std::result::Result<T, VolumeError>;

/// What `volume.json` holds; the mountpoint is derived from the name, never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VolumeMetadata {
    name: String,
    driver: String,
    created_at: String,
    #[serde(default)]
    labels: IndexMap<String, String>,
    #[serde(default)]
    options: IndexMap<String, String>,
}

pub struct VolumeStore {
    root: PathBuf,
    /// Serialises create and remove so that "exists?" and "make it" are one step for this daemon.
    lock: Mutex<()>,
}

/// Docker's rule for volume (and container) names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(VolumeError::BadRequest(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, \
             only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path"
        )))
    }
}

impl VolumeStore {
    pub fn open(roots: &EngineRoots) -> Result<Self> {
        let root = roots.volumes_dir();
        std::fs::create_dir_all(&root)
            .map_err(|e| VolumeError::io(format!("create {}", root.display()), e))?;
        let store = VolumeStore {
            root,
            lock: Mutex::new(()),
        };
        store.sweep_hidden();
        Ok(store)
    }

    /// Remove what an interrupted create or remove left behind.
    fn sweep_hidden(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(COPY_UP_PREFIX) {
                // An image view left mounted by a crash: unmount, and never delete through it.
                let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(entry.path());
            } else if name.starts_with(HIDDEN_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Idempotent, as Docker's: creating an existing volume returns it.
    pub fn create(&self, req: VolumeCreateRequest) -> Result<Volume> {
        let driver = if req.driver.is_empty() {
            "local".to_string()
        } else {
            req.driver.clone()
        };
        if driver != "local" {
            return Err(VolumeError::BadRequest(format!(
                "create {}: volume driver {driver:?} is not supported, berth has only the \"local\" driver",
                req.name
            )));
        }
        if let Some(key) = req.driver_opts.keys().next() {
            return Err(VolumeError::BadRequest(format!(
                "create {}: local volume option {key:?} is not supported by berth (no driver options are)",
                req.name
            )));
        }
        let name = if req.name.is_empty() {
            random_name()
        } else {
            validate_name(&req.name)?;
            req.name.clone()
        };

        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.volume_dir(&name).exists() {
            return self.get(&name);
        }
        let meta = VolumeMetadata {
            name: name.clone(),
            driver,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: req.labels,
            options: IndexMap::new(),
        };
        let staging = self
            .root
            .join(format!("{HIDDEN_PREFIX}create-{name}-{}", random_suffix()));
        let result = self.assemble(&staging, &meta).and_then(|()| {
            std::fs::rename(&staging, self.volume_dir(&name))
                .map_err(|e| VolumeError::io(format!("create {name}"), e))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        sync_dir(&self.root);
        self.get(&name)
    }

    fn assemble(&self, staging: &Path, meta: &VolumeMetadata) -> Result<()> {
        let context = || format!("create {}", meta.name);
        std::fs::create_dir(staging).map_err(|e| VolumeError::io(context(), e))?;
        // Docker's `_data` is 0755 root-owned: readable by container users, writable by root.
        let data = staging.join(DATA_DIR);
        std::fs::create_dir(&data).map_err(|e| VolumeError::io(context(), e))?;
        set_mode(&data, 0o755).map_err(|e| VolumeError::io(context(), e))?;
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| VolumeError::Other(format!("{}: encode metadata: {e}", context())))?;
        write_atomic(&staging.join(METADATA_FILE), &json).map_err(|e| VolumeError::io(context(), e))
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        if validate_name(name).is_err() {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let path = self.volume_dir(name).join(METADATA_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(VolumeError::io(format!("get {name}"), e)),
        };
        let meta: VolumeMetadata = serde_json::from_slice(&bytes).map_err(|e| {
            VolumeError::Other(format!(
                "get {name}: corrupt metadata {}: {e}",
                path.display()
            ))
        })?;
        Ok(Volume {
            name: meta.name,
            driver: meta.driver,
            mountpoint: self.volume_dir(name).join(DATA_DIR).display().to_string(),
            created_at: meta.created_at,
            labels: meta.labels,
            scope: "local".to_string(),
            options: meta.options,
        })
    }

    /// Every volume, sorted by name; unreadable entries are skipped (and reported on stderr).
    pub fn list(&self) -> Vec<Volume> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with(HIDDEN_PREFIX))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| match self.get(n) {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!("berth engine: skipping volume {n}: {e}");
                    None
                }
            })
            .collect()
    }

    /// Remove a volume. `in_use_by` lists the containers (IDs) whose mounts use it; a volume in
    /// use is refused, as Docker does, even with `force` (which only forgives a missing volume).
    pub fn remove(&self, name: &str, force: bool, in_use_by: &[String]) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.get(name) {
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        if !in_use_by.is_empty() {
            return Err(VolumeError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                in_use_by.join(", ")
            )));
        }
        let doomed = self
            .root
            .join(format!("{HIDDEN_PREFIX}remove-{name}-{}", random_suffix()));
        std::fs::rename(self.volume_dir(name), &doomed)
            .map_err(|e| VolumeError::io(format!("remove {name}"), e))?;
        sync_dir(&self.root);
        // remove_dir_all does not follow symlinks, so content a container left cannot reach out.
        std::fs::remove_dir_all(&doomed)
            .map_err(|e| VolumeError::io(format!("remove {name}: delete data"), e))
    }

    /// The host directory mounted into containers.
    pub fn mountpoint(&self, name: &str) -> Result<PathBuf> {
        self.get(name)?;
        Ok(self.volume_dir(name).join(DATA_DIR))
    }

    /// Docker's copy-up for a named volume: when the volume is empty, copy the image's content at
    /// `target` (a path inside the container, resolved within `rootfs` without escaping it) into
    /// the volume. Returns whether anything was copied. A non-empty volume is never touched, so the
    /// copy happens once, at the first container that mounts the volume.
    pub fn copy_up(&self, name: &str, rootfs: &Path, target: &Path) -> Result<bool> {
        let data = self.mountpoint(name)?;
        let context = || {
            format!(
                "copy image content at {} into volume {name}",
                target.display()
            )
        };
        let source = resolve_in_root(rootfs, target).map_err(|e| VolumeError::io(context(), e))?;
        match std::fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => {}
            // Nothing (or a non-directory) at the target: nothing to copy, like Docker.
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(VolumeError::io(context(), e)),
        }
        let empty = std::fs::read_dir(&data)
            .map_err(|e| VolumeError::io(context(), e))?
            .next()
            .is_none();
        if !empty {
            return Ok(false);
        }
        copy_dir_contents(&source, &data).map_err(|e| VolumeError::io(context(), e))?;
        Ok(true)
    }

    /// [`copy_up`](Self::copy_up) from an image given as its layer directories (topmost first, as
    /// overlayfs's `lowerdir` lists them). One layer is read directly; several are stacked in a
    /// read-only overlay mounted just for the copy, so whiteouts hide what they delete.
    pub fn copy_up_from_layers(
        &self,
        name: &str,
        layers: &[PathBuf],
        target: &Path,
    ) -> Result<bool> {
        let context = || {
            format!(
                "copy image content at {} into volume {name}",
                target.display()
            )
        };
        match layers {
            [] => Ok(false),
            [only] => self.copy_up(name, only, target),
            _ => {
                let mut lowerdir = String::new();
                for (i, layer) in layers.iter().enumerate() {
                    let text = layer.to_str().filter(|t| !t.contains([':', ',']));
                    let Some(text) = text else {
                        return Err(VolumeError::Other(format!(
                            "{}: layer path {} cannot be given to overlayfs (':' or ',' in it)",
                            context(),
                            layer.display()
                        )));
                    };
                    if i > 0 {
                        lowerdir.push(':');
                    }
                    lowerdir.push_str(text);
                }
                let view = self
                    .root
                    .join(format!("{COPY_UP_PREFIX}{name}-{}", random_suffix()));
                std::fs::create_dir(&view).map_err(|e| VolumeError::io(context(), e))?;
                let mounted = nix::mount::mount(
                    Some("overlay"),
                    &view,
                    Some("overlay"),
                    nix::mount::MsFlags::MS_RDONLY,
                    Some(format!("lowerdir={lowerdir}").as_str()),
                );
                if let Err(e) = mounted {
                    let _ = std::fs::remove_dir(&view);
                    return Err(VolumeError::io(
                        format!("{}: mount a read-only view of the image", context()),
                        e.into(),
                    ));
                }
                let copied = self.copy_up(name, &view, target);
                let unmounted = nix::mount::umount2(&view, nix::mount::MntFlags::MNT_DETACH);
                if unmounted.is_ok() {
                    let _ = std::fs::remove_dir(&view);
                }
                copied
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A 64-hex name, as Docker gives anonymous volumes.
fn random_name() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn random_suffix() -> String {
    let bytes: [u8; 6] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
        let store = VolumeStore::open(&roots).unwrap();
        (dir, store)
    }

    fn named(name: &str) -> VolumeCreateRequest {
        VolumeCreateRequest {
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn create_is_idempotent_and_keeps_first_labels() {
        let (_d, store) = store();
        let mut req = named("data");
        req.labels.insert("a".into(), "1".into());
        let first = store.create(req).unwrap();
        let mut again = named("data");
        again.labels.insert("a".into(), "2".into());
        let second = store.create(again).unwrap();
        assert_eq!(first, second);
        assert_eq!(second.labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(store.list().len(), 1);
        assert!(Path::new(&first.mountpoint).is_dir());
        assert!(first.mountpoint.ends_with("/volumes/data/_data"));
    }

    #[test]
    fn empty_name_gets_64_hex() {
        let (_d, store) = store();
        let v = store.create(named("")).unwrap();
        assert_eq!(v.name.len(), 64);
        assert!(v.name.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn bad_names_are_refused_and_leave_nothing() {
        let (d, store) = store();
        for bad in ["../x", "a/b", "-a", ".a", "x", "a b", "é1"] {
            let err = store.create(named(bad)).unwrap_err();
            assert_eq!(err.http_status(), 400, "{bad}");
            assert!(err.to_string().contains("invalid characters"), "{err}");
        }
        let left: Vec<_> = std::fs::read_dir(d.path().join("data/volumes"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(!d.path().join("data/x").exists());
    }

    #[test]
    fn other_drivers_and_options_are_refused() {
        let (_d, store) = store();
        let mut req = named("v1");
        req.driver = "nfs".into();
        assert!(store
            .create(req)
            .unwrap_err()
            .to_string()
            .contains("driver \"nfs\" is not supported"));
        let mut req = named("v1");
        req.driver_opts.insert("type".into(), "tmpfs".into());
        assert!(store
            .create(req)
            .unwrap_err()
            .to_string()
            .contains("option \"type\""));
        assert!(store.list().is_empty());
    }

    #[test]
    fn remove_refuses_in_use_and_forgives_missing_with_force() {
        let (_d, store) = store();
        let v = store.create(named("busy")).unwrap();
        std::fs::write(Path::new(&v.mountpoint).join("f"), "x").unwrap();
        let err = store.remove("busy", true, &["abc123".into()]).unwrap_err();
        assert_eq!(err.http_status(), 409);
        assert_eq!(err.to_string(), "remove busy: volume is in use - [abc123]");
        store.remove("busy", false, &[]).unwrap();
        assert!(!Path::new(&v.mountpoint).exists());
        let err = store.remove("busy", false, &[]).unwrap_err();
        assert_eq!(err.to_string(), "get busy: no such volume");
        store.remove("busy", true, &[]).unwrap();
    }

    #[test]
    fn reopen_sweeps_interrupted_work_and_keeps_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
        let store = VolumeStore::open(&roots).unwrap();
        store.create(named("keep")).unwrap();
        std::fs::create_dir_all(roots.volumes_dir().join(".create-half-123/_data")).unwrap();
        drop(store);
        let store = VolumeStore::open(&roots).unwrap();
        let names: Vec<_> = store.list().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["keep"]);
        assert!(!roots.volumes_dir().join(".create-half-123").exists());
    }

    #[test]
    fn copy_up_fills_an_empty_volume_once() {
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("srv/www/sub")).unwrap();
        std::fs::write(rootfs.join("srv/www/index.html"), "hello").unwrap();
        std::fs::write(rootfs.join("srv/www/sub/x"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("srv/www/link")).unwrap();
        store.create(named("web")).unwrap();
        assert!(store
            .copy_up("web", &rootfs, Path::new("/srv/www"))
            .unwrap());
        let data = store.mountpoint("web").unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).unwrap(),
            "hello"
        );
        assert_eq!(std::fs::read_to_string(data.join("sub/x")).unwrap(), "x");
        // Symlinks are copied as symlinks, never followed.
        assert_eq!(
            std::fs::read_link(data.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
        // Not empty any more: a second copy-up leaves the volume alone.
        std::fs::write(data.join("index.html"), "changed").unwrap();
        assert!(!store
            .copy_up("web", &rootfs, Path::new("/srv/www"))
            .unwrap());
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).unwrap(),
            "changed"
        );
    }

    #[test]
    fn copy_up_from_layers_sees_the_merged_image() {
        let (d, store) = store();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        std::fs::create_dir_all(lower.join("etc/app")).unwrap();
        std::fs::write(lower.join("etc/app/base.conf"), "base").unwrap();
        std::fs::write(lower.join("etc/app/gone.conf"), "deleted above").unwrap();
        std::fs::create_dir_all(upper.join("etc/app")).unwrap();
        std::fs::write(upper.join("etc/app/top.conf"), "top").unwrap();
        // An overlay whiteout: a 0/0 character device hides gone.conf of the layer below.
        nix::sys::stat::mknod(
            &upper.join("etc/app/gone.conf"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        store.create(named("conf")).unwrap();
        let layers = [upper, lower];
        assert!(store
            .copy_up_from_layers("conf", &layers, Path::new("/etc/app"))
            .unwrap());
        let data = store.mountpoint("conf").unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["base.conf", "top.conf"]);
        // The temporary view is gone: nothing mounted or left in the volumes directory.
        let hidden: Vec<_> = std::fs::read_dir(d.path().join("data/volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }

    #[test]
    fn copy_up_target_symlink_cannot_escape_the_rootfs() {
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        std::fs::create_dir_all(rootfs.join("data")).unwrap();
        std::fs::write(rootfs.join("data/inside"), "image").unwrap();
        // An absolute symlink and a `..` walk both pointing at the host directory.
        std::os::unix::fs::symlink(&outside, rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../outside", rootfs.join("rel")).unwrap();
        store.create(named("v1")).unwrap();
        store.create(named("v2")).unwrap();
        store.copy_up("v1", &rootfs, Path::new("/abs")).unwrap();
        store.copy_up("v2", &rootfs, Path::new("/rel")).unwrap();
        for v in ["v1", "v2"] {
            let data = store.mountpoint(v).unwrap();
            assert!(!data.join("secret").exists(), "{v} copied host content");
        }
    }
}
