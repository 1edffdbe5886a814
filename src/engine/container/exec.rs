//! Exec: running another process in a running container (`docker exec`, healthcheck probes).
//!
//! Two halves. `berth exec-init` (spec in `BERTH_EXEC_SPEC`) is a single-threaded re-exec
//! (dispatched from `main` before anything else): it joins the container's cgroups, then its ipc, uts, net, pid and mount
//! namespaces at once through a pidfd of the container's init (so a reused PID is never joined),
//! forks so the child is inside the PID namespace, and the child drops privileges exactly as
//! `berth init` does ([`process_setup`]) and `execve`s the command. The parent stays outside,
//! waits, and exits with the child's status (128 + signal when killed); SIGTERM or SIGINT to it
//! kills the child, which is how the engine enforces probe timeouts.
//!
//! The engine half spawns that re-exec with `std::process::Command` (never forking the tokio
//! process itself), keeps Docker's exec records (in memory, as Docker does), and pumps the
//! output.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::process::{self_exe, ProcIdentity};
use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::runtime::console::{self, ConsoleError};
use crate::engine::runtime::process_setup::{self, SetupError};
use crate::engine::runtime::spec::RuntimeSpec;
use crate::engine::runtime::syscall::LinuxSyscall;
use crate::engine::runtime::user::{self, UserError};
use crate::engine::wire::{ExecConfig, ExecInspect, ExecProcessConfig};
use crate::engine::Engine;

/// The environment variable carrying the [`ExecSpec`] as JSON: not an argument, because
/// `/proc/<pid>/cmdline` is readable by every host user and the spec holds the container's
/// environment (often credentials); `environ` is readable only by root.
pub const SPEC_ENV: &str = "BERTH_EXEC_SPEC";

/// What `berth exec-init` is given (in [`SPEC_ENV`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExecSpec {
    /// The container's init as recorded, so a reused PID is refused.
    pub init: ProcIdentity,
    pub cgroups: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub cwd: String,
    /// The container's capability set and whether it is privileged (no seccomp filter), from
    /// its runtime spec: an exec gets what the container's workload got, as in Docker.
    #[serde(default)]
    pub capabilities: Option<u64>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub seccomp: Option<bool>,
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Docker's exec `Tty`: the command's stdio is a pty of the container's devpts instance,
    /// whose master `exec-init` sends back on its fd 1 (a unix socket).
    #[serde(default)]
    pub tty: bool,
    /// `(rows, columns)` of the terminal at start.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(
        "usage: BERTH_EXEC_SPEC=<json> berth exec-init (started by the berth engine, not by hand)"
    )]
    Usage,
    #[error("invalid exec spec: {0}")]
    Spec(#[source] serde_json::Error),
    #[error("the container's process {0} is gone: the container is not running")]
    NotRunning(i32),
    #[error("join cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("cannot run the exec helper from a sealed copy of berth: {0}")]
    Seal(String),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("set up the exec's terminal: {0}")]
    Console(#[from] ConsoleError),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ExecError {
    move |source| ExecError::Sys { what, source }
}

/// Exit status of `berth exec-init` when the command could not be started: Docker's 127 for a
/// program that is not there, 126 for anything else.
fn failure_code(e: &ExecError) -> i32 {
    match e {
        ExecError::Setup(s) if s.is_not_found() => 127,
        _ => 126,
    }
}

/// The argument `berth exec-init` re-executes itself with once it runs from the sealed clone.
const SEALED_ARG: &str = "sealed";

/// Run this helper from a read-only clone of the berth binary (the one `berth init` runs
/// from), so no process in the container can get a writable handle on the host's binary
/// through `/proc/<pid>/exe` (CVE-2019-5736). Returns only when already sealed.
fn ensure_sealed() -> std::result::Result<(), ExecError> {
    if std::env::args().nth(2).as_deref() == Some(SEALED_ARG) {
        return Ok(());
    }
    let exe = crate::engine::runtime::shim::readonly_self_exe()
        .map_err(|e| ExecError::Seal(e.to_string()))?;
    let argv = [
        c"berth".as_ptr(),
        c"exec-init".as_ptr(),
        c"sealed".as_ptr(),
        std::ptr::null(),
    ];
    let envp: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: argv and envp are NUL-terminated arrays of live C strings; returns only on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            std::os::fd::AsRawFd::as_raw_fd(&exe),
            c"".as_ptr(),
            argv.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(ExecError::Seal(std::io::Error::last_os_error().to_string()))
}

