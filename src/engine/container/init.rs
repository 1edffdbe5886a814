//! `berth init`: the single-threaded re-exec that becomes the container's PID 1 after setting up
//! namespaces and the root filesystem, then `execve`s the workload.
//!
//! The shim starts it as `berth init <runtime.json> <sync-fd>` inside a fresh PID namespace.
//! Any failure before `execve` is written to the sync fd as one line of text (Docker's wording
//! where there is one, e.g. `exec: "foo": executable file not found in $PATH`) and init exits 127.
//! On success every fd above 2 is close-on-exec, so the shim sees EOF on the sync pipe.

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use thiserror::Error;

use super::process_setup::{self, SetupError};
use super::rootfs::{self, RootfsError};
use super::spec::RuntimeSpec;
use super::user::{self, UserError};

#[derive(Debug, Error)]
pub enum InitError {
    #[error("usage: berth init <runtime.json> <sync-fd> (started by berth shim, not by hand)")]
    Usage,
    #[error("cannot read runtime spec {path}: {source}")]
    Spec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid runtime spec {path}: {source}")]
    SpecJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
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
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    User(#[from] UserError),
    /// Includes Docker's wording for a workload that cannot be executed.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

type Result<T> = std::result::Result<T, InitError>;

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys {
        what: what.to_string(),
        source,
    }
}

/// Entry point; called from `main` before anything else runs (no tokio, no threads).
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let sync_fd = args.get(3).and_then(|s| s.parse::<i32>().ok());
    let err = match (args.get(2), sync_fd) {
        (Some(spec), Some(_)) => match run(Path::new(spec)) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        _ => InitError::Usage,
    };
    match sync_fd {
        // SAFETY: the shim passed this fd for us alone; we are exiting right after.
        Some(fd) if fd > 2 => {
            let mut sync = unsafe { File::from_raw_fd(fd) };
            let _ = sync.write_all(err.to_string().as_bytes());
        }
        _ => eprintln!("berth init: {err}"),
    }
    std::process::exit(127)
}

fn read_spec(path: &Path) -> Result<RuntimeSpec> {
    let bytes = std::fs::read(path).map_err(|source| InitError::Spec {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| InitError::SpecJson {
        path: path.to_path_buf(),
        source,
    })
}

fn run(spec_path: &Path) -> Result<Infallible> {
    let spec = read_spec(spec_path)?;
    // SAFETY: umask has no memory-safety preconditions. 0 so devices and dirs get exact modes.
    unsafe { libc::umask(0) };

    for cgroup in &spec.cgroups {
        std::fs::write(cgroup.join("cgroup.procs"), "0").map_err(|source| InitError::Io {
            what: format!("join cgroup {}", cgroup.display()),
            source,
        })?;
    }
    if let Some(netns) = &spec.netns {
        let file = File::open(netns).map_err(|source| InitError::Io {
            what: format!("open network namespace {}", netns.display()),
            source,
        })?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(sys("join network namespace"))?;
    }
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(sys("unshare mount, uts and ipc namespaces"))?;

    rootfs::make_private()?;
    rootfs::mount_overlay(&spec)?;
    let bind_sources: Vec<Option<OwnedFd>> = rootfs::open_bind_sources(&spec.mounts)?;
    rootfs::pivot(&spec)?;
    rootfs::mount_defaults(&spec)?;
    rootfs::mount_user(&spec.mounts, &bind_sources)?;
    drop(bind_sources);
    if spec.netns.is_some() {
        // Docker's defaults for a private network namespace: any user may bind low ports and
        // ping. Set before /proc/sys turns read-only.
        for (key, value) in [
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
        ] {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value).map_err(|source| InitError::Io {
                what: format!("set sysctl {}", key.replace('/', ".")),
                source,
            })?;
        }
    }
    rootfs::harden_paths()?;

    nix::unistd::sethostname(&spec.hostname).map_err(sys("set hostname"))?;
    if !spec.domainname.is_empty() {
        // SAFETY: pointer and length describe a live byte slice.
        let rc = unsafe {
            libc::setdomainname(
                spec.domainname.as_ptr() as *const libc::c_char,
                spec.domainname.len(),
            )
        };
        if rc != 0 {
            return Err(InitError::Io {
                what: "set domain name".into(),
                source: io::Error::last_os_error(),
            });
        }
    }

    let exec_user = user::resolve(Path::new("/"), &spec.user)?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    rootfs::ensure_workdir(cwd)?;
    if spec.readonly_rootfs {
        rootfs::readonly_root()?;
    }

    let workload = process_setup::Workload {
        args: &spec.args,
        env: &spec.env,
        user: &exec_user,
        cwd,
    };
    Ok(process_setup::exec(&workload)?)
}
