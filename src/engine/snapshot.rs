//! Unpacked layers keyed by ChainID, each a directory usable as an overlayfs lower dir.
//!
//! A snapshot is built in `snapshots/.tmp-…` and renamed to `snapshots/<chainid-hex>` only when
//! complete: a crash never leaves a half-unpacked layer under a final name, and leftovers are
//! removed at open.
//!
//! A snapshot is derived data (its layer blob is durable in the content store), so it is not
//! synced when committed: that `syncfs` was most of a pull's waiting. Instead a marker
//! `.unsynced-<chainid-hex>@<boot id>` is made durable before the rename. Page-cache data
//! survives anything but a kernel crash or power loss, and those change the boot id: at open, a
//! snapshot whose marker names another boot is removed (the image store unpacks it again from its
//! blob when it is used). A clean engine exit syncs the file system once and drops the markers, so
//! only a machine crash costs a re-unpack.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::reference::{is_sha256_hex, is_valid_digest};

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("invalid chain id {0:?}")]
    InvalidId(String),
    #[error("cannot read the boot id from {path}: {source}")]
    BootId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, SnapshotError>;

/// ChainID of a layer stack (`ChainID(L0) = DiffID(L0)`,
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`), one entry per layer, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// The kernel's id of the running boot: it changes with every boot, so data written under one
/// boot id and not synced may be lost once it differs.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Prefix of the marker of a snapshot committed without a sync.
const UNSYNCED: &str = ".unsynced-";

/// The running kernel's boot id.
pub fn current_boot_id() -> Result<String> {
    let path = PathBuf::from(BOOT_ID_PATH);
    let id = fs::read_to_string(&path).map_err(|source| SnapshotError::BootId {
        path: path.clone(),
        source,
    })?;
    Ok(id.trim().to_string())
}

/// The marker's file name for a snapshot committed under `boot_id`.
fn marker_name(hex: &str, boot_id: &str) -> String {
    format!("{UNSYNCED}{hex}@{boot_id}")
}

/// What an entry of the snapshot directory says about unsynced data.
#[derive(Debug, PartialEq, Eq)]
enum Marker<'a> {
    /// Not a marker.
    None,
    /// Committed under this boot: its data is in the page cache or on disk.
    ThisBoot(&'a str),
    /// Committed under an earlier boot and never synced: the snapshot may be incomplete.
    EarlierBoot(&'a str),
    /// A marker berth did not write: removed.
    Malformed,
}

fn classify_marker<'a>(name: &'a str, boot_id: &str) -> Marker<'a> {
    let Some(rest) = name.strip_prefix(UNSYNCED) else {
        return Marker::None;
    };
    match rest.split_once('@') {
        Some((hex, _)) if !is_sha256_hex(hex) => Marker::Malformed,
        Some((hex, boot)) if boot == boot_id => Marker::ThisBoot(hex),
        Some((hex, _)) => Marker::EarlierBoot(hex),
        None => Marker::Malformed,
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    boot_id: String,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl SnapshotStore {
    /// Opens the store under the running kernel's boot id.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_in_boot(root, current_boot_id()?)
    }

    /// Opens the store as if running under `boot_id` (a test passes its own to play a reboot):
    /// removes half-built snapshots and those an earlier boot never synced.
    pub fn open_in_boot(root: impl Into<PathBuf>, boot_id: String) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| SnapshotError::Io {
            path: root.clone(),
            source,
        })?;
        let store = SnapshotStore { root, boot_id };
        for name in store.entries() {
            if name.starts_with(".tmp-") {
                // Half-built snapshots of an interrupted unpack.
                let _ = fs::remove_dir_all(store.root.join(&name));
                continue;
            }
            match classify_marker(&name, &store.boot_id) {
                Marker::None | Marker::ThisBoot(_) => {}
                Marker::EarlierBoot(hex) => store.drop_unsynced(hex, &name)?,
                Marker::Malformed => {
                    let _ = fs::remove_file(store.root.join(&name));
                }
            }
        }
        Ok(store)
    }

    /// Names in the store's directory.
    fn entries(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Removes a snapshot a crashed boot may have lost part of, then its marker.
    fn drop_unsynced(&self, hex: &str, marker: &str) -> Result<()> {
        if self.root.join(hex).exists() {
            eprintln!(
                "berth engine: snapshot {} was not synced before the machine restarted: removed \
                 (it is unpacked again from its blob when used)",
                &hex[..12]
            );
        }
        self.remove(&format!("sha256:{hex}"))?;
        let _ = fs::remove_file(self.root.join(marker));
        Ok(())
    }

    /// Snapshots committed in this boot and not synced yet.
    pub fn unsynced(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|n| matches!(classify_marker(n, &self.boot_id), Marker::ThisBoot(_)))
            .collect()
    }

    /// Makes every snapshot committed so far durable with one `syncfs`, then drops their markers
    /// (a clean engine exit). Markers are listed before the sync: a snapshot committed during it
    /// keeps its marker.
    pub fn settle(&self) -> Result<()> {
        let markers = self.unsynced();
        if markers.is_empty() {
            return Ok(());
        }
        self.sync_file_system()?;
        for m in markers {
            let _ = fs::remove_file(self.root.join(m));
        }
        Ok(())
    }

    fn sync_file_system(&self) -> Result<()> {
        let dir = fs::File::open(&self.root).map_err(|source| SnapshotError::Io {
            path: self.root.clone(),
            source,
        })?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(SnapshotError::Io {
                path: self.root.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// The directory of a committed snapshot (whether or not it exists).
    pub fn path(&self, chain_id: &str) -> Result<PathBuf> {
        if !is_valid_digest(chain_id) {
            return Err(SnapshotError::InvalidId(chain_id.to_string()));
        }
        Ok(self.root.join(&chain_id["sha256:".len()..]))
    }

    pub fn exists(&self, chain_id: &str) -> bool {
        self.path(chain_id).map(|p| p.is_dir()).unwrap_or(false)
    }

    /// Creates a fresh temporary directory to unpack into.
    pub fn prepare(&self, chain_id: &str) -> Result<PathBuf> {
        let final_path = self.path(chain_id)?;
        let name = format!(
            ".tmp-{}-{}-{}",
            final_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x"),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = self.root.join(name);
        fs::create_dir(&tmp).map_err(|source| SnapshotError::Io {
            path: tmp.clone(),
            source,
        })?;
        // The snapshot root is what a container's `/` looks like when no layer sets it.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(|source| {
            SnapshotError::Io {
                path: tmp.clone(),
                source,
            }
        })?;
        Ok(tmp)
    }

    /// Renames an unpacked tree to its final name, unsynced: its marker is made durable first,
    /// so after a crash of the machine the snapshot is known to be untrusted. If another commit
    /// made the same snapshot meanwhile, the temporary copy is dropped.
    pub fn commit(&self, tmp: &Path, chain_id: &str) -> Result<PathBuf> {
        let final_path = self.path(chain_id)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        if final_path.exists() {
            self.discard(tmp);
            return Ok(final_path);
        }
        let marker = self
            .root
            .join(marker_name(&chain_id["sha256:".len()..], &self.boot_id));
        fs::File::create(&marker).map_err(io(&marker))?;
        // The marker's name must be on disk before the snapshot's can be.
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.root))?;
        fs::rename(tmp, &final_path).map_err(io(&final_path))?;
        Ok(final_path)
    }

    /// Removes a temporary or committed snapshot tree (never follows symlinks inside it).
    pub fn discard(&self, path: &Path) {
        let _ = fs::remove_dir_all(path);
    }

    pub fn remove(&self, chain_id: &str) -> Result<()> {
        let p = self.path(chain_id)?;
        // Rename first so a crash mid-removal leaves a `.tmp-` leftover, not a partial snapshot.
        let tmp = self.root.join(format!(
            ".tmp-rm-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::rename(&p, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(SnapshotError::Io { path: p, source }),
        }
        fs::remove_dir_all(&tmp).map_err(|source| SnapshotError::Io { path: tmp, source })?;
        let _ = fs::remove_file(
            self.root
                .join(marker_name(&chain_id["sha256:".len()..], &self.boot_id)),
        );
        Ok(())
    }

    /// Committed snapshot chain ids.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !n.starts_with('.') {
                    out.push(format!("sha256:{n}"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expect = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(ids[1], expect);
    }

    #[test]
    fn commit_is_atomic_and_leftovers_are_cleared() {
        let d = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(d.path().join("snapshots")).unwrap();
        let id = format!("sha256:{}", "c".repeat(64));
        let tmp = s.prepare(&id).unwrap();
        fs::write(tmp.join("f"), b"x").unwrap();
        assert!(!s.exists(&id));
        let p = s.commit(&tmp, &id).unwrap();
        assert!(s.exists(&id));
        assert_eq!(fs::read(p.join("f")).unwrap(), b"x");
        let _stale = s.prepare(&id).unwrap();
        let s = SnapshotStore::open(d.path().join("snapshots")).unwrap();
        // The snapshot and its marker; the half-built one is gone.
        assert_eq!(fs::read_dir(d.path().join("snapshots")).unwrap().count(), 2);
        s.remove(&id).unwrap();
        assert!(!s.exists(&id));
        assert!(s.unsynced().is_empty(), "removal drops the marker");
        assert!(s.path("sha256:../x").is_err());
    }

    fn committed(s: &SnapshotStore, c: char) -> String {
        let id = format!("sha256:{}", c.to_string().repeat(64));
        let tmp = s.prepare(&id).unwrap();
        fs::write(tmp.join("f"), b"x").unwrap();
        s.commit(&tmp, &id).unwrap();
        id
    }

    #[test]
    fn markers_are_classified_by_boot() {
        let hex = "a".repeat(64);
        let name = marker_name(&hex, "boot-1");
        assert_eq!(classify_marker(&name, "boot-1"), Marker::ThisBoot(&hex));
        assert_eq!(classify_marker(&name, "boot-2"), Marker::EarlierBoot(&hex));
        assert_eq!(classify_marker(&hex, "boot-1"), Marker::None);
        assert_eq!(classify_marker(".tmp-x", "boot-1"), Marker::None);
        assert_eq!(
            classify_marker(".unsynced-zz@boot-1", "boot-1"),
            Marker::Malformed
        );
        assert_eq!(
            classify_marker(".unsynced-nothing", "boot-1"),
            Marker::Malformed
        );
    }

    #[test]
    fn an_unsynced_snapshot_survives_an_engine_restart_but_not_a_reboot() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("snapshots");
        let s = SnapshotStore::open_in_boot(&root, "boot-1".into()).unwrap();
        let id = committed(&s, 'd');
        assert_eq!(s.unsynced().len(), 1);
        // The engine restarts (killed, not a clean exit) on the same boot: trusted.
        let s = SnapshotStore::open_in_boot(&root, "boot-1".into()).unwrap();
        assert!(s.exists(&id));
        // The machine restarted before the data was synced: untrusted, removed with its marker.
        let s = SnapshotStore::open_in_boot(&root, "boot-2".into()).unwrap();
        assert!(!s.exists(&id));
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn a_settled_snapshot_survives_a_reboot() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("snapshots");
        let s = SnapshotStore::open_in_boot(&root, "boot-1".into()).unwrap();
        let id = committed(&s, 'e');
        s.settle().unwrap();
        assert!(s.unsynced().is_empty());
        let s = SnapshotStore::open_in_boot(&root, "boot-2".into()).unwrap();
        assert_eq!(fs::read(s.path(&id).unwrap().join("f")).unwrap(), b"x");
        // A snapshot committed in the new boot gets a marker of the new boot.
        committed(&s, 'f');
        assert_eq!(s.unsynced(), vec![marker_name(&"f".repeat(64), "boot-2")]);
    }
}