/// Entry point of `berth exec-init`; called from `main` before anything else runs.
pub fn main() -> ! {
    // Nothing inherited from the engine beyond stdio may follow us into the container.
    // SAFETY: close_range on fds this fresh process does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let result = ensure_sealed()
        .and_then(|()| std::env::var(SPEC_ENV).map_err(|_| ExecError::Usage))
        .and_then(|json| serde_json::from_str::<ExecSpec>(&json).map_err(ExecError::Spec))
        .and_then(|spec| run(&spec));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("berth exec: {e}");
            std::process::exit(failure_code(&e))
        }
    }
}

fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set
}

fn run(spec: &ExecSpec) -> std::result::Result<i32, ExecError> {
    join_container(spec)?;
    let terminal = if spec.tty {
        Some(hand_over_terminal(spec.console_size)?)
    } else {
        None
    };
    fork_command(spec, terminal)
}

/// Join the container's cgroups and namespaces (all at once, through a pidfd of its init).
fn join_container(spec: &ExecSpec) -> std::result::Result<(), ExecError> {
    // Before joining anything: a non-dumpable process cannot be ptraced, nor its /proc files
    // (exe, fd, mem) opened, by the container's processes, which lack CAP_SYS_PTRACE
    // (CVE-2016-9962). The forked child inherits it until it execs the command.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(ExecError::Seal(std::io::Error::last_os_error().to_string()));
    }
    let pidfd = spec
        .init
        .open()
        .ok_or(ExecError::NotRunning(spec.init.pid))?;
    // Cgroups first: their paths are host paths, gone from view once in the mount namespace.
    // Single-threaded, as `join_self` needs (this is the sealed re-exec, before any fork).
    for cgroup in &spec.cgroups {
        cgroup::join_self(&LinuxSyscall, cgroup).map_err(|source| ExecError::Cgroup {
            path: cgroup.clone(),
            source,
        })?;
    }
    nix::sched::setns(
        &pidfd,
        CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS,
    )
    .map_err(sys("join the container's namespaces"))?;
    drop(pidfd);
    Ok(())
}

/// A pty of the container's devpts instance (we are in its mount namespace now): the master
/// goes to the engine on fd 1, the slave is returned for the command.
fn hand_over_terminal(size: Option<(u16, u16)>) -> std::result::Result<OwnedFd, ExecError> {
    let pty = console::open_pty()?;
    console::set_initial_size(pty.master.as_fd(), size)?;
    // SAFETY: fd 1 is the socket the engine gave us as stdout, open for our whole life.
    let socket = unsafe { BorrowedFd::borrow_raw(1) };
    console::send_fd(socket, pty.master.as_fd())?;
    Ok(pty.slave)
}

/// Fork the command into the container's PID namespace (on `terminal` if given) and wait for it.
fn fork_command(spec: &ExecSpec, terminal: Option<OwnedFd>) -> std::result::Result<i32, ExecError> {
    // Blocked before the fork so a stop request can never be lost; the child unblocks them.
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&stop_signals()),
        Some(&mut old_mask),
    )
    .map_err(sys("block signals"))?;
    // Only the parent holds `life_w`: the child sees it closed iff the parent is gone (getppid
    // cannot tell, it is 0 across the PID namespace boundary).
    let (life_r, life_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create pipe"))?;
    // SAFETY: single-threaded from main; the child goes on to execve.
    match unsafe { fork() }.map_err(sys("fork into the container's pid namespace"))? {
        ForkResult::Child => {
            // SAFETY: prctl with integer arguments. Kept until the workload changes user;
            // for root workloads it also covers the parent being SIGKILLed later.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            drop(life_w);
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&life_r),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(1) != 0 {
                // The parent died before the prctl: nobody would stop or reap us.
                std::process::exit(126);
            }
            drop(life_r);
            let err =
                match nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None)
                {
                    Err(e) => sys("unblock signals")(e),
                    Ok(()) => match child(spec, terminal.as_ref()) {
                        Ok(never) => match never {},
                        Err(e) => e,
                    },
                };
            eprintln!("berth exec: {err}");
            std::process::exit(failure_code(&err))
        }
        ForkResult::Parent { child } => {
            drop((life_r, terminal));
            let code = supervise(child);
            drop(life_w);
            code
        }
    }
}

