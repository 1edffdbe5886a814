//! `GET /containers/{id}/changes` (`docker container diff`): what the container changed, read
//! from its overlay's upper directory against the image's layers. An overlay whiteout (a
//! character device 0/0) is a deletion (Kind 2); a path the layers have is a modification
//! (Kind 0; a directory only when something below it changed, as Docker reports `C /tmp` for
//! `A /tmp/x`); anything else is an addition (Kind 1). The stubs the runtime leaves for its own
//! mounts (`/proc`, `/etc/hosts`, volumes, …) are not the container's changes.
//!
//! The upper directory is the container's to shape: it is walked fd-relative, never through
//! a symlink, with the entries and depth bounded.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use serde::Serialize;

use super::state::ContainerRecord;
use super::{ContainerError, Result};
use crate::engine::Engine;

/// Docker's `Kind`.
pub const MODIFIED: u8 = 0;
pub const ADDED: u8 = 1;
pub const DELETED: u8 = 2;

/// Entries listed at most, and directory depth: beyond, the answer is an error, not a guess.
const MAX_ENTRIES: usize = 1_000_000;
const MAX_DEPTH: usize = 256;

/// One line of `docker container diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Kind")]
    pub kind: u8,
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io {
        what: what.to_string(),
        source,
    }
}

fn open_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    crate::fs_at::openat2(dir, name, flags, 0, resolve)
}

fn lstat_at(dir: RawFd, name: &CStr) -> Option<libc::stat> {
    // SAFETY: stat is plain data; valid dirfd and name.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    (r == 0).then_some(st)
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// The image's layers, topmost first, each an open directory.
struct Lowers(Vec<OwnedFd>);

impl Lowers {
    /// Whether the image has `rel` (`a/b`): the topmost layer naming it decides (a whiteout
    /// there means it was deleted by the image itself). Lookups never follow symlinks.
    fn has(&self, rel: &str) -> bool {
        let Ok(path) = CString::new(rel) else {
            return false;
        };
        for layer in &self.0 {
            let flags = libc::O_PATH | libc::O_NOFOLLOW;
            let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
            let Ok(fd) = crate::fs_at::openat2(layer.as_raw_fd(), &path, flags, 0, resolve) else {
                continue;
            };
            return !super::archive_root::fstat(fd.as_raw_fd()).is_ok_and(|st| is_whiteout(&st));
        }
        false
    }
}

struct Walk<'a> {
    lowers: &'a Lowers,
    excluded: &'a HashSet<String>,
    out: Vec<Change>,
}

impl Walk<'_> {
    /// The changes below directory `dir` (at `rel`); true if there were any.
    fn dir(&mut self, dir: &OwnedFd, rel: &str, depth: usize) -> Result<bool> {
        if depth > MAX_DEPTH {
            return Err(ContainerError::Other(format!(
                "changes: the tree is deeper than {MAX_DEPTH} directories"
            )));
        }
        let own = dir
            .try_clone()
            .map_err(io_err("list the upper directory"))?;
        let mut listing = nix::dir::Dir::from_fd(own)
            .map_err(|e| io_err("list the upper directory")(e.into()))?;
        let mut names: Vec<CString> = Vec::new();
        for entry in listing.iter().flatten() {
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        let mut any = false;
        for name in names {
            let child = format!("{rel}/{}", name.to_string_lossy());
            if self.excluded.contains(&child) {
                continue;
            }
            let Some(st) = lstat_at(dir.as_raw_fd(), &name) else {
                continue;
            };
            any |= self.entry(dir, &name, &child, &st, depth)?;
        }
        Ok(any)
    }

    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        path: &str,
        st: &libc::stat,
        depth: usize,
    ) -> Result<bool> {
        if self.out.len() >= MAX_ENTRIES {
            return Err(ContainerError::Other(format!(
                "changes: more than {MAX_ENTRIES} changed paths"
            )));
        }
        let in_image = self.lowers.has(&path[1..]);
        if is_whiteout(st) {
            self.push(path, DELETED);
            return Ok(true);
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            self.push(path, if in_image { MODIFIED } else { ADDED });
            return Ok(true);
        }
        let at = self.out.len();
        let child = open_dir(dir.as_raw_fd(), name).map_err(io_err("open a directory"))?;
        let below = self.dir(&child, path, depth + 1)?;
        if !in_image || below {
            let kind = if in_image { MODIFIED } else { ADDED };
            self.out.insert(
                at,
                Change {
                    path: path.to_string(),
                    kind,
                },
            );
            return Ok(true);
        }
        Ok(false)
    }

    fn push(&mut self, path: &str, kind: u8) {
        self.out.push(Change {
            path: path.to_string(),
            kind,
        });
    }
}

