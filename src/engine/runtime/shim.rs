//! `berth shim`: the per-container parent that outlives the engine: holds stdio and the log file,
//! reaps the container, records its exit status.
//!
//! Started by the engine as `berth shim <runtime.json>` with a report pipe on fd 3. It reads the
//! spec, opens the log and stdin, creates the cgroups and the pipes, then forks once, so the
//! engine reaps the first process while the real shim lives on (in the session the engine gave
//! it with `setsid`), re-parented to the host's init. The fork comes after that preparation
//! because a forked child maps none of its parent's code pages until it runs them: the long-lived
//! shim never maps the spec parser, the cgroup setup and the rest of the start-up path, which
//! were most of its resident memory. It then creates a new PID namespace and a child that
//! re-execs `berth init`. When init has `execve`d the workload
//! (EOF on the sync pipe) or failed (an error line on it), the shim writes one JSON `ShimReport`
//! line on fd 3 and closes it. It then copies the container's stdout/stderr into Docker's
//! json-file log until the container exits, writes the `ExitRecord` atomically and exits.
//!
//! A TTY container (`RuntimeSpec::tty`) gets a socket pair besides: init sends the master of the
//! pty it opened in the container's devpts on it (`runtime::console`), and the shim, which owns
//! the master for the container's life, relays it (`runtime::tty_relay`) instead of the pipes.
//!
//! Plain single-threaded code: no tokio, and nothing between fork and exec but raw system calls.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::cgroup;
use super::json_log::LogFile;
use super::spec::{ExitRecord, RuntimeSpec};
use super::syscall::LinuxSyscall;

/// The fd the engine hands the shim for its one-line report.
pub const REPORT_FD: RawFd = 3;

/// Docker's copier splits lines longer than this into partial messages.
const MAX_LOG_LINE: usize = 16 * 1024;

/// What the shim tells the engine once the container has started (or failed to).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShimReport {
    /// Host PID of the container's init (0 on failure).
    pub pid: i32,
    pub shim_pid: i32,
    /// Why the container did not start; empty on success.
    #[serde(default)]
    pub error: String,
    /// The workload itself could not be executed (`exec: "x": …`): the user's command is at
    /// fault, not the host (Docker answers 400 rather than 500).
    #[serde(default)]
    pub not_executable: bool,
}

#[derive(Debug, Error)]
pub enum ShimError {
    #[error("usage: berth shim <runtime.json> (started by the berth engine, not by hand)")]
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
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("{0}")]
    Init(String),
    /// init's own message (Docker's wording), passed through untouched.
    #[error("{0}")]
    Workload(InitFailure),
}

/// Why init did not start the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitFailure {
    /// `execve` of the workload failed (`exec: "x": …`): the command is at fault.
    NotExecutable(String),
    /// init failed setting the container up, or died before it got to `execve`.
    Setup(String),
}

impl std::fmt::Display for InitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitFailure::NotExecutable(m) | InitFailure::Setup(m) => f.write_str(m),
        }
    }
}

type Result<T> = std::result::Result<T, ShimError>;

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ShimError {
    move |source| ShimError::Sys { what, source }
}

/// Entry point; called from `main` before anything else runs (no tokio, no threads).
pub fn main() -> ! {
    // SAFETY: fcntl on a fixed fd number; if it is not open this fails harmlessly. Marking it
    // close-on-exec keeps the report pipe out of the container.
    let report_open = unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
    let mut report = report_open.then(|| unsafe { File::from_raw_fd(REPORT_FD) });
    let spec_path = match std::env::args().nth(2) {
        Some(p) => PathBuf::from(p),
        None => fail(&mut report, ShimError::Usage),
    };
    let _ = std::env::set_current_dir("/");
    let prepared = match Prepared::new(&spec_path) {
        Ok(prepared) => prepared,
        Err(e) => fail(&mut report, e),
    };
    // SAFETY: single-threaded here (dispatched from main before anything else). The parent
    // exits without running destructors; its copies of the pipes close with it.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        // The engine clears the cgroups of a start that failed.
        Err(e) => fail(&mut report, sys("fork shim")(e)),
    }
    match run(prepared, &mut report) {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(&mut report, e),
    }
}

