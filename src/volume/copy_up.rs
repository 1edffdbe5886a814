//! Copy-up of image content into a volume, on file descriptors only.
//!
//! Both trees are walked one component at a time from directory fds: the image side with
//! `openat2(RESOLVE_IN_ROOT)` for the mount point (symlinks in the image resolve as the container
//! would see them, and `..` or an absolute link never leaves the image: CVE-2022-23648), then
//! `O_NOFOLLOW` for every entry below it; the copy side creates with `O_EXCL | O_NOFOLLOW` and
//! sets owners, modes, xattrs and times through fds (`AT_SYMLINK_NOFOLLOW` for links). The copy
//! is made into a private staging directory that no container can see, and only its top-level
//! entries are renamed into the volume (`RENAME_NOREPLACE`), so a container sharing the volume
//! cannot swap a directory for a symlink under the copy: nothing it controls is ever followed.
//! The walk uses an explicit stack, bounded in depth and entries.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Deepest directory nesting copied: each level holds two fds while the walk is below it.
pub const MAX_DEPTH: usize = 256;
/// Most entries one copy-up creates (the unpacker's per-layer cap).
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Linux's XATTR_LIST_MAX and XATTR_SIZE_MAX.
const XATTR_LIST_MAX: usize = 64 * 1024;
const XATTR_SIZE_MAX: usize = 64 * 1024;

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("path contains a NUL byte"))
}

/// `openat2` with `RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV` and the extra `resolve` flags.
fn openat2(dir: RawFd, name: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let resolve = resolve | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
    crate::fs_at::openat2(dir, name, flags, 0, resolve)
}

/// One component below `dir`, never following a symlink there (`..` cannot appear: names come
/// from `readdir`).
fn open_child(dir: RawFd, name: &CStr, flags: i32) -> io::Result<OwnedFd> {
    openat2(
        dir,
        name,
        flags | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// Opens a host directory the engine owns (a layer, the volume's `_data`, the staging dir).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    cvt(fd)?;
    // SAFETY: open returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What an image has at a container path.
#[derive(Debug)]
pub enum Found {
    /// A directory, open for reading.
    Directory(OwnedFd),
    /// A file, whiteout, device...: it hides lower layers, and there is nothing to copy.
    NotDirectory,
    Missing,
}

/// Looks up `target` (a path inside the container) in the image tree `root`: symlinks resolve
/// with `root` as `/` and `..` stops at it, as the container would see them; magic links and
/// other mounts are refused. A directory is returned open for reading.
pub fn find_in_root(root: &Path, target: &Path) -> io::Result<Found> {
    let root_fd = open_dir(root)?;
    let mut rel = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => {
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(n.as_bytes());
            }
            // RESOLVE_IN_ROOT clamps `..` at the root; keep it for the kernel to apply.
            Component::ParentDir => {
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(b"..");
            }
            _ => {}
        }
    }
    if rel.is_empty() {
        rel.push(b'.');
    }
    let name = cstring(&rel)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    match openat2(root_fd.as_raw_fd(), &name, flags, libc::RESOLVE_IN_ROOT) {
        Ok(fd) => Ok(Found::Directory(fd)),
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(Found::Missing),
            // A non-directory at the end or in the middle of the path: in a layer it (a file or
            // a whiteout) hides what the layers below have there. Never "missing", which would
            // let a lower layer's deleted content come back.
            Some(libc::ENOTDIR) => Ok(Found::NotDirectory),
            _ => Err(io::Error::new(
                e.kind(),
                format!(
                    "resolve {} inside {}: {e}",
                    target.display(),
                    root.display()
                ),
            )),
        },
    }
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; the pointer is valid for the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: as in fstat; AT_SYMLINK_NOFOLLOW never follows the final component.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn kind(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// The names in a directory (without `.` and `..`), read from a duplicate of `dir`.
fn list(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone()?).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let n = entry.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
        if names.len() as u64 > MAX_ENTRIES {
            return Err(io::Error::other(format!(
                "a directory holds more than {MAX_ENTRIES} entries; copy-up refused"
            )));
        }
    }
    // Popped from the end: reverse so entries are copied in directory order.
    names.reverse();
    Ok(names)
}

fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// Only what the unpacker lets a layer carry: file capabilities and `user.*`.
fn xattr_copied(name: &[u8]) -> bool {
    name == b"security.capability" || name.starts_with(b"user.")
}

fn copy_xattrs(src: RawFd, dst: RawFd) -> io::Result<()> {
    let mut names = vec![0u8; XATTR_LIST_MAX];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::flistxattr(src, names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // File systems without xattrs have none to copy.
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(()),
            _ => Err(e),
        };
    }
    let mut value = vec![0u8; XATTR_SIZE_MAX];
    for name in names[..n as usize].split(|&b| b == 0) {
        if name.is_empty() || !xattr_copied(name) {
            continue;
        }
        let key = cstring(name)?;
        // SAFETY: valid fd, NUL-terminated key, buffer valid for its length.
        let len =
            unsafe { libc::fgetxattr(src, key.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, with `len` bytes of the buffer initialised.
        cvt(unsafe { libc::fsetxattr(dst, key.as_ptr(), value.as_ptr().cast(), len as usize, 0) })?;
    }
    Ok(())
}

/// Owner, then xattrs, then mode, then times: `chown` clears setuid/setgid and file
/// capabilities, and writing xattrs or children changes times.
fn apply_metadata(src: RawFd, dst: RawFd, st: &libc::stat) -> io::Result<()> {
    cvt(unsafe { libc::fchown(dst, st.st_uid, st.st_gid) })?;
    copy_xattrs(src, dst)?;
    cvt(unsafe { libc::fchmod(dst, st.st_mode & 0o7777) })?;
    let ts = times(st);
    cvt(unsafe { libc::futimens(dst, ts.as_ptr()) })
}

/// A directory being copied: its source and copy, the names still to copy, its attributes.
struct Frame {
    src: OwnedFd,
    dst: OwnedFd,
    pending: Vec<CString>,
    meta: libc::stat,
    /// Shown in errors: the path below the copied tree.
    path: Vec<u8>,
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn context(path: &[u8]) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("copy {}: {e}", show(path)))
}

/// Copies the tree under the directory `src` into the empty directory `dst` (both open fds),
/// children and `dst`'s own attributes. `src` is read-only image content and `dst` a directory
/// only the engine can reach; neither is followed through a symlink.
pub fn copy_tree(src: OwnedFd, dst: OwnedFd) -> io::Result<()> {
    let meta = fstat(src.as_raw_fd())?;
    let pending = list(&src)?;
    let mut stack = vec![Frame {
        src,
        dst,
        pending,
        meta,
        path: Vec::new(),
    }];
    let mut entries = 0u64;
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.pending.pop() else {
            let done = stack.pop().expect("a frame is on the stack");
            apply_metadata(done.src.as_raw_fd(), done.dst.as_raw_fd(), &done.meta)
                .map_err(context(&done.path))?;
            continue;
        };
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(io::Error::other(format!(
                "more than {MAX_ENTRIES} entries to copy; copy-up refused"
            )));
        }
        let mut path = frame.path.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.to_bytes());
        if let Some(child) = copy_entry(frame, &name, &path).map_err(context(&path))? {
            if stack.len() >= MAX_DEPTH {
                return Err(io::Error::other(format!(
                    "{} is nested deeper than {MAX_DEPTH} directories; copy-up refused",
                    show(&path)
                )));
            }
            stack.push(child);
        }
    }
    Ok(())
}

