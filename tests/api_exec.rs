//! Exec in a running container through the engine API: the real Docker CLI (`docker exec`, which
//! upgrades the connection) and berth's client (plain streamed body, detached start, inspect);
//! and the healthchecks that run on it (`docker run --health-cmd`).
//! Containers use the host network so the tests exercise exec, not the bridge.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth::engine::api::client::{ClientError, LogStream};
use berth::engine::wire::ExecConfig;
use common::engine::TestEngine;
use common::registry::populate_busybox_rootfs;
use futures_util::StreamExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn busybox_image(engine: &TestEngine) {
    let base = engine.data_root().parent().unwrap().join("image-src");
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let tar: PathBuf = base.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:1"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
}

fn run_sleeper(engine: &TestEngine, name: &str) {
    let out = engine.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "local/busybox:1",
        "sleep",
        "300",
    ]);
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
}

#[test]
fn docker_cli_exec_streams_output_and_passes_the_exit_code() {
    let engine = TestEngine::start();
    busybox_image(&engine);
    run_sleeper(&engine, "target");

    let out = engine.docker(&[
        "exec",
        "target",
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(text(&out.stderr), "oops\n");

    // Same PID namespace (the container's init is `sleep`, the exec'd shell is not PID 1), same
    // mount namespace (the container's /etc/hostname), same cgroup.
    let out = engine.docker(&[
        "exec",
        "target",
        "sh",
        "-c",
        "echo $$; tr '\\0' ' ' </proc/1/cmdline; echo; \
         [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] && echo same-cgroup",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_ne!(lines[0], "1", "{stdout}");
    assert_eq!(lines[1].trim(), "sleep 300");
    assert_eq!(lines[2], "same-cgroup");

    // User, working directory and environment: the container's, overridden per exec.
    let out = engine.docker(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "target",
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $FOO; grep CapEff /proc/self/status; grep Seccomp: /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(&lines[..4], ["1000", "1000", "/tmp", "bar"], "{stdout}");
    // A non-root user keeps no effective capabilities, as in Docker.
    assert!(lines[4].ends_with("0000000000000000"), "{stdout}");
    // The same seccomp filter as the container's init (mode 2: filtering).
    assert_eq!(
        lines[5].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "{stdout}"
    );

    let out = engine.docker(&["exec", "target", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("executable file not found in $PATH"),
        "{}",
        text(&out.stderr)
    );

    let out = engine.docker(&["stop", "-t", "1", "target"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&["exec", "target", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    let out = engine.docker(&["rm", "target"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn client_exec_attached_detached_and_inspect() {
    let engine = TestEngine::start();
    busybox_image(&engine);
    run_sleeper(&engine, "box");
    let client = engine.client();
    common::engine::block_on(async move {
        let exec_id = client
            .create_exec(
                "box",
                &ExecConfig {
                    attach_stdout: true,
                    attach_stderr: true,
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "echo out; echo err >&2; exit 7".into(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        let before = client.inspect_exec(&exec_id).await.expect("inspect");
        assert!(!before.running);
        assert_eq!(before.exit_code, None);
        assert_eq!(before.process_config.entrypoint, "sh");

        let mut stream = client.start_exec(&exec_id).await.expect("start exec");
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            match chunk.stream {
                LogStream::Stderr => err.push_str(&text(&chunk.bytes)),
                _ => out.push_str(&text(&chunk.bytes)),
            }
        }
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
        let after = client.inspect_exec(&exec_id).await.expect("inspect");
        assert!(!after.running);
        assert_eq!(after.exit_code, Some(7));
        assert!(after.pid > 0);

        // Starting twice is refused.
        match client.start_exec(&exec_id).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 409);
                assert!(message.contains("already been started"), "{message}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("second start accepted"),
        }

        // Detached: runs in the background; its effect and exit code show up later.
        let exec_id = client
            .create_exec(
                "box",
                &ExecConfig {
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "sleep 0.3; touch /tmp/detached".into(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        client
            .start_exec_detached(&exec_id)
            .await
            .expect("detached start");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = client.inspect_exec(&exec_id).await.expect("inspect");
            if let Some(code) = state.exit_code {
                assert_eq!(code, 0);
                break;
            }
            assert!(Instant::now() < deadline, "detached exec never finished");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let check = client
            .create_exec(
                "box",
                &ExecConfig {
                    cmd: Some(vec!["test".into(), "-f".into(), "/tmp/detached".into()]),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        let mut stream = client.start_exec(&check).await.expect("start");
        while stream.next().await.is_some() {}
        assert_eq!(
            client.inspect_exec(&check).await.unwrap().exit_code,
            Some(0)
        );

        // The exec's environment never shows in a process's command line (readable by anyone).
        let token = format!("s3cr3t-{}", std::process::id());
        let exec_id = client
            .create_exec(
                "box",
                &ExecConfig {
                    env: Some(vec![format!("TOKEN={token}")]),
                    cmd: Some(vec!["sleep".into(), "1".into()]),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        client.start_exec_detached(&exec_id).await.expect("start");
        // Poll under a deadline: the exec runs for a second, long enough to be seen running.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !client.inspect_exec(&exec_id).await.unwrap().running {
            assert!(std::time::Instant::now() < deadline, "the exec never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            assert!(
                !text(&cmdline).contains(&token),
                "{:?} shows the exec's env",
                entry.path()
            );
        }

        // Bad input: unknown exec, no command, unknown container.
        match client.inspect_exec("nope").await {
            Err(ClientError::Api { status, .. }) => assert_eq!(status, 404),
            other => panic!("unexpected {other:?}"),
        }
        match client.create_exec("box", &ExecConfig::default()).await {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 400);
                assert!(message.contains("no exec command specified"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match client
            .create_exec(
                "ghost",
                &ExecConfig {
                    cmd: Some(vec!["true".into()]),
                    ..Default::default()
                },
            )
            .await
        {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 404);
                assert!(message.contains("ghost"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let out = engine.docker(&["rm", "-f", "box"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Docker CLI healthcheck flags reach the engine: the probe runs through exec on its schedule,
/// inspect and ps show the result, and the change is announced as a `health_status` event.
#[test]
fn docker_cli_healthcheck_flags_run_probes_and_send_events() {
    let engine = TestEngine::start();
    busybox_image(&engine);
    let client = engine.client();
    let docker_host = engine.docker_host();
    let events = common::engine::block_on(async move {
        let mut stream = client
            .events(&[("container", "probed")])
            .await
            .expect("events");
        let out = std::process::Command::new(common::precondition::tool("docker"))
            .args([
                "-H",
                &docker_host,
                "run",
                "-d",
                "--name",
                "probed",
                "--network",
                "host",
            ])
            .args(["--health-cmd", "test -f /tmp/ok && echo fine"])
            .args(["--health-interval", "200ms", "--health-retries", "50"])
            .args([
                "local/busybox:1",
                "sh",
                "-c",
                "sleep 1; touch /tmp/ok; exec sleep 300",
            ])
            .output()
            .expect("docker run");
        assert!(out.status.success(), "docker run: {}", text(&out.stderr));
        let mut actions = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, stream.next()).await {
            actions.push(event.action.clone());
            if event.action.starts_with("health_status") {
                break;
            }
        }
        actions
    });
    assert_eq!(
        events.last().map(String::as_str),
        Some("health_status: healthy"),
        "{events:?}"
    );

    let out = engine.docker(&["inspect", "--format", "{{json .State.Health}}", "probed"]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health json");
    assert_eq!(health["Status"], "healthy", "{health}");
    let log = health["Log"].as_array().expect("log");
    let last = log.last().expect("a probe result");
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(0), Some("fine\n"))
    );
    let out = engine.docker(&[
        "inspect",
        "--format",
        "{{json .Config.Healthcheck}}",
        "probed",
    ]);
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config json");
    assert_eq!(config["Test"][0], "CMD-SHELL", "{config}");
    assert_eq!(config["Interval"], 200_000_000, "{config}");
    let out = engine.docker(&["ps", "--format", "{{.Status}}", "--filter", "name=probed"]);
    assert!(
        text(&out.stdout).contains("(healthy)"),
        "{}",
        text(&out.stdout)
    );

    // --no-healthcheck disables the image's or any default check: no Health at all.
    let out = engine.docker(&[
        "run",
        "-d",
        "--name",
        "unprobed",
        "--network",
        "host",
        "--no-healthcheck",
        "local/busybox:1",
        "sleep",
        "300",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&["inspect", "--format", "{{json .State.Health}}", "unprobed"]);
    assert_eq!(text(&out.stdout).trim(), "null");

    let out = engine.docker(&["rm", "-f", "probed", "unprobed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