fn fail(report: &mut Option<File>, err: ShimError) -> ! {
    eprintln!("berth shim: {err}");
    send_report(
        report,
        &ShimReport {
            pid: 0,
            shim_pid: std::process::id() as i32,
            not_executable: matches!(err, ShimError::Workload(InitFailure::NotExecutable(_))),
            error: err.to_string(),
        },
    );
    std::process::exit(1)
}

fn send_report(report: &mut Option<File>, msg: &ShimReport) {
    if let Some(mut f) = report.take() {
        if let Ok(mut line) = serde_json::to_vec(msg) {
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }
}

fn read_spec(path: &Path) -> Result<RuntimeSpec> {
    let bytes = std::fs::read(path).map_err(|source| ShimError::Spec {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ShimError::SpecJson {
        path: path.to_path_buf(),
        source,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("create pipe"))
}

/// What the start needs, made before the shim forks (see the module doc).
struct Prepared {
    spec: RuntimeSpec,
    log: LogFile,
    stdin: File,
    stdin_keeper: Option<File>,
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    sync: (OwnedFd, OwnedFd),
    /// Only the shim holds the write end: the child sees EOF on the read end iff the shim is
    /// gone.
    life: (OwnedFd, OwnedFd),
    init: InitLaunch,
    tty: Option<TtyPrepared>,
}

/// A TTY container's side of the start: init sends the pty master on `socket` (the shim's end
/// first, init's second); the shim relays `input` (the stdin FIFO) and `resize` to it.
struct TtyPrepared {
    socket: (OwnedFd, OwnedFd),
    input: Option<File>,
    resize: File,
}

impl TtyPrepared {
    fn new(tty: &super::spec::TtySpec, input: Option<File>) -> Result<Self> {
        let (ours, init) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(sys("create the console socket"))?;
        // Read-write, so the FIFO never reports a hang-up between two resizes.
        let resize = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&tty.resize_fifo)
            .map_err(|source| ShimError::Io {
                what: format!("open resize FIFO {}", tty.resize_fifo.display()),
                source,
            })?;
        Ok(Self {
            socket: (ours, init),
            input,
            resize,
        })
    }
}

impl Prepared {
    fn new(spec_path: &Path) -> Result<Self> {
        let spec = read_spec(spec_path)?;
        name_process(&spec.id);
        let log =
            LogFile::open(&spec.log_path, spec.log_rotation).map_err(|source| ShimError::Io {
                what: format!("open log file {}", spec.log_path.display()),
                source,
            })?;
        let devnull = File::open("/dev/null").map_err(|source| ShimError::Io {
            what: "open /dev/null".into(),
            source,
        })?;
        let (stdin, stdin_keeper, tty) = match &spec.tty {
            None => {
                let (stdin, keeper) = open_stdin(spec.stdin.as_ref(), false, devnull)?;
                (stdin, keeper, None)
            }
            // The container's stdio is the pty's slave; its input reaches it through the shim.
            Some(tty) => {
                let (input, keeper) = open_stdin(spec.stdin.as_ref(), true, devnull)?;
                let input = spec.stdin.is_some().then_some(input);
                let devnull = File::open("/dev/null").map_err(|source| ShimError::Io {
                    what: "open /dev/null".into(),
                    source,
                })?;
                (devnull, keeper, Some(TtyPrepared::new(tty, input)?))
            }
        };
        cgroup::setup(&LinuxSyscall, &spec.cgroups, &spec.resources)?;
        let (out, err, sync, life) = (pipe()?, pipe()?, pipe()?, pipe()?);
        let console_fd = tty.as_ref().map(|t| t.socket.1.as_raw_fd());
        let init = InitLaunch::new(&spec, spec_path, sync.1.as_raw_fd(), console_fd)?;
        Ok(Self {
            spec,
            log,
            stdin,
            stdin_keeper,
            out,
            err,
            sync,
            life,
            init,
            tty,
        })
    }
}

fn run(prepared: Prepared, report: &mut Option<File>) -> Result<()> {
    let Prepared {
        spec,
        log,
        stdin,
        stdin_keeper,
        out: (out_r, out_w),
        err: (err_r, err_w),
        sync: (sync_r, sync_w),
        life: (life_r, life_w),
        init,
        tty,
    } = prepared;
    let child_fds = ChildFds {
        stdin: stdin.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        sync: sync_w.as_raw_fd(),
        life_r: life_r.as_raw_fd(),
        life_w: life_w.as_raw_fd(),
        console: tty.as_ref().map_or(-1, |t| t.socket.1.as_raw_fd()),
    };
    // The shim's own PID namespace, to fork the release child into once the container's is
    // dead (forking into a namespace whose init has exited fails with ENOMEM).
    let own_pid_ns = File::open("/proc/self/ns/pid").ok();
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare pid namespace"))?;
    let child = fork_init(&init, &child_fds, &spec)?;
    let mount_ns = MountNamespacePin::of(child, own_pid_ns);
    drop((out_w, err_w, sync_w, stdin, life_r, init));
    let tty = tty.map(TtyPrepared::into_console_end);
    // Before the sync pipe: init sends the master first, and closes the socket on failure.
    let master = match &tty {
        Some((socket, _, _)) => receive_master(socket),
        None => Ok(None),
    };
    wait_for_exec(&spec, child, sync_r)?;
    let tty = match tty {
        Some((_, input, resize)) => {
            let master = master?.ok_or_else(|| {
                ShimError::Init("container init started the workload without its terminal".into())
            })?;
            Some(super::tty_relay::TtyRelay::new(master, input, resize))
        }
        None => None,
    };
    send_report(
        report,
        &ShimReport {
            pid: child.as_raw(),
            shim_pid: std::process::id() as i32,
            error: String::new(),
            not_executable: false,
        },
    );
    let exit_code = match tty {
        Some(relay) => supervise_tty(child, relay, log)?,
        None => supervise(child, out_r, err_r, log)?,
    };
    drop((life_w, stdin_keeper));
    let recorded = record_exit(&spec, child, exit_code);
    if let Some(pin) = mount_ns {
        pin.release_in_background(&spec.rootfs_release_lock());
    }
    recorded
}

/// The container's mount namespace, held open by the shim.
///
/// When the last reference to a mount namespace goes, the kernel unmounts its tree, and the
/// overlay root's superblock then syncs the whole upper filesystem (ext4 commits its journal)
/// before the process dropping it may finish exiting. Dropped by the container's PID 1 that
/// cost 100-400 ms on a busy host between the workload's `exit` and the shim's `wait`, which
/// crun (whose root is no overlay) does not pay. Held here, the workload's exit is immediate;
/// the shim records the exit first and leaves the unmount and its sync to a child.
struct MountNamespacePin {
    _namespace: File,
    /// Where the release child is forked: after `unshare(CLONE_NEWPID)` the shim's children
    /// would go to the container's PID namespace, dead by then.
    own_pid_ns: Option<File>,
}

impl MountNamespacePin {
    /// `None` if init is already gone: its namespace then went with it.
    fn of(child: Pid, own_pid_ns: Option<File>) -> Option<Self> {
        File::open(format!("/proc/{child}/ns/mnt"))
            .ok()
            .map(|namespace| Self {
                _namespace: namespace,
                own_pid_ns,
            })
    }

    /// Drop the namespace in a child that outlives the shim, holding the release lock so the
    /// next start of this container mounts its root only once the old one is unmounted. If
    /// there is no child, the shim drops it itself (slower, same result).
    fn release_in_background(self, lock_path: &Path) {
        let Ok(lock) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(lock_path)
        else {
            return;
        };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return;
        }
        let Ok((parent_gone_r, parent_gone_w)) = pipe() else {
            return;
        };
        if let Some(ns) = self.own_pid_ns.as_ref() {
            // Failing, the fork below fails too and the shim drops the namespace itself.
            let _ = nix::sched::setns(ns, CloneFlags::CLONE_NEWPID);
        }
        // SAFETY: single-threaded; the child only reads, closes and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(parent_gone_w);
                // EOF once the shim's copies (namespace included) are closed, so the last
                // reference, and with it the unmount, is ours.
                let _ = File::from(parent_gone_r).read(&mut [0u8; 1]);
                drop(self);
                drop(lock);
                // SAFETY: ends this child without running the shim's exit path twice.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { .. }) | Err(_) => {
                drop(self);
                drop(lock);
                drop(parent_gone_w);
            }
        }
    }
}

