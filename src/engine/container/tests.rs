//! Root-only tests of the container runtime: real shims, real namespaces, real overlayfs, driven
//! through [`ContainerStore`] with a busybox root filesystem as the image's only layer.
//!
//! The shim and init are re-execs of the `berth` binary, so these tests run `target/debug/berth`
//! (set through `BERTH_SELF_EXE`); build it first (`cargo build`), as `cargo test` does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::spec::{MountKind, MountSpec};
use super::state::Status;
use super::*;
use crate::engine::api::types::{ContainerCreateRequest, ImageContainerConfig};
use crate::engine::image::ImageRecord;

#[path = "../../../tests/common/rootfs.rs"]
mod rootfs;

static SET_EXE: Once = Once::new();

fn newest_source_mtime(dir: &Path) -> i64 {
    let mut newest = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            // Test-only files are not part of the binary, so cargo does not relink it for them.
            let m = if p.is_dir() {
                newest_source_mtime(&p)
            } else if p.file_name().is_some_and(|n| n == "tests.rs") {
                0
            } else {
                e.metadata().map(|m| m.mtime()).unwrap_or(0)
            };
            newest = newest.max(m);
        }
    }
    newest
}

/// Point the engine at `target/debug/berth` and refuse to run against a stale build.
fn use_berth_binary() {
    SET_EXE.call_once(|| {
        let test_exe = std::env::current_exe().expect("current exe");
        let berth = test_exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|d| d.join("berth"))
            .expect("target dir");
        let built = std::fs::metadata(&berth)
            .unwrap_or_else(|_| panic!("{} is missing: run `cargo build` first", berth.display()))
            .mtime();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        assert!(
            built >= newest_source_mtime(&src),
            "{} is older than the sources: run `cargo build` first",
            berth.display()
        );
        std::env::set_var("BERTH_SELF_EXE", &berth);
    });
}

/// Temporary roots, a busybox rootfs and a store; kills and removes whatever the test left.
struct TestEnv {
    tmp: tempfile::TempDir,
    store: ContainerStore,
    rootfs: PathBuf,
}

impl TestEnv {
    fn new() -> Self {
        use_berth_binary();
        let tmp = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .expect("tempdir");
        let rootfs = tmp.path().join("image-rootfs");
        rootfs::build_busybox_rootfs(&rootfs).expect("busybox rootfs");
        let roots = EngineRoots::new(tmp.path().join("data"), tmp.path().join("run"));
        let store = ContainerStore::open(&roots).expect("open store");
        Self { tmp, store, rootfs }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn image(&self) -> ImageRecord {
        ImageRecord {
            id: "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            repo_tags: vec!["busybox:test".into()],
            repo_digests: vec![],
            config: ImageContainerConfig {
                env: Some(vec!["PATH=/bin:/usr/bin".into()]),
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            },
            created: String::new(),
            architecture: "amd64".into(),
            os: "linux".into(),
            size: 0,
            diff_ids: vec![],
        }
    }

    fn plan(&self) -> StartPlan {
        StartPlan {
            lower_dirs: vec![self.rootfs.clone()],
            ..Default::default()
        }
    }

    async fn create(&self, name: Option<&str>, req: ContainerCreateRequest) -> String {
        self.store
            .create(name, req, &self.image())
            .await
            .expect("create container")
            .id
    }

    async fn run_sh(&self, script: &str) -> String {
        let id = self.create(None, sh(script)).await;
        self.store.start(&id, self.plan()).await.expect("start");
        id
    }

    fn log_text(&self, id: &str, stream: &str) -> String {
        let text = std::fs::read_to_string(self.store.log_path(id)).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<logs::JsonLogLine>(l).ok())
            .filter(|l| l.stream == stream)
            .map(|l| l.log)
            .collect()
    }

    /// Host mounts that mention this test's roots (there must never be any).
    fn leaked_mounts(&self) -> Vec<String> {
        let root = self.root().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&root))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for id in self.store.ids() {
            let paths = self.store.cgroup_paths(&id);
            let st = self.store.state(&id);
            st.init.signal(libc::SIGKILL);
            cgroup::kill_all(&paths, Duration::from_secs(5));
            st.shim.signal(libc::SIGKILL);
            let _ = cgroup::remove(&paths);
        }
    }
}

