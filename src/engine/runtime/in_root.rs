//! Paths inside the container's root, resolved by the kernel (`openat2` with `RESOLVE_IN_ROOT`
//! and `RESOLVE_NO_MAGICLINKS`), and mounts made onto the resolved fds rather than onto paths.
//!
//! Everything here runs in `berth init` after `pivot_root`, where the image controls every
//! symlink. A symlink such as `/etc/hostname -> /proc/self/fd/6/x` would otherwise lead through
//! one of init's open fds to the host (CVE-2024-45310), and a destination that resolves into
//! `/proc` or `/sys` could hide the masks on them (CVE-2019-16884). Magic links are refused,
//! directories and files are created one component at a time relative to their resolved
//! parent, and every resolved component is checked not to be on procfs or sysfs.
//! `RESOLVE_NO_XDEV` is not used: destinations legitimately cross mounts (`/dev/shm/x`, or a
//! bind inside an earlier volume).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use thiserror::Error;

const SYSFS_MAGIC: i64 = 0x6265_6572;

#[derive(Debug, Error)]
pub enum InRootError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} resolves into {fs}, which the runtime owns (a symlink in the image points \
         there); choose another path"
    )]
    KernelFs { path: String, fs: &'static str },
    #[error("{0:?} is not an absolute path inside the container")]
    BadPath(String),
}

type Result<T> = std::result::Result<T, InRootError>;

/// The container's root directory, held open so every lookup is relative to it.
pub struct ContainerRoot {
    fd: OwnedFd,
}

/// How far a destination may resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFs {
    /// Refuse any component on procfs or sysfs.
    Refuse,
    /// Follow the image's symlinks into procfs or sysfs too (a working directory may be
    /// there); magic links are still refused.
    Allow,
    /// The runtime's own mounts and masks on `/proc` and `/sys`, and runc's procfs file
    /// overrides: allowed, but resolved without following any symlink at all.
    AllowWithoutSymlinks,
}

/// Dangling symlinks followed while creating one path; more is a loop.
const MAX_LINK_HOPS: u32 = 16;

/// `path` made absolute and lexically clean; `..` stops at the root. Only used to name what to
/// create for a dangling symlink: the result is resolved by the kernel again.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn cstr(path: &str) -> Result<CString> {
    CString::new(path).map_err(|_| InRootError::BadPath(path.to_string()))
}

/// The components of an absolute path without `.`; `..` is refused (callers checked already).
fn components(path: &str) -> Result<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(InRootError::BadPath(path.to_string()));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(InRootError::BadPath(path.to_string()));
    }
    Ok(parts)
}

fn openat2(dir: RawFd, path: &CString, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    crate::fs_at::openat2(dir, path, flags, 0, resolve)
}

/// `/proc` or `/sys` when `fd` is on procfs or sysfs.
fn kernel_fs(fd: &OwnedFd) -> Option<&'static str> {
    let magic = nix::sys::statfs::fstatfs(fd).ok()?.filesystem_type().0;
    if magic == nix::sys::statfs::PROC_SUPER_MAGIC.0 {
        Some("/proc")
    } else if magic == SYSFS_MAGIC {
        Some("/sys")
    } else {
        None
    }
}

impl ContainerRoot {
    /// The current root (`/` after `pivot_root`).
    pub fn open() -> Result<Self> {
        Self::at(std::path::Path::new("/"))
    }

