//! `TestEngine`: a real `berth engine` of a test's own, on temporary data and run roots with its
//! own socket, so tests never share state. On drop it removes every container and network through
//! the API, stops the engine, and asserts that nothing it made is left: processes, mounts (overlay
//! roots, netns bind mounts) and the temporary roots themselves.

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth::engine::api::client::EngineClient;
use berth::engine::EngineRoots;

/// The `berth` binary cargo built for these tests.
pub fn berth_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Run a future to completion on a fresh runtime in its own thread, so this works both from plain
/// `#[test]`s and from inside a `#[tokio::test]` runtime (where blocking on it would panic).
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime for a test helper")
            .block_on(future)
    })
    .join()
    .expect("test helper thread panicked")
}

/// A bare `GET` over the socket, without the client: (status, body). `None` when nobody answers.
pub fn raw_get(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: berth\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub struct TestEngine {
    /// Holds both roots; `None` once deliberately kept (mounts could not be undone).
    temp: Option<tempfile::TempDir>,
    data_root: PathBuf,
    run_root: PathBuf,
    log: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl TestEngine {
    pub fn start() -> TestEngine {
        Self::start_with_args(&[])
    }

    /// Start with extra `berth engine` arguments (e.g. `["--insecure-registry", "host:5000"]`).
    pub fn start_with_args(extra_args: &[&str]) -> TestEngine {
        let temp = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("create a temporary directory for the test engine");
        let data_root = temp.path().join("data");
        let run_root = temp.path().join("run");
        let log = temp.path().join("engine.log");
        let mut engine = TestEngine {
            temp: Some(temp),
            data_root,
            run_root,
            log,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        engine.launch();
        engine
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the test engine's log");
        let child = Command::new(berth_exe())
            .arg("engine")
            .arg("--data-root")
            .arg(&self.data_root)
            .arg("--run-root")
            .arg(&self.run_root)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn berth engine");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some((200, _)) = raw_get(&self.socket(), "/_ping") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "berth engine exited with {status} before answering:\n{}",
                    self.log_text()
                );
            }
            if started.elapsed() > Duration::from_secs(15) {
                panic!(
                    "berth engine did not answer on {} within 15s:\n{}",
                    self.socket().display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.roots().socket_path()
    }
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
    pub fn run_root(&self) -> &Path {
        &self.run_root
    }
    pub fn roots(&self) -> EngineRoots {
        EngineRoots::new(&self.data_root, &self.run_root)
    }
    /// `unix:///…/berth.sock`, for `docker -H`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    pub fn client(&self) -> EngineClient {
        EngineClient::new(self.socket())
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `berth` command aimed at this engine (`BERTH_DATA_ROOT`/`BERTH_RUN_ROOT` set).
    pub fn berth_command(&self) -> Command {
        let mut command = Command::new(berth_exe());
        command
            .env("BERTH_DATA_ROOT", &self.data_root)
            .env("BERTH_RUN_ROOT", &self.run_root)
            .stdin(Stdio::null());
        command
    }

    /// Run `berth <args>` against this engine and collect its output.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_command().args(args).output().expect("run berth")
    }

    /// Run `berth <args>` in `dir` (a compose project directory).
    pub fn berth_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.berth_command()
            .current_dir(dir)
            .args(args)
            .output()
            .expect("run berth")
    }

    /// The real Docker CLI (`docker` on `PATH`) pointed at this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// `docker -H <this engine>` with its own client config, for callers that set stdin or
    /// a timeout themselves.
    pub fn docker_command(&self) -> Command {
        let mut command = Command::new(super::precondition::tool("docker"));
        command
            .arg("-H")
            .arg(self.docker_host())
            .env("DOCKER_CONFIG", self.temp_path().join("docker-config"));
        command
    }

    fn temp_path(&self) -> PathBuf {
        self.data_root
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Send SIGTERM and wait for the engine to exit (up to 10 s); its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the test engine is not running");
        signal(child.id(), libc::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for berth engine") {
                return status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                panic!("berth engine ignored SIGTERM for 10s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the engine and start a new one on the same roots.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "berth engine exited with {status}:\n{}",
            self.log_text()
        );
        self.launch();
    }

    /// Start the engine again on the same roots after `stop` or `crash`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the test engine is already running");
        self.launch();
    }

    /// Simulate a crash: SIGKILL, so the engine cleans nothing up (socket and pid file stay).
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("the test engine is not running");
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }

    /// Remove every container (with its anonymous volumes) and network through the API.
    /// Returns what was met: problems, container IDs, and bridge links of the networks (with
    /// whether each is the engine's default bridge, which outlives its engine like `docker0`).
    fn remove_everything(&self) -> Cleanup {
        let client = self.client();
        block_on(async move {
            let mut problems = Vec::new();
            let mut ids = Vec::new();
            let mut bridges = Vec::new();
            match client.list_containers(true, &[]).await {
                Ok(containers) => {
                    for c in containers {
                        ids.push(c.id.clone());
                        if let Err(e) = client.remove_container(&c.id, true, true).await {
                            problems.push(format!("remove container {}: {e}", c.id));
                        }
                    }
                }
                // Before the container verbs exist the engine answers 404; nothing to clean then.
                Err(berth::engine::api::client::ClientError::Api { status: 404, .. }) => {}
                Err(e) => problems.push(format!("list containers: {e}")),
            }
            match client.list_networks(&[]).await {
                Ok(networks) => {
                    for n in networks {
                        if n.driver == "bridge" && n.id.len() >= 12 {
                            bridges.push((format!("br-{}", &n.id[..12]), n.name == "bridge"));
                        }
                        if matches!(n.name.as_str(), "bridge" | "host" | "none") {
                            continue;
                        }
                        if let Err(e) = client.remove_network(&n.id).await {
                            problems.push(format!("remove network {}: {e}", n.name));
                        }
                    }
                }
                Err(e) => problems.push(format!("list networks: {e}")),
            }
            Cleanup {
                problems,
                container_ids: ids,
                bridges,
            }
        })
    }
}

