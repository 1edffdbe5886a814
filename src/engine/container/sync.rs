//! `POST /containers/{id}/sync?path=TARGET` (a berth extension): apply a batch of changed files
//! to a RUNNING container through the container's own view of its filesystem — the watch mode's
//! `sync` action.
//!
//! The files go in through `/proc/<init pid>/root`, the root the container's processes see, so
//! they land in the overlay's merged view (or in a volume mounted below TARGET) the way a write
//! from inside would; the overlay's upper directory is never written behind the kernel's back
//! (overlayfs forbids changing a mounted layer). TARGET and every entry are resolved inside that
//! root without following any symlink (RESOLVE_IN_ROOT | NO_SYMLINKS | NO_MAGICLINKS): a
//! container symlink at TARGET is refused, not followed. `.wh.NAME` entries delete NAME for real.
//! Ownership is the container's configured user (resolved in its own `/etc/passwd`), as Docker
//! sets it when docker compose copies with `CopyUIDGID`; modes come from the tar headers.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::archive::target_dir;
use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::unpack::{apply_tar_at, ApplyOptions, UnpackLimits, Whiteouts};
use crate::engine::Engine;

/// The most one sync body may carry (a batch is the changed files, not a tree).
pub const MAX_SYNC_BYTES: usize = 1 << 30;

fn limits() -> UnpackLimits {
    UnpackLimits {
        max_entries: 200_000,
        max_depth: 256,
        max_total_bytes: MAX_SYNC_BYTES as u64,
        ..UnpackLimits::default()
    }
}

/// What one sync applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub entries: u64,
    pub bytes: u64,
}

const RESOLVE_NO_LINKS: u64 =
    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// `target` (absolute, normalised) under `root`, made like `mkdir -p` owned by `owner` where
/// missing; a symlink on the way is refused with its name.
fn open_target(root: &OwnedFd, target: &str, owner: (u32, u32), name: &str) -> Result<OwnedFd> {
    let mut cur = root.try_clone().map_err(ContainerError::io("dup root"))?;
    let mut walked = String::new();
    for comp in target.split('/').filter(|c| !c.is_empty()) {
        walked.push('/');
        walked.push_str(comp);
        let c = CString::new(comp)
            .map_err(|_| ContainerError::BadRequest(format!("NUL in sync path {target:?}")))?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let open = || crate::fs_at::openat2(cur.as_raw_fd(), &c, flags, 0, RESOLVE_NO_LINKS);
        let next = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: valid dir fd and NUL-terminated name.
                let made = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                if made == 0 {
                    // SAFETY: as above; never follows (AT_SYMLINK_NOFOLLOW).
                    unsafe {
                        libc::fchownat(
                            cur.as_raw_fd(),
                            c.as_ptr(),
                            owner.0,
                            owner.1,
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    };
                }
                open()
            }
            other => other,
        };
        cur = next.map_err(|e| {
            // O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: ask what is there.
            let e = if is_symlink(&cur, &c) {
                io::Error::from_raw_os_error(libc::ELOOP)
            } else {
                e
            };
            refused_target(e, &walked, target, name)
        })?;
    }
    Ok(cur)
}

fn is_symlink(dir: &OwnedFd, name: &CString) -> bool {
    // SAFETY: stat is plain data; valid fd and NUL-terminated name; never follows.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn refused_target(e: io::Error, walked: &str, target: &str, name: &str) -> ContainerError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => ContainerError::Conflict(format!(
            "cannot sync into {target} of container {name}: {walked} is a symlink in the \
             container, and berth does not follow container symlinks when it writes files in"
        )),
        Some(libc::ENOTDIR) => ContainerError::Conflict(format!(
            "cannot sync into {target} of container {name}: {walked} is not a directory"
        )),
        _ => ContainerError::Io {
            what: format!("open {walked} in container {name}"),
            source: e,
        },
    }
}

impl ContainerStore {
    /// Apply `tar` at `path` in running container `id` (see the module doc).
    pub async fn sync_into(&self, id: &str, path: &str, tar: bytes::Bytes) -> Result<SyncStats> {
        let target = target_dir(path)?;
        // Held throughout: a stop or restart in between would swap the root under us.
        let _guard = self.lock(id).await;
        let record = self.load_record(id)?;
        let state = self.state(id);
        if state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "cannot sync into container {}: it is not running",
                record.name
            )));
        }
        let name = record.name.clone();
        tokio::task::spawn_blocking(move || {
            let root = state.init.open_root().ok_or_else(|| {
                ContainerError::Conflict(format!("container {name} is not running"))
            })?;
            let owner = container_owner(&root, &record.user, &name)?;
            let dest = open_target(&root, &target, owner, &name)?;
            let options = ApplyOptions {
                whiteouts: Whiteouts::Delete,
                cross_mounts: true,
                owner: Some(owner),
                ..ApplyOptions::default()
            };
            let stats = apply_tar_at(&mut tar.as_ref(), dest, &limits(), options).map_err(|e| {
                ContainerError::BadRequest(format!("cannot sync into container {name}: {e}"))
            })?;
            Ok(SyncStats {
                entries: stats.entries,
                bytes: stats.bytes,
            })
        })
        .await
        .map_err(|e| ContainerError::Other(format!("sync task failed: {e}")))?
    }
}

/// The container's `User` as numbers, looked up in the container's own passwd and group files
/// (through the root fd, so the pid cannot have been reused meanwhile); root when unset.
fn container_owner(root: &OwnedFd, user: &str, name: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let root_path = format!("/proc/self/fd/{}", root.as_raw_fd());
    let resolved = crate::engine::runtime::user::resolve(Path::new(&root_path), user)
        .map_err(|e| ContainerError::Conflict(format!("cannot sync into container {name}: {e}")))?;
    Ok((resolved.uid, resolved.gid))
}

impl Engine {
    pub async fn sync_container(
        &self,
        id_or_name: &str,
        path: &str,
        tar: bytes::Bytes,
    ) -> Result<SyncStats> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.sync_into(&id, path, tar).await
    }
}
