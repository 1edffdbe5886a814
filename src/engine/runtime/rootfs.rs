//! The container's filesystem view, built by `berth init` inside its own mount namespace:
//! the overlay root, the default mounts Docker gives every container, the user's mounts, and
//! Docker's masked and read-only paths.
//!
//! Only the overlay mount uses host paths resolved in the host's view. Everything else happens
//! after `pivot_root`, where absolute paths and symlinks resolve inside the container and cannot
//! reach the host; bind sources are opened as `O_PATH` fds beforehand and mounted through
//! `/proc/self/fd`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use thiserror::Error;

use super::devices::{DeviceKind, DeviceNode};
use super::in_root::{self, ContainerRoot, InRootError, KernelFs};
use super::spec::{MountKind, MountSpec, RuntimeSpec};
use super::syscall::Syscall;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid mount destination {0:?}: must be an absolute path inside the container")]
    BadDestination(String),
    #[error(
        "image has {layers} layers, more than overlayfs can stack ({MAX_LOWER_DIRS}); \
         squash the image or rebuild it with fewer layers"
    )]
    TooManyLayers { layers: usize },
    #[error(
        "{path} is not a procfs mount ({detail}); the image or a mount replaced it, \
         refusing to start the container"
    )]
    NotProcfs { path: String, detail: String },
    #[error(
        "{path} is not the null device ({detail}); the image or a mount replaced it, \
         refusing to mask paths with it"
    )]
    NotNullDevice { path: String, detail: String },
    #[error(
        "mount destination {0:?} is inside /proc, which the runtime owns; choose another path"
    )]
    InsideProc(String),
    /// A path in the container that could not be resolved safely; `context` names the mount,
    /// device or working directory it was for.
    #[error("{context}: {source}")]
    InRoot {
        context: String,
        #[source]
        source: InRootError,
    },
}

fn in_root(context: impl FnOnce() -> String) -> impl FnOnce(InRootError) -> RootfsError {
    move |source| RootfsError::InRoot {
        context: context(),
        source,
    }
}

type Result<T> = std::result::Result<T, RootfsError>;

fn sys_err(what: impl FnOnce() -> String) -> impl FnOnce(nix::Error) -> RootfsError {
    move |source| RootfsError::Sys {
        what: what(),
        source,
    }
}

fn io_err(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> RootfsError {
    move |source| RootfsError::Io {
        what: what(),
        source,
    }
}

/// Paths Docker hides: files get `/dev/null` bound over them, directories a read-only tmpfs.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths Docker makes read-only.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Files inside /proc a bind may replace (runc's list, for lxcfs-style views of the container's
/// own resources); anything else inside /proc is refused.
const PROC_FILE_OVERRIDES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/slabinfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
];

/// Character devices of the OCI "default devices": (name, major, minor).
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// overlayfs refuses more lower layers than this (`OVL_MAX_STACK`).
const MAX_LOWER_DIRS: usize = 500;

/// Mount data must fit in one page, the kernel's limit for `mount(2)` options.
const PAGE_LIMIT: usize = 4096;

/// The overlay options for `count` lower dirs linked as `l/<i>` (top layer first) under the
/// bundle dir, which is the working directory at mount time. At most ~2.9 KB for 500 layers,
/// so the one-page limit never binds before overlayfs's own stack limit.
fn overlay_data(count: usize) -> Result<String> {
    if count > MAX_LOWER_DIRS {
        return Err(RootfsError::TooManyLayers { layers: count });
    }
    let lower: Vec<String> = if count == 0 {
        // overlayfs needs at least one lower dir; an image without layers gets an empty one.
        vec!["empty".into()]
    } else {
        (0..count).map(|i| format!("l/{i}")).collect()
    };
    let data = format!(
        "lowerdir={},upperdir=upper,workdir=work,index=off",
        lower.join(":")
    );
    debug_assert!(data.len() < PAGE_LIMIT);
    Ok(data)
}

/// Make every mount private, so nothing done here propagates to the host.
pub fn make_private(sys: &dyn Syscall) -> Result<()> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(sys_err(|| "make / private".to_string()))
}

