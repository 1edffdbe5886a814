//! A [`Syscall`] that performs nothing and records every call as one line of text, in order,
//! so a unit test asserts the sequence a setup step makes without root. Kernel files (cgroup
//! knobs, sysctls) live in an in-memory map: reads see what was preset or written before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use super::{SeccompFilter, Syscall};

#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<String>>,
    files: RefCell<HashMap<PathBuf, String>>,
    /// Fds handed to `mount_on_fd`/`move_tree` are shown as their path with this prefix cut,
    /// so a container root in a temporary directory reads as `/`.
    root: Option<PathBuf>,
    /// What `getrlimit` answers for every resource.
    rlimit: (u64, u64),
}

impl RecordingSyscall {
    pub fn new() -> Self {
        Self {
            rlimit: (1024, 1_048_576),
            ..Self::default()
        }
    }

    /// Show fds under `root` as container paths.
    pub fn with_root(root: &Path) -> Self {
        Self {
            root: Some(root.to_path_buf()),
            ..Self::new()
        }
    }

    /// A kernel file that exists before the step runs (a knob the kernel creates with its cgroup).
    pub fn with_file(self, path: impl Into<PathBuf>, contents: &str) -> Self {
        self.files
            .borrow_mut()
            .insert(path.into(), contents.to_string());
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    fn fd_path(&self, fd: &OwnedFd) -> String {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap_or_else(|_| PathBuf::from("?"));
        match self.root.as_deref().map(|r| path.strip_prefix(r)) {
            Some(Ok(inside)) => format!("/{}", inside.display()),
            _ => path.display().to_string(),
        }
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(format!(
            "mount {} on {} type {} {flags:?} {}",
            source.unwrap_or("-"),
            target.display(),
            fstype.unwrap_or("-"),
            data.unwrap_or("")
        ));
        Ok(())
    }

    fn mount_on_fd(
        &self,
        target: &OwnedFd,
        source: &str,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> nix::Result<()> {
        let target = self.fd_path(target);
        self.record(format!(
            "mount {source} on {target} type {fstype} {flags:?} {data}"
        ));
        Ok(())
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.record(format!("umount {} {flags:?}", target.display()));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }

    /// Opens the source itself (`O_PATH`), so the caller can still `fstat` what it binds.
    fn clone_tree(&self, source: &Path) -> io::Result<OwnedFd> {
        self.record(format!("clone tree {}", source.display()));
        nix::fcntl::open(
            source,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    fn set_tree_read_only(&self, _tree: &OwnedFd) -> io::Result<()> {
        self.record("set tree read-only".to_string());
        Ok(())
    }

    fn move_tree(&self, _tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
        let target = self.fd_path(target);
        self.record(format!("move tree to {target}"));
        Ok(())
    }

    fn bind_fd(&self, source: &OwnedFd, target: &Path) -> io::Result<()> {
        let source = self.fd_path(source);
        self.record(format!("bind {source} on {}", target.display()));
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        self.record(format!(
            "mknod {} {kind:?} {:o} {}:{}",
            path.display(),
            perm.bits(),
            libc::major(dev),
            libc::minor(dev)
        ));
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(format!("sethostname {name}"));
        Ok(())
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        self.record(format!("setdomainname {name}"));
        Ok(())
    }

    fn drop_bounding_capability(&self, cap: u32) -> io::Result<()> {
        self.record(format!("drop bounding {cap}"));
        Ok(())
    }

    fn set_no_new_privileges(&self) -> io::Result<()> {
        self.record("no_new_privs".to_string());
        Ok(())
    }

    fn install_seccomp(&self, filter: &SeccompFilter) -> io::Result<()> {
        self.record(format!("seccomp {} instructions", filter.program.len()));
        Ok(())
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        self.record(format!("setgroups {gids:?}"));
        Ok(())
    }

    fn setgid(&self, gid: u32) -> nix::Result<()> {
        self.record(format!("setgid {gid}"));
        Ok(())
    }

    fn keep_capabilities(&self) -> io::Result<()> {
        self.record("keepcaps".to_string());
        Ok(())
    }

    fn setuid(&self, uid: u32) -> nix::Result<()> {
        self.record(format!("setuid {uid}"));
        Ok(())
    }

    fn set_capabilities(&self, mask: u64) -> io::Result<()> {
        self.record(format!("capset effective+permitted+inheritable {mask:#x}"));
        Ok(())
    }

    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        self.record(format!("write {} {contents}", path.display()));
        self.files
            .borrow_mut()
            .insert(path.to_path_buf(), contents.to_string());
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.record(format!("mkdir {}", path.display()));
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.borrow().contains_key(path)
    }

    fn getrlimit(&self, _resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
        Ok(self.rlimit)
    }

    fn setrlimit(
        &self,
        resource: libc::__rlimit_resource_t,
        soft: u64,
        hard: u64,
    ) -> io::Result<()> {
        self.record(format!("setrlimit {resource} {soft} {hard}"));
        Ok(())
    }
}
