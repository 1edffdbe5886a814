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
        cmd.output().expect("run berth")
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

impl Drop for TestProject {
    fn drop(&mut self) {
        if self.socket().exists() {
            let _ = self.berth(&["down", "-v", "-t", "1", "--remove-orphans"]);
        }
        self.stop_engine();
        // Last resort for a test that failed half-way: unmount what is left under our roots,
        // deepest first, so the temp dirs can go.
        let mut mounts = self.leftover_mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}
