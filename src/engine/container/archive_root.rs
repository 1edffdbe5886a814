//! A container's file system as `docker cp` sees it, held as a directory fd, and paths
//! resolved inside it by the kernel.
//!
//! A running container is reached through its init's root (`/proc/<pid>/root`, opened after
//! checking the process is still the recorded one): its own view, volumes and all, never the
//! overlay's upper directory behind the mount. A stopped one has no mount left, so its layers
//! are mounted as an overlay on a thread that first unshares its mount namespace: nothing
//! mounted there is visible to the host or outlives the thread.
//!
//! Every path is resolved relative to the root fd with `RESOLVE_IN_ROOT` (an absolute symlink
//! such as `/data -> /` stays inside) and `RESOLVE_NO_MAGICLINKS` (`/etc -> /proc/1/root` is
//! refused), and nothing on procfs or sysfs is read or written: those are the kernel's files,
//! and writing them as the engine's root would reach the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use thiserror::Error;

use super::process::ProcIdentity;
use crate::engine::runtime::in_root;
use crate::engine::unpack::UnpackError;

#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Docker's 404 text for a path that does not exist.
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    /// The request is at fault (400): not a directory, a kernel file system, a bad path.
    #[error("{0}")]
    BadRequest(String),
    /// An upload over what berth accepts for the container's state (413).
    #[error("{0}")]
    TooLarge(String),
    /// The container went away or changed state under the request (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The upload was refused by the extractor (400: it is the client's archive).
    #[error("cannot extract the archive: {0}")]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Container(#[from] super::ContainerError),
}

type Result<T> = std::result::Result<T, ArchiveError>;

pub fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

const SYSFS_MAGIC: i64 = 0x6265_6572;
/// Symlinks followed while naming a symlink's target; more is a loop.
const MAX_LINK_HOPS: usize = 40;

/// Where a container's files are reached.
pub enum RootAccess {
    /// A running container: its init's root directory.
    Process(ProcIdentity),
    /// A stopped container: its layers as an overlay (see [`OverlayRoot`]).
    Overlay(OverlayRoot),
}

/// The overlay of a stopped container, mounted under `scratch` (created and removed here).
pub struct OverlayRoot {
    pub scratch: PathBuf,
    /// Image layers, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The container's upper directory, if it ever started.
    pub upper: Option<PathBuf>,
    pub work: PathBuf,
    /// Mount with the upper directory writable (a copy into the container); otherwise the
    /// upper directory is only the topmost read-only layer.
    pub writable: bool,
    /// The container's volumes and bind mounts, attached where they resolve inside the
    /// overlay, so a copy sees (and writes) what the container would.
    pub binds: Vec<OverlayBind>,
    /// The files copied into the container before it first started, which the runtime binds
    /// read-only at start (see [`archive`](super::archive)). A read attaches them on top, as
    /// the container will see them; their missing mount points are made in a throwaway upper
    /// directory under `scratch`, never in the container's layers.
    pub copied: Vec<OverlayBind>,
}

/// A host directory or file mounted into a stopped container's overlay for the copy.
pub struct OverlayBind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Runs `f` with the container's root directory (an `O_PATH` fd) on a thread of its own, and
/// returns its result. Blocking.
pub fn with_root<R: Send + 'static>(
    access: RootAccess,
    f: impl FnOnce(&OwnedFd) -> Result<R> + Send + 'static,
) -> Result<R> {
    let thread = std::thread::Builder::new()
        .name("berth-archive".into())
        .spawn(move || match access {
            RootAccess::Process(init) => f(&process_root(&init)?),
            RootAccess::Overlay(overlay) => overlay.run(f),
        })
        .map_err(io_err("spawn the archive thread"))?;
    thread.join().map_err(|_| ArchiveError::Io {
        what: "the archive thread".into(),
        source: io::Error::other("panicked"),
    })?
}

