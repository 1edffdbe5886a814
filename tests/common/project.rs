//! A compose project driven through the real `berth` CLI, as a user would: its own project
//! directory, its own engine roots (the CLI starts the engine by itself), and a Drop that takes
//! everything down and ends the engine it started — even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct TestProject {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub roots: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// A name no other test (or earlier run) uses: `<prefix><pid><counter>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id())
}

impl TestProject {
    /// A project directory holding `compose.yaml` with `compose` as its text.
    pub fn new(prefix: &str, compose: &str) -> Self {
        let name = unique_name(prefix);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("project dir");
        std::fs::write(dir.path().join("compose.yaml"), compose).expect("write compose.yaml");
        let roots = tempfile::Builder::new()
            .prefix("berth-roots-")
            .tempdir()
            .expect("roots dir");
        Self {
            name,
            dir,
            roots,
            env: Vec::new(),
        }
    }

    /// Replace the project's `compose.yaml`.
    pub fn write_compose(&self, text: &str) {
        std::fs::write(self.dir.path().join("compose.yaml"), text).expect("write compose.yaml");
    }

    pub fn data_root(&self) -> PathBuf {
        self.roots.path().join("data")
    }
    pub fn run_root(&self) -> PathBuf {
        self.roots.path().join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_root().join("berth.sock")
    }

