//! The last steps before a container process `execve`s its workload, shared by `berth init` (the
//! container's PID 1) and `berth exec-init` (`docker exec`, healthcheck probes): look the program
//! up, drop capabilities, install the seccomp filter, switch user, chdir, make every fd above
//! stdio close-on-exec, and `execve`.
//!
//! Called only from single-threaded re-execs, already inside the container's namespaces and root.

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::in_root::{ContainerRoot, KernelFs};
use super::syscall::{LinuxSyscall, Syscall};
use super::user::ExecUser;
use super::{caps, seccomp};

/// Docker's `PATH` when neither the image nor the request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Docker's wording for a workload that cannot be executed (`exec: "x": …`).
    #[error("{0}")]
    Exec(String),
}

impl SetupError {
    /// True when the program was not found (Docker's exec answers 127 then, 126 otherwise).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SetupError::Exec(m) if m.contains("not found") || m.contains("no such file"))
    }
}

type Result<T> = std::result::Result<T, SetupError>;

fn sys_err(what: &'static str) -> impl FnOnce(nix::Error) -> SetupError {
    move |source| SetupError::Sys { what, source }
}

/// What to run, as the current process sees the container's filesystem.
pub struct Workload<'a> {
    pub args: &'a [String],
    /// `KEY=value`; `HOME` is added from the user's passwd entry when missing.
    pub env: &'a [String],
    pub user: &'a ExecUser,
    /// Absolute; `/` when empty.
    pub cwd: &'a str,
    /// The capability set kept (bounding, effective, permitted, inheritable).
    pub capabilities: u64,
    /// Docker's default seccomp profile for that set; off for privileged containers.
    pub seccomp: bool,
    /// `security_opt: no-new-privileges`: setuid binaries and file capabilities grant nothing.
    pub no_new_privileges: bool,
    /// `berth init`'s sync pipe to the shim: the one fd kept open past the working directory
    /// change; [`EXEC_MARKER`] is written to it just before `execve`.
    pub sync_fd: Option<RawFd>,
}

/// Written on the sync pipe right before `execve`: the shim tells "the workload was executed"
/// (marker, then EOF) from "init died before it got there" (EOF alone, e.g. killed).
pub const EXEC_MARKER: u8 = 0;

/// Written by init before its message when the workload cannot be executed (not found, not
/// executable, a bad working directory): the command is at fault, not the host.
pub const NOT_EXECUTABLE_MARKER: u8 = 1;