/// A detached clone of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`).
fn open_tree(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call with a NUL-terminated path; a non-negative result is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn gone() -> ArchiveError {
    ArchiveError::Conflict("the container stopped while its files were being copied".into())
}

/// `/proc/<pid>/root` of the recorded init, if it is still that process.
fn process_root(init: &ProcIdentity) -> Result<OwnedFd> {
    init.open_root().ok_or_else(gone)
}

fn openat(dir: RawFd, name: &str, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid dirfd and NUL-terminated name; a non-negative result is ours.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sys(what: &str) -> impl FnOnce(nix::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Io {
        what: what.to_string(),
        source: io::Error::from(e),
    }
}

impl OverlayRoot {
    fn run<R>(self, f: impl FnOnce(&OwnedFd) -> Result<R>) -> Result<R> {
        // CLONE_FS first: the kernel refuses CLONE_NEWNS to a thread sharing its fs struct.
        nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
            .map_err(sys("unshare the archive thread's mount namespace"))?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("make the archive thread's mounts private"))?;
        let merged = self.mount()?;
        let root = crate::fs_at::openat2(
            libc::AT_FDCWD,
            c"merged",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(io_err("open the container's overlay"));
        let result = root.and_then(|root| {
            self.attach_binds(&root)?;
            self.attach_copied(&merged)?;
            f(&root)
        });
        // Detached (with the binds below) before the caller releases the container: a start
        // must find the upper and work directories free. Only a mount point no longer
        // mounted is ever removed recursively.
        if nix::mount::umount2(&merged, MntFlags::MNT_DETACH).is_ok() {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
        result
    }

    /// Each bind onto its destination resolved inside the overlay (as the runtime resolves
    /// it at start); one whose destination is missing or of the other type is left out, as
    /// nothing there can be copied anyway.
    fn attach_binds(&self, root: &OwnedFd) -> Result<()> {
        for bind in &self.binds {
            let Ok(dest) = ContainerPath::parse(&bind.destination) else {
                continue;
            };
            let Ok(target) = locate(root, &dest, true, "") else {
                continue;
            };
            let Ok(source) = std::fs::metadata(&bind.source) else {
                continue;
            };
            let target_is_dir = target.stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if source.is_dir() != target_is_dir {
                continue;
            }
            let tree = open_tree(&bind.source).map_err(io_err(format!(
                "clone the mount of {}",
                bind.source.display()
            )))?;
            if bind.read_only || !self.writable {
                in_root::set_tree_attr(&tree, in_root::MOUNT_ATTR_RDONLY)
                    .map_err(io_err("make a bind read-only"))?;
            }
            in_root::move_tree_to_fd(&tree, &target.fd)
                .map_err(io_err(format!("mount {} for the copy", bind.destination)))?;
        }
        Ok(())
    }

    /// Each copied file onto its place resolved inside the overlay, its mount point made as
    /// the runtime makes it at start (inside the root, symlinks resolved in it). One whose
    /// place cannot hold a file (a directory there, a read-only volume) is left out.
    fn attach_copied(&self, merged: &Path) -> Result<()> {
        if !self.scratch_upper() {
            return Ok(());
        }
        let root = in_root::ContainerRoot::at(merged).map_err(|e| ArchiveError::Io {
            what: "open the container's overlay".into(),
            source: io::Error::other(e.to_string()),
        })?;
        for file in &self.copied {
            let Ok(target) = root.ensure_file(&file.destination, 0o644, in_root::KernelFs::Refuse)
            else {
                continue;
            };
            if !fstat(target.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            {
                continue;
            }
            let tree = open_tree(&file.source).map_err(io_err(format!(
                "clone the mount of {}",
                file.source.display()
            )))?;
            in_root::set_tree_attr(&tree, in_root::MOUNT_ATTR_RDONLY)
                .map_err(io_err("make a copied file read-only"))?;
            in_root::move_tree_to_fd(&tree, &target)
                .map_err(io_err(format!("mount {} for the copy", file.destination)))?;
        }
        Ok(())
    }

    /// A read of a container with copied files: the overlay gets an upper directory of its
    /// own under `scratch`, thrown away after, where the files' mount points are made.
    fn scratch_upper(&self) -> bool {
        !self.writable && !self.copied.is_empty()
    }

    /// Mounts the overlay at `scratch/merged` (lower dirs as short `l/<i>` links, as the
    /// runtime does, to stay within the one-page limit of mount options).
    fn mount(&self) -> Result<PathBuf> {
        let dir = &self.scratch;
        let scratch_upper: &[&str] = if self.scratch_upper() {
            &["upper", "work"]
        } else {
            &[]
        };
        for sub in ["l", "merged", "empty"].iter().chain(scratch_upper) {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io_err(format!("create {}", dir.join(sub).display())))?;
        }
        let mut layers: Vec<&Path> = Vec::new();
        if !self.writable {
            layers.extend(self.upper.as_deref());
        }
        layers.extend(self.lowers.iter().map(PathBuf::as_path));
        let mut lower = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            std::os::unix::fs::symlink(layer, dir.join("l").join(i.to_string()))
                .map_err(io_err(format!("link layer {}", layer.display())))?;
            lower.push(format!("l/{i}"));
        }
        let mut data = String::new();
        let upper = match (&self.upper, self.writable) {
            (Some(upper), true) => Some((upper.clone(), self.work.clone())),
            _ if self.scratch_upper() => Some((dir.join("upper"), dir.join("work"))),
            _ => None,
        };
        match upper {
            Some((upper, work)) => {
                if lower.is_empty() {
                    lower.push("empty".into());
                }
                data = format!(
                    "lowerdir={},upperdir={},workdir={},index=off",
                    lower.join(":"),
                    upper.display(),
                    work.display()
                );
            }
            None => {
                // Read-only overlayfs wants two lower dirs at least: the empty one makes sure.
                lower.push("empty".into());
                data.push_str(&format!("lowerdir={}", lower.join(":")));
            }
        }
        std::env::set_current_dir(dir).map_err(io_err(format!("chdir {}", dir.display())))?;
        let mut flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
        if !self.writable && !self.scratch_upper() {
            flags |= MsFlags::MS_RDONLY;
        }
        nix::mount::mount(
            Some("overlay"),
            "merged",
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
        .map_err(sys("mount the container's overlay"))?;
        Ok(dir.join("merged"))
    }
}

/// A container path as Docker's archive endpoints take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    /// Lexically cleaned components (`..` stops at the root).
    pub components: Vec<String>,
    /// Ends with `/` or `/.`: the path must be a directory, and a final symlink is followed.
    pub asserts_dir: bool,
    /// Ends with `/.`: a directory's contents rather than the directory.
    pub contents: bool,
}

impl ContainerPath {
    /// `path` relative to the container's root (a relative path is taken from `/`, as Docker
    /// does).
    pub fn parse(path: &str) -> Result<ContainerPath> {
        if path.is_empty() || path.contains('\0') {
            return Err(ArchiveError::BadRequest(format!(
                "invalid container path {path:?}"
            )));
        }
        let mut components: Vec<String> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    components.pop();
                }
                other => components.push(other.to_string()),
            }
        }
        let contents = path.ends_with("/.") || path == ".";
        Ok(ContainerPath {
            components,
            asserts_dir: contents || path.ends_with('/'),
            contents,
        })
    }

    pub fn absolute(&self) -> String {
        format!("/{}", self.components.join("/"))
    }

    /// The last component (`/` for the root).
    pub fn base(&self) -> &str {
        self.components.last().map_or("/", String::as_str)
    }
}