fn sh(script: &str) -> ContainerCreateRequest {
    ContainerCreateRequest {
        image: "busybox:test".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_the_json_log_and_the_exit_code_is_recorded() {
    let env = TestEnv::new();
    let id = env.run_sh("echo hi; echo oops >&2; exit 3").await;
    let code = tokio::time::timeout(Duration::from_secs(20), env.store.wait(&id))
        .await
        .expect("wait timed out")
        .expect("wait");
    assert_eq!(code, 3, "log: {}", env.log_text(&id, "stderr"));
    assert_eq!(env.log_text(&id, "stdout"), "hi\n");
    assert_eq!(env.log_text(&id, "stderr"), "oops\n");
    let raw = std::fs::read_to_string(env.store.log_path(&id)).expect("log file");
    let first: serde_json::Value =
        serde_json::from_str(raw.lines().next().expect("a line")).expect("json line");
    assert!(first["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));

    let state = env.store.state(&id);
    assert_eq!((state.status, state.exit_code), (Status::Exited, 3));
    let summary = env
        .store
        .list(true, &ContainerFilters::default(), &|_| String::new());
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0].status.starts_with("Exited (3) "),
        "{}",
        summary[0].status
    );
    assert!(env
        .store
        .list(false, &ContainerFilters::default(), &|_| String::new())
        .is_empty());

    let mut rx = env
        .store
        .logs(
            &id,
            LogOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .expect("logs");
    let mut got = Vec::new();
    while let Some(c) = rx.recv().await {
        got.push((c.stream, String::from_utf8_lossy(&c.bytes).into_owned()));
    }
    assert_eq!(
        got,
        vec![
            (LogStream::Stdout, "hi\n".to_string()),
            (LogStream::Stderr, "oops\n".to_string())
        ]
    );
    assert!(
        !env.store.cgroup_paths(&id).iter().any(|p| p.exists()),
        "cgroup left after exit"
    );
    assert_eq!(env.leaked_mounts(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_sees_its_own_pid_namespace_hostname_mounts_and_caps() {
    let env = TestEnv::new();
    let id = env
        .run_sh(
            "echo pid=$$; echo host=$(hostname); grep -E '^Cap(Eff|Bnd)' /proc/self/status; \
             echo x > /dev/null && echo devnull-ok; head -c 4 /dev/zero | wc -c; \
             touch /sys/probe 2>&1; ls /proc/1/exe >/dev/null && echo proc-ok; \
             cat /proc/self/mounts; echo user=$(id -u); echo cwd=$(pwd)",
        )
        .await;
    assert_eq!(env.store.wait(&id).await.expect("wait"), 0);
    let out = env.log_text(&id, "stdout");
    let err = env.log_text(&id, "stderr");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains(&format!("host={}\n", &id[..12])), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("devnull-ok\n") && out.contains("4\n") && out.contains("proc-ok"));
    assert!(
        (out.clone() + &err).contains("Read-only file system"),
        "/sys is writable: {out}{err}"
    );
    assert!(out.contains("user=0\n") && out.contains("cwd=/\n"), "{out}");
    let mounts: Vec<&str> = out.lines().filter(|l| l.split(' ').count() == 6).collect();
    let target = |m: &str| m.split(' ').nth(1).unwrap_or("").to_string();
    let targets: Vec<String> = mounts.iter().map(|m| target(m)).collect();
    for wanted in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hostname",
    ] {
        assert!(
            targets.iter().any(|t| t == wanted),
            "no {wanted} in {targets:?}"
        );
    }
    assert!(mounts
        .iter()
        .any(|m| m.starts_with("overlay / overlay") && m.contains("lowerdir=l/0")));
    assert!(mounts
        .iter()
        .any(|m| target(m) == "/sys" && m.contains(" ro,")));
    assert!(mounts
        .iter()
        .any(|m| target(m) == "/dev/shm" && m.contains("size=65536k")));
    assert!(mounts
        .iter()
        .any(|m| target(m) == "/proc/sys" && m.contains(" ro,")));
    for masked in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        if Path::new(masked).exists() {
            assert!(
                mounts.iter().any(|m| target(m) == masked),
                "{masked} not masked"
            );
        }
    }
    // Nothing of the host's mount table (its root fs, /work, the test's roots) shows through.
    let host_root_dev = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/"))
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with(&format!("{host_root_dev} ")) && target(m) != "/etc/hostname"),
        "host mounts leaked: {mounts:?}"
    );
    assert_eq!(env.leaked_mounts(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_from_the_containers_passwd_is_used_with_no_effective_caps() {
    let env = TestEnv::new();
    let mut req = sh("id; grep -E '^Cap(Eff|Bnd)' /proc/self/status; echo home=$HOME");
    req.user = "nobody".into();
    req.working_dir = "/work/dir".into();
    let id = env.create(None, req).await;
    env.store.start(&id, env.plan()).await.expect("start");
    assert_eq!(env.store.wait(&id).await.expect("wait"), 0);
    let out = env.log_text(&id, "stdout");
    assert!(
        out.contains("uid=65534(nobody) gid=65534(nogroup)"),
        "{out}"
    );
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("home=/nonexistent\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_start_with_dockers_message_and_leaves_nothing() {
    let env = TestEnv::new();
    let req = ContainerCreateRequest {
        image: "busybox:test".into(),
        cmd: Some(vec!["nosuchcmd".into(), "arg".into()]),
        ..Default::default()
    };
    let id = env.create(Some("broken"), req).await;
    let err = env.store.start(&id, env.plan()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot start container broken: exec: \"nosuchcmd\": executable file not found in $PATH"
    );
    assert_eq!(err.http_status(), 400);
    let state = env.store.state(&id);
    assert_eq!(state.status, Status::Created);
    assert!(!state.shim.alive() && !state.init.alive());
    for p in env.store.cgroup_paths(&id) {
        assert!(!p.exists(), "cgroup {} left behind", p.display());
    }
    assert_eq!(env.leaked_mounts(), Vec::<String>::new());

    let req = ContainerCreateRequest {
        image: "busybox:test".into(),
        cmd: Some(vec!["/nope/missing".into()]),
        ..Default::default()
    };
    let id = env.create(None, req).await;
    let err = env.store.start(&id, env.plan()).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("exec: \"/nope/missing\": stat /nope/missing: no such file or directory"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let env = TestEnv::new();
    let stubborn = env
        .run_sh("trap '' TERM; echo ready; while :; do sleep 0.1; done")
        .await;
    let polite = env
        .run_sh("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done")
        .await;
    wait_for("both ready", Duration::from_secs(10), || {
        env.log_text(&stubborn, "stdout").contains("ready")
            && env.log_text(&polite, "stdout").contains("ready")
    })
    .await;

    let t0 = Instant::now();
    assert!(env.store.stop(&polite, Some(10)).await.expect("stop"));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "TERM was not delivered"
    );
    assert_eq!(env.store.state(&polite).exit_code, 0);
    assert!(env.log_text(&polite, "stdout").contains("got-term"));

    let t0 = Instant::now();
    assert!(env.store.stop(&stubborn, Some(1)).await.expect("stop"));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "SIGKILL came late: {took:?}");
    let state = env.store.state(&stubborn);
    assert_eq!((state.status, state.exit_code), (Status::Exited, 137));
    assert!(!env
        .store
        .stop(&stubborn, Some(1))
        .await
        .expect("second stop"));
    for p in env.store.cgroup_paths(&stubborn) {
        assert!(!p.exists(), "cgroup {} left after stop", p.display());
    }
}

/// Not a test on its own: the "engine" process of `the_container_outlives_its_engine`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for the_container_outlives_its_engine"]
async fn engine_process_for_survival_test() {
    let Some(root) = std::env::var_os("BERTH_TEST_ENGINE_ROOT").map(PathBuf::from) else {
        return;
    };
    use_berth_binary();
    let roots = EngineRoots::new(root.join("data"), root.join("run"));
    let store = ContainerStore::open(&roots).expect("open store");
    let image = ImageRecord {
        id: "sha256:00".into(),
        repo_tags: vec![],
        repo_digests: vec![],
        config: ImageContainerConfig::default(),
        created: String::new(),
        architecture: String::new(),
        os: String::new(),
        size: 0,
        diff_ids: vec![],
    };
    let rec = store
        .create(
            None,
            sh("echo started; while [ ! -e /signal/finish ]; do sleep 0.1; done; exit 7"),
            &image,
        )
        .await
        .expect("create");
    store
        .start(
            &rec.id,
            StartPlan {
                lower_dirs: vec![root.join("image-rootfs")],
                mounts: vec![MountSpec {
                    kind: MountKind::Bind,
                    source: root.join("signal"),
                    destination: "/signal".into(),
                    read_only: true,
                    data: String::new(),
                }],
                ..Default::default()
            },
        )
        .await
        .expect("start");
    std::fs::write(root.join("started-id"), &rec.id).expect("write id");
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_outlives_its_engine_and_its_exit_is_still_recorded() {
    let env = TestEnv::new();
    let mut engine = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "engine::container::tests::engine_process_for_survival_test",
            "--ignored",
            "--nocapture",
        ])
        .env("BERTH_TEST_ENGINE_ROOT", env.root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn engine process");
    std::fs::create_dir_all(env.root().join("signal")).expect("mkdir signal");
    let id_file = env.root().join("started-id");
    wait_for(
        "the engine process to start a container",
        Duration::from_secs(30),
        || id_file.exists(),
    )
    .await;
    let id = std::fs::read_to_string(&id_file).expect("id");
    engine.kill().expect("kill engine");
    engine.wait().expect("reap engine");

    let state = env.store.state(&id);
    assert_eq!(state.status, Status::Running);
    assert!(state.shim.alive(), "shim died with the engine");
    assert!(state.init.alive(), "container died with the engine");
    let shim_ppid = std::fs::read_to_string(format!("/proc/{}/stat", state.shim.pid))
        .ok()
        .and_then(|s| {
            s[s.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()
        })
        .expect("shim ppid");
    assert_ne!(shim_ppid, std::process::id(), "the shim is still our child");

    // Let the container finish while no engine runs: only the shim can record it.
    std::fs::write(env.root().join("signal/finish"), "").expect("signal the container");
    wait_for(
        "the shim to record the exit",
        Duration::from_secs(10),
        || env.store.dir(&id).join("exit.json").exists(),
    )
    .await;
    // A new engine on the same roots finds it exited with its code.
    let store = ContainerStore::open(env.store.roots()).expect("reopen");
    assert_eq!(store.restore().await, vec![id.clone()]);
    let state = store.state(&id);
    assert_eq!((state.status, state.exit_code), (Status::Exited, 7));
    assert_eq!(env.log_text(&id, "stdout"), "started\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_a_running_container_unless_forced_and_leaves_nothing() {
    let env = TestEnv::new();
    let id = env.run_sh("sleep 1000 & sleep 1000; wait").await;
    let err = env.store.remove(&id, false).await.unwrap_err();
    assert_eq!(err.http_status(), 409);
    assert!(err.to_string().contains("container is running"), "{err}");
    let state = env.store.state(&id);
    let cgroups = env.store.cgroup_paths(&id);
    assert!(cgroups.iter().all(|p| p.exists()));
    wait_for(
        "sh and two sleeps in the cgroup",
        Duration::from_secs(10),
        || cgroup::pids(&cgroups).len() >= 3,
    )
    .await;
    let pids = cgroup::pids(&cgroups);

    env.store.remove(&id, true).await.expect("force remove");
    assert!(!state.init.alive() && !state.shim.alive());
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
    for p in &cgroups {
        assert!(!p.exists(), "cgroup {} left", p.display());
    }
    assert!(!env.store.dir(&id).exists());
    assert!(matches!(
        env.store.resolve_id(&id),
        Err(ContainerError::NotFound(_))
    ));
    assert_eq!(env.leaked_mounts(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_prefixes_filters_and_inspect() {
    let env = TestEnv::new();
    let mut req = sh("exit 0");
    req.labels = Some([("com.docker.compose.project".to_string(), "demo".to_string())].into());
    req.env = Some(vec!["A=1".into()]);
    let id = env.create(Some("web-1"), req.clone()).await;
    let err = env
        .store
        .create(Some("/web-1"), req, &env.image())
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 409);
    assert!(err.to_string().starts_with(&format!(
        "container name \"/web-1\" is already in use by container \"{id}\""
    )));
    let other = env.create(None, sh("exit 0")).await;
    assert_ne!(id, other);

    assert_eq!(env.store.resolve_id("web-1").unwrap(), id);
    assert_eq!(env.store.resolve_id("/web-1").unwrap(), id);
    assert_eq!(env.store.resolve_id(&id[..12]).unwrap(), id);
    assert!(matches!(
        env.store.resolve_id("nope"),
        Err(ContainerError::NotFound(_))
    ));

    let filters =
        ContainerFilters::from_docker_json(r#"{"label":["com.docker.compose.project=demo"]}"#)
            .unwrap();
    let listed = env.store.list(true, &filters, &|_| String::new());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].names, vec!["/web-1"]);
    assert_eq!(listed[0].state, "created");
    assert_eq!(listed[0].status, "Created");

    let inspect = env.store.inspect(&id, &|_| String::new()).expect("inspect");
    assert_eq!(inspect.name, "/web-1");
    assert_eq!(inspect.path, "sh");
    assert_eq!(inspect.args, vec!["-c", "exit 0"]);
    assert_eq!(inspect.config.hostname, &id[..12]);
    assert_eq!(
        inspect.config.env,
        Some(vec!["PATH=/bin:/usr/bin".to_string(), "A=1".to_string()])
    );
    assert_eq!(inspect.state.status, "created");
    assert!(inspect.log_path.ends_with(&format!("{id}-json.log")));

    let err = env
        .store
        .create(Some("bad name"), sh("true"), &env.image())
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_end_when_the_container_exits() {
    let env = TestEnv::new();
    let id = env
        .run_sh("for i in 1 2 3; do echo line$i; sleep 0.2; done")
        .await;
    let mut rx = env
        .store
        .logs(
            &id,
            LogOptions {
                follow: true,
                stdout: true,
                stderr: true,
                timestamps: true,
                ..Default::default()
            },
        )
        .expect("logs");
    let mut lines = Vec::new();
    let collected = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(c) = rx.recv().await {
            lines.push(String::from_utf8_lossy(&c.bytes).into_owned());
        }
    })
    .await;
    assert!(collected.is_ok(), "follow did not end: {lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        let (time, text) = l.split_once(' ').expect("timestamp prefix");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        assert_eq!(text, format!("line{}\n", i + 1));
    }
    let mut tail = env
        .store
        .logs(
            &id,
            LogOptions {
                stdout: true,
                tail: Some(1),
                ..Default::default()
            },
        )
        .expect("logs");
    assert_eq!(tail.recv().await.expect("one").bytes, b"line3\n".to_vec());
    assert!(tail.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_and_a_prepared_network_namespace_are_used() {
    let env = TestEnv::new();
    let ns_name = format!("berth-rt-{}", &hex::encode(rand::random::<[u8; 4]>()));
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &ns_name])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    struct NetnsGuard(String);
    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _guard = NetnsGuard(ns_name.clone());
    let netns = PathBuf::from("/run/netns").join(&ns_name);
    let ns_inode = std::fs::metadata(&netns).expect("netns").ino();

    let shared = env.root().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("in"), "from-host").expect("write");
    let ro = env.root().join("ro");
    std::fs::create_dir_all(&ro).expect("mkdir");
    let id = env
        .create(
            None,
            sh(
                "readlink /proc/self/ns/net; cat /data/in; echo from-container > /data/out; \
                touch /ro/x 2>&1; cat /etc/hosts; \
                echo port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); \
                ip -o link | wc -l",
            ),
        )
        .await;
    let mut plan = env.plan();
    plan.netns = Some(netns);
    plan.hosts_file = Some("127.0.0.1\tlocalhost\n10.1.2.3\tpeer\n".into());
    plan.mounts = vec![
        MountSpec {
            kind: MountKind::Bind,
            source: shared.clone(),
            destination: "/data".into(),
            read_only: false,
            data: String::new(),
        },
        MountSpec {
            kind: MountKind::Bind,
            source: ro,
            destination: "/ro".into(),
            read_only: true,
            data: String::new(),
        },
    ];
    env.store.start(&id, plan).await.expect("start");
    assert_eq!(env.store.wait(&id).await.expect("wait"), 0);
    let out = env.log_text(&id, "stdout");
    assert!(out.contains(&format!("net:[{ns_inode}]")), "{out}");
    assert!(out.contains("from-host"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("10.1.2.3\tpeer"), "{out}");
    assert!(out.contains("port_start=0\n"), "{out}");
    // Only `lo` in a fresh namespace.
    assert!(out.trim_end().ends_with('1'), "{out}");
    assert_eq!(
        std::fs::read_to_string(shared.join("out")).expect("written through the bind"),
        "from-container\n"
    );
}