fn child(
    spec: &ExecSpec,
    terminal: Option<&OwnedFd>,
) -> std::result::Result<std::convert::Infallible, ExecError> {
    // setns(CLONE_NEWNS) moved our root and cwd to the container's root.
    let exec_user = user::resolve(Path::new("/"), &spec.user)?;
    if let Some(slave) = terminal {
        // The command's user owns its terminal, as with Docker.
        nix::unistd::fchown(slave, Some(nix::unistd::Uid::from_raw(exec_user.uid)), None)
            .map_err(sys("give the terminal to the exec's user"))?;
        console::become_session_on(slave.as_raw_fd()).map_err(|e| {
            sys("make the pty the exec's terminal")(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
    }
    let workload = process_setup::Workload {
        args: &spec.args,
        env: &spec.env,
        user: &exec_user,
        cwd: &spec.cwd,
        capabilities: spec
            .capabilities
            .unwrap_or_else(crate::engine::runtime::caps::default_mask),
        seccomp: spec.seccomp.unwrap_or(!spec.privileged),
        no_new_privileges: spec.no_new_privileges,
        sync_fd: None,
    };
    Ok(process_setup::exec(&workload)?)
}

/// Wait for the child; a stop request kills it. Returns the exit status to pass on.
fn supervise(child: Pid) -> std::result::Result<i32, ExecError> {
    let set = stop_signals();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("wait for the exec'd process")(e)),
        }
        match set.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            }
            _ => {}
        }
    }
}

// ---- engine side ----

/// A command to run in a container; empty fields take the container's own.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    /// Give the process a pipe as stdin (`AttachStdin`); otherwise it reads /dev/null.
    pub stdin: bool,
    /// Run it on a pty (`Tty`); see [`ContainerStore::spawn_exec_on_terminal`].
    pub tty: bool,
    /// `(rows, columns)` of that pty at start.
    pub console_size: Option<(u16, u16)>,
}

/// How an exec'd process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecEnd {
    /// Its exit status (128 + signal when killed).
    Exited(i64),
    /// It outlived the timeout and was killed.
    TimedOut,
}

/// One chunk of an exec's output: 1 = stdout, 2 = stderr (Docker's stream numbers).
pub type OutputChunk = (u8, Vec<u8>);

/// A Docker exec record (`/exec/{id}`), kept in memory as Docker does.
#[derive(Debug, Clone)]
pub struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i32,
    /// The master of a running `Tty` exec's pty, held for resizes until it ends.
    pub terminal: Option<Arc<OwnedFd>>,
}

/// A started exec: the `berth exec-init` process and, for a `Tty` exec, its terminal.
pub struct StartedExec {
    pub child: tokio::process::Child,
    pub terminal: Option<ExecTerminal>,
}

/// Both directions of a `Tty` exec's pty master (output merged into one stream, as Docker's).
pub struct ExecTerminal {
    pub output: pipe::Receiver,
    pub input: pipe::Sender,
}

impl ExecTerminal {
    /// Two non-blocking handles on `master` (and a third kept for resizes).
    fn of(master: &OwnedFd) -> Result<(Self, OwnedFd)> {
        let io = |what: &str| ContainerError::io(format!("{what} the exec's terminal"));
        console::set_nonblocking(master).map_err(|e| ContainerError::Other(e.to_string()))?;
        let dup = || master.try_clone().map_err(io("duplicate"));
        let output = pipe::Receiver::from_file_unchecked(std::fs::File::from(dup()?))
            .map_err(io("watch"))?;
        let input =
            pipe::Sender::from_file_unchecked(std::fs::File::from(dup()?)).map_err(io("watch"))?;
        Ok((Self { output, input }, dup()?))
    }
}