/// `comm` (what `top` and `ps -e` show, at most 15 bytes) says `berth-shim <id…>` instead of
/// `exe`, the name of the `/proc/self/exe` link the shim was started through. The command line
/// got its title from the engine (`argv[0]`).
fn name_process(id: &str) {
    let short: String = id.chars().take(12).collect();
    if let Ok(name) = CString::new(format!("berth-shim {short}")) {
        // SAFETY: prctl reads a NUL-terminated string that lives across the call; the kernel
        // copies at most 15 bytes of it.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
}

/// How [`fork_init`] starts the container's init, made before forking.
struct InitLaunch {
    /// The container's cgroup2 directory, to clone init into (`CLONE_INTO_CGROUP`).
    cgroup2: Option<OwnedFd>,
    /// For `init: true` only: the reaper is re-executed from a read-only clone of our binary.
    /// Otherwise no clone is made: dropping it costs the kernel an RCU grace period.
    reexec: Option<InitExec>,
}

impl InitLaunch {
    fn new(
        spec: &RuntimeSpec,
        spec_path: &Path,
        sync_fd: RawFd,
        console_fd: Option<RawFd>,
    ) -> Result<Self> {
        let cgroup2 = match cgroup::v2_dir(&spec.cgroups) {
            Some(dir) => {
                Some(
                    File::open(dir)
                        .map(OwnedFd::from)
                        .map_err(|source| ShimError::Io {
                            what: format!("open cgroup {}", dir.display()),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let reexec = if spec.init {
            Some(InitExec::new(spec_path, sync_fd, console_fd)?)
        } else {
            None
        };
        Ok(Self { cgroup2, reexec })
    }
}

/// `berth init <runtime.json> <sync-fd> [<console-fd>] [in-cgroup2]`, built before forking:
/// after fork the child only makes system calls (no allocation), so the argument and environment
/// arrays exist already, with and without the `in-cgroup2` marker.
struct InitExec {
    exe: OwnedFd,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    argv_in_cgroup2_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl InitExec {
    fn new(spec_path: &Path, sync_fd: RawFd, console_fd: Option<RawFd>) -> Result<Self> {
        let exe = readonly_self_exe()?;
        let envp: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend(v.into_encoded_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let arg_spec = CString::new(spec_path.as_os_str().as_encoded_bytes())
            .map_err(|_| ShimError::Init("runtime spec path contains a NUL byte".into()))?;
        let arg_fd = CString::new(sync_fd.to_string()).expect("digits have no NUL");
        let mut argv = vec![
            CString::new("berth").expect("static"),
            CString::new("init").expect("static"),
            arg_spec,
            arg_fd,
        ];
        if let Some(fd) = console_fd {
            argv.push(CString::new(fd.to_string()).expect("digits have no NUL"));
        }
        argv.push(CString::new(super::init::IN_CGROUP2_ARG).expect("static"));
        // The CStrings' heap buffers do not move when the arrays are moved into `Self`.
        let argv_in_cgroup2_ptrs = null_terminated(argv.iter());
        let argv_ptrs = null_terminated(argv[..argv.len() - 1].iter());
        let envp_ptrs = null_terminated(envp.iter());
        Ok(Self {
            exe,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            argv_in_cgroup2_ptrs,
            envp_ptrs,
        })
    }
}

fn null_terminated<'a>(strings: impl Iterator<Item = &'a CString>) -> Vec<*const libc::c_char> {
    strings
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The fds the container's init gets as stdio and sync pipe, and the life pipe's two ends.
struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    sync: RawFd,
    life_r: RawFd,
    life_w: RawFd,
    /// init's end of the console socket of a TTY container, -1 otherwise.
    console: RawFd,
}

/// Fork the container's init (PID 1 of the PID namespace unshared before) in a new mount
/// namespace, where it runs `berth init`: in the forked child itself, or re-executed from the
/// read-only clone of our binary for `init: true` (see [`super::init::run_forked`]; the re-exec
/// costs ~2.5 ms of every start). The mount namespace is made here rather than by init so the
/// shim can hold it (see [`MountNamespacePin`]) from before init can exit. Init is cloned
/// straight into the container's cgroup2 directory where the kernel can (5.7 and later);
/// otherwise it joins that directory itself.
fn fork_init(init: &InitLaunch, fds: &ChildFds, spec: &RuntimeSpec) -> Result<Pid> {
    let mut in_cgroup2 = false;
    let mut pid = -1;
    if let Some(dir) = &init.cgroup2 {
        pid = clone_into_cgroup(dir);
        in_cgroup2 = pid >= 0;
    }
    if pid < 0 {
        // SAFETY: single-threaded; `clone` without a new stack is `fork` with namespace flags,
        // and the child below only makes async-signal-safe system calls.
        pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWNS as libc::c_ulong | libc::SIGCHLD as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    let forked = match pid {
        -1 => Err(nix::Error::last()),
        0 => Ok(ForkResult::Child),
        child => Ok(ForkResult::Parent {
            child: Pid::from_raw(child as libc::pid_t),
        }),
    };
    match forked.map_err(sys("fork container init"))? {
        // SAFETY: in the child of a single-threaded fork.
        ForkResult::Child => unsafe {
            prepare_init_child(fds);
            if let Some(exec) = &init.reexec {
                exec_init(exec, fds, in_cgroup2)
            } else {
                let console = (fds.console >= 0).then(|| OwnedFd::from_raw_fd(fds.console));
                super::init::run_forked(spec, fds.sync, console, in_cgroup2)
            }
        },
        ForkResult::Parent { child } => Ok(child),
    }
}

/// `clone3(CLONE_NEWNS | CLONE_INTO_CGROUP)` into the cgroup directory `dir`: the raw result
/// (0 in the child, the child's PID in the parent, -1 if the kernel refused).
fn clone_into_cgroup(dir: &OwnedFd) -> libc::c_long {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    // SAFETY: clone_args is plain old data; zero is "not used" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = libc::CLONE_NEWNS as u64 | CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = dir.as_raw_fd() as u64;
    // SAFETY: single-threaded; without a stack clone3 is `fork` with these flags, and the child
    // only makes async-signal-safe system calls (see `exec_init`).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    }
}

/// The child of [`fork_init`], before it runs init: tie its life to the shim's, wire up stdio.
///
/// # Safety
/// Only in the child of a fork of a single-threaded process: it makes raw system calls alone.
unsafe fn prepare_init_child(fds: &ChildFds) {
    // The container must not outlive its shim: nobody would record its exit.
    // getppid() is 0 in the new PID namespace, so the shim's death before the prctl
    // is detected through the life pipe instead.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    libc::close(fds.life_w);
    let mut pfd = libc::pollfd {
        fd: fds.life_r,
        events: libc::POLLIN,
        revents: 0,
    };
    if libc::poll(&mut pfd, 1, 0) != 0 {
        libc::_exit(1);
    }
    libc::dup2(fds.stdin, 0);
    libc::dup2(fds.stdout, 1);
    libc::dup2(fds.stderr, 2);
}

/// `execveat` `berth init` from the read-only clone of our binary, in the child of
/// [`fork_init`] after [`prepare_init_child`].
///
/// # Safety
/// Only in the child of a fork of a single-threaded process: it makes raw system calls alone.
unsafe fn exec_init(init: &InitExec, fds: &ChildFds, in_cgroup2: bool) -> ! {
    libc::fcntl(fds.sync, libc::F_SETFD, 0);
    if fds.console >= 0 {
        libc::fcntl(fds.console, libc::F_SETFD, 0);
    }
    let argv = if in_cgroup2 {
        &init.argv_in_cgroup2_ptrs
    } else {
        &init.argv_ptrs
    };
    libc::syscall(
        libc::SYS_execveat,
        init.exe.as_raw_fd(),
        c"".as_ptr(),
        argv.as_ptr(),
        init.envp_ptrs.as_ptr(),
        libc::AT_EMPTY_PATH,
    );
    let msg = b"cannot re-exec berth init";
    libc::write(fds.sync, msg.as_ptr().cast(), msg.len());
    libc::_exit(127);
}

/// Wait until init has `execve`d the workload (EOF on the sync pipe after the marker). If it
/// failed instead, reap it, clear its cgroups and return its message.
fn wait_for_exec(spec: &RuntimeSpec, child: Pid, sync_r: OwnedFd) -> Result<()> {
    let mut status = Vec::new();
    File::from(sync_r)
        .read_to_end(&mut status)
        .map_err(|source| ShimError::Io {
            what: "read init status".into(),
            source,
        })?;
    let init_error = init_failure(&status, || {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
            Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
            _ => "gone".to_string(),
        }
    });
    let Some(init_error) = init_error else {
        return Ok(());
    };
    let _ = waitpid(child, None);
    cgroup::kill_all(&spec.cgroups, Duration::from_secs(5));
    let _ = cgroup::remove(&spec.cgroups);
    Err(ShimError::Workload(init_error))
}

/// Clear the cgroups and write the `ExitRecord`, renamed into place but not synced: the engine
/// reads it through the page cache, and the fsync was a journal commit (1 to 7 ms here) between
/// every container's exit and whoever waits for it. A power cut may lose the record or leave it
/// empty; either reads as no record, and the engine then reports the container exited with 255
/// (`StateRecord::effective` of the container store), as Docker does for containers a reboot
/// ended.
fn record_exit(spec: &RuntimeSpec, child: Pid, exit_code: i64) -> Result<()> {
    let record = ExitRecord {
        exit_code,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        pid: child.as_raw(),
        error: String::new(),
        // Read before the cgroups go: their event counters are the only record of it.
        oom_killed: cgroup::oom_killed(&spec.cgroups),
    };
    // The PID namespace is gone with its init; anything left would be a kernel straggler. The
    // cgroups go before the exit is recorded, so whoever sees the exit finds them gone.
    cgroup::kill_all(&spec.cgroups, Duration::from_secs(5));
    let _ = cgroup::remove(&spec.cgroups);
    let bytes = serde_json::to_vec(&record).map_err(|e| ShimError::Init(e.to_string()))?;
    crate::engine::paths::write_volatile(&spec.exit_path, &bytes).map_err(|source| ShimError::Io {
        what: format!("record exit status in {}", spec.exit_path.display()),
        source,
    })
}

/// Why init did not start the workload, from what it wrote on the sync pipe; `None` when it
/// did. Only the exec marker alone means init got to `execve` and it succeeded; the marker
/// followed by a message is an `execve` error; the not-executable marker is init finding the
/// workload could not be executed before that; nothing at all means init died first, and its
/// wait status says how.
fn init_failure(status: &[u8], how_init_ended: impl FnOnce() -> String) -> Option<InitFailure> {
    use super::process_setup::{EXEC_MARKER, NOT_EXECUTABLE_MARKER};
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match status {
        [EXEC_MARKER] => None,
        [EXEC_MARKER, NOT_EXECUTABLE_MARKER, rest @ ..]
        | [EXEC_MARKER, rest @ ..]
        | [NOT_EXECUTABLE_MARKER, rest @ ..] => Some(InitFailure::NotExecutable(text(rest))),
        [_, ..] => Some(InitFailure::Setup(text(status))),
        [] => {
            let how = how_init_ended();
            Some(InitFailure::Setup(format!(
                "container init died before starting the workload ({how}); \
                 see the engine log, or check the container's memory limit"
            )))
        }
    }
}

/// The container's fd 0: `/dev/null`, or the read end of its stdin FIFO (see
/// `engine::container::stdin`), opened without waiting for a writer. Unless `once`, also a write
/// end the shim holds for the container's life, so its stdin does not end between attaches.
fn open_stdin(
    stdin: Option<&super::spec::StdinSpec>,
    tty: bool,
    devnull: File,
) -> Result<(File, Option<File>)> {
    let Some(stdin) = stdin else {
        return Ok((devnull, None));
    };
    let io_err = |what: &str| {
        let what = format!("{what} {}", stdin.fifo.display());
        move |source| ShimError::Io { what, source }
    };
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&stdin.fifo)
        .map_err(io_err("open stdin FIFO"))?;
    // The container reads with ordinary blocking reads; the shim relaying to a terminal polls.
    if !tty {
        nix::fcntl::fcntl(
            reader.as_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(sys("make the stdin FIFO blocking"))?;
    }
    // Docker never closes a TTY's stdin, `StdinOnce` or not.
    let keeper = if stdin.once && !tty {
        None
    } else {
        Some(
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&stdin.fifo)
                .map_err(io_err("hold stdin FIFO"))?,
        )
    };
    Ok((reader, keeper))
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Our own binary on a detached, read-only clone of its mount, for `berth init` to be executed
/// from (`execveat` on this fd). The container can then never write to the host's `berth`
/// through `/proc/<pid>/exe` (CVE-2019-5736): opening it for writing fails with EROFS, and the
/// container has neither CAP_SYS_ADMIN nor the mount syscalls to undo it. runc seals with a
/// similar read-only mount; youki's memfd copy would cost a copy of the whole binary per start.
pub(crate) fn readonly_self_exe() -> Result<OwnedFd> {
    readonly_clone(c"/proc/self/exe")
}

/// A detached, read-only (nosuid, nodev) bind of `path`, as an `O_PATH` fd.
fn readonly_clone(path: &std::ffi::CStr) -> Result<OwnedFd> {
    let err = |what: &str| ShimError::Io {
        what: what.to_string(),
        source: io::Error::last_os_error(),
    };
    // SAFETY: plain system call with a static C string; a non-negative result is an fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err("clone the mount of the berth binary for init"));
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr is a live struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(err("make the berth binary's mount read-only"));
    }
    Ok(fd)
}

fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: plain system call; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(ShimError::Io {
            what: "pidfd_open container init".into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One output stream of the container, cut into json-file lines.
struct LogStream {
    fd: Option<OwnedFd>,
    name: &'static str,
    pending: Vec<u8>,
}

impl LogStream {
    fn new(fd: OwnedFd, name: &'static str) -> Self {
        Self {
            fd: Some(fd),
            name,
            pending: Vec::new(),
        }
    }

    /// Read what is available; false at EOF.
    fn pump(&mut self, log: &mut LogFile) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut buf = [0u8; 8192];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(nix::Error::EBADF) => {
                self.flush(log, true);
                self.fd = None;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.flush(log, false);
                true
            }
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => true,
            Err(_) => {
                self.flush(log, true);
                self.fd = None;
                false
            }
        }
    }

    fn flush(&mut self, log: &mut LogFile, all: bool) {
        loop {
            let cut = match self.pending.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if self.pending.len() >= MAX_LOG_LINE => MAX_LOG_LINE,
                None if all && !self.pending.is_empty() => self.pending.len(),
                None => return,
            };
            let cut = cut.min(MAX_LOG_LINE);
            let chunk: Vec<u8> = self.pending.drain(..cut).collect();
            log.write_line(self.name, &chunk);
        }
    }
}

impl TtyPrepared {
    /// The shim's end of the console socket (init's end closed: EOF if init fails), the input
    /// and the resize FIFO.
    fn into_console_end(self) -> (OwnedFd, Option<File>, File) {
        let (ours, _init) = self.socket;
        (ours, self.input, self.resize)
    }
}

/// The pty master init sends; `None` if init closed the socket without one (it failed, and says
/// why on the sync pipe).
fn receive_master(socket: &OwnedFd) -> Result<Option<OwnedFd>> {
    let master =
        super::console::recv_fd(socket.as_fd()).map_err(|e| ShimError::Init(e.to_string()))?;
    if let Some(master) = &master {
        super::console::set_nonblocking(master).map_err(|e| ShimError::Init(e.to_string()))?;
    }
    Ok(master)
}

/// Relay a TTY container's terminal until init exits; returns Docker's exit code.
fn supervise_tty(child: Pid, relay: super::tty_relay::TtyRelay, mut log: LogFile) -> Result<i64> {
    let pidfd = pidfd_open(child)?;
    relay.run(pidfd.as_fd(), &mut log);
    reap(child)
}

/// Copy output to the log until init exits and the pipes drain; returns Docker's exit code.
fn supervise(child: Pid, out_r: OwnedFd, err_r: OwnedFd, mut log: LogFile) -> Result<i64> {
    let pidfd = pidfd_open(child)?;
    let mut streams = [
        LogStream::new(out_r, "stdout"),
        LogStream::new(err_r, "stderr"),
    ];
    let mut exit_code: Option<i64> = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if streams.iter().all(|s| s.fd.is_none()) && exit_code.is_some() {
            break;
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut fds = Vec::new();
        let mut which = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            if let Some(fd) = &s.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(Some(i));
            }
        }
        if exit_code.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            which.push(None);
        }
        let timeout = if exit_code.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("poll container output")(e)),
        }
        let ready: Vec<Option<usize>> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| *w)
            .collect();
        drop(fds);
        for w in ready {
            match w {
                Some(i) => {
                    streams[i].pump(&mut log);
                }
                None => {
                    exit_code = Some(reap(child)?);
                    // Output still buffered in the pipes is read; a writer that escaped the
                    // namespace would keep them open forever, so draining has a deadline.
                    drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                }
            }
        }
    }
    // Not synced: the log is read through the page cache, and Docker's json-file logger never
    // syncs either; a sync here held up every stop by a journal commit.
    for s in &mut streams {
        s.flush(&mut log, true);
    }
    Ok(exit_code.unwrap_or(255))
}