    /// The directory `dir` as the root of every lookup.
    pub fn at(dir: &std::path::Path) -> Result<Self> {
        let fd = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| InRootError::Io {
            path: dir.display().to_string(),
            what: "open the container root",
            source: e.into(),
        })?;
        Ok(Self { fd })
    }

    fn resolve_flags(policy: KernelFs) -> u64 {
        let base = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        match policy {
            KernelFs::Refuse | KernelFs::Allow => base,
            KernelFs::AllowWithoutSymlinks => base | libc::RESOLVE_NO_SYMLINKS,
        }
    }

    /// Open `path` (`O_PATH` plus `flags`) inside the root.
    pub fn open_path(&self, path: &str, flags: i32, policy: KernelFs) -> Result<OwnedFd> {
        let c = cstr(path)?;
        let fd = openat2(
            self.fd.as_raw_fd(),
            &c,
            libc::O_PATH | flags,
            Self::resolve_flags(policy),
        )
        .map_err(|source| InRootError::Io {
            path: path.to_string(),
            what: "resolve it inside the container",
            source,
        })?;
        self.check(&fd, path, policy)?;
        Ok(fd)
    }

    fn check(&self, fd: &OwnedFd, path: &str, policy: KernelFs) -> Result<()> {
        match (kernel_fs(fd), policy) {
            (Some(fs), KernelFs::Refuse) => Err(InRootError::KernelFs {
                path: path.to_string(),
                fs,
            }),
            _ => Ok(()),
        }
    }

    /// Create the directory `path` and its missing parents, each relative to its resolved
    /// parent, and return it opened (`O_PATH`). A dangling symlink on the way gets its target
    /// created (inside the root), as runc does for images whose links point at paths made at
    /// run time.
    pub fn mkdir_all(&self, path: &str, mode: u32, policy: KernelFs) -> Result<OwnedFd> {
        self.mkdir_all_in(path, mode, policy, 0)
    }

    /// The target of the dangling symlink `name` in `parent` (at `parent_path`), as an
    /// absolute path inside the root; `None` when `name` is not a symlink.
    fn link_target(&self, parent: &OwnedFd, parent_path: &str, name: &str) -> Option<String> {
        let target = nix::fcntl::readlinkat(parent, name).ok()?;
        let target = target.to_string_lossy();
        Some(if target.starts_with('/') {
            clean(&target)
        } else {
            clean(&format!("{parent_path}/{target}"))
        })
    }

    /// Create the target of a dangling symlink met while creating `path`, counting hops.
    fn follow_dangling(
        &self,
        path: &str,
        target: Option<String>,
        hops: u32,
        create: impl FnOnce(&str, u32) -> Result<OwnedFd>,
    ) -> Result<()> {
        let dangling = |source| InRootError::Io {
            path: path.to_string(),
            what: "create what a symlink on the way points to",
            source,
        };
        let Some(target) = target else {
            return Err(dangling(io::Error::from_raw_os_error(libc::ENOENT)));
        };
        if hops >= MAX_LINK_HOPS {
            return Err(dangling(io::Error::from_raw_os_error(libc::ELOOP)));
        }
        create(&target, hops + 1).map(drop)
    }

    fn mkdir_all_in(&self, path: &str, mode: u32, policy: KernelFs, hops: u32) -> Result<OwnedFd> {
        let mut current = self.open_path("/", libc::O_DIRECTORY, policy)?;
        let mut prefix = String::new();
        for name in components(path)? {
            prefix.push('/');
            prefix.push_str(name);
            let c = cstr(&prefix)?;
            let flags = libc::O_PATH | libc::O_DIRECTORY;
            let resolve = Self::resolve_flags(policy);
            current = match openat2(self.fd.as_raw_fd(), &c, flags, resolve) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name_c = cstr(name)?;
                    // SAFETY: plain system call on a live dir fd and a C string.
                    let rc = unsafe { libc::mkdirat(current.as_raw_fd(), name_c.as_ptr(), mode) };
                    if rc != 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(InRootError::Io {
                                path: path.to_string(),
                                what: "create a directory for it",
                                source: e,
                            });
                        }
                    }
                    let reopen = || {
                        openat2(self.fd.as_raw_fd(), &c, flags, resolve).map_err(|source| {
                            InRootError::Io {
                                path: path.to_string(),
                                what: "open the directory created for it",
                                source,
                            }
                        })
                    };
                    match reopen() {
                        Ok(fd) => fd,
                        Err(_) => {
                            let parent_path = &prefix[..prefix.len() - name.len() - 1];
                            let target = self.link_target(&current, parent_path, name);
                            self.follow_dangling(path, target, hops, |t, h| {
                                self.mkdir_all_in(t, mode, policy, h)
                            })?;
                            reopen()?
                        }
                    }
                }
                Err(source) => {
                    return Err(InRootError::Io {
                        path: path.to_string(),
                        what: "resolve it inside the container",
                        source,
                    })
                }
            };
            self.check(&current, path, policy)?;
        }
        Ok(current)
    }

    /// Create the file `path` (empty, `O_EXCL`, never through a symlink) unless something is
    /// there already, and return what `path` resolves to (`O_PATH`).
    pub fn ensure_file(&self, path: &str, mode: u32, policy: KernelFs) -> Result<OwnedFd> {
        self.ensure_file_in(path, mode, policy, 0)
    }

    fn ensure_file_in(
        &self,
        path: &str,
        mode: u32,
        policy: KernelFs,
        hops: u32,
    ) -> Result<OwnedFd> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(InRootError::BadPath(path.to_string()));
        };
        let parent_path = format!("/{}", parents.join("/"));
        let parent = self.mkdir_all_in(&parent_path, 0o755, policy, hops)?;
        let name_c = cstr(name)?;
        // SAFETY: plain system call on a live dir fd and a C string; the fd is closed below.
        let fd = unsafe {
            libc::openat(
                parent.as_raw_fd(),
                name_c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        if fd >= 0 {
            // SAFETY: closing the fd just created.
            unsafe { libc::close(fd) };
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(InRootError::Io {
                    path: path.to_string(),
                    what: "create a file for it",
                    source: e,
                });
            }
        }
        match self.open_path(path, 0, policy) {
            Err(InRootError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                let target = self.link_target(&parent, &parent_path, name);
                self.follow_dangling(path, target, hops, |t, h| {
                    self.ensure_file_in(t, mode, policy, h)
                })?;
                self.open_path(path, 0, policy)
            }
            other => other,
        }
    }
}

