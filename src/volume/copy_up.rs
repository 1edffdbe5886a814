//! Copy-up of image content into a fresh volume: resolve a container path inside a root
//! filesystem without leaving it, and copy a tree preserving modes and owners without following
//! symlinks (a symlink to `/` in an image is copied as a symlink, not as the host's root).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Resolve `path` (as seen inside the container) to a host path under `root`, following symlinks
/// as the container would see them: absolute links restart at `root`, and `..` never climbs above
/// it. The final component is resolved too. Missing components are kept as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    // Components still to walk, last one at the end; links push their targets back on.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join_all(root, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        path.display(),
                        root.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved.push(part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(part),
            Err(e) => return Err(e),
        }
    }
    Ok(join_all(root, &resolved))
}

/// Push the normal and `..` components of `path` so that the first one is popped first.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

fn join_all(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

/// Copy everything inside `from` into the existing directory `to`, preserving file types, modes
/// (setuid included), owners and modification times. Symlinks are recreated, never followed; a
/// symlink swapped in for a directory during the copy is copied as a symlink too, because each
/// entry is examined with `lstat` right before it is copied.
pub fn copy_dir_contents(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        copy_entry(&entry.path(), &to.join(entry.file_name()))?;
    }
    let meta = std::fs::symlink_metadata(from)?;
    apply_metadata(to, &meta)
}

fn copy_entry(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(src)?;
        std::os::unix::fs::symlink(&target, dst)?;
        std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
        return Ok(());
    }
    if kind.is_dir() {
        std::fs::create_dir(dst)?;
        copy_dir_contents(src, dst)?;
        return Ok(());
    }
    if kind.is_file() {
        std::fs::copy(src, dst)?;
    } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
        make_node(dst, &meta)?;
    } else {
        // Sockets are not content: Docker skips them as well.
        return Ok(());
    }
    apply_metadata(dst, &meta)
}

fn make_node(dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let kind = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
    mknod(dst, kind, perm, meta.rdev()).map_err(io::Error::from)
}

/// Owner first, then mode: `chown` clears setuid/setgid bits, so the mode must come after.
fn apply_metadata(dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let c_path = std::ffi::CString::new(dst.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains a NUL byte"))?;
    // SAFETY: c_path is a valid NUL-terminated string and times points at two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_clamps_dotdot_and_restarts_absolute_links_at_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/a", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("a/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/abs/b")).unwrap(),
            root.join("a/b")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/a/up/etc")).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn resolve_stops_on_symlink_loops() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/loop", d.path().join("loop")).unwrap();
        let err = resolve_in_root(d.path(), Path::new("/loop")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }

    #[test]
    fn copy_keeps_setuid_mode_and_owner() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let dst = d.path().join("dst");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let f = src.join("tool");
        std::fs::write(&f, "#!").unwrap();
        std::os::unix::fs::lchown(&f, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        copy_dir_contents(&src, &dst).unwrap();
        let m = std::fs::metadata(dst.join("tool")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!((m.uid(), m.gid()), (1000, 1000));
    }
}
