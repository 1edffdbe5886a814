//! The container runtime behind a real `berth engine`: containers outlive an engine crash, and
//! the next engine records their exits (while it was down, or after it reattached), detaches
//! their networks and reports `die`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth::engine::api::client::EngineClient;
use berth::engine::wire::{ContainerCreateRequest, HostConfig};
use common::engine::{block_on, TestEngine};
use common::rootfs::build_busybox_rootfs;

fn import_busybox(client: EngineClient, dir: &Path) {
    let rootfs = dir.join("rootfs");
    build_busybox_rootfs(&rootfs).expect("busybox rootfs");
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    block_on(async move { client.import_file(&tar, "rt-busybox:latest").await })
        .expect("import busybox");
}

/// A container that says `up` and exits with `code` once `/signal/<name>` exists.
fn waiting_container(signal_dir: &Path, name: &str, code: i32) -> ContainerCreateRequest {
    ContainerCreateRequest {
        image: "rt-busybox:latest".into(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo up; while [ ! -e /signal/{name} ]; do sleep 0.1; done; exit {code}"),
        ]),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/signal:ro", signal_dir.display())]),
            network_mode: "none".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn containers_outlive_an_engine_crash_and_their_exits_are_recorded() {
    let mut engine = TestEngine::start();
    let work = tempfile::tempdir().expect("tempdir");
    let signal = work.path().join("signal");
    std::fs::create_dir_all(&signal).expect("mkdir");
    import_busybox(engine.client(), work.path());

    let client = engine.client();
    let (early, late) = {
        let (a, b) = (
            waiting_container(&signal, "early", 5),
            waiting_container(&signal, "late", 6),
        );
        block_on(async move {
            let early = client.create_container(Some("early"), &a).await?.id;
            let late = client.create_container(Some("late"), &b).await?.id;
            client.start_container(&early).await?;
            client.start_container(&late).await?;
            Ok::<_, berth::engine::api::client::ClientError>((early, late))
        })
        .expect("create and start")
    };
    let netns_dir = engine.run_root().join("netns");
    let netns = |id: &str| netns_dir.join(id);
    assert!(netns(&early).exists() && netns(&late).exists());

    engine.crash();
    // `early` finishes while no engine runs: only its shim can record that.
    std::fs::write(signal.join("early"), "").expect("signal early");
    let exit_file = engine
        .data_root()
        .join("containers")
        .join(&early)
        .join("exit.json");
    eventually("the shim to record early's exit", || exit_file.exists());

    engine.start_again();
    let client = engine.client();
    let (early_state, late_state) = {
        let (e, l) = (early.clone(), late.clone());
        block_on(async move {
            let early = client.inspect_container(&e).await?.state;
            let late = client.inspect_container(&l).await?.state;
            Ok::<_, berth::engine::api::client::ClientError>((early, late))
        })
        .expect("inspect")
    };
    assert_eq!(
        (early_state.status.as_str(), early_state.exit_code),
        ("exited", 5)
    );
    assert!(
        late_state.running,
        "late did not survive the crash: {late_state:?}"
    );
    // The restarted engine detaches the network of the container that died meanwhile (its exit
    // handler does, after announcing `die`).
    eventually("early's netns to be detached", || !netns(&early).exists());

    // `late` exits under the new engine, which reattached to its shim.
    std::fs::write(signal.join("late"), "").expect("signal late");
    let client = engine.client();
    let l = late.clone();
    let code = block_on(async move { client.wait_container(&l).await }).expect("wait late");
    assert_eq!(code, 6);
    eventually("late's netns to be detached", || !netns(&late).exists());
    let client = engine.client();
    let listed = block_on(async move { client.list_containers(true, &[]).await }).expect("list");
    let statuses: Vec<(String, String)> = listed
        .iter()
        .map(|c| (c.names[0].clone(), c.status.clone()))
        .collect();
    assert!(
        statuses
            .iter()
            .any(|(n, s)| n == "/early" && s.starts_with("Exited (5) ")),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|(n, s)| n == "/late" && s.starts_with("Exited (6) ")),
        "{statuses:?}"
    );
}

#[test]
fn restart_policies_restart_failures_with_backoff_but_not_user_stops() {
    use berth::engine::wire::RestartPolicy;
    let engine = TestEngine::start();
    let work = tempfile::tempdir().expect("tempdir");
    import_busybox(engine.client(), work.path());
    let with_policy = |script: &str, name: &str, max: i64| ContainerCreateRequest {
        image: "rt-busybox:latest".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        host_config: Some(HostConfig {
            network_mode: "none".into(),
            restart_policy: Some(RestartPolicy {
                name: name.into(),
                maximum_retry_count: max,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let flaky = with_policy("echo run; exit 3", "on-failure", 2);
    let steady = with_policy("echo up; sleep 1000 & wait", "always", 0);
    let client = engine.client();
    let (flaky, steady) = block_on(async move {
        let f = client.create_container(Some("flaky"), &flaky).await?.id;
        let s = client.create_container(Some("steady"), &steady).await?.id;
        client.start_container(&f).await?;
        client.start_container(&s).await?;
        Ok::<_, berth::engine::api::client::ClientError>((f, s))
    })
    .expect("create and start");

    let inspect = |id: &str| {
        let (client, id) = (engine.client(), id.to_string());
        block_on(async move { client.inspect_container(&id).await }).expect("inspect")
    };
    eventually("flaky to use up its two restarts", || {
        let i = inspect(&flaky);
        i.restart_count == 2 && i.state.status == "exited"
    });
    // One run and two restarts, then on-failure:2 gives up: the count stays.
    std::thread::sleep(Duration::from_millis(1500));
    let i = inspect(&flaky);
    assert_eq!((i.restart_count, i.state.exit_code), (2, 3));
    let log = std::fs::read_to_string(&i.log_path).expect("log");
    assert_eq!(log.matches("\"run\\n\"").count(), 3, "{log}");

    // A user stop is final, even for `always`.
    let (client, id) = (engine.client(), steady.clone());
    block_on(async move { client.stop_container(&id, Some(1)).await }).expect("stop");
    std::thread::sleep(Duration::from_millis(1000));
    let i = inspect(&steady);
    assert_eq!((i.state.status.as_str(), i.restart_count), ("exited", 0));
}

/// The API socket is 0660 from the moment it exists, even for an engine started under umask 0
/// (a bind followed by a chmod would show 0777 first): watched from the spawn on.
#[test]
fn the_api_socket_is_never_wider_than_0660() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let temp = tempfile::tempdir().unwrap();
    let (data, run) = (temp.path().join("data"), temp.path().join("run"));
    let socket = run.join("berth.sock");
    let mut cmd = Command::new(common::engine::berth_exe());
    cmd.arg("engine")
        .arg("--data-root")
        .arg(&data)
        .arg("--run-root")
        .arg(&run)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn berth engine");
    let start = Instant::now();
    let mut first_seen = None;
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(m) = std::fs::symlink_metadata(&socket) {
            first_seen = Some((m.mode() & 0o7777, m.uid(), m.gid()));
            break;
        }
        std::hint::spin_loop();
    }
    let later = std::fs::symlink_metadata(&socket).map(|m| m.mode() & 0o7777);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(first_seen, Some((0o660, 0, 0)));
    assert_eq!(later.unwrap(), 0o660);
}
