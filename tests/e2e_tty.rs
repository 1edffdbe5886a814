//! Interactive sessions through a real pseudo-terminal opened by the test: `berth exec` and
//! `berth run` on a terminal (a shell prompt, the container's own `/dev/pts/N`, the window size
//! the test set and its change after a resize, the exit status), the local terminal's modes
//! restored however the session ends (the command exits, the container is killed, berth gets
//! SIGTERM), piped stdin to `run -T` with its EOF, `berth attach` and the detach keys, and the
//! Docker CLI's `run -it` and `attach` against berth's socket.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::project::TestProject;
use nix::sys::termios::{tcgetattr, Termios};

const IMAGE: &str = "local/tty-busybox:1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process whose stdin, stdout and stderr are the slave of a pty the test holds, in a session
/// of its own with that terminal as its controlling terminal (as a login shell would run it).
struct OnTerminal {
    master: Arc<std::fs::File>,
    /// Kept open so the terminal's modes can be read after the process has gone.
    slave: OwnedFd,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where in `output` the next [`OnTerminal::expect`] starts looking.
    seen: usize,
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl OnTerminal {
    fn spawn(mut command: Command, rows: u16, cols: u16) -> Self {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave_io = |_| Stdio::from(pty.slave.try_clone().expect("dup slave"));
        command
            .stdin(slave_io(0))
            .stdout(slave_io(1))
            .stderr(slave_io(2));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn on the terminal");
        let master = Arc::new(std::fs::File::from(pty.master));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (reader, sink) = (master.clone(), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = (&*reader).read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            master,
            slave: pty.slave,
            child,
            output,
            seen: 0,
        }
    }

    /// What the terminal has shown so far.
    fn screen(&self) -> String {
        text(&self.output.lock().unwrap())
    }

    /// Wait until the terminal shows `needle` after what earlier expects matched.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if let Some(at) = screen[self.seen.min(screen.len())..].find(needle) {
                self.seen += at + needle.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {needle:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_in(&self, keys: &str) {
        (&*self.master)
            .write_all(keys.as_bytes())
            .expect("type on the terminal");
    }

    /// Set the terminal's size, as a terminal emulator does when its window changes: the
    /// foreground process (berth) gets SIGWINCH.
    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "resize the test's terminal");
    }

    /// Wait until the program has taken the terminal raw (what is typed before would be
    /// echoed and edited by the local line discipline instead of reaching the container).
    fn wait_until_raw(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .modes()
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON)
        {
            assert!(
                Instant::now() < deadline,
                "the terminal never went raw; it shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn modes(&self) -> Termios {
        tcgetattr(&self.slave).expect("read the terminal's modes")
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the session did not end; the terminal shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The modes a program changes when it takes a terminal raw, compared field by field.
fn assert_same_modes(before: &Termios, after: &Termios, when: &str) {
    assert_eq!(before.input_flags, after.input_flags, "{when}: input flags");
    assert_eq!(
        before.output_flags, after.output_flags,
        "{when}: output flags"
    );
    assert_eq!(before.local_flags, after.local_flags, "{when}: local flags");
    assert_eq!(
        before.control_flags, after.control_flags,
        "{when}: control flags"
    );
    assert_eq!(
        before.control_chars, after.control_chars,
        "{when}: control chars"
    );
}

fn berth_command(project: &TestProject, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["-p", &project.name])
        .args(args)
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .env("NO_COLOR", "1");
    command
}

fn docker_command(project: &TestProject, args: &[&str]) -> Command {
    let mut command = Command::new(common::precondition::tool("docker"));
    command
        .args(["-H", &format!("unix://{}", project.socket().display())])
        .args(args)
        .env("DOCKER_CONFIG", project.roots.path().join("docker-config"));
    command
}

/// A project with `web` (a plain long-running service) and `term` (`tty` and `stdin_open`,
/// running a shell), up.
fn project_up(prefix: &str) -> TestProject {
    let project = TestProject::new(prefix, "");
    project.import_busybox(IMAGE);
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: ["sleep", "300"]
    stop_grace_period: 1s
  term:
    image: {IMAGE}
    command: ["sh"]
    tty: true
    stdin_open: true
    stop_grace_period: 1s
"#
    ));
    project.ok(&["up", "-d"]);
    project
}

