//! `PUT /containers/{id}/archive` for containers that have not started yet: how docker compose
//! (and berth's compose client) puts `configs`/`secrets` made from inline `content` or an
//! `environment` variable into a container between create and start.
//!
//! berth does not write into the container's filesystem. Each upload is extracted, by the same
//! hardened extractor as image layers (fd-relative, bounded), into a fresh directory of its own
//! under the container's state directory (`copied/<n>/`, its target in `copied/<n>.path`), and
//! every regular file in it is bind-mounted read-only at its place when the container starts,
//! keeping the mode, uid and gid from the tar headers. So the files live and die with the
//! container, survive its restarts, and the container cannot change them. Containers that
//! started (running or exited) are written through their own root instead, by
//! [`archive_io`](super::archive_io); this path refuses them should it be reached.

use std::path::{Component, Path, PathBuf};

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::spec::{MountKind, MountSpec};
use crate::engine::unpack::{unpack_layer, UnpackLimits};
use crate::engine::Engine;

/// The most a single upload may carry (configs and secrets are small).
pub const MAX_ARCHIVE_BYTES: usize = 16 << 20;
/// Uploads per container (each is a directory and a bind mount per file at every start).
const MAX_UPLOADS: usize = 256;
/// Files copied in per container, over all uploads (each is a bind mount at every start).
const MAX_COPIED_FILES: usize = 1024;

fn limits() -> UnpackLimits {
    UnpackLimits {
        max_entries: 1024,
        max_header_bytes: 64 << 10,
        max_entry_header_bytes: 128 << 10,
        max_layer_header_bytes: 1 << 20,
        max_entry_xattr_bytes: 64 << 10,
        max_pending_dirs: 1024,
        max_pending_dir_bytes: 1 << 20,
        max_trailing_bytes: 64 << 10,
        max_path_bytes: 4096,
        max_depth: 64,
        max_total_bytes: MAX_ARCHIVE_BYTES as u64,
    }
}

/// Docker's `path` parameter: an absolute directory in the container, normalised (`.` and
/// `..` are refused rather than resolved, as the path is the container's, not ours).
pub fn target_dir(path: &str) -> Result<String> {
    let bad =
        |why: &str| ContainerError::BadRequest(format!("invalid archive path {path:?}: {why}"));
    if !path.starts_with('/') {
        return Err(bad("it must be absolute"));
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => return Err(bad("`.` and `..` are not allowed")),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

impl ContainerStore {
    fn copied_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("copied")
    }

    /// Extract `tar` for `path` in container `id` (see the module doc).
    pub async fn put_archive(&self, id: &str, path: &str, tar: bytes::Bytes) -> Result<()> {
        let target = target_dir(path)?;
        let _guard = self.lock(id).await;
        let record = self.load_record(id)?;
        if self.state(id).status == Status::Running {
            return Err(ContainerError::Conflict(format!(
                "cannot copy into container {}: it is running, and berth copies files only into \
                 containers that have not started (they are mounted read-only at start)",
                record.name
            )));
        }
        let base = self.copied_dir(id);
        std::fs::create_dir_all(&base)
            .map_err(ContainerError::io(format!("create {}", base.display())))?;
        // The first slot without a completion marker; a directory left there by a crash
        // mid-upload is incomplete and goes.
        let Some(n) = (0..MAX_UPLOADS).find(|n| !base.join(format!("{n}.path")).exists()) else {
            return Err(ContainerError::BadRequest(format!(
                "container {} already has {MAX_UPLOADS} archives copied in; recreate it",
                record.name
            )));
        };
        let dest = base.join(n.to_string());
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir(&dest)
            .map_err(ContainerError::io(format!("create {}", dest.display())))?;
        let unpack_dest = dest.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            unpack_layer(std::io::Cursor::new(tar), &unpack_dest, &limits())
        })
        .await
        .map_err(|e| ContainerError::Other(format!("archive task failed: {e}")))?;
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&dest);
            return Err(ContainerError::BadRequest(format!(
                "cannot copy into container {}: {e}",
                record.name
            )));
        }
        // Each file is a bind mount at every start: bound the total, not only each upload.
        let files = self.copied_mounts(id).len() + count_regular_files(&dest);
        if files > MAX_COPIED_FILES {
            let _ = std::fs::remove_dir_all(&dest);
            return Err(ContainerError::BadRequest(format!(
                "cannot copy into container {}: it would hold {files} copied files, more than \
                 {MAX_COPIED_FILES}; copy fewer files or use a volume",
                record.name
            )));
        }
        // Written last: an upload without it (a crash mid-way) is ignored at start.
        let marker = base.join(format!("{n}.path"));
        crate::engine::paths::write_atomic(&marker, target.as_bytes())
            .map_err(ContainerError::io(format!("write {}", marker.display())))
    }

    /// Complete uploads, in order: (directory, target directory in the container).
    fn uploads(&self, id: &str) -> Vec<(PathBuf, String)> {
        let base = self.copied_dir(id);
        let mut found = Vec::new();
        for n in 0..MAX_UPLOADS {
            let dir = base.join(n.to_string());
            if !dir.is_dir() {
                break;
            }
            if let Ok(target) = std::fs::read_to_string(base.join(format!("{n}.path"))) {
                found.push((dir, target));
            }
        }
        found
    }

    /// The read-only binds that put the copied files in place at start.
    pub(crate) fn copied_mounts(&self, id: &str) -> Vec<MountSpec> {
        let mut mounts = Vec::new();
        for (dir, target) in self.uploads(id) {
            let mut files = Vec::new();
            regular_files(&dir, Path::new(""), &mut files);
            for rel in files {
                let destination = Path::new(&target).join(&rel);
                mounts.push(MountSpec {
                    kind: MountKind::Bind,
                    source: dir.join(&rel),
                    destination: destination.to_string_lossy().into_owned(),
                    read_only: true,
                    data: String::new(),
                });
            }
        }
        mounts
    }
}

fn count_regular_files(dir: &Path) -> usize {
    let mut files = Vec::new();
    regular_files(dir, Path::new(""), &mut files);
    files.len()
}

/// Regular files under `dir` (relative paths), never following symlinks: the tree came from a
/// client's tar.
fn regular_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let path = rel.join(entry.file_name());
        if meta.is_dir() {
            regular_files(dir, &path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

impl Engine {
    /// See [`ContainerStore::put_archive`].
    pub async fn put_container_archive(
        &self,
        id_or_name: &str,
        path: &str,
        tar: bytes::Bytes,
    ) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.put_archive(&id, path, tar).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_are_absolute_and_plain() {
        assert_eq!(target_dir("/run/secrets/").unwrap(), "/run/secrets");
        assert_eq!(target_dir("/").unwrap(), "/");
        let err = target_dir("/run/../etc").unwrap_err().to_string();
        assert!(err.contains("`.` and `..` are not allowed"), "{err}");
        assert!(target_dir("run").is_err());
    }

    #[test]
    fn only_regular_files_are_mounted_and_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), "x").unwrap();
        std::fs::write(dir.path().join("top"), "y").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let mut files = Vec::new();
        regular_files(dir.path(), Path::new(""), &mut files);
        assert_eq!(files, [PathBuf::from("a/b/f"), PathBuf::from("top")]);
    }
}