/// Mount a filesystem onto the directory behind `target` (an `O_PATH` fd): `fchdir` to it and
/// mount on `.`, so no path is looked up again.
pub fn mount_on_fd(
    target: &OwnedFd,
    source: &str,
    fstype: &str,
    flags: nix::mount::MsFlags,
    data: &str,
) -> nix::Result<()> {
    nix::unistd::fchdir(target)?;
    let result = nix::mount::mount(
        Some(source),
        ".",
        Some(fstype),
        flags,
        (!data.is_empty()).then_some(data),
    );
    let back = nix::unistd::chdir("/");
    result.and(back)
}

/// Attach a detached mount tree (`open_tree`) onto the file or directory behind `target`.
pub fn move_tree_to_fd(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain system call on two fds we own and empty C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Set mount attributes on the top mount of a detached tree (not its submounts, as Docker's
/// `ro` binds do).
pub fn set_tree_attr(tree: &OwnedFd, attr_set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr is a live struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
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
    use std::path::Path;

    fn attack_root() -> (tempfile::TempDir, tempfile::TempDir, std::fs::File) {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // Stands for a bind source init holds open while it resolves destinations.
        let held = std::fs::File::open(host.path()).unwrap();
        (root, host, held)
    }

    #[test]
    fn a_symlink_through_proc_self_fd_creates_nothing_on_the_host() {
        let (root, host, held) = attack_root();
        let link = format!("/proc/self/fd/{}/x", held.as_raw_fd());
        std::os::unix::fs::symlink(&link, root.path().join("etc/hostname")).unwrap();
        std::os::unix::fs::symlink(&link, root.path().join("data")).unwrap();
        // The real /proc is needed for the magic link: the lookups start at the host's root.
        let r = ContainerRoot::at(Path::new("/")).unwrap();
        let at = |p: &str| format!("{}{p}", root.path().display());
        let err = r
            .ensure_file(&at("/etc/hostname"), 0o644, KernelFs::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/hostname: resolve it inside the container: "),
            "{err}"
        );
        assert!(err.contains("symbolic links"), "{err}");
        let err = r
            .mkdir_all(&at("/data/sub"), 0o755, KernelFs::Refuse)
            .unwrap_err();
        assert!(err.to_string().contains("/data/sub"), "{err}");
        // A working directory may be in /proc, but never through a magic link.
        let err = r
            .open_path(&at("/data"), libc::O_DIRECTORY, KernelFs::Allow)
            .unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        assert_eq!(
            std::fs::read_dir(host.path()).unwrap().count(),
            0,
            "host dir untouched"
        );
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside_the_root() {
        let (root, host, _held) = attack_root();
        std::os::unix::fs::symlink(host.path(), root.path().join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("/", root.path().join("etc/top")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.path().join("etc/up")).unwrap();
        let r = ContainerRoot::at(root.path()).unwrap();
        // A link to a host path means that path inside the root: made there, never outside.
        r.mkdir_all("/etc/abs/x", 0o755, KernelFs::Refuse).unwrap();
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("x").is_dir());
        r.mkdir_all("/etc/top/made", 0o755, KernelFs::Refuse)
            .unwrap();
        r.ensure_file("/etc/up/file", 0o644, KernelFs::Refuse)
            .unwrap();
        assert!(
            root.path().join("made").is_dir(),
            "`/` is the container root"
        );
        assert!(root.path().join("file").is_file(), "`..` stops at the root");
        assert_eq!(
            std::fs::read_dir(host.path()).unwrap().count(),
            0,
            "host dir untouched"
        );
    }

    #[test]
    fn a_destination_resolving_into_proc_is_refused() {
        let (root, _host, _held) = attack_root();
        let proc = std::fs::File::open("/proc").unwrap();
        let r = ContainerRoot { fd: proc.into() };
        let err = r
            .mkdir_all("/sys", 0o755, KernelFs::Refuse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("resolves into /proc"), "{err}");
        drop(root);
    }

    #[test]
    fn dangling_symlinks_get_their_target_made_inside_the_root() {
        let (root, host, _held) = attack_root();
        let resolv = root.path().join("etc/resolv.conf");
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &resolv).unwrap();
        std::os::unix::fs::symlink("/var/lib/data", root.path().join("data")).unwrap();
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        let r = ContainerRoot::at(root.path()).unwrap();
        r.ensure_file("/etc/resolv.conf", 0o644, KernelFs::Refuse)
            .unwrap();
        assert!(root
            .path()
            .join("run/systemd/resolve/stub-resolv.conf")
            .is_file());
        r.mkdir_all("/data/sub", 0o755, KernelFs::Refuse).unwrap();
        assert!(root.path().join("var/lib/data/sub").is_dir());
        let err = r.mkdir_all("/loop/x", 0o755, KernelFs::Refuse).unwrap_err();
        assert!(err.to_string().starts_with("/loop/x: "), "{err}");
        assert_eq!(clean("/a/../../b/./c"), "/b/c");
        assert_eq!(
            std::fs::read_dir(host.path()).unwrap().count(),
            0,
            "host dir untouched"
        );
    }

    #[test]
    fn components_refuse_relative_and_dotdot() {
        assert_eq!(components("/etc//./hosts").unwrap(), ["etc", "hosts"]);
        assert!(components("etc/hosts").is_err());
        assert!(components("/etc/../x").is_err());
    }
}