/// What `remove_everything` met, for the leftover checks after the engine stops.
struct Cleanup {
    problems: Vec<String>,
    container_ids: Vec<String>,
    /// Bridge link name and whether it belongs to the default `bridge` network.
    bridges: Vec<(String, bool)>,
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a PID this fixture started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// What of berth's firewall is still there for `bridge` (its nftables table, its tagged iptables
/// rules), removed now; the descriptions of what was found.
pub fn remove_firewall(bridge: &str) -> Vec<String> {
    let mut found = Vec::new();
    let table = berth::network::firewall::table_name(bridge);
    let listed = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .is_ok_and(|o| o.status.success());
    if listed {
        found.push(format!("nftables table ip {table} left"));
    }
    let tag = berth::network::firewall::rule_tag(bridge);
    for save in ["iptables-save", "iptables-legacy-save", "iptables-nft-save"] {
        let text = Command::new(save)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if text.contains(&tag) {
            found.push(format!("{save} shows rules tagged {tag}"));
        }
    }
    found.dedup();
    if !found.is_empty() {
        let _ = berth::network::firewall::remove(bridge);
    }
    found
}

/// Mount points at or below `root`, deepest first (so they can be unmounted in order).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let prefix = root.to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // mountinfo escapes spaces and the like as octal; our temp paths have none.
        .filter(|mp| *mp == prefix || mp.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
}

/// Cgroup directories (any hierarchy) still named after one of these containers.
pub fn cgroups_of(container_ids: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let hierarchies: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    for id in container_ids {
        for base in hierarchies
            .iter()
            .chain(std::iter::once(&PathBuf::from("/sys/fs/cgroup")))
        {
            let dir = base.join("berth").join(id);
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}

/// PIDs of processes (other than us) whose command line or root mentions `root`: shims and
/// containers the engine started for this test.
pub fn processes_under(root: &Path) -> Vec<(u32, String)> {
    let needle = root.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let root_link = std::fs::read_link(entry.path().join("root"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if cmdline.contains(&needle) || root_link.starts_with(&needle) {
            found.push((pid, cmdline.trim().to_string()));
        }
    }
    found
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        let mut leftovers = Vec::new();
        let mut container_ids = Vec::new();
        let mut bridges = Vec::new();
        if self.child.is_some() {
            let cleanup = self.remove_everything();
            leftovers.extend(cleanup.problems);
            container_ids = cleanup.container_ids;
            bridges = cleanup.bridges;
            let status = self.stop();
            if !status.success() {
                leftovers.push(format!("berth engine exited with {status}"));
            }
        }
        let temp_root = self.temp_path();
        // Give shims a moment to exit after their containers were removed.
        let started = Instant::now();
        let mut processes = processes_under(&temp_root);
        while !processes.is_empty() && started.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
            processes = processes_under(&temp_root);
        }
        for (pid, cmdline) in &processes {
            leftovers.push(format!("process {pid} still running: {cmdline}"));
            signal(*pid, libc::SIGKILL);
        }
        for (bridge, is_default) in &bridges {
            if Path::new("/sys/class/net").join(bridge).exists() {
                if !is_default {
                    leftovers.push(format!("bridge {bridge} left"));
                }
                let _ = Command::new("ip").args(["link", "del", bridge]).status();
            }
            // The default bridge keeps its rules while it lives (as docker0 does); a removed
            // network must have taken its own.
            for rule in remove_firewall(bridge) {
                if !is_default {
                    leftovers.push(rule);
                }
            }
        }
        for dir in cgroups_of(&container_ids) {
            leftovers.push(format!("cgroup left at {}", dir.display()));
        }
        let mounts = mounts_under(&temp_root);
        let mut stuck = false;
        for mount in &mounts {
            leftovers.push(format!("mount left at {}", mount.display()));
            if nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH).is_err() {
                stuck = true;
            }
        }
        if stuck {
            // Deleting a tree with mounts inside would delete through them: keep it for a human.
            if let Some(temp) = self.temp.take() {
                let kept = temp.keep();
                leftovers.push(format!(
                    "kept {} because mounts could not be undone",
                    kept.display()
                ));
            }
        }
        if !leftovers.is_empty() && !std::thread::panicking() {
            panic!(
                "the test engine left things behind:\n  {}\nengine log:\n{}",
                leftovers.join("\n  "),
                self.log_text()
            );
        }
        if std::thread::panicking() {
            eprintln!(
                "---- berth engine log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