pub(super) type ExecTable = std::sync::Mutex<HashMap<String, ExecEntry>>;

impl ContainerStore {
    /// Spawn `berth exec-init` for `req` in running container `id` (a full ID), with stdout and
    /// stderr piped.
    pub fn spawn_exec(&self, id: &str, req: &ExecRequest) -> Result<tokio::process::Child> {
        let (mut cmd, name) = self.exec_command(id, req)?;
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        spawn(cmd, &name)
    }

    /// Spawn `berth exec-init` for a `Tty` exec: its stdout is a unix socket on which it sends
    /// the master of the command's pty (received with [`receive_terminal`]); stderr carries
    /// only its own errors from before the command runs.
    pub fn spawn_exec_on_terminal(
        &self,
        id: &str,
        req: &ExecRequest,
    ) -> Result<(tokio::process::Child, std::os::unix::net::UnixStream)> {
        let (mut cmd, name) = self.exec_command(id, req)?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(ContainerError::io(
            "create the exec's console socket".to_string(),
        ))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::piped());
        // `cmd` (holding their end) is consumed by the spawn: only the child keeps it open.
        Ok((spawn(cmd, &name)?, ours))
    }

    /// The `berth exec-init` command for `req` in running container `id`, and its name.
    fn exec_command(&self, id: &str, req: &ExecRequest) -> Result<(std::process::Command, String)> {
        let record = self.load_record(id)?;
        let state = self.state(id);
        if state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "container {} is not running",
                record.name
            )));
        }
        if state.paused {
            return Err(super::pause::exec_refusal(&record.name));
        }
        if req.args.is_empty() {
            return Err(ContainerError::BadRequest(
                "no exec command specified".into(),
            ));
        }
        let spec_path = RuntimeSpec::path_in(&self.dir(id));
        let runtime: RuntimeSpec = std::fs::read(&spec_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ContainerError::Other(format!(
                    "cannot read runtime spec {} of running container {}",
                    spec_path.display(),
                    record.name
                ))
            })?;
        let mut env = runtime.env.clone();
        for kv in &req.env {
            let key = kv.split('=').next().unwrap_or(kv);
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        let spec = ExecSpec {
            init: state.init,
            cgroups: runtime.cgroups.clone(),
            args: req.args.clone(),
            env,
            user: if req.user.is_empty() {
                runtime.user.clone()
            } else {
                req.user.clone()
            },
            cwd: if req.working_dir.is_empty() {
                runtime.cwd.clone()
            } else {
                req.working_dir.clone()
            },
            capabilities: Some(runtime.capability_mask()),
            privileged: runtime.privileged,
            seccomp: Some(runtime.seccomp()),
            no_new_privileges: runtime.no_new_privileges,
            tty: req.tty,
            console_size: req.console_size,
        };
        let json = serde_json::to_string(&spec)
            .map_err(|e| ContainerError::Other(format!("encode exec spec: {e}")))?;
        let mut cmd = std::process::Command::new(self_exe());
        cmd.arg("exec-init").env(SPEC_ENV, json);
        Ok((cmd, record.name))
    }
}

fn spawn(cmd: std::process::Command, name: &str) -> Result<tokio::process::Child> {
    tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(ContainerError::io(format!(
            "start berth exec-init for container {name}"
        )))
}

/// The master of a `Tty` exec's pty, from the socket of [`ContainerStore::spawn_exec_on_terminal`];
/// `None` if `exec-init` failed before it had one (its stderr says why).
pub async fn receive_terminal(socket: std::os::unix::net::UnixStream) -> Result<Option<OwnedFd>> {
    // exec-init sends it right after joining the container; the bound only guards a hang.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(ContainerError::io(
            "set the console socket's timeout".to_string(),
        ))?;
    let received = tokio::task::spawn_blocking(move || console::recv_fd(socket.as_fd()))
        .await
        .map_err(|e| ContainerError::Other(format!("receive the exec's terminal: {e}")))?;
    received.map_err(|e| ContainerError::Other(format!("receive the exec's terminal: {e}")))
}