/// Copies one entry of `frame`; a directory is created and returned as the next frame.
fn copy_entry(frame: &Frame, name: &CStr, path: &[u8]) -> io::Result<Option<Frame>> {
    let (sdir, ddir) = (frame.src.as_raw_fd(), frame.dst.as_raw_fd());
    let st = lstat_at(sdir, name)?;
    match kind(&st) {
        libc::S_IFDIR => {
            cvt(unsafe { libc::mkdirat(ddir, name.as_ptr(), 0o700) })?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            let src = open_child(sdir, name, flags)?;
            let dst = open_child(ddir, name, flags)?;
            let pending = list(&src)?;
            let meta = fstat(src.as_raw_fd())?;
            Ok(Some(Frame {
                src,
                dst,
                pending,
                meta,
                path: path.to_vec(),
            }))
        }
        libc::S_IFREG => {
            // O_NONBLOCK: if the entry is no longer a regular file, opening must not hang.
            let src = open_child(sdir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
            let meta = fstat(src.as_raw_fd())?;
            if kind(&meta) != libc::S_IFREG {
                return Err(io::Error::other("changed type during the copy"));
            }
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            // SAFETY: valid dirfd and name; O_EXCL|O_NOFOLLOW create a new file or fail.
            let fd = unsafe { libc::openat(ddir, name.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
            cvt(fd)?;
            // SAFETY: openat returned a fresh fd.
            let mut out = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let mut input = std::fs::File::from(src);
            io::copy(&mut input, &mut out)?;
            apply_metadata(input.as_raw_fd(), out.as_raw_fd(), &meta)?;
            Ok(None)
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(&frame.src, name).map_err(io::Error::from)?;
            let target = cstring(target.as_bytes())?;
            cvt(unsafe { libc::symlinkat(target.as_ptr(), ddir, name.as_ptr()) })?;
            link_metadata(ddir, name, &st)?;
            Ok(None)
        }
        libc::S_IFCHR if st.st_rdev == 0 => {
            // An overlay whiteout: it hides content, it is not content.
            Ok(None)
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            let mode = kind(&st) | (st.st_mode & 0o7777);
            cvt(unsafe { libc::mknodat(ddir, name.as_ptr(), mode, st.st_rdev) })?;
            link_metadata(ddir, name, &st)?;
            // The node was just made in the private staging tree, where nothing can replace
            // it with a symlink, so following the name here reaches that node.
            cvt(unsafe { libc::fchmodat(ddir, name.as_ptr(), st.st_mode & 0o7777, 0) })?;
            Ok(None)
        }
        // Sockets are not content: Docker skips them as well.
        _ => Ok(None),
    }
}

/// Owner and times of something that cannot be opened (a symlink, a device), never followed.
fn link_metadata(dir: RawFd, name: &CStr, st: &libc::stat) -> io::Result<()> {
    let nofollow = libc::AT_SYMLINK_NOFOLLOW;
    cvt(unsafe { libc::fchownat(dir, name.as_ptr(), st.st_uid, st.st_gid, nofollow) })?;
    let ts = times(st);
    cvt(unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), nofollow) })
}

/// True when the directory has no entries.
pub fn is_empty(dir: &OwnedFd) -> io::Result<bool> {
    Ok(list(dir)?.is_empty())
}

/// Moves every entry of `from` into `to` without replacing anything there (`RENAME_NOREPLACE`
/// on fds: nothing in `to` is followed). Returns the names that were already taken in `to`.
pub fn move_entries(from: &OwnedFd, to: &OwnedFd) -> io::Result<Vec<String>> {
    let mut taken = Vec::new();
    for name in list(from)? {
        // SAFETY: valid dirfds and NUL-terminated names.
        let r = unsafe {
            libc::renameat2(
                from.as_raw_fd(),
                name.as_ptr(),
                to.as_raw_fd(),
                name.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                taken.push(
                    OsStr::from_bytes(name.to_bytes())
                        .to_string_lossy()
                        .into_owned(),
                );
                continue;
            }
            return Err(context(name.to_bytes())(e));
        }
    }
    Ok(taken)
}

/// Gives `to` the owner, xattrs, mode and times of `from` (the image's mount point directory
/// given to the volume root, as Docker does).
pub fn copy_dir_metadata(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let st = fstat(from.as_raw_fd())?;
    apply_metadata(from.as_raw_fd(), to.as_raw_fd(), &st)
}
