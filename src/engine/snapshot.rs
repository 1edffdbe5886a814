//! Unpacked layers keyed by ChainID, each a directory usable as an overlayfs lower dir.
//!
//! A snapshot is built in `snapshots/.tmp-…`, flushed with `syncfs`, and renamed to
//! `snapshots/<chainid-hex>` only when complete: a crash never leaves a half-unpacked layer under a
//! final name, and leftovers are removed at open.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::reference::is_valid_digest;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("invalid chain id {0:?}")]
    InvalidId(String),
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

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl SnapshotStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| SnapshotError::Io {
            path: root.clone(),
            source,
        })?;
        // Half-built snapshots of an interrupted unpack.
        if let Ok(rd) = fs::read_dir(&root) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(SnapshotStore { root })
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

    /// Flushes the unpacked tree and renames it to its final name. If another pull committed the
    /// same snapshot meanwhile, the temporary copy is dropped.
    pub fn commit(&self, tmp: &Path, chain_id: &str) -> Result<PathBuf> {
        self.flush(tmp)?;
        self.commit_flushed(tmp, chain_id)
    }

    /// Makes a temporary tree durable: one syncfs flushes every file of it (cheaper than an
    /// fsync per file). A pull runs it on the layer's own worker, beside other layers' work.
    pub fn flush(&self, tmp: &Path) -> Result<()> {
        let dir = fs::File::open(tmp).map_err(|source| SnapshotError::Io {
            path: tmp.to_path_buf(),
            source,
        })?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(SnapshotError::Io {
                path: tmp.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// [`commit`](Self::commit) of a tree [`flush`](Self::flush) made durable: only the rename
    /// and the directory's fsync.
    pub fn commit_flushed(&self, tmp: &Path, chain_id: &str) -> Result<PathBuf> {
        let final_path = self.path(chain_id)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        if final_path.exists() {
            self.discard(tmp);
            return Ok(final_path);
        }
        fs::rename(tmp, &final_path).map_err(io(&final_path))?;
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.root))?;
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
        fs::remove_dir_all(&tmp).map_err(|source| SnapshotError::Io { path: tmp, source })
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
        assert_eq!(fs::read_dir(d.path().join("snapshots")).unwrap().count(), 1);
        s.remove(&id).unwrap();
        assert!(!s.exists(&id));
        assert!(s.path("sha256:../x").is_err());
    }
}
