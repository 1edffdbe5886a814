//! The seam between the runtime's setup steps and the kernel (youki's `Syscall` model): the
//! rootfs, capability, cgroup, rlimit and sysctl code makes its kernel calls through [`Syscall`],
//! so a unit test can run the same code against [`recording::RecordingSyscall`] and assert the
//! order of the calls without root. [`LinuxSyscall`] is the real thing.
//!
//! The methods are the kernel operations themselves, not policies: what is mounted where, and in
//! which order, stays in the callers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

mod privileges;
#[cfg(test)]
pub mod recording;

/// A compiled classic-BPF seccomp program, ready for `prctl(PR_SET_SECCOMP)`. Plain data: the
/// policy that produced it lives in `runtime::seccomp`. An empty program installs nothing (the
/// architectures without a syscall table yet).
#[derive(Clone, Default)]
pub struct SeccompFilter {
    pub program: Vec<libc::sock_filter>,
}

/// The kernel operations of container setup.
pub trait Syscall {
    /// `mount(2)` on a path.
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// `mount(2)` onto the directory behind an `O_PATH` fd (resolved inside the container root
    /// beforehand, so nothing is looked up twice).
    fn mount_on_fd(
        &self,
        target: &OwnedFd,
        source: &str,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> nix::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    /// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mounts at `source`.
    fn clone_tree(&self, source: &Path) -> io::Result<OwnedFd>;
    /// `mount_setattr(MOUNT_ATTR_RDONLY)` on the top mount of a detached tree.
    fn set_tree_read_only(&self, tree: &OwnedFd) -> io::Result<()>;
    /// `move_mount` of a detached tree onto the file or directory behind `target`.
    fn move_tree(&self, tree: &OwnedFd, target: &OwnedFd) -> io::Result<()>;
    /// Bind the file behind `source` (any fd) onto the path `target`.
    fn bind_fd(&self, source: &OwnedFd, target: &Path) -> io::Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;

    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn setdomainname(&self, name: &str) -> io::Result<()>;

    /// `prctl(PR_CAPBSET_DROP)` of one capability.
    fn drop_bounding_capability(&self, cap: u32) -> io::Result<()>;
    fn set_no_new_privileges(&self) -> io::Result<()>;
    /// Load a compiled seccomp filter on this process.
    fn install_seccomp(&self, filter: &SeccompFilter) -> io::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()>;
    fn setgid(&self, gid: u32) -> nix::Result<()>;
    /// `prctl(PR_SET_KEEPCAPS)`: keep the permitted set across the `setuid` that follows.
    fn keep_capabilities(&self) -> io::Result<()>;
    fn setuid(&self, uid: u32) -> nix::Result<()>;
    /// `capset(2)`: the effective, permitted and inheritable sets, all to `mask`.
    fn set_capabilities(&self, mask: u64) -> io::Result<()>;

    /// Write a kernel file (a cgroup knob, a sysctl under `/proc/sys`).
    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
    fn exists(&self, path: &Path) -> bool;

    /// `(soft, hard)` of `resource`.
    fn getrlimit(&self, resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)>;
    fn setrlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        soft: u64,
        hard: u64,
    ) -> io::Result<()>;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_on_fd(
        &self,
        target: &OwnedFd,
        source: &str,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> nix::Result<()> {
        super::in_root::mount_on_fd(target, source, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn clone_tree(&self, source: &Path) -> io::Result<OwnedFd> {
        let path = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain system call with a valid C string; the result is an fd we own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                    | libc::AT_RECURSIVE as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open_tree returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn set_tree_read_only(&self, tree: &OwnedFd) -> io::Result<()> {
        super::in_root::set_tree_attr(tree, super::in_root::MOUNT_ATTR_RDONLY)
    }

    fn move_tree(&self, tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
        super::in_root::move_tree_to_fd(tree, target)
    }

    fn bind_fd(&self, source: &OwnedFd, target: &Path) -> io::Result<()> {
        // SAFETY: plain system call on an fd we own with an empty C string; returns an fd we own.
        let tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                source.as_raw_fd(),
                c"".as_ptr(),
                (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                    | libc::AT_EMPTY_PATH as libc::c_uint,
            )
        };
        if tree < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open_tree returned a new fd that nothing else owns.
        let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
        let target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain system call on an fd we own and valid C strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        })
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        // SAFETY: pointer and length describe a live byte slice.
        let rc = unsafe { libc::setdomainname(name.as_ptr() as *const libc::c_char, name.len()) };
        check(rc.into())
    }

    fn drop_bounding_capability(&self, cap: u32) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        check(rc.into())
    }

    fn set_no_new_privileges(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
    }

    fn install_seccomp(&self, filter: &SeccompFilter) -> io::Result<()> {
        privileges::install_filter(filter)
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        let gids: Vec<nix::unistd::Gid> = gids
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids)
    }

    fn setgid(&self, gid: u32) -> nix::Result<()> {
        nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))
    }

    fn keep_capabilities(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }.into())
    }

    fn setuid(&self, uid: u32) -> nix::Result<()> {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))
    }

    fn set_capabilities(&self, mask: u64) -> io::Result<()> {
        privileges::capset_all(mask)
    }

    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        std::fs::write(path, contents)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn getrlimit(&self, resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        check(unsafe { libc::getrlimit(resource, &mut current) }.into())?;
        Ok((current.rlim_cur, current.rlim_max))
    }

    fn setrlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        soft: u64,
        hard: u64,
    ) -> io::Result<()> {
        let wanted = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we pass.
        check(unsafe { libc::setrlimit(resource, &wanted) }.into())
    }
}
