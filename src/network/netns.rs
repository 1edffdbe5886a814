//! Container network namespaces: made, bind-mounted at a path, entered and removed.
//!
//! Namespace switches happen only on dedicated short-lived std threads, never on a tokio worker:
//! a thread that unshares or enters a namespace stays in it, and the runtime would later run
//! unrelated tasks there. What such a thread hands back (a netlink socket) stays bound to the
//! namespace it was created in.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use thiserror::Error;

use super::netlink::{Netlink, NetlinkError};

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("cannot create network namespace file {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a network namespace for {path}")]
    Unshare {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot bind-mount the network namespace at {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot open network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot unmount network namespace {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("netlink in network namespace {path}")]
    Netlink {
        path: PathBuf,
        #[source]
        source: NetlinkError,
    },
    #[error("cannot remove network namespace file {path}")]
    RemoveFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("namespace helper thread for {0} panicked")]
    Thread(PathBuf),
}

type Result<T> = std::result::Result<T, NetnsError>;

/// Create a new network namespace, pin it by bind-mounting it at `path`, and bring its `lo` up.
/// On failure nothing is left at `path`.
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| NetnsError::CreateFile {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| NetnsError::CreateFile {
            path: path.to_path_buf(),
            source,
        })?;
    let owned = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Unshare {
            path: owned.clone(),
            source,
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &owned,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NetnsError::Mount {
            path: owned.clone(),
            source,
        })?;
        let mut nl = Netlink::open().map_err(|source| NetnsError::Netlink {
            path: owned.clone(),
            source,
        })?;
        nl.set_up("lo").map_err(|source| NetnsError::Netlink {
            path: owned.clone(),
            source,
        })
    })
    .join()
    .unwrap_or_else(|_| Err(NetnsError::Thread(path.to_path_buf())));
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// Open a netlink socket inside the namespace pinned at `path`.
pub fn netlink_in(path: &Path) -> Result<Netlink> {
    let ns = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let owned = path.to_path_buf();
    std::thread::spawn(move || -> Result<Netlink> {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: owned.clone(),
            source,
        })?;
        Netlink::open().map_err(|source| NetnsError::Netlink {
            path: owned,
            source,
        })
    })
    .join()
    .unwrap_or_else(|_| Err(NetnsError::Thread(path.to_path_buf())))
}

/// Open the namespace file (for moving links into it by fd).
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `path` is a pinned network namespace (a mount of nsfs), not just a leftover file.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    match nix::sys::statfs::statfs(path) {
        Ok(st) => st.filesystem_type().0 == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Unmount and delete the namespace pinned at `path`; fine if it is already gone or half made.
pub fn remove(path: &Path) -> Result<()> {
    // A file can carry stacked mounts if something pinned twice; peel them all.
    while is_pinned(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => break,
            Err(source) => {
                return Err(NetnsError::Unmount {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::RemoveFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}
