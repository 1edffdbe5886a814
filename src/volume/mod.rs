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

use crate::paths::{write_atomic, EngineRoots};

use copy_up::{
    copy_dir_metadata, copy_tree, find_in_root, is_empty, move_entries, open_dir, Found,
};

/// The label Docker puts on volumes it made for an anonymous mount (`-v /path`, image `VOLUME`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const METADATA_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";
/// Prefix of in-progress creations and removals; never a valid volume name (names start alnum).
const HIDDEN_PREFIX: &str = ".";
/// Read-only overlay views of an image, mounted for the length of one copy-up.
const COPY_UP_PREFIX: &str = ".copyup-";
/// Private directories a copy-up is assembled in before it is moved into the volume; hidden,
/// so an interrupted one is swept at the next `open`.
const STAGING_PREFIX: &str = ".staging-";

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
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        VolumeError::Io {
            context: context.into(),
            source,
        }
    }
}

type Result<T> = std::result::Result<T, VolumeError>;

/// What a volume is made from: the engine's request, whoever asked (the API translates
/// Docker's `VolumeCreateRequest` into it). Empty name: a random one; empty driver: `local`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: String,
    pub driver_options: IndexMap<String, String>,
    pub labels: IndexMap<String, String>,
}

/// A volume as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    /// The `_data` directory mounted into containers.
    pub mountpoint: PathBuf,
    /// RFC 3339, seconds.
    pub created_at: String,
    pub labels: IndexMap<String, String>,
    pub options: IndexMap<String, String>,
}

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
    /// Serialises copy-ups: two containers starting on one empty volume copy once.
    copy_lock: Mutex<()>,
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
            copy_lock: Mutex::new(()),
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
    pub fn create(&self, req: VolumeSpec) -> Result<VolumeInfo> {
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
        if let Some(key) = req.driver_options.keys().next() {
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

    pub fn get(&self, name: &str) -> Result<VolumeInfo> {
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
        Ok(VolumeInfo {
            name: meta.name,
            driver: meta.driver,
            mountpoint: self.volume_dir(name).join(DATA_DIR),
            created_at: meta.created_at,
            labels: meta.labels,
            options: meta.options,
        })
    }

    /// Every volume, sorted by name; unreadable entries are skipped (and reported on stderr).
    pub fn list(&self) -> Vec<VolumeInfo> {
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
        let context = copy_context(name, target);
        match find_in_root(rootfs, target).map_err(|e| VolumeError::io(context(), e))? {
            Found::Directory(src) => self.copy_into(name, src, target),
            // Nothing (or a non-directory) at the target: nothing to copy, like Docker.
            Found::NotDirectory | Found::Missing => Ok(false),
        }
    }

    /// [`copy_up`](Self::copy_up) from the topmost of an image's layer directories (topmost
    /// first) that has something at `target`: a directory there is copied; a file or whiteout
    /// hides the layers below, so nothing is copied. Each layer is searched as a root of its own.
    pub fn copy_up_from_top_layer(
        &self,
        name: &str,
        layers: &[PathBuf],
        target: &Path,
    ) -> Result<bool> {
        let context = copy_context(name, target);
        for layer in layers {
            match find_in_root(layer, target).map_err(|e| VolumeError::io(context(), e))? {
                Found::Directory(src) => return self.copy_into(name, src, target),
                Found::NotDirectory => return Ok(false),
                Found::Missing => continue,
            }
        }
        Ok(false)
    }

    /// Copies the image directory `src` into the volume if it is empty: into a private staging
    /// directory first (no container sees it), then entry by entry into the volume without
    /// replacing anything a container put there meanwhile.
    fn copy_into(&self, name: &str, src: std::os::fd::OwnedFd, target: &Path) -> Result<bool> {
        let context = copy_context(name, target);
        let io = |e| VolumeError::io(context(), e);
        let _serial = self.copy_lock.lock().unwrap_or_else(|p| p.into_inner());
        let data = open_dir(&self.mountpoint(name)?).map_err(io)?;
        if !is_empty(&data).map_err(io)? {
            return Ok(false);
        }
        let staging = self
            .root
            .join(format!("{STAGING_PREFIX}{name}-{}", random_suffix()));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&staging)
            .map_err(io)?;
        let copied = (|| {
            let stage = open_dir(&staging)?;
            copy_tree(src.try_clone()?, stage.try_clone()?)?;
            let taken = move_entries(&stage, &data)?;
            if !taken.is_empty() {
                eprintln!(
                    "berth engine: {}: the volume was written to during the copy; kept its {}",
                    context(),
                    taken.join(", ")
                );
            }
            copy_dir_metadata(&src, &data)
        })();
        // Only engine-made content is in there (what could not be moved): safe to delete.
        let _ = std::fs::remove_dir_all(&staging);
        copied.map_err(io)?;
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
        let context = copy_context(name, target);
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

fn copy_context<'a>(name: &'a str, target: &'a Path) -> impl Fn() -> String + 'a {
    move || {
        format!(
            "copy image content at {} into volume {name}",
            target.display()
        )
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

    fn named(name: &str) -> VolumeSpec {
        VolumeSpec {
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
        assert!(first.mountpoint.ends_with("volumes/data/_data"));
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
            assert!(matches!(err, VolumeError::BadRequest(_)), "{bad}: {err}");
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
        req.driver_options.insert("type".into(), "tmpfs".into());
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
        assert!(matches!(err, VolumeError::Conflict(_)), "{err}");
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

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid NUL-terminated strings and a buffer of the given length.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: as above.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (r >= 0).then(|| buf[..r as usize].to_vec())
    }

    /// Every path under `dir` with its mode, owner and size: what an escape would change.
    fn tree(dir: &Path) -> Vec<(PathBuf, u32, u32, u64)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let m = std::fs::symlink_metadata(&d).unwrap();
            out.push((d.clone(), m.mode(), m.uid(), m.len()));
            if m.is_dir() {
                for e in std::fs::read_dir(&d).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn copy_up_keeps_setuid_owner_mode_xattrs_times_links_and_fifos() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        let src = rootfs.join("opt/app");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        let tool = src.join("bin/tool");
        std::fs::write(&tool, "#!").unwrap();
        std::os::unix::fs::lchown(&tool, Some(1000), Some(1001)).unwrap();
        // VFS_CAP_REVISION_2 with cap_net_raw permitted + effective: chown would clear it.
        let cap: [u8; 20] = [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        set_xattr(&tool, "security.capability", &cap);
        set_xattr(&tool, "user.note", b"hello");
        set_xattr(&tool, "trusted.overlay.redirect", b"/etc");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("../etc/missing", src.join("link")).unwrap();
        std::os::unix::fs::lchown(src.join("link"), Some(7), Some(8)).unwrap();
        nix::unistd::mkfifo(
            &src.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        // An overlay whiteout is not content.
        nix::sys::stat::mknod(
            &src.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        std::fs::set_permissions(src.join("bin"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::lchown(&src, Some(33), Some(33)).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &tool,
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();

        store.create(named("app")).unwrap();
        assert!(store
            .copy_up("app", &rootfs, Path::new("/opt/app"))
            .unwrap());
        let data = store.mountpoint("app").unwrap();
        let m = std::fs::metadata(data.join("bin/tool")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
        assert_eq!(m.mtime(), 1_000_000_000);
        assert_eq!(
            get_xattr(&data.join("bin/tool"), "security.capability").as_deref(),
            Some(&cap[..])
        );
        assert_eq!(
            get_xattr(&data.join("bin/tool"), "user.note").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            get_xattr(&data.join("bin/tool"), "trusted.overlay.redirect"),
            None
        );
        assert_eq!(
            std::fs::metadata(data.join("bin")).unwrap().mode() & 0o7777,
            0o750
        );
        let l = std::fs::symlink_metadata(data.join("link")).unwrap();
        assert_eq!(
            std::fs::read_link(data.join("link")).unwrap(),
            Path::new("../etc/missing")
        );
        assert_eq!((l.uid(), l.gid()), (7, 8));
        let p = std::fs::symlink_metadata(data.join("pipe")).unwrap();
        assert!(p.file_type().is_fifo());
        assert_eq!(p.mode() & 0o7777, 0o640);
        assert!(std::fs::symlink_metadata(data.join("gone")).is_err());
        // The volume root takes the owner and mode of the image's directory, as in Docker.
        let root = std::fs::metadata(&data).unwrap();
        assert_eq!((root.uid(), root.mode() & 0o7777), (33, 0o1777));
        // The staging directory is gone.
        let hidden: Vec<_> = std::fs::read_dir(d.path().join("data/volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }

    #[test]
    fn copy_up_source_path_never_leaves_the_image() {
        // CVE-2022-23648: a mount destination of `/../../<host dir>`, or a symlink in the image
        // that points at a host directory, must not copy host files into the volume.
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        let host = d.path().join("host");
        std::fs::create_dir_all(host.join("dir")).unwrap();
        std::fs::write(host.join("dir/secret"), "host").unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink(host.join("dir"), rootfs.join("etc/app")).unwrap();
        let up = "/".to_string() + &"../".repeat(12) + &host.join("dir").display().to_string();
        for (v, target) in [
            ("v1", up.as_str()),
            ("v2", "/etc/app"),
            ("v3", "/etc/app/../../../host/dir"),
        ] {
            store.create(named(v)).unwrap();
            assert!(
                !store.copy_up(v, &rootfs, Path::new(target)).unwrap(),
                "{target}"
            );
            assert!(
                !store.mountpoint(v).unwrap().join("secret").exists(),
                "{target}"
            );
            assert!(!store
                .copy_up_from_top_layer(v, std::slice::from_ref(&rootfs), Path::new(target))
                .unwrap());
            assert!(
                !store.mountpoint(v).unwrap().join("secret").exists(),
                "{target}"
            );
        }
    }

    #[test]
    fn copy_up_from_top_layer_takes_the_topmost_layer_with_the_path() {
        let (d, store) = store();
        let (top, mid, low) = (
            d.path().join("top"),
            d.path().join("mid"),
            d.path().join("low"),
        );
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::create_dir_all(mid.join("srv/www")).unwrap();
        std::fs::write(mid.join("srv/www/index.html"), "mid").unwrap();
        std::fs::create_dir_all(low.join("srv/www")).unwrap();
        std::fs::write(low.join("srv/www/old.html"), "low").unwrap();
        std::fs::create_dir_all(top.join("srv")).unwrap();
        std::fs::write(top.join("srv/file"), "a file hides what is below").unwrap();
        let layers = [top, mid, low];
        store.create(named("www")).unwrap();
        assert!(store
            .copy_up_from_top_layer("www", &layers, Path::new("/srv/www"))
            .unwrap());
        let data = store.mountpoint("www").unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).unwrap(),
            "mid"
        );
        assert!(!data.join("old.html").exists());
        store.create(named("ff")).unwrap();
        assert!(!store
            .copy_up_from_top_layer("ff", &layers, Path::new("/srv/file"))
            .unwrap());
    }

    #[test]
    fn a_whiteout_on_the_path_hides_the_lower_layers_content() {
        let (d, store) = store();
        let (top, low) = (d.path().join("top"), d.path().join("low"));
        std::fs::create_dir_all(low.join("opt/app")).unwrap();
        std::fs::write(low.join("opt/app/deleted.txt"), "deleted above").unwrap();
        // overlayfs's whiteout for `/opt`: a character device 0/0 in the upper layer.
        std::fs::create_dir_all(&top).unwrap();
        nix::sys::stat::mknod(
            &top.join("opt"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        store.create(named("gone")).unwrap();
        assert!(!store
            .copy_up_from_top_layer("gone", &[top, low], Path::new("/opt/app"))
            .unwrap());
        let data = store.mountpoint("gone").unwrap();
        assert_eq!(
            std::fs::read_dir(data).unwrap().count(),
            0,
            "nothing deleted came back"
        );
    }

    #[test]
    fn copy_up_racing_a_symlink_swap_in_the_volume_never_writes_outside() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        for sub in ["data/a/b", "data/c"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::write(rootfs.join("data/a/b/f"), "image").unwrap();
        std::fs::write(rootfs.join("data/c/g"), "image").unwrap();
        std::fs::write(rootfs.join("data/top"), "image").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(outside.join("a/b")).unwrap();
        std::fs::write(outside.join("keep"), "host").unwrap();
        let before = tree(&outside);
        for round in 0..150 {
            let name = format!("race{round}");
            store.create(named(&name)).unwrap();
            let data = store.mountpoint(&name).unwrap();
            // A second container sharing the volume: it keeps replacing the names the copy
            // creates with symlinks to a host directory.
            let stop = Arc::new(AtomicBool::new(false));
            let racer = {
                let (stop, data, outside) = (stop.clone(), data.clone(), outside.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for n in ["a", "c", "top"] {
                            let p = data.join(n);
                            let _ = std::fs::remove_dir(&p);
                            let _ = std::fs::remove_file(&p);
                            let _ = std::os::unix::fs::symlink(&outside, &p);
                        }
                    }
                })
            };
            let result = store.copy_up(&name, &rootfs, Path::new("/data"));
            stop.store(true, Ordering::Relaxed);
            racer.join().unwrap();
            // The copy may find the volume taken (not empty) or keep the racer's names; it
            // never writes or chmods through them.
            let _ = result;
            assert_eq!(tree(&outside), before, "round {round}");
        }
    }

    #[test]
    fn copy_up_refuses_trees_deeper_than_the_bound() {
        let (d, store) = store();
        let rootfs = d.path().join("rootfs");
        let mut deep = rootfs.join("deep");
        for _ in 0..=copy_up::MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        store.create(named("deep")).unwrap();
        let e = store
            .copy_up("deep", &rootfs, Path::new("/deep"))
            .unwrap_err();
        assert!(
            e.to_string().contains("nested deeper than 256 directories"),
            "{e}"
        );
        assert!(e.to_string().contains("into volume deep"), "{e}");
    }
}