/// Mount the overlay root at `<bundle>/rootfs`. Lower dirs are passed as short links relative to
/// the bundle directory (`l/0:l/1…`) so deep images stay under the 4096-byte mount-data limit.
pub fn mount_overlay(sys: &dyn Syscall, spec: &RuntimeSpec) -> Result<()> {
    let links = spec.links_dir();
    if links.exists() {
        fs::remove_dir_all(&links).map_err(io_err(|| format!("clear {}", links.display())))?;
    }
    fs::create_dir_all(&links).map_err(io_err(|| format!("create {}", links.display())))?;
    let data = overlay_data(spec.lower_dirs.len())?;
    for (i, dir) in spec.lower_dirs.iter().enumerate() {
        let link = links.join(i.to_string());
        symlink(dir, &link).map_err(io_err(|| format!("link {}", dir.display())))?;
    }
    for dir in [spec.upper_dir(), spec.work_dir(), spec.rootfs_dir()] {
        fs::create_dir_all(&dir).map_err(io_err(|| format!("create {}", dir.display())))?;
    }
    if spec.lower_dirs.is_empty() {
        let empty = spec.bundle_dir.join("empty");
        fs::create_dir_all(&empty).map_err(io_err(|| format!("create {}", empty.display())))?;
    }
    std::env::set_current_dir(&spec.bundle_dir)
        .map_err(io_err(|| format!("chdir {}", spec.bundle_dir.display())))?;
    // nodev: a device node shipped in a layer or made with mknod is unusable even if the
    // device cgroup were to let it through; privileged containers keep them, as in Docker.
    let flags = if spec.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_NODEV
    };
    sys.mount(
        Some("overlay"),
        Path::new("rootfs"),
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(sys_err(|| {
        format!("mount overlay root at {}", spec.rootfs_dir().display())
    }))
}

/// Clone the host-side sources of bind mounts into detached mount trees (`open_tree`) before
/// `pivot_root` hides the host; [`mount_user`] attaches them with `move_mount`. (A plain bind
/// from `/proc/self/fd` fails once the old root is detached: the source is no longer in this
/// namespace.)
pub fn open_bind_sources(sys: &dyn Syscall, mounts: &[MountSpec]) -> Result<Vec<Option<OwnedFd>>> {
    mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Bind => {
                sys.clone_tree(&m.source)
                    .map(Some)
                    .map_err(|source| RootfsError::Io {
                        what: format!("bind source {} for {}", m.source.display(), m.destination),
                        source,
                    })
            }
            MountKind::Tmpfs => Ok(None),
        })
        .collect()
}