fn reap(child: Pid) -> Result<i64> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code as i64),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i64),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("wait for container init")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exec_marker_counts_as_a_started_workload() {
        let unused = || unreachable!("init wrote something");
        assert_eq!(init_failure(&[0], unused), None);
        assert_eq!(
            init_failure(b"\0\x01exec: \"x\": permission denied", unused),
            Some(InitFailure::NotExecutable(
                "exec: \"x\": permission denied".into()
            ))
        );
        assert_eq!(
            init_failure(
                b"\x01exec: \"x\": executable file not found in $PATH",
                unused
            ),
            Some(InitFailure::NotExecutable(
                "exec: \"x\": executable file not found in $PATH".into()
            ))
        );
        assert_eq!(
            init_failure(
                b"unable to find user app: no matching entries in passwd file",
                unused
            ),
            Some(InitFailure::Setup(
                "unable to find user app: no matching entries in passwd file".into()
            ))
        );
        // Killed before execve (the OOM killer, say): reported, never taken for a start.
        assert_eq!(
            init_failure(b"", || "killed by SIGKILL".into()),
            Some(InitFailure::Setup(
                "container init died before starting the workload (killed by SIGKILL); \
                 see the engine log, or check the container's memory limit"
                    .into()
            ))
        );
    }

    use std::os::unix::fs::MetadataExt;

    /// Root-only: init runs from our own binary, on a clone that refuses writes (the binary itself
    /// is busy, so the read-only part is shown on a plain file).
    #[test]
    fn init_runs_from_a_read_only_view_of_our_binary() {
        let fd = readonly_self_exe().expect("read-only clone of our binary");
        let via_fd = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let ours = std::fs::metadata("/proc/self/exe").expect("stat exe");
        let clone = std::fs::metadata(&via_fd).expect("stat clone");
        assert_eq!((ours.dev(), ours.ino()), (clone.dev(), clone.ino()));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("binary");
        std::fs::write(&file, "original").expect("write");
        let c_path = CString::new(file.as_os_str().as_encoded_bytes()).expect("path");
        let fd = readonly_clone(&c_path).expect("read-only clone");
        let err = OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .expect_err("writable through the clone");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "original");
    }
}