/// Close every fd above stdio except `keep`: nothing of the runtime's (cgroup files, pipes,
/// mount trees) may be reachable through `/proc/self/fd` once the working directory, which the
/// image names, is entered (CVE-2024-21626).
fn close_fds_except(keep: Option<RawFd>) -> Result<()> {
    let ranges: Vec<(u32, u32)> = match keep {
        Some(k) if k > 3 => vec![(3, k as u32 - 1), (k as u32 + 1, u32::MAX)],
        Some(3) => vec![(4, u32::MAX)],
        _ => vec![(3, u32::MAX)],
    };
    for (first, last) in ranges {
        // SAFETY: close_range on fds this single-threaded process no longer needs.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) } != 0 {
            return Err(SetupError::Io {
                what: "close inherited fds".into(),
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Enter the working directory, resolved inside the root without magic links, then check the
/// kernel places it inside the root: a directory reached through a leaked fd is "unreachable"
/// from the root and `getcwd` fails.
fn enter_workdir(cwd: &str) -> Result<()> {
    let dir = ContainerRoot::open()
        .and_then(|root| root.open_path(cwd, libc::O_DIRECTORY, KernelFs::Allow))
        .map_err(|e| SetupError::Exec(format!("working directory {cwd}: {e}")))?;
    nix::unistd::fchdir(&dir).map_err(|e| SetupError::Io {
        what: format!("chdir to working directory {cwd}"),
        source: e.into(),
    })?;
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(SetupError::Exec(format!(
            "working directory {cwd} is outside the container's root filesystem; \
             set a working directory inside it"
        ))),
    }
}

/// Drop privileges to the container's defaults and `execve` the workload. Returns only on error.
pub fn exec(w: &Workload) -> Result<Infallible> {
    let mut env = w.env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", w.user.home));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let program = find_program(w.args, &path_var)?;
    let cwd = if w.cwd.is_empty() { "/" } else { w.cwd };

    drop_privileges(&LinuxSyscall, w)?;
    close_fds_except(w.sync_fd)?;
    enter_workdir(cwd)?;

    // SAFETY: umask has no preconditions; Docker's workloads start with 022.
    unsafe { libc::umask(0o022) };
    reset_ignored_signals();
    // Every fd above stdio (sync pipes included) closes on exec: success reads as EOF.
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
        return Err(SetupError::Io {
            what: "mark fds close-on-exec".into(),
            source: io::Error::last_os_error(),
        });
    }

    execve(w, &program, &env)
}

/// Give up what the workload must not have, in the order the kernel needs: the bounding set
/// first (needs CAP_SETPCAP), then no-new-privileges and the seccomp filter (the filter needs
/// CAP_SYS_ADMIN unless no-new-privileges is set), then the groups and ids (keeping the
/// permitted set across `setuid`), and last the effective, permitted and inheritable sets.
fn drop_privileges(sys: &dyn Syscall, w: &Workload) -> Result<()> {
    caps::drop_bounding(sys, w.capabilities).map_err(|source| SetupError::Io {
        what: "drop capabilities from the bounding set".into(),
        source,
    })?;
    if w.no_new_privileges {
        sys.set_no_new_privileges()
            .map_err(|source| SetupError::Io {
                what: "set no-new-privileges".into(),
                source,
            })?;
    }
    if w.seccomp {
        // Last moment with CAP_SYS_ADMIN (needed without no-new-privileges); every call from
        // here to execve (setgroups, setuid, capset, chdir, close_range, execve) is allowed by
        // the filter.
        sys.install_seccomp(&seccomp::docker_default_filter(w.capabilities))
            .map_err(|source| SetupError::Io {
                what: "install seccomp filter".into(),
                source,
            })?;
    }
    sys.setgroups(&w.user.additional_gids)
        .map_err(sys_err("set supplementary groups"))?;
    sys.setgid(w.user.gid).map_err(sys_err("set group id"))?;
    // Keep the permitted set across setuid so capset below can still grant the defaults. Best
    // effort, as before: without it capset reports the failure.
    let _ = sys.keep_capabilities();
    sys.setuid(w.user.uid).map_err(sys_err("set user id"))?;
    sys.set_capabilities(w.capabilities)
        .map_err(|source| SetupError::Io {
            what: "set capabilities".into(),
            source,
        })
}

/// An ignored signal stays ignored across execve, and berth's processes ignore some: Rust's
/// runtime ignores SIGPIPE, and whatever started the engine may have left SIGQUIT or others
/// ignored. The workload starts with every disposition at its default, as under Docker
/// (without this, `yes | head` in a container would not end).
fn reset_ignored_signals() {
    // The kernel's `struct sigaction` with every field zero: SIG_DFL, no flags, empty mask.
    // Through the raw system call, as glibc refuses the two real-time signals it reserves.
    let default = [0u64; 4];
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: `default` outlives the call and is the size of the kernel's struct; the
            // old action is not asked for; a number the kernel refuses fails harmlessly.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
    }
}

/// Tell the shim (when init) that the workload is being executed, and `execve` it.
fn execve(w: &Workload, program: &Path, env: &[String]) -> Result<Infallible> {
    let c_program = cstring(&program.to_string_lossy())?;
    let c_args = w
        .args
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>>>()?;
    let c_env = env.iter().map(|e| cstring(e)).collect::<Result<Vec<_>>>()?;
    if let Some(fd) = w.sync_fd {
        // SAFETY: a one-byte write from a live buffer to our sync pipe.
        unsafe { libc::write(fd, [EXEC_MARKER].as_ptr().cast(), 1) };
    }
    let err = match nix::unistd::execve(&c_program, &c_args, &c_env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let name = &w.args[0];
    Err(SetupError::Exec(match err {
        nix::Error::EACCES => format!("exec: {name:?}: permission denied"),
        nix::Error::ENOENT => format!("exec: {name:?}: no such file or directory"),
        other => format!("exec: {name:?}: {}", other.desc().to_lowercase()),
    }))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| SetupError::Exec(format!("argument or variable {s:?} contains a NUL byte")))
}

/// Docker's lookup: a name with a `/` is used as is, anything else is searched in `PATH`.
fn find_program(args: &[String], path_var: &str) -> Result<PathBuf> {
    let Some(name) = args.first().filter(|a| !a.is_empty()) else {
        return Err(SetupError::Exec("no command specified".into()));
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(SetupError::Exec(format!(
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
    Err(SetupError::Exec(format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runtime::syscall::recording::RecordingSyscall;

    fn workload(user: &ExecUser, seccomp: bool, no_new_privileges: bool) -> Workload<'_> {
        Workload {
            args: &[],
            env: &[],
            user,
            cwd: "/",
            capabilities: caps::default_mask(),
            seccomp,
            no_new_privileges,
            sync_fd: None,
        }
    }

    #[test]
    fn privileges_drop_bounding_first_then_filters_then_ids_then_the_capability_sets() {
        let user = ExecUser {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10, 20],
            home: "/home/u".into(),
        };
        let sys = RecordingSyscall::new();
        drop_privileges(&sys, &workload(&user, true, true)).unwrap();
        let calls = sys.calls();
        let bounding = calls
            .iter()
            .take_while(|c| c.starts_with("drop bounding "))
            .count();
        let dropped: Vec<u32> = calls[..bounding]
            .iter()
            .map(|c| c["drop bounding ".len()..].parse().unwrap())
            .collect();
        // CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12) go; CAP_CHOWN (0) and CAP_KILL (5) stay.
        assert!(
            dropped.contains(&21) && dropped.contains(&12),
            "{dropped:?}"
        );
        assert!(
            !dropped.contains(&0) && !dropped.contains(&5),
            "{dropped:?}"
        );
        let mask = caps::default_mask();
        assert_eq!(
            calls[bounding..],
            [
                "no_new_privs".to_string(),
                format!(
                    "seccomp {} instructions",
                    seccomp::docker_default_filter(mask).program.len()
                ),
                "setgroups [10, 20]".to_string(),
                "setgid 100".to_string(),
                "keepcaps".to_string(),
                "setuid 1000".to_string(),
                format!("capset effective+permitted+inheritable {mask:#x}"),
            ]
        );
    }

    #[test]
    fn without_no_new_privileges_or_seccomp_neither_is_set() {
        let user = ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        };
        let sys = RecordingSyscall::new();
        drop_privileges(&sys, &workload(&user, false, false)).unwrap();
        let calls = sys.calls();
        assert!(
            !calls
                .iter()
                .any(|c| c == "no_new_privs" || c.starts_with("seccomp")),
            "{calls:?}"
        );
        assert!(calls.last().unwrap().starts_with("capset"), "{calls:?}");
    }
}