/// Ask the shell on the terminal for its tty and size; the answers follow `marker`.
fn check_tty_and_size(session: &mut OnTerminal, marker: &str, rows: u16, cols: u16) {
    session.type_in(&format!("echo {marker}-$((1+1)); tty; stty size\r"));
    session.expect(&format!("{marker}-2\r\n/dev/pts/"));
    session.expect(&format!("\r\n{rows} {cols}\r\n"));
}

/// The same for the Docker CLI, which at API 1.41 sends the size only after the start (so the
/// shell may come up before it): the size is asked for until it shows.
fn check_tty_then_size(session: &mut OnTerminal, marker: &str, rows: u16, cols: u16) {
    session.type_in(&format!("echo {marker}-$((1+1)); tty\r"));
    session.expect(&format!("{marker}-2\r\n/dev/pts/"));
    expect_size(session, rows, cols);
}

/// Resize the terminal; the shell inside sees the new size (it arrives asynchronously, through
/// berth's SIGWINCH and the engine: asked again until it shows, under a deadline).
fn resize_and_check(session: &mut OnTerminal, rows: u16, cols: u16) {
    session.resize(rows, cols);
    expect_size(session, rows, cols);
}

/// Ask the shell for its terminal's size until it is `rows cols` (under a deadline).
fn expect_size(session: &mut OnTerminal, rows: u16, cols: u16) {
    let wanted = format!("\r\n{rows} {cols}\r\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        session.type_in("stty size\r");
        std::thread::sleep(Duration::from_millis(200));
        let screen = session.screen();
        if let Some(at) = screen[session.seen..].find(&wanted) {
            session.seen += at + wanted.len();
            return;
        }
        assert!(Instant::now() < deadline, "{screen}");
    }
}