/// Pump the child's output into `out` and wait for it; with `timeout`, stop it (SIGTERM to
/// exec-init, which kills the command; SIGKILL a second later) when it runs longer.
pub async fn drive(
    mut child: tokio::process::Child,
    timeout: Option<Duration>,
    out: mpsc::UnboundedSender<OutputChunk>,
) -> ExecEnd {
    let mut readers = tokio::task::JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        readers.spawn(pump(stdout, 1, out.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.spawn(pump(stderr, 2, out.clone()));
    }
    drop(out);
    let waited = match timeout {
        Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    let end = match waited {
        Some(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            ExecEnd::Exited(match (status.code(), status.signal()) {
                (Some(code), _) => code as i64,
                (None, Some(sig)) => 128 + sig as i64,
                (None, None) => 255,
            })
        }
        Some(Err(_)) => ExecEnd::Exited(255),
        None => {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(1), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            ExecEnd::TimedOut
        }
    };
    // Output still in the pipes is read; a background process that kept them open would hold
    // them forever, so draining has a deadline.
    let drain = async { while readers.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        readers.abort_all();
    }
    end
}

/// [`drive`] for a `Tty` exec: the terminal's output is stream 1 (a pty merges the streams).
/// It ends when the command's side of the pty closes (EIO on the master) or, if a process it
/// left behind keeps it open, two seconds after the command exited.
pub async fn drive_terminal(
    child: tokio::process::Child,
    output: pipe::Receiver,
    out: mpsc::UnboundedSender<OutputChunk>,
) -> ExecEnd {
    let mut pumping = tokio::spawn(pump(output, 1, out.clone()));
    let end = drive(child, None, out).await;
    if tokio::time::timeout(Duration::from_secs(2), &mut pumping)
        .await
        .is_err()
    {
        pumping.abort();
    }
    end
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    stream: u8,
    out: mpsc::UnboundedSender<OutputChunk>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send((stream, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
}

fn lock_table(table: &ExecTable) -> std::sync::MutexGuard<'_, HashMap<String, ExecEntry>> {
    match table.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Engine {
    /// `POST /containers/{id}/exec`: record the command; nothing runs until start.
    pub fn create_exec(&self, id_or_name: &str, config: ExecConfig) -> Result<String> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        let state = self.containers.state(&id);
        if state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "container {} is not running",
                record.name
            )));
        }
        if state.paused {
            return Err(super::pause::exec_refusal(&record.name));
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(ContainerError::BadRequest(
                "no exec command specified".into(),
            ));
        }
        let exec_id = hex::encode(rand::random::<[u8; 32]>());
        let command = config.cmd.clone().unwrap_or_default().join(" ");
        self.container_event(
            &format!("exec_create: {command}"),
            &record,
            &[("execID", exec_id.clone())],
        );
        lock_table(&self.containers.inner.execs).insert(
            exec_id.clone(),
            ExecEntry {
                id: exec_id.clone(),
                container_id: id,
                config,
                started: false,
                running: false,
                exit_code: None,
                pid: 0,
                terminal: None,
            },
        );
        Ok(exec_id)
    }

    fn exec_entry(&self, exec_id: &str) -> Result<ExecEntry> {
        lock_table(&self.containers.inner.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(format!("exec instance {exec_id}")))
    }

    /// `POST /exec/{id}/start`: spawn the process. The caller drives it with [`drive`] (and
    /// [`drive_terminal`]) and reports the end with [`Engine::finish_exec`].
    pub async fn start_exec(&self, exec_id: &str) -> Result<StartedExec> {
        let entry = self.exec_entry(exec_id)?;
        if entry.started {
            return Err(ContainerError::Conflict(format!(
                "exec instance {exec_id} has already been started"
            )));
        }
        let req = ExecRequest {
            args: entry.config.cmd.clone().unwrap_or_default(),
            env: entry.config.env.clone().unwrap_or_default(),
            user: entry.config.user.clone(),
            working_dir: entry.config.working_dir.clone(),
            stdin: entry.config.attach_stdin,
            tty: entry.config.tty,
            console_size: entry.config.console_size.map(|[rows, cols]| (rows, cols)),
        };
        let (child, terminal) = if req.tty {
            let (child, socket) = self
                .containers
                .spawn_exec_on_terminal(&entry.container_id, &req)?;
            (child, receive_terminal(socket).await?)
        } else {
            (self.containers.spawn_exec(&entry.container_id, &req)?, None)
        };
        let (terminal, resize) = match &terminal {
            Some(master) => {
                let (terminal, resize) = ExecTerminal::of(master)?;
                (Some(terminal), Some(Arc::new(resize)))
            }
            None => (None, None),
        };
        if let Some(e) = lock_table(&self.containers.inner.execs).get_mut(exec_id) {
            e.started = true;
            e.running = true;
            e.pid = child.id().map_or(0, |p| p as i32);
            e.terminal = resize;
        }
        if let Ok(record) = self.containers.load_record(&entry.container_id) {
            let command = req.args.join(" ");
            self.container_event(
                &format!("exec_start: {command}"),
                &record,
                &[("execID", exec_id.to_string())],
            );
        }
        Ok(StartedExec { child, terminal })
    }

    /// `POST /exec/{id}/resize`: set the size of a running `Tty` exec's terminal.
    pub fn resize_exec(&self, exec_id: &str, size: console::WindowSize) -> Result<()> {
        let entry = self.exec_entry(exec_id)?;
        match entry.terminal {
            Some(master) => console::set_window_size(master.as_fd(), size)
                .map_err(|e| ContainerError::Other(e.to_string())),
            None if entry.config.tty && entry.running => Err(ContainerError::Conflict(format!(
                "exec instance {exec_id} has no terminal yet"
            ))),
            // Docker accepts a resize of an exec without a terminal and ignores it.
            None if !entry.config.tty => Ok(()),
            None => Err(ContainerError::Conflict(format!(
                "exec instance {exec_id} is not running"
            ))),
        }
    }

    /// Record how a started exec ended.
    pub fn finish_exec(&self, exec_id: &str, end: ExecEnd) {
        let code = match end {
            ExecEnd::Exited(c) => c,
            ExecEnd::TimedOut => 137,
        };
        let container_id = {
            let mut table = lock_table(&self.containers.inner.execs);
            let Some(e) = table.get_mut(exec_id) else {
                return;
            };
            e.running = false;
            e.exit_code = Some(code);
            // The engine holds no terminal past the exec's life.
            e.terminal = None;
            e.container_id.clone()
        };
        if let Ok(record) = self.containers.load_record(&container_id) {
            self.container_event(
                "exec_die",
                &record,
                &[
                    ("execID", exec_id.to_string()),
                    ("exitCode", code.to_string()),
                ],
            );
        }
    }

    /// `GET /exec/{id}/json`.
    pub fn inspect_exec(&self, exec_id: &str) -> Result<ExecInspect> {
        let e = self.exec_entry(exec_id)?;
        let mut args = e.config.cmd.clone().unwrap_or_default().into_iter();
        Ok(ExecInspect {
            id: e.id.clone(),
            running: e.running,
            exit_code: e.exit_code,
            process_config: ExecProcessConfig {
                tty: e.config.tty,
                entrypoint: args.next().unwrap_or_default(),
                arguments: args.collect(),
                privileged: e.config.privileged,
                user: e.config.user.clone(),
            },
            open_stdin: e.config.attach_stdin,
            open_stderr: e.config.attach_stderr,
            open_stdout: e.config.attach_stdout,
            can_remove: !e.running,
            container_id: e.container_id.clone(),
            detach_keys: e.config.detach_keys.clone(),
            pid: e.pid as i64,
        })
    }

    /// Forget the exec records of a container (removed, or started afresh).
    pub fn forget_execs(&self, container_id: &str) {
        lock_table(&self.containers.inner.execs).retain(|_, e| e.container_id != container_id);
    }
}
