//! `berth init`: the single-threaded re-exec that becomes the container's PID 1 after setting up
//! namespaces and the root filesystem, then `execve`s the workload.
//!
//! The shim starts it as `berth init <runtime.json> <sync-fd>` inside a fresh PID namespace.
//! Any failure before `execve` is written to the sync fd as one line of text (Docker's wording
//! where there is one, e.g. `exec: "foo": executable file not found in $PATH`) and init exits 127.
//! On success every fd above 2 is close-on-exec, so the shim sees EOF on the sync pipe.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use thiserror::Error;

use super::caps;
use super::rootfs::{self, RootfsError};
use super::seccomp;
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
    /// Docker's wording for a workload that cannot be executed.
    #[error("{0}")]
    Exec(String),
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

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", exec_user.home));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    let program = find_program(&spec.args, &path_var)?;

    caps::drop_bounding(caps::default_mask()).map_err(|source| InitError::Io {
        what: "drop capabilities from the bounding set".into(),
        source,
    })?;
    // Last moment with CAP_SYS_ADMIN (needed without no-new-privileges); every call from here to
    // execve (setgroups, setuid, capset, chdir, close_range, execve) is allowed by the filter.
    seccomp::install(caps::default_mask()).map_err(|source| InitError::Io {
        what: "install seccomp filter".into(),
        source,
    })?;
    let gids: Vec<Gid> = exec_user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).map_err(sys("set supplementary groups"))?;
    nix::unistd::setgid(Gid::from_raw(exec_user.gid)).map_err(sys("set group id"))?;
    // Keep the permitted set across setuid so capset below can still grant the defaults.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    nix::unistd::setuid(Uid::from_raw(exec_user.uid)).map_err(sys("set user id"))?;
    caps::set_process_caps(caps::default_mask()).map_err(|source| InitError::Io {
        what: "set capabilities".into(),
        source,
    })?;
    std::env::set_current_dir(cwd).map_err(|source| InitError::Io {
        what: format!("chdir to working directory {cwd}"),
        source,
    })?;

    // SAFETY: umask has no preconditions; Docker's workloads start with 022.
    unsafe { libc::umask(0o022) };
    // Every fd above stdio (the sync pipe included) closes on exec: success reads as EOF.
    // SAFETY: close_range with CLOEXEC only changes flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(InitError::Io {
            what: "mark fds close-on-exec".into(),
            source: io::Error::last_os_error(),
        });
    }

    let c_program = cstring(&program.to_string_lossy())?;
    let c_args = spec
        .args
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>>>()?;
    let c_env = env.iter().map(|e| cstring(e)).collect::<Result<Vec<_>>>()?;
    let err = match nix::unistd::execve(&c_program, &c_args, &c_env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let name = &spec.args[0];
    Err(InitError::Exec(match err {
        nix::Error::EACCES => format!("exec: {name:?}: permission denied"),
        nix::Error::ENOENT => format!("exec: {name:?}: no such file or directory"),
        other => format!("exec: {name:?}: {}", other.desc().to_lowercase()),
    }))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| InitError::Exec(format!("argument or variable {s:?} contains a NUL byte")))
}

/// Docker's lookup: a name with a `/` is used as is, anything else is searched in `PATH`.
fn find_program(args: &[String], path_var: &str) -> Result<PathBuf> {
    let Some(name) = args.first().filter(|a| !a.is_empty()) else {
        return Err(InitError::Exec("no command specified".into()));
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(InitError::Exec(format!(
                "exec: {name:?}: stat {name}: {}",
                io_error_text(&e)
            ))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(InitError::Exec(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// Go-style lowercase error text (`no such file or directory`), without Rust's "(os error 2)".
fn io_error_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::Error::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}