#[test]
fn exec_and_run_on_a_terminal() {
    let project = project_up("ttyexec");

    // exec: a prompt, the container's own pty with our size, a resize, the exit status.
    let mut session = OnTerminal::spawn(berth_command(&project, &["exec", "web", "sh"]), 30, 100);
    let before = session.modes();
    session.expect("# ");
    check_tty_and_size(&mut session, "exec", 30, 100);
    resize_and_check(&mut session, 40, 120);
    session.type_in("exit 3\r");
    assert_eq!(session.wait().code(), Some(3), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after exec");

    // run: the same on a one-off container, removed after.
    let mut session = OnTerminal::spawn(
        berth_command(&project, &["run", "--rm", "web", "sh"]),
        25,
        90,
    );
    let before = session.modes();
    session.expect("# ");
    check_tty_and_size(&mut session, "run", 25, 90);
    resize_and_check(&mut session, 35, 110);
    session.type_in("exit 4\r");
    assert_eq!(session.wait().code(), Some(4), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after run");

    // The container killed under an exec: berth ends, the terminal is restored.
    let mut session = OnTerminal::spawn(berth_command(&project, &["exec", "web", "sh"]), 30, 100);
    let before = session.modes();
    session.expect("# ");
    project.ok(&["kill", "web"]);
    let status = session.wait();
    assert!(!status.success(), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after the container was killed");

    // SIGTERM to berth during a TTY run: the terminal is restored on that path too.
    let mut session = OnTerminal::spawn(
        berth_command(&project, &["run", "--rm", "term", "sh"]),
        30,
        100,
    );
    let before = session.modes();
    session.expect("# ");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(session.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal berth");
    assert_eq!(session.wait().code(), Some(143), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after SIGTERM");
}

/// `berth run` with input from a pipe: no TTY with -T, the input reaches the container, its
/// end is the container's EOF, and the container's status is berth's.
fn run_with_input(project: &TestProject, args: &[&str], input: &[u8]) -> Output {
    let mut child = berth_command(project, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth run");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("berth run");
    writer.join().expect("writer");
    out
}

#[test]
fn piped_run_attach_and_detach_keys() {
    let project = project_up("ttyattach");

    let out = run_with_input(
        &project,
        &[
            "run",
            "--rm",
            "-T",
            "web",
            "sh",
            "-c",
            "cat; echo done; exit 5",
        ],
        b"first\nsecond\n",
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first\nsecond\ndone\n");
    // Without -T but from a pipe: no TTY either (`tty` says so), input still passed.
    let out = run_with_input(
        &project,
        &["run", "--rm", "web", "sh", "-c", "tty; cat"],
        b"x\n",
    );
    assert_eq!(text(&out.stdout), "not a tty\nx\n", "{}", text(&out.stderr));

    // attach to the tty service: what we type runs there; ctrl-p ctrl-q leaves it running.
    let mut session = OnTerminal::spawn(berth_command(&project, &["attach", "term"]), 30, 100);
    let before = session.modes();
    session.wait_until_raw();
    session.type_in("echo attached-$((2+3))\r");
    session.expect("attached-5");
    session.type_in("\x10\x11");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after detaching");
    let container = format!("{}-term-1", project.name);
    let running = project.docker(&["inspect", "-f", "{{.State.Running}}", &container]);
    assert_eq!(running.trim(), "true");

    // Other detach keys, and what was typed before them still reaches the shell.
    let mut session = OnTerminal::spawn(
        berth_command(&project, &["attach", "--detach-keys", "ctrl-a,x", "term"]),
        30,
        100,
    );
    session.wait_until_raw();
    // The first key alone, broken by the next one, is passed on: the shell runs the line.
    session.type_in("\x01echo again-$((3+4))\r");
    session.expect("again-7");
    session.type_in("\x01x");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());

    // A TTY run left with the detach keys: berth returns, the one-off container runs on.
    let one_off = format!("{}-left", project.name);
    let mut session = OnTerminal::spawn(
        berth_command(&project, &["run", "--name", &one_off, "web", "sh"]),
        30,
        100,
    );
    session.expect("# ");
    session.type_in("\x10\x11");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());
    let running = project.docker(&["inspect", "-f", "{{.State.Running}}", &one_off]);
    assert_eq!(running.trim(), "true");

    // A shell that exits ends the attach with its status.
    let mut session = OnTerminal::spawn(berth_command(&project, &["attach", "term"]), 30, 100);
    session.wait_until_raw();
    session.type_in("exit 6\r");
    assert_eq!(session.wait().code(), Some(6), "{}", session.screen());
}

#[test]
fn docker_cli_run_it_and_attach_on_a_terminal() {
    let project = project_up("ttydocker");

    let mut session = OnTerminal::spawn(
        docker_command(&project, &["run", "-it", "--rm", IMAGE, "sh"]),
        28,
        95,
    );
    session.expect("# ");
    check_tty_then_size(&mut session, "docker", 28, 95);
    session.type_in("exit 2\r");
    assert_eq!(session.wait().code(), Some(2), "{}", session.screen());

    let container = format!("{}-term-1", project.name);
    let mut session = OnTerminal::spawn(docker_command(&project, &["attach", &container]), 30, 100);
    session.wait_until_raw();
    session.type_in("echo via-docker-$((4+4))\r");
    session.expect("via-docker-8");
    session.type_in("\x10\x11");
    session.wait();
    let state = project.docker(&["inspect", "-f", "{{.State.Running}}", &container]);
    assert_eq!(state.trim(), "true");

    // docker exec -it: the exec's own pty of the same devpts instance.
    let mut session = OnTerminal::spawn(
        docker_command(&project, &["exec", "-it", &container, "sh"]),
        22,
        70,
    );
    session.expect("# ");
    check_tty_then_size(&mut session, "dexec", 22, 70);
    session.type_in("exit 0\r");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());
}

/// `POST path` on the project's engine socket: the HTTP status.
fn post_status(project: &TestProject, path: &str) -> String {
    let out = Command::new(common::precondition::tool("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg("--unix-socket")
        .arg(project.socket())
        .arg(format!("http://localhost/v1.41{path}"))
        .output()
        .expect("curl");
    text(&out.stdout)
}

#[test]
fn resize_endpoints_reach_the_containers_terminal() {
    let project = project_up("ttyresize");
    let term = format!("{}-term-1", project.name);
    let web = format!("{}-web-1", project.name);

    assert_eq!(
        post_status(&project, &format!("/containers/{term}/resize?h=17&w=53")),
        "200"
    );
    // The shim set it on the terminal: the container's pts reports it.
    let size = project.eventually(Duration::from_secs(10), || {
        let out = project.docker(&["exec", &term, "stty", "-F", "/dev/pts/0", "size"]);
        (out.trim() == "17 53").then_some(())
    });
    assert!(
        size.is_some(),
        "the container's terminal never became 17x53"
    );

    // Docker's answers: a container without a terminal ignores it, bad sizes are the client's
    // fault, unknown objects are 404, a stopped container cannot be resized.
    assert_eq!(
        post_status(&project, &format!("/containers/{web}/resize?h=17&w=53")),
        "200"
    );
    assert_eq!(
        post_status(&project, &format!("/containers/{term}/resize?h=x&w=53")),
        "400"
    );
    assert_eq!(
        post_status(&project, "/containers/nosuch/resize?h=1&w=1"),
        "404"
    );
    assert_eq!(post_status(&project, "/exec/nosuch/resize?h=1&w=1"), "404");
    project.ok(&["stop", "term"]);
    assert_eq!(
        post_status(&project, &format!("/containers/{term}/resize?h=17&w=53")),
        "409"
    );
}

/// Whether process `pid` (a PID in `web`'s namespace) still runs there.
fn alive_in_web(project: &TestProject, pid: &str) -> bool {
    project
        .berth(&["exec", "-T", "web", "kill", "-0", pid])
        .status
        .success()
}

/// Leave an interactive `exec` with the detach keys: berth exits 0 with the terminal restored,
/// the shell runs on (top lists it) until it is ended; `--detach-keys` picks others, and keys
/// Docker would refuse are refused before the terminal goes raw.
#[test]
fn exec_detach_keys_leave_the_command_running() {
    let project = project_up("ttyexecdetach");

    let mut session = OnTerminal::spawn(berth_command(&project, &["exec", "web", "sh"]), 30, 100);
    let before = session.modes();
    session.expect("# ");
    // The answer differs from the echoed command line: `p2d-<pid>-end`.
    session.type_in("echo p$((1+1))d-$$-end\r");
    session.expect("p2d-");
    session.expect("-end");
    let screen = session.screen();
    let pid = screen
        .rsplit("p2d-")
        .next()
        .and_then(|rest| rest.split("-end").next())
        .expect("the shell's pid")
        .to_string();
    assert!(pid.chars().all(|c| c.is_ascii_digit()), "{screen}");
    session.type_in("\x10\x11");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());
    assert_same_modes(&before, &session.modes(), "after detaching from exec");
    let top = project.ok(&["top", "web"]);
    assert!(
        top.lines().any(|l| l.ends_with(" sh")),
        "the detached shell is gone:\n{top}"
    );
    assert!(alive_in_web(&project, &pid));
    project.ok(&["exec", "-T", "web", "kill", "-9", &pid]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive_in_web(&project, &pid) {
        if Instant::now() > deadline {
            let ps = project.ok(&["exec", "-T", "web", "ps", "-o", "pid,ppid,stat,args"]);
            panic!("the shell outlived its SIGKILL:\n{ps}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Other keys: the first alone, broken by the next byte, reaches the shell.
    let mut session = OnTerminal::spawn(
        berth_command(
            &project,
            &["exec", "--detach-keys", "ctrl-a,x", "web", "sh"],
        ),
        30,
        100,
    );
    session.expect("# ");
    session.type_in("\x01echo other-$((3+4))\r");
    session.expect("other-7");
    // ctrl-p ctrl-q are plain keys now (history, XON); ctrl-u clears the line they made.
    session.type_in("\x10\x11\x15echo still-$((1+1))\r");
    session.expect("still-2");
    session.type_in("\x01x");
    assert_eq!(session.wait().code(), Some(0), "{}", session.screen());
    let top = project.ok(&["top", "web"]);
    assert!(top.lines().any(|l| l.ends_with(" sh")), "{top}");

    let mut session = OnTerminal::spawn(
        berth_command(&project, &["exec", "--detach-keys", "ctrl-1", "web", "sh"]),
        30,
        100,
    );
    assert_ne!(session.wait().code(), Some(0), "{}", session.screen());
    assert!(
        session.screen().contains("invalid detach keys"),
        "{}",
        session.screen()
    );
}
