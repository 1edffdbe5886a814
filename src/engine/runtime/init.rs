//! `berth init`: the single-threaded re-exec that becomes the container's PID 1 after setting up
//! namespaces and the root filesystem, then `execve`s the workload.
//!
//! The shim starts it as `berth init <runtime.json> <sync-fd> [<console-fd>]` inside a fresh PID
//! namespace; with a console fd (a TTY container) it sends the master of the container's pty
//! there before taking the slave as its stdio and controlling terminal.
//! Any failure before `execve` is written to the sync fd as one line of text (Docker's wording
//! where there is one, e.g. `exec: "foo": executable file not found in $PATH`) and init exits 127.
//! On success every fd above 2 is close-on-exec, so the shim sees EOF on the sync pipe.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use thiserror::Error;

use super::cgroup;
use super::console::{self, ConsoleError};
use super::process_setup::{self, SetupError};
use super::rlimits::{self, RlimitError};
use super::rootfs::{self, RootfsError};
use super::spec::RuntimeSpec;
use super::syscall::{LinuxSyscall, Syscall};
use super::sysctl::{self, SysctlError};
use super::user::{self, UserError};

#[derive(Debug, Error)]
pub enum InitError {
    #[error(
        "usage: berth init <runtime.json> <sync-fd> [<console-fd>] [{IN_CGROUP2_ARG}] \
         (started by berth shim, not by hand)"
    )]
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
    #[error(transparent)]
    Rlimit(#[from] RlimitError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("set up the container's terminal: {0}")]
    Console(#[from] ConsoleError),
    /// Includes Docker's wording for a workload that cannot be executed.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

type Result<T> = std::result::Result<T, InitError>;

/// The last argument of `berth init` when the shim cloned it into its cgroup2 directory.
pub(crate) const IN_CGROUP2_ARG: &str = "in-cgroup2";

fn sys_err(what: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys {
        what: what.to_string(),
        source,
    }
}

/// Entry point; called from `main` before anything else runs (no tokio, no threads).
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let sync_fd = args.get(3).and_then(|s| s.parse::<i32>().ok());
    let in_cgroup2 = args.iter().skip(4).any(|a| a == IN_CGROUP2_ARG);
    // SAFETY: the shim passed this fd (its console socket's other end) for us alone.
    let console = args
        .iter()
        .skip(4)
        .find_map(|s| s.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let err = match (args.get(2), sync_fd) {
        (Some(spec), Some(fd)) => {
            match read_spec(Path::new(spec)).and_then(|spec| run(&spec, fd, console, in_cgroup2)) {
                Ok(never) => match never {},
                Err(e) => e,
            }
        }
        _ => InitError::Usage,
    };
    report(&err, sync_fd);
    std::process::exit(127)
}

/// `berth init` without its re-exec, in the child the shim forked (see `fork_init` there): the
/// shim read the spec already, and a fork of a single-threaded process may run any code. Not
/// for `init: true`, whose reaper stays alive as PID 1 and must run from the read-only clone of
/// our binary (CVE-2019-5736); without it, no process of the container exists before the
/// workload's execve replaces this one.
pub(crate) fn run_forked(
    spec: &RuntimeSpec,
    sync_fd: i32,
    console: Option<OwnedFd>,
    in_cgroup2: bool,
) -> ! {
    let err = match run(spec, sync_fd, console, in_cgroup2) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report(&err, Some(sync_fd));
    // SAFETY: no exit handlers or buffers of the shim's must run in its forked child.
    unsafe { libc::_exit(127) }
}

/// Tell the shim why init failed, on the sync pipe (stderr without one).
fn report(err: &InitError, sync_fd: Option<i32>) {
    match sync_fd {
        // SAFETY: the shim passed this fd for us alone; we are exiting right after.
        Some(fd) if fd > 2 => {
            let mut sync = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            if matches!(err, InitError::Setup(SetupError::Exec(_))) {
                let _ = sync.write_all(&[super::process_setup::NOT_EXECUTABLE_MARKER]);
            }
            let _ = sync.write_all(err.to_string().as_bytes());
        }
        _ => eprintln!("berth init: {err}"),
    }
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

fn run(
    spec: &RuntimeSpec,
    sync_fd: i32,
    console: Option<OwnedFd>,
    in_cgroup2: bool,
) -> Result<Infallible> {
    // SAFETY: umask has no memory-safety preconditions. 0 so devices and dirs get exact modes.
    unsafe { libc::umask(0) };
    let sys = LinuxSyscall;
    enter_cgroups_and_namespaces(&sys, spec, in_cgroup2)?;
    set_up_rootfs(&sys, spec)?;
    set_kernel_parameters(&sys, spec)?;
    if spec.privileged || spec.unmasked_paths {
        // Docker's --privileged (and systempaths=unconfined) also unmasks these paths. What
        // berth does not do for privileged containers: it does not expose the host's devices
        // in /dev, and it leaves the cgroup and AppArmor/SELinux setup as for any container.
    } else {
        rootfs::harden_paths(&sys)?;
    }
    set_names(&sys, spec)?;

    let exec_user = user::resolve(Path::new("/"), &spec.user)?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    rootfs::ensure_workdir(cwd)?;
    if spec.readonly_rootfs {
        rootfs::readonly_root(&sys)?;
    }
    if let Some(socket) = console {
        let size = spec.tty.as_ref().and_then(|t| t.initial_size);
        attach_terminal(socket, &exec_user, size)?;
    }

    // After every setup step, so only the workload (and the init reaper) run under them.
    rlimits::apply(&sys, &spec.ulimits)?;

    let capabilities = spec.capability_mask();
    if spec.init {
        become_reaper_and_fork(capabilities, spec.seccomp(), spec.no_new_privileges)?;
    }
    let workload = process_setup::Workload {
        args: &spec.args,
        env: &spec.env,
        user: &exec_user,
        cwd,
        capabilities,
        seccomp: spec.seccomp(),
        no_new_privileges: spec.no_new_privileges,
        sync_fd: Some(sync_fd),
    };
    Ok(process_setup::exec(&workload)?)
}

/// A TTY container: a pty of the container's devpts instance becomes this process's stdio and
/// controlling terminal (inherited by the workload, also under `init: true`), its master goes to
/// the shim over `socket`, and neither the master nor the socket stays open here. The slave
/// belongs to the workload's user, as Docker's does, so it can change its own terminal modes.
fn attach_terminal(socket: OwnedFd, user: &user::ExecUser, size: Option<(u16, u16)>) -> Result<()> {
    let pty = console::open_pty()?;
    console::set_initial_size(pty.master.as_fd(), size)?;
    nix::unistd::fchown(&pty.slave, Some(nix::unistd::Uid::from_raw(user.uid)), None)
        .map_err(sys_err("give the terminal to the container's user"))?;
    console::send_fd(socket.as_fd(), pty.master.as_fd())?;
    drop((socket, pty.master));
    console::become_session_on(pty.slave.as_raw_fd()).map_err(|source| InitError::Io {
        what: "make the pty the container's terminal".into(),
        source,
    })
}

/// Join the container's cgroups and network namespace, and unshare its own UTS and IPC
/// namespaces (the shim made the PID and mount namespaces). With `in_cgroup2` the shim cloned
/// us into the cgroup2 directory already: only the v1 hierarchies are left to join.
fn enter_cgroups_and_namespaces(
    sys: &dyn Syscall,
    spec: &RuntimeSpec,
    in_cgroup2: bool,
) -> Result<()> {
    join_cgroups(sys, &spec.cgroups, in_cgroup2)?;
    if let Some(netns) = &spec.netns {
        let file = File::open(netns).map_err(|source| InitError::Io {
            what: format!("open network namespace {}", netns.display()),
            source,
        })?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(sys_err("join network namespace"))?;
    }
    // The shim cloned us into a new mount namespace already.
    nix::sched::unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
        .map_err(sys_err("unshare uts and ipc namespaces"))
}

/// Join each cgroup directory not joined yet; a v1 hierarchy is told by its `tasks` file. We are
/// single-threaded, as [`cgroup::join_self`] needs.
fn join_cgroups(sys: &dyn Syscall, cgroups: &[PathBuf], in_cgroup2: bool) -> Result<()> {
    for dir in cgroups {
        if in_cgroup2 && !sys.exists(&dir.join("tasks")) {
            continue;
        }
        cgroup::join_self(sys, dir).map_err(|source| InitError::Io {
            what: format!("join cgroup {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

/// The overlay root, `pivot_root` into it, the default mounts, devices and the user's mounts.
fn set_up_rootfs(sys: &dyn Syscall, spec: &RuntimeSpec) -> Result<()> {
    rootfs::make_private(sys)?;
    wait_for_root_release(spec)?;
    rootfs::mount_overlay(sys, spec)?;
    // Opened while the host's paths are still reachable.
    let bind_sources: Vec<Option<OwnedFd>> = rootfs::open_bind_sources(sys, &spec.mounts)?;
    rootfs::pivot(sys, spec)?;
    let root = rootfs::open_root()?;
    rootfs::mount_defaults(sys, &root, spec)?;
    rootfs::create_devices(&spec.devices)?;
    rootfs::mount_user(sys, &root, &spec.mounts, &bind_sources)?;
    Ok(())
}

/// Wait until the previous run's root filesystem of this container is unmounted (the shim
/// leaves that to a child holding the release lock, see `shim::MountNamespacePin`), so two
/// overlays never share its upper directory. A first start finds the lock free.
fn wait_for_root_release(spec: &RuntimeSpec) -> Result<()> {
    let path = spec.rootfs_release_lock();
    let io_err = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| InitError::Io { what, source }
    };
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("open"))?;
    // SAFETY: flock on an fd we own; dropping the file releases the lock.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("lock")(io::Error::last_os_error()));
    }
    Ok(())
}

/// Docker's defaults for a private network namespace, then the user's sysctls. Runs before
/// `/proc/sys` turns read-only.
fn set_kernel_parameters(sys: &dyn Syscall, spec: &RuntimeSpec) -> Result<()> {
    if spec.netns.is_some() {
        // Any user may bind low ports and ping.
        for (key, value) in [
            ("net/ipv4/ip_unprivileged_port_start", "0"),
            ("net/ipv4/ping_group_range", "0 2147483647"),
        ] {
            let path = format!("/proc/sys/{key}");
            sys.write_file(Path::new(&path), value)
                .map_err(|source| InitError::Io {
                    what: format!("set sysctl {}", key.replace('/', ".")),
                    source,
                })?;
        }
    }
    // The user's sysctls after the defaults above, so they can override them; the IPC ones act
    // on the IPC namespace unshared before, the net ones on the container's network namespace.
    Ok(sysctl::apply(sys, &spec.sysctls)?)
}

fn set_names(sys: &dyn Syscall, spec: &RuntimeSpec) -> Result<()> {
    sys.sethostname(&spec.hostname)
        .map_err(sys_err("set hostname"))?;
    if !spec.domainname.is_empty() {
        sys.setdomainname(&spec.domainname)
            .map_err(|source| InitError::Io {
                what: "set domain name".into(),
                source,
            })?;
    }
    Ok(())
}

/// Overwrite this process's argument area (what `/proc/self/cmdline` shows) with `berth-init`.
/// Best effort: if the bounds cannot be read, the command line stays as it was.
fn hide_command_line() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the `(comm)`, which may itself hold spaces: field 3 onwards.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // arg_start and arg_end are fields 48 and 49 (index 45 and 46 after `)`).
    let (Some(start), Some(end)) = (
        fields.get(45).and_then(|f| f.parse::<usize>().ok()),
        fields.get(46).and_then(|f| f.parse::<usize>().ok()),
    ) else {
        return;
    };
    let name = b"berth-init";
    if start == 0 || end <= start + name.len() {
        return;
    }
    // SAFETY: [arg_start, arg_end) is this process's own argument area on its stack, mapped
    // and writable; nothing in this single-threaded process reads argv after this point.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        area[..name.len()].copy_from_slice(name);
    }
}

/// Docker's `init: true` (tini as PID 1): fork the workload and stay PID 1 of the container,
/// forwarding every signal to the workload and reaping every orphan, then exit with the
/// workload's status (128 + signal number when a signal killed it). Returns only in the child,
/// which goes on to `execve` the workload.
///
/// The reaper gives up everything it does not need first: it closes the sync pipe (so the shim
/// sees EOF once the workload is exec'd), keeps only the container's capabilities, takes the
/// same seccomp filter, and is not dumpable, so the workload cannot trace or read it. Its
/// command line (`/proc/1/cmdline`, readable by the workload) is replaced by `berth-init`, so the
/// host path of the runtime spec does not show inside the container.
fn become_reaper_and_fork(capabilities: u64, seccomp: bool, no_new_privileges: bool) -> Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};

    let all = SigSet::all();
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut previous))
        .map_err(sys_err("block signals for the init process"))?;
    // SAFETY: `berth init` is single-threaded, so the child may run any code after fork.
    let child = match unsafe { fork() }.map_err(sys_err("fork the workload under init"))? {
        ForkResult::Child => {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)
                .map_err(sys_err("restore the signal mask"))?;
            return Ok(());
        }
        ForkResult::Parent { child } => child,
    };
    // From here on, failures cannot be reported on the sync pipe (the child owns that now):
    // the reaper kills the workload and exits 127, which the shim records.
    let give_up = |child: Pid| -> ! {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: close_range and prctl with integer arguments.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let undumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let no_new_privs = if no_new_privileges {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }
    } else {
        0
    };
    if closed != 0 || undumpable != 0 || no_new_privs != 0 {
        give_up(child);
    }
    hide_command_line();
    let sys = LinuxSyscall;
    if super::caps::drop_bounding(&sys, capabilities).is_err()
        || (seccomp
            && sys
                .install_seccomp(&super::seccomp::docker_default_filter(capabilities))
                .is_err())
        || sys.set_capabilities(capabilities).is_err()
    {
        give_up(child);
    }
    loop {
        let signal = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if signal != nix::sys::signal::Signal::SIGCHLD {
            // The workload may be gone already; nothing else to do with the signal then.
            let _ = nix::sys::signal::kill(child, signal);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    // SAFETY: _exit has no preconditions.
                    unsafe { libc::_exit(code) }
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    // SAFETY: _exit has no preconditions.
                    unsafe { libc::_exit(128 + sig as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runtime::syscall::recording::RecordingSyscall;

    fn hybrid() -> (RecordingSyscall, Vec<PathBuf>) {
        let dirs = vec![
            PathBuf::from("/cg/unified/berth/c1"),
            PathBuf::from("/cg/pids/berth/c1"),
            PathBuf::from("/cg/memory/berth/c1"),
        ];
        let sys = RecordingSyscall::new()
            .with_file("/cg/pids/berth/c1/tasks", "")
            .with_file("/cg/memory/berth/c1/tasks", "");
        (sys, dirs)
    }

    #[test]
    fn v1_hierarchies_are_joined_through_tasks_and_v2_through_cgroup_procs() {
        let (sys, dirs) = hybrid();
        join_cgroups(&sys, &dirs, false).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "write /cg/unified/berth/c1/cgroup.procs 0",
                "write /cg/pids/berth/c1/tasks 0",
                "write /cg/memory/berth/c1/tasks 0",
            ]
        );
    }

    #[test]
    fn cloned_into_cgroup2_init_joins_only_the_v1_hierarchies() {
        let (sys, dirs) = hybrid();
        join_cgroups(&sys, &dirs, true).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "write /cg/pids/berth/c1/tasks 0",
                "write /cg/memory/berth/c1/tasks 0",
            ]
        );
    }
}