/// A path found in the container: an `O_PATH` fd on it (on the symlink itself when the last
/// component is one and is not followed) and its `lstat`.
pub struct Located {
    pub fd: OwnedFd,
    pub stat: libc::stat,
}

fn cpath(p: &str) -> Result<CString> {
    CString::new(p).map_err(|_| ArchiveError::BadRequest(format!("invalid path {p:?}")))
}

fn resolve_err(path: &ContainerPath, container: &str) -> impl FnOnce(io::Error) -> ArchiveError {
    let shown = path.absolute();
    let container = container.to_string();
    move |e| match e.raw_os_error() {
        Some(libc::ENOENT) => ArchiveError::NotFound {
            path: shown,
            container,
        },
        Some(libc::ENOTDIR) => ArchiveError::BadRequest(format!("{shown}: not a directory")),
        Some(libc::ELOOP) => ArchiveError::BadRequest(format!(
            "{shown} goes through a link berth does not follow (a /proc magic link or a loop)"
        )),
        Some(libc::EXDEV) => {
            ArchiveError::BadRequest(format!("{shown} resolves outside the container"))
        }
        _ => ArchiveError::Io {
            what: format!("resolve {shown} in container {container}"),
            source: e,
        },
    }
}

/// `fstat` of any fd, `O_PATH` ones included.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; the pointer is valid for the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The kernel's file systems (procfs, sysfs) are not copied from or into.
pub fn on_kernel_fs(fd: RawFd) -> bool {
    // SAFETY: statfs is plain data.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd, &mut s) } != 0 {
        return false;
    }
    let magic = s.f_type as i64;
    magic == libc::PROC_SUPER_MAGIC || magic == SYSFS_MAGIC
}