/// Switch the root to `<bundle>/rootfs` and detach the host's root from this namespace.
pub fn pivot(sys: &dyn Syscall, spec: &RuntimeSpec) -> Result<()> {
    let rootfs = spec.rootfs_dir();
    std::env::set_current_dir(&rootfs).map_err(io_err(|| format!("chdir {}", rootfs.display())))?;
    // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then drops it
    // without needing a directory inside the container (runc's trick).
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(sys_err(|| "pivot_root".to_string()))?;
    sys.umount(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(sys_err(|| "detach old root".to_string()))?;
    std::env::set_current_dir("/").map_err(io_err(|| "chdir /".to_string()))
}

/// Mount a filesystem on `target`, created if missing, resolved inside the root under `policy`.
fn mount_fs(
    sys: &dyn Syscall,
    root: &ContainerRoot,
    policy: KernelFs,
    (source, target, fstype): (&str, &str, &str),
    flags: MsFlags,
    data: &str,
) -> Result<()> {
    let dir = root
        .mkdir_all(target, 0o755, policy)
        .map_err(in_root(|| format!("mount {fstype} on {target}")))?;
    sys.mount_on_fd(&dir, source, fstype, flags, data)
        .map_err(sys_err(|| format!("mount {fstype} on {target}")))
}

/// `/proc`, `/dev` (tmpfs with the default devices, `pts`, `shm`, `mqueue`) and read-only `/sys`,
/// with Docker's flags. Runs after `pivot_root`.
pub fn mount_defaults(sys: &dyn Syscall, root: &ContainerRoot, spec: &RuntimeSpec) -> Result<()> {
    // The runtime's own mount points: no symlink of the image is followed to reach them.
    let own = KernelFs::AllowWithoutSymlinks;
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs(
        sys,
        root,
        own,
        ("proc", "/proc", "proc"),
        nosuid_noexec_nodev,
        "",
    )?;
    // An image whose /proc is a symlink would have had procfs mounted elsewhere.
    check_procfs(Path::new("/proc"))?;
    mount_fs(
        sys,
        root,
        own,
        ("tmpfs", "/dev", "tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    for (name, major, minor) in DEVICES {
        let path = format!("/dev/{name}");
        sys.mknod(
            Path::new(&path),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .map_err(sys_err(|| format!("create device {path}")))?;
    }
    mount_fs(
        sys,
        root,
        own,
        ("devpts", "/dev/pts", "devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    mount_fs(
        sys,
        root,
        own,
        ("shm", "/dev/shm", "tmpfs"),
        nosuid_noexec_nodev,
        &format!("mode=1777,size={}", spec.shm_size),
    )?;
    mount_fs(
        sys,
        root,
        own,
        ("mqueue", "/dev/mqueue", "mqueue"),
        nosuid_noexec_nodev,
        "",
    )?;
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink(Path::new(target), Path::new(link))
            .map_err(io_err(|| format!("create {link}")))?;
    }
    if Path::new("/proc/kcore").exists() {
        sys.symlink(Path::new("/proc/kcore"), Path::new("/dev/core"))
            .map_err(io_err(|| "create /dev/core".to_string()))?;
    }
    // Privileged containers get a writable /sys, as in Docker.
    let sys_flags = if spec.privileged {
        nosuid_noexec_nodev
    } else {
        nosuid_noexec_nodev | MsFlags::MS_RDONLY
    };
    mount_fs(sys, root, own, ("sysfs", "/sys", "sysfs"), sys_flags, "")
}

fn check_destination(dest: &str) -> Result<PathBuf> {
    let path = Path::new(dest);
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(RootfsError::BadDestination(dest.to_string()));
    }
    Ok(path.to_path_buf())
}

fn remount_readonly(sys: &dyn Syscall, target: &Path, extra: MsFlags) -> Result<()> {
    sys.mount(
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        None,
    )
    .map_err(sys_err(|| {
        format!("remount {} read-only", target.display())
    }))
}

/// The user's binds and tmpfs mounts, in order. Runs after `pivot_root`, with the bind sources
/// opened beforehand by [`open_bind_sources`]. Every destination, and whatever is created for
/// it, is resolved inside the root without magic links and must not land on procfs or sysfs;
/// the mount is made onto the resolved fd, so nothing is looked up twice.
pub fn mount_user(
    sys: &dyn Syscall,
    root: &ContainerRoot,
    mounts: &[MountSpec],
    sources: &[Option<OwnedFd>],
) -> Result<()> {
    for (m, fd) in mounts.iter().zip(sources) {
        let dest = check_destination(&m.destination)?;
        let proc_override =
            m.kind == MountKind::Bind && PROC_FILE_OVERRIDES.iter().any(|p| dest == Path::new(p));
        if dest.starts_with("/proc") && !proc_override {
            // A mount over procfs could hide the masks and read-only paths (CVE-2019-16884).
            return Err(RootfsError::InsideProc(m.destination.clone()));
        }
        let policy = if proc_override {
            KernelFs::AllowWithoutSymlinks
        } else {
            KernelFs::Refuse
        };
        let context = || match m.kind {
            MountKind::Bind => format!("mount {} on {}", m.source.display(), m.destination),
            MountKind::Tmpfs => format!("mount tmpfs on {}", m.destination),
        };
        match (m.kind, fd) {
            (MountKind::Bind, Some(tree)) => {
                let is_dir = nix::sys::stat::fstat(tree)
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .map_err(sys_err(|| {
                        format!("stat bind source {}", m.source.display())
                    }))?;
                let target = if is_dir {
                    root.mkdir_all(&m.destination, 0o755, policy)
                } else {
                    root.ensure_file(&m.destination, 0o644, policy)
                }
                .map_err(in_root(context))?;
                if m.read_only {
                    sys.set_tree_read_only(tree)
                        .map_err(io_err(|| format!("make {} read-only", m.destination)))?;
                }
                sys.move_tree(tree, &target).map_err(io_err(context))?;
            }
            (MountKind::Tmpfs, _) => {
                let (flags, data) = tmpfs_flags(&m.data, m.read_only);
                mount_fs(
                    sys,
                    root,
                    policy,
                    ("tmpfs", &m.destination, "tmpfs"),
                    flags,
                    &data,
                )?;
            }
            (MountKind::Bind, None) => {
                return Err(RootfsError::BadDestination(m.destination.clone()));
            }
        }
    }
    // Everything after this (sysctls, masks, read-only paths) trusts /proc.
    check_procfs(Path::new("/proc"))
}

/// The container's root after `pivot_root`, as the root of every lookup that follows.
pub fn open_root() -> Result<ContainerRoot> {
    ContainerRoot::open().map_err(in_root(|| "open the container root".into()))
}

/// Create the host devices passed in (`devices:`) with their host numbers, mode and owner.
/// Nodes under `/dev` are made in the container's `/dev` tmpfs; elsewhere the root is mounted
/// `nodev`, so the node is made in `/dev` and bound onto the path (a bind keeps the tmpfs's
/// flags), then unlinked from `/dev`.
pub fn create_devices(nodes: &[DeviceNode]) -> Result<()> {
    let root = ContainerRoot::open().map_err(in_root(|| "open the container root".into()))?;
    for (i, node) in nodes.iter().enumerate() {
        let context = || format!("create device {}", node.path);
        check_destination(&node.path)?;
        let in_dev = node.path.starts_with("/dev/");
        let made_at = if in_dev {
            node.path.clone()
        } else {
            format!("/dev/.berth-device-{i}")
        };
        let (parent, name) = made_at.rsplit_once('/').unwrap_or(("/", &made_at));
        let parent_fd = root
            .mkdir_all(
                if parent.is_empty() { "/" } else { parent },
                0o755,
                KernelFs::Refuse,
            )
            .map_err(in_root(context))?;
        let kind = match node.kind {
            DeviceKind::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFCHR,
        };
        // A default device (`/dev/null:/dev/null`) is replaced by the host's node.
        let _ = nix::unistd::unlinkat(&parent_fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::sys::stat::mknodat(
            &parent_fd,
            name,
            kind,
            Mode::from_bits_truncate(node.file_mode),
            makedev(node.major as u64, node.minor as u64),
        )
        .map_err(sys_err(context))?;
        nix::unistd::fchownat(
            &parent_fd,
            name,
            Some(nix::unistd::Uid::from_raw(node.uid)),
            Some(nix::unistd::Gid::from_raw(node.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(sys_err(context))?;
        if !in_dev {
            let target = root
                .ensure_file(&node.path, 0o644, KernelFs::Refuse)
                .map_err(in_root(context))?;
            let tree = open_tree_at(&parent_fd, name).map_err(io_err(context))?;
            in_root::move_tree_to_fd(&tree, &target).map_err(io_err(context))?;
            let _ =
                nix::unistd::unlinkat(&parent_fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
    Ok(())
}

/// A detached bind of `name` in the directory `dir`, never following a symlink.
fn open_tree_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: plain system call with a live dir fd and a C string; the result is an fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            c.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                | libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Docker's tmpfs defaults (`noexec,nosuid,nodev`) with the `exec`/`suid`/`dev` words of the
/// options applied in order; the rest is tmpfs's own data (`size=…,mode=…`).
fn tmpfs_flags(options: &str, read_only: bool) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "exec" => flags.remove(MsFlags::MS_NOEXEC),
            "noexec" => flags.insert(MsFlags::MS_NOEXEC),
            "suid" => flags.remove(MsFlags::MS_NOSUID),
            "nosuid" => flags.insert(MsFlags::MS_NOSUID),
            "dev" => flags.remove(MsFlags::MS_NODEV),
            "nodev" => flags.insert(MsFlags::MS_NODEV),
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// `path` must be a directory (not a symlink) on a procfs mount: statfs magic, checked on an
/// fd opened without following symlinks so the check and the answer are about the same inode.
pub fn check_procfs(path: &Path) -> Result<()> {
    let not_procfs = |detail: String| RootfsError::NotProcfs {
        path: path.display().to_string(),
        detail,
    };
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        not_procfs(format!(
            "cannot open it as a directory: {}",
            e.desc().to_lowercase()
        ))
    })?;
    let fs = nix::sys::statfs::fstatfs(&fd)
        .map_err(|e| not_procfs(format!("statfs: {}", e.desc().to_lowercase())))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(not_procfs(format!(
            "filesystem magic {:#x}",
            fs.filesystem_type().0
        )));
    }
    Ok(())
}

/// Open `path` without following symlinks and check it is the character device 1:3, the
/// null device; the fd is what masks are bound from, so a swap after the check cannot matter
/// (CVE-2025-31133: a /dev/null symlinked to a procfs file turned masks into writable binds).
pub fn open_null_device(path: &Path) -> Result<OwnedFd> {
    let not_null = |detail: String| RootfsError::NotNullDevice {
        path: path.display().to_string(),
        detail,
    };
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| not_null(format!("cannot open it: {}", e.desc().to_lowercase())))?;
    let st = nix::sys::stat::fstat(&fd)
        .map_err(|e| not_null(format!("stat: {}", e.desc().to_lowercase())))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFCHR {
        let what = match kind {
            libc::S_IFLNK => "a symlink",
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            libc::S_IFBLK => "a block device",
            _ => "not a character device",
        };
        return Err(not_null(what.to_string()));
    }
    if st.st_rdev != makedev(1, 3) {
        return Err(not_null(format!(
            "character device {}:{}",
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        )));
    }
    Ok(fd)
}

/// Docker's masked and read-only paths. Missing paths are skipped, as runc does.
pub fn harden_paths(sys: &dyn Syscall) -> Result<()> {
    let null = open_null_device(Path::new("/dev/null"))?;
    let mut masked: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    // Per-CPU thermal_throttle dirs leak host activity (GHSA-6fw5-f8r9-fgfm).
    if let Ok(cpus) = fs::read_dir("/sys/devices/system/cpu") {
        for cpu in cpus.flatten() {
            let p = cpu.path().join("thermal_throttle");
            if p.is_dir() {
                masked.push(p.to_string_lossy().into_owned());
            }
        }
    }
    for path in &masked {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            sys.mount(
                Some("tmpfs"),
                Path::new(path),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
            .map_err(sys_err(|| format!("mask {path}")))?;
        } else {
            sys.bind_fd(&null, Path::new(path))
                .map_err(io_err(|| format!("bind /dev/null for {path}")))?;
        }
    }
    for path in READONLY_PATHS {
        if !Path::new(path).exists() {
            continue;
        }
        sys.mount(
            Some(path),
            Path::new(path),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(sys_err(|| format!("bind {path}")))?;
        remount_readonly(
            sys,
            Path::new(path),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    Ok(())
}

/// `ReadonlyRootfs`: the root itself read-only, mounts on it keep their own flags.
pub fn readonly_root(sys: &dyn Syscall) -> Result<()> {
    remount_readonly(sys, Path::new("/"), MsFlags::empty())
}

/// Create the working directory when the image lacks it, as Docker does, resolved inside the
/// root: a `WORKDIR` through `/proc/self/fd/N` (a magic link) is refused (CVE-2024-21626).
pub fn ensure_workdir(cwd: &str) -> Result<()> {
    check_destination(cwd)?;
    let root = ContainerRoot::open().map_err(in_root(|| "open the container root".into()))?;
    root.mkdir_all(cwd, 0o755, KernelFs::Allow)
        .map(drop)
        .map_err(in_root(|| format!("working directory {cwd}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_check_accepts_proc_and_refuses_others() {
        check_procfs(Path::new("/proc")).expect("the host's /proc is procfs");
        let tmp = tempfile::tempdir().unwrap();
        let err = check_procfs(tmp.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is not a procfs mount (filesystem magic 0x",
                tmp.path().display()
            )),
            "{err}"
        );
        // A symlink to a real procfs is refused too: mounts and masks would land elsewhere.
        let link = tmp.path().join("proc");
        symlink("/proc", &link).unwrap();
        let err = check_procfs(&link).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is not a procfs mount (cannot open it as a directory: not a directory); \
                 the image or a mount replaced it, refusing to start the container",
                link.display()
            )
        );
    }

    #[test]
    fn null_device_check_refuses_lookalikes() {
        open_null_device(Path::new("/dev/null")).expect("the host's /dev/null");
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("null");
        symlink("/dev/null", &link).unwrap();
        let err = open_null_device(&link).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is not the null device (a symlink); the image or a mount replaced it, \
                 refusing to mask paths with it",
                link.display()
            )
        );
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = open_null_device(&file).unwrap_err().to_string();
        assert!(err.contains("(a regular file)"), "{err}");
        let err = open_null_device(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(character device 1:5)"), "{err}");
    }

    #[test]
    fn tmpfs_exec_suid_dev_words_become_flags() {
        let (flags, data) = tmpfs_flags("size=1m,exec,mode=1777", false);
        assert_eq!(data, "size=1m,mode=1777");
        assert!(!flags.contains(MsFlags::MS_NOEXEC));
        assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        let (flags, data) = tmpfs_flags("", true);
        assert_eq!(data, "");
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC));
    }

    #[test]
    fn overlay_data_fits_a_page_up_to_the_overlay_stack_limit() {
        let data = overlay_data(MAX_LOWER_DIRS).expect("500 layers");
        assert!(data.len() < PAGE_LIMIT, "{} bytes", data.len());
        assert!(data.starts_with("lowerdir=l/0:l/1:"), "{data}");
        assert!(data.contains(":l/499,upperdir=upper,"), "{data}");
        assert!(overlay_data(0).unwrap().starts_with("lowerdir=empty,"));
    }

    #[test]
    fn too_many_layers_is_refused_with_advice() {
        let err = overlay_data(MAX_LOWER_DIRS + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image has 501 layers, more than overlayfs can stack (500); \
             squash the image or rebuild it with fewer layers"
        );
    }

    /// The target of each mount-like call: the word after ` on `, or after `move tree to `.
    fn mount_targets(calls: &[String]) -> Vec<String> {
        calls
            .iter()
            .filter_map(|c| {
                c.strip_prefix("move tree to ")
                    .or_else(|| c.split(" on ").nth(1))
                    .map(|rest| rest.split(' ').next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// 64 MiB of /dev/shm, a read-only bind of `data` on /data and a tmpfs on /run.
    fn typical_spec(data: &Path) -> RuntimeSpec {
        RuntimeSpec {
            shm_size: 64 << 20,
            mounts: vec![
                MountSpec {
                    kind: MountKind::Bind,
                    source: data.to_path_buf(),
                    destination: "/data".into(),
                    read_only: true,
                    data: String::new(),
                },
                MountSpec {
                    kind: MountKind::Tmpfs,
                    source: PathBuf::new(),
                    destination: "/run".into(),
                    read_only: false,
                    data: "size=1m".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_typical_spec_mounts_defaults_then_user_mounts_then_hardens_paths() {
        let root_dir = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let root = ContainerRoot::at(root_dir.path()).unwrap();
        let spec = typical_spec(data.path());
        let sys = crate::engine::runtime::syscall::recording::RecordingSyscall::with_root(
            root_dir.path(),
        );
        let sources = open_bind_sources(&sys, &spec.mounts).unwrap();
        mount_defaults(&sys, &root, &spec).unwrap();
        mount_user(&sys, &root, &spec.mounts, &sources).unwrap();
        let before_hardening = sys.calls().len();
        harden_paths(&sys).unwrap();
        let calls = sys.calls();

        let targets = mount_targets(&calls[..before_hardening]);
        assert_eq!(
            targets,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/data",
                "/run"
            ],
            "{calls:#?}"
        );
        // The default devices are made on the /dev tmpfs, before devpts is mounted on it.
        let dev_pts = calls
            .iter()
            .position(|c| c.contains(" on /dev/pts "))
            .unwrap();
        let null = calls
            .iter()
            .position(|c| c.starts_with("mknod /dev/null "))
            .unwrap();
        assert!(null < dev_pts, "{calls:#?}");
        // A read-only bind is made read-only as a detached tree, before it is attached.
        let ro = calls
            .iter()
            .position(|c| c == "set tree read-only")
            .unwrap();
        let attach = calls
            .iter()
            .position(|c| c == "move tree to /data")
            .unwrap();
        assert!(ro < attach, "{calls:#?}");
        assert!(
            calls[4..]
                .iter()
                .any(|c| c.starts_with("mount shm on /dev/shm type tmpfs")
                    && c.ends_with("mode=1777,size=67108864")),
            "{calls:#?}"
        );
        // Then the masked and read-only paths, and nothing else: /proc/sys is bound onto itself
        // and remounted read-only.
        let hardening = mount_targets(&calls[before_hardening..]);
        assert!(
            hardening.iter().all(|t| MASKED_PATHS.contains(&t.as_str())
                || READONLY_PATHS.contains(&t.as_str())
                || t.ends_with("/thermal_throttle")),
            "{hardening:?}"
        );
        let bind = calls
            .iter()
            .position(|c| c.starts_with("mount /proc/sys on /proc/sys "))
            .unwrap();
        assert!(
            calls[bind + 1].starts_with("mount - on /proc/sys ")
                && calls[bind + 1].contains("MS_RDONLY"),
            "{calls:#?}"
        );
    }
}