/// The changes in `upper` against `lowers`, sorted by path, without `excluded` paths.
pub fn changes(
    upper: &std::path::Path,
    lowers: &[PathBuf],
    excluded: &HashSet<String>,
) -> Result<Vec<Change>> {
    // The engine's own paths (snapshots, the container's directory).
    let open = |p: &std::path::Path| -> Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(p)
            .map(OwnedFd::from)
            .map_err(io_err("open a layer"))
    };
    let lowers = Lowers(lowers.iter().map(|l| open(l)).collect::<Result<_>>()?);
    let root = match open(upper) {
        Ok(fd) => fd,
        Err(_) if !upper.exists() => return Ok(Vec::new()), // never started
        Err(e) => return Err(e),
    };
    let mut walk = Walk {
        lowers: &lowers,
        excluded,
        out: Vec::new(),
    };
    walk.dir(&root, "", 0)?;
    let mut out = walk.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The runtime's mount points and the container's mounts: what the upper directory holds
/// only as stubs.
fn excluded(record: &ContainerRecord) -> HashSet<String> {
    super::commit::mount_point_stubs(record)
        .into_iter()
        .map(|p| p.to_string_lossy().trim_end_matches('/').to_string())
        .collect()
}

impl Engine {
    /// `GET /containers/{id}/changes`.
    pub async fn container_changes(&self, id_or_name: &str) -> Result<Vec<Change>> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        let image = self
            .images
            .resolve(&record.image_id)
            .ok_or_else(|| ContainerError::NoSuchImage(record.request.image.clone()))?;
        let lowers = self
            .images
            .lower_dirs(&image)
            .map_err(|e| ContainerError::Other(e.to_string()))?;
        let upper = self.containers.dir(&id).join("upper");
        let excluded = excluded(&record);
        tokio::task::spawn_blocking(move || changes(&upper, &lowers, &excluded))
            .await
            .map_err(|e| ContainerError::Other(format!("changes task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_entries_are_added_modified_or_deleted_against_the_layers() {
        let base = tempfile::tempdir().unwrap();
        let (lower, upper) = (base.path().join("lower"), base.path().join("upper"));
        for d in ["bin", "etc", "tmp", "proc"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::write(lower.join("bin/ls"), "ls").unwrap();
        std::fs::write(lower.join("etc/passwd"), "root").unwrap();
        std::fs::create_dir_all(upper.join("tmp/new")).unwrap();
        std::fs::write(upper.join("tmp/new/f"), "x").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/passwd"), "changed").unwrap();
        std::fs::create_dir_all(upper.join("bin")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("bin/ls"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::create_dir_all(upper.join("proc")).unwrap();
        std::os::unix::fs::symlink("/", upper.join("tmp/escape")).unwrap();
        let excluded: HashSet<String> = ["/proc".to_string()].into();
        let got = changes(&upper, &[lower], &excluded).unwrap();
        let got: Vec<(&str, u8)> = got.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(
            got,
            [
                ("/bin", MODIFIED),
                ("/bin/ls", DELETED),
                ("/etc", MODIFIED),
                ("/etc/passwd", MODIFIED),
                ("/tmp", MODIFIED),
                ("/tmp/escape", ADDED),
                ("/tmp/new", ADDED),
                ("/tmp/new/f", ADDED),
            ]
        );
    }
}