/// Finds `path` under `root`. The last component is followed when `follow` or when the path
/// asserts a directory; otherwise a symlink there is the result itself, as `docker cp` copies it.
pub fn locate(root: &OwnedFd, path: &ContainerPath, follow: bool, who: &str) -> Result<Located> {
    let err = || resolve_err(path, who);
    let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let fd = match path.components.split_last() {
        None => root.try_clone().map_err(io_err("duplicate the root fd"))?,
        Some(_) if follow || path.asserts_dir => {
            let flags = libc::O_PATH
                | if path.asserts_dir {
                    libc::O_DIRECTORY
                } else {
                    0
                };
            let full = cpath(&path.absolute())?;
            crate::fs_at::openat2(root.as_raw_fd(), &full, flags, 0, in_root).map_err(err())?
        }
        Some((last, parents)) => {
            let parent = cpath(&format!("/{}", parents.join("/")))?;
            let flags = libc::O_PATH | libc::O_DIRECTORY;
            let dir = crate::fs_at::openat2(root.as_raw_fd(), &parent, flags, 0, in_root)
                .map_err(err())?;
            let name = cpath(last)?;
            let beneath = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
            let flags = libc::O_PATH | libc::O_NOFOLLOW;
            crate::fs_at::openat2(dir.as_raw_fd(), &name, flags, 0, beneath).map_err(err())?
        }
    };
    if on_kernel_fs(fd.as_raw_fd()) {
        return Err(ArchiveError::BadRequest(format!(
            "{} is on the kernel's procfs or sysfs in container {who}: berth does not copy \
             those files",
            path.absolute()
        )));
    }
    let stat = fstat(fd.as_raw_fd()).map_err(err())?;
    Ok(Located { fd, stat })
}

/// Opens an `O_PATH` fd again for I/O with `flags`: the same inode, so its type cannot have
/// changed since it was checked (a path lookup again could meet a swapped file).
pub fn reopen(fd: &OwnedFd, flags: i32) -> io::Result<OwnedFd> {
    let path = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
    openat(libc::AT_FDCWD, &path, flags)
}

/// `readlink` of an `O_PATH` fd on a symlink.
pub fn read_link(fd: &OwnedFd) -> io::Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, empty path (the fd itself), buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Where the symlink at `path` leads, as an absolute container path (Docker's `linkTarget`),
/// walked one component at a time inside the root; a dangling rest is kept as written.
pub fn link_target(root: &OwnedFd, path: &ContainerPath) -> String {
    let mut todo: std::collections::VecDeque<String> = path.components.iter().cloned().collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = format!(
            "/{}",
            [resolved.as_slice(), std::slice::from_ref(&c)]
                .concat()
                .join("/")
        );
        let link = CString::new(candidate).ok().and_then(|p| {
            let flags = libc::O_PATH | libc::O_NOFOLLOW;
            let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
            let fd = crate::fs_at::openat2(root.as_raw_fd(), &p, flags, 0, resolve).ok()?;
            let st = fstat(fd.as_raw_fd()).ok()?;
            (st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                .then(|| read_link(&fd).ok())
                .flatten()
        });
        match link {
            Some(target) if hops < MAX_LINK_HOPS => {
                hops += 1;
                if target.starts_with('/') {
                    resolved.clear();
                }
                for (i, part) in target.split('/').enumerate() {
                    todo.insert(i, part.to_string());
                }
            }
            _ => resolved.push(c),
        }
    }
    format!("/{}", resolved.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_cleaned_and_remember_a_directory_assertion() {
        let p = ContainerPath::parse("/etc/../var//log/.").unwrap();
        assert_eq!(p.components, ["var", "log"]);
        assert!(p.asserts_dir && p.contents);
        assert_eq!(p.absolute(), "/var/log");
        assert!(!ContainerPath::parse("/var/").unwrap().contents);
        let p = ContainerPath::parse("../../etc/passwd").unwrap();
        assert_eq!(p.absolute(), "/etc/passwd");
        assert!(!p.asserts_dir);
        assert_eq!(ContainerPath::parse("/").unwrap().base(), "/");
        assert!(ContainerPath::parse("").is_err());
    }

    fn root_of(dir: &Path) -> OwnedFd {
        openat(
            libc::AT_FDCWD,
            dir.to_str().unwrap(),
            libc::O_PATH | libc::O_DIRECTORY,
        )
        .unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_the_last_one_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/x"), "inside").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/x", dir.path().join("link")).unwrap();
        let root = root_of(dir.path());
        let p = ContainerPath::parse("/escape/etc/x").unwrap();
        let found = locate(&root, &p, false, "c").unwrap();
        assert_eq!(
            found.stat.st_size, 6,
            "/escape is the container's root, not the host's"
        );
        let link = ContainerPath::parse("/link").unwrap();
        let found = locate(&root, &link, false, "c").unwrap();
        assert_eq!(found.stat.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(link_target(&root, &link), "/etc/x");
        let found = locate(&root, &link, true, "c").unwrap();
        assert_eq!(found.stat.st_mode & libc::S_IFMT, libc::S_IFREG);
        let missing = locate(&root, &ContainerPath::parse("/nope").unwrap(), false, "c");
        assert!(matches!(missing, Err(ArchiveError::NotFound { .. })));
    }
}