    /// Run `berth -p <name> ARGS` in the project directory.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_in(self.dir.path(), true, args)
    }

    /// Run `berth ARGS` in `dir`, with or without `-p <name>`.
    pub fn berth_in(&self, dir: &Path, with_project_name: bool, args: &[&str]) -> Output {
        self.command_in(dir, with_project_name, args)
            .output()
            .expect("run berth")
    }

    /// `berth -p <name> ARGS` in the project directory, not yet run.
    fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.dir.path(), true, args)
    }

    fn command_in(&self, dir: &Path, with_project_name: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        if with_project_name {
            cmd.args(["-p", &self.name]);
        }
        cmd.args(args)
            .current_dir(dir)
            .env("BERTH_DATA_ROOT", self.data_root())
            .env("BERTH_RUN_ROOT", self.run_root())
            .env("NO_COLOR", "1")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `berth ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth import` of the host's busybox-static as a root filesystem tar, tagged `image`.
    #[allow(dead_code)] // not every test binary imports busybox
    pub fn import_busybox(&self, image: &str) {
        let rootfs = tempfile::tempdir().unwrap();
        super::registry::populate_busybox_rootfs(rootfs.path());
        let tar = rootfs.path().with_extension("tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        self.ok(&["import", &tar.to_string_lossy(), image]);
        let _ = std::fs::remove_file(&tar);
    }

    /// `berth ARGS`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            !out.status.success(),
            "berth {args:?} unexpectedly succeeded:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The real Docker CLI client pointed at this project's engine.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .expect("run docker client");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `check` until it returns Some or `timeout` passes.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return Some(v);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// PID of the engine the CLI started for this project, if it runs.
    pub fn engine_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.run_root().join("engine.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Processes whose command line mentions this project's roots (engine, shims, the init
    /// re-exec) or that carry `BERTH_TEST_MARK=<project name>` in their environment (the
    /// containers' workloads: test compose files set it on every service).
    pub fn leftover_processes(&self) -> Vec<String> {
        let roots = self.roots.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let marked = String::from_utf8_lossy(&environ)
                .contains(&format!("BERTH_TEST_MARK={}", self.name));
            if cmdline.contains(&roots) || marked {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }

    /// Mount points under this project's roots.
    pub fn leftover_mounts(&self) -> Vec<String> {
        let roots = self.roots.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&roots))
            .map(str::to_string)
            .collect()
    }

    /// Stop the engine this project's CLI started (by its PID) and wait for it to go.
    pub fn stop_engine(&self) {
        if let Some(pid) = self.engine_pid() {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let gone = self.eventually(Duration::from_secs(10), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
            if gone.is_none() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// What this project's engine made on the host, read from its data root: the marks the sweep
/// after `down` looks for, so that a broken `down` cannot leak unnoticed.
struct HostMarks {
    container_ids: Vec<String>,
    /// Bridge links of the engine's networks, with whether each is the default `bridge` network
    /// (which outlives `down`, as `docker0` does, but not the test).
    bridges: Vec<(String, bool)>,
}

impl TestProject {
    fn host_marks(&self) -> HostMarks {
        let names = |dir: PathBuf| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        };
        let container_ids = names(self.data_root().join("containers"))
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        let bridges = names(self.data_root().join("networks"))
            .iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).ok()?;
                let record: serde_json::Value = serde_json::from_str(&text).ok()?;
                let bridge = record["bridge"].as_str()?.to_string();
                Some((bridge, record["name"] == "bridge"))
            })
            .collect();
        HostMarks {
            container_ids,
            bridges,
        }
    }

    /// After `down` and the engine's exit, remove whatever is still there and name it: processes,
    /// bridges, nftables tables, cgroups and mounts this project made.
    fn sweep(&self, marks: &HostMarks) -> Vec<String> {
        let mut left = Vec::new();
        let processes = || -> Vec<(u32, String)> {
            let mut found = super::engine::processes_under(self.roots.path());
            for line in self.leftover_processes() {
                let (pid, cmd) = line.split_once(": ").unwrap_or((&line, ""));
                if let Ok(pid) = pid.parse::<u32>() {
                    if !found.iter().any(|(p, _)| *p == pid) {
                        found.push((pid, cmd.to_string()));
                    }
                }
            }
            found
        };
        // Shims exit a moment after their containers are removed.
        let _ = self.eventually(Duration::from_secs(3), || {
            processes().is_empty().then_some(())
        });
        let mut stray = processes();
        // Container processes live in their own mount namespace, so neither their command line nor
        // their root names our roots: their containers' cgroups do.
        for dir in super::engine::cgroups_of(&marks.container_ids) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if !stray.iter().any(|(p, _)| *p == pid) {
                    stray.push((pid, format!("in cgroup {}", dir.display())));
                }
            }
        }
        for (pid, cmdline) in stray {
            left.push(format!("process {pid} still running: {cmdline}"));
            // SAFETY: kill(2) on a PID found under this test's own roots, marks or cgroups.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        for (bridge, is_default) in &marks.bridges {
            if Path::new("/sys/class/net").join(bridge).exists() {
                if !is_default {
                    left.push(format!("bridge {bridge} left"));
                }
                let _ = Command::new("ip").args(["link", "del", bridge]).status();
            }
            for rule in super::engine::remove_firewall(bridge) {
                if !is_default {
                    left.push(rule);
                }
            }
        }
        // Cgroups empty once their processes are gone; give the kernel a moment to notice.
        let _ = self.eventually(Duration::from_secs(2), || {
            super::engine::cgroups_of(&marks.container_ids)
                .iter()
                .all(|d| std::fs::remove_dir(d).is_ok())
                .then_some(())
        });
        for dir in super::engine::cgroups_of(&marks.container_ids) {
            left.push(format!("cgroup left at {}", dir.display()));
        }
        for mount in super::engine::mounts_under(self.roots.path()) {
            left.push(format!("mount left at {}", mount.display()));
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
        left
    }
}

impl Drop for TestProject {
    /// Takes the project down with berth's own `down`, stops the engine, then sweeps by the
    /// test's own marks and roots, so that a broken `down` fails the test instead of leaking.
    /// Nothing here panics before the sweep is done (a panic while unwinding would abort).
    fn drop(&mut self) {
        let marks = self.host_marks();
        if self.socket().exists() {
            let down = self
                .command(&["down", "-v", "-t", "1", "--remove-orphans"])
                .output();
            match down {
                Ok(out) if !out.status.success() => eprintln!(
                    "berth down failed in cleanup: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("berth down could not run in cleanup: {e}"),
                Ok(_) => {}
            }
        }
        self.stop_engine();
        let left = self.sweep(&marks);
        if !left.is_empty() && !std::thread::panicking() {
            panic!(
                "project {} left things behind after down:\n  {}",
                self.name,
                left.join("\n  ")
            );
        }
    }
}
