//! Containers and images through the engine API: the real Docker CLI imports a busybox rootfs,
//! creates, starts, waits for, reads the logs of and removes containers; our client does the same
//! and follows logs as they are written. Containers use the host network so that these tests
//! exercise the API and the runtime, not the bridge.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth::engine::api::client::{ClientError, LogStream, LogsOptions};
use berth::engine::wire::{ContainerCreateRequest, HostConfig, LogConfig};
use common::engine::TestEngine;
use common::registry::populate_busybox_rootfs;
use futures_util::StreamExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tar of a busybox root filesystem, written next to the engine's roots.
fn busybox_tar(engine: &TestEngine) -> PathBuf {
    let base = engine.data_root().parent().unwrap().join("image-src");
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let tar = base.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tar
}

fn host_network() -> Option<HostConfig> {
    Some(HostConfig {
        network_mode: "host".into(),
        ..Default::default()
    })
}

#[test]
fn docker_cli_import_create_start_wait_logs_rm() {
    let engine = TestEngine::start();
    let tar = busybox_tar(&engine);
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:1"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    let image_id = text(&out.stdout).trim().to_string();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    // The spooled request body is gone once the import is done.
    let spool = engine.data_root().join("tmp");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);

    let out = engine.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "local/busybox:1");
    let out = engine.docker(&["image", "inspect", "--format", "{{.Id}}", "local/busybox:1"]);
    assert_eq!(text(&out.stdout).trim(), image_id);

    let out = engine.docker(&[
        "create",
        "--name",
        "greeter",
        "--network",
        "host",
        "--label",
        "purpose=test",
        "local/busybox:1",
        "sh",
        "-c",
        "echo hello from berth; echo to stderr >&2; exit 3",
    ]);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let out = engine.docker(&["start", "greeter"]);
    assert!(out.status.success(), "docker start: {}", text(&out.stderr));
    let out = engine.docker(&["wait", "greeter"]);
    assert!(out.status.success(), "docker wait: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3");

    let out = engine.docker(&["logs", "greeter"]);
    assert!(out.status.success(), "docker logs: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from berth\n");
    assert_eq!(text(&out.stderr), "to stderr\n");

    let out = engine.docker(&[
        "ps",
        "-a",
        "--filter",
        "label=purpose=test",
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert!(out.status.success(), "docker ps: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "greeter exited");
    let out = engine.docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}} {{.Name}}",
        "greeter",
    ]);
    assert_eq!(text(&out.stdout).trim(), "3 /greeter");

    // The image is in use: removing it is refused while the container exists.
    let out = engine.docker(&["rmi", "local/busybox:1"]);
    assert!(!out.status.success(), "rmi of an image in use succeeded");

    let out = engine.docker(&["rm", "greeter"]);
    assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    let out = engine.docker(&["inspect", "greeter"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no such container: greeter")
            || text(&out.stderr).contains("No such object"),
        "{}",
        text(&out.stderr)
    );

    let out = engine.docker(&["rmi", "local/busybox:1"]);
    assert!(out.status.success(), "docker rmi: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Untagged: local/busybox:1"),
        "{}",
        text(&out.stdout)
    );
    let out = engine.docker(&["images", "-q"]);
    assert_eq!(text(&out.stdout).trim(), "");
}

/// The whole log so far (or its last `tail` lines), both streams.
async fn all_logs(
    client: &berth::engine::api::client::EngineClient,
    id: &str,
    tail: Option<&str>,
) -> String {
    let options = LogsOptions {
        tail: tail.map(str::to_string),
        ..Default::default()
    };
    let chunks: Vec<_> = client
        .logs(id, &options)
        .await
        .unwrap()
        .map(|c| c.unwrap().bytes)
        .collect()
        .await;
    text(&chunks.concat())
}

#[tokio::test]
async fn client_follows_logs_and_drives_the_lifecycle() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    let id = client.import_file(&tar, "local/busybox:2").await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    let mut req = ContainerCreateRequest {
        image: "local/busybox:2".into(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done".into(),
        ]),
        host_config: host_network(),
        ..Default::default()
    };
    req.labels = Some(
        [(
            "com.docker.compose.project".to_string(),
            "apitest".to_string(),
        )]
        .into(),
    );
    let created = client.create_container(Some("looper"), &req).await.unwrap();
    client.start_container("looper").await.unwrap();
    // Starting a running container is not an error (Docker's 304).
    client.start_container(&created.id).await.unwrap();

    let mut logs = client
        .logs(
            "looper",
            &LogsOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), logs.next())
        .await
        .expect("no log output within 10s")
        .expect("log stream ended")
        .unwrap();
    assert_eq!(first.stream, LogStream::Stdout);
    assert_eq!(&first.bytes[..], b"ready\n");

    let listed = client
        .list_containers(false, &[("label", "com.docker.compose.project=apitest")])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "running");
    assert_eq!(listed[0].names, ["/looper"]);

    client.stop_container("looper", Some(5)).await.unwrap();
    // The followed stream sees the trap's output and then ends with the container.
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), logs.next())
        .await
        .expect("log stream did not end after stop")
    {
        rest.extend_from_slice(&chunk.unwrap().bytes);
    }
    assert_eq!(text(&rest), "got TERM\n");
    assert_eq!(client.wait_container("looper").await.unwrap(), 0);
    let inspected = client.inspect_container("looper").await.unwrap();
    assert_eq!(inspected.state.status, "exited");
    // Stopping a stopped container is not an error either.
    client.stop_container("looper", Some(1)).await.unwrap();

    client.restart_container("looper", Some(1)).await.unwrap();
    assert!(
        client
            .inspect_container("looper")
            .await
            .unwrap()
            .state
            .running
    );
    // The restarted run says "ready" again before it is killed.
    let started = std::time::Instant::now();
    while all_logs(&client, "looper", None)
        .await
        .matches("ready")
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no second ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.kill_container("looper", Some("KILL")).await.unwrap();
    assert_eq!(client.wait_container("looper").await.unwrap(), 137);
    assert_eq!(
        all_logs(&client, "looper", None).await,
        "ready\ngot TERM\nready\n"
    );
    assert_eq!(all_logs(&client, "looper", Some("1")).await, "ready\n");

    client
        .remove_container("looper", false, true)
        .await
        .unwrap();
    let err = client.inspect_container("looper").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn container_errors_come_back_with_docker_statuses() {
    let engine = TestEngine::start();
    let client = engine.client();
    let req = ContainerCreateRequest {
        image: "no/such-image:1".into(),
        ..Default::default()
    };
    let err = client.create_container(None, &req).await.unwrap_err();
    match err {
        ClientError::Api { status, message } => {
            assert_eq!(status, 404);
            assert!(message.contains("no/such-image:1"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = client.start_container("ghost").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 404, message } if message.contains("ghost")),
        "{err:?}"
    );
    let err = client
        .logs(
            "ghost",
            &LogsOptions {
                stdout: false,
                stderr: false,
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ClientError::Api { status: 400, message } if message.contains("at least one stream")),
        "{err:?}"
    );
    assert!(engine
        .client()
        .list_containers(true, &[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_volume_used_by_a_container_cannot_be_removed() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:3").await.unwrap();
    let req = ContainerCreateRequest {
        image: "local/busybox:3".into(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo kept > /data/file".into(),
        ]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            binds: Some(vec!["keepme:/data".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = client.create_container(Some("writer"), &req).await.unwrap();
    client.start_container("writer").await.unwrap();
    assert_eq!(client.wait_container("writer").await.unwrap(), 0);
    let volume = client.inspect_volume("keepme").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(PathBuf::from(&volume.mountpoint).join("file")).unwrap(),
        "kept\n"
    );
    let err = client.remove_volume("keepme", true).await.unwrap_err();
    match err {
        ClientError::Api { status, message } => {
            assert_eq!(status, 409);
            assert_eq!(
                message,
                format!("remove keepme: volume is in use - [{}]", created.id)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let dangling = client.list_volumes(&[("dangling", "true")]).await.unwrap();
    assert!(dangling.is_empty(), "{dangling:?}");
    client
        .remove_container("writer", false, false)
        .await
        .unwrap();
    client.remove_volume("keepme", false).await.unwrap();
}

#[tokio::test]
async fn container_lifecycle_events_are_streamed_with_filters() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:4").await.unwrap();
    let mut events = client
        .events(&[("type", "container"), ("container", "eventful")])
        .await
        .unwrap();
    let req = ContainerCreateRequest {
        image: "local/busybox:4".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), "exit 7".into()]),
        host_config: host_network(),
        ..Default::default()
    };
    // Another container's events must not come through the filter.
    let other = ContainerCreateRequest {
        cmd: Some(vec!["true".into()]),
        ..req.clone()
    };
    client
        .create_container(Some("bystander"), &other)
        .await
        .unwrap();
    let created = client
        .create_container(Some("eventful"), &req)
        .await
        .unwrap();
    client.start_container("eventful").await.unwrap();
    assert_eq!(client.wait_container("eventful").await.unwrap(), 7);
    client
        .remove_container("eventful", false, false)
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.last().map(|(a, _): &(String, String)| a.as_str()) != Some("destroy") {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("events stopped after {seen:?}"))
            .expect("event stream ended")
            .unwrap();
        assert_eq!(event.actor.id, created.id, "{event:?}");
        let exit = event
            .actor
            .attributes
            .get("exitCode")
            .cloned()
            .unwrap_or_default();
        seen.push((event.action, exit));
    }
    let actions: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"]);
    assert_eq!(seen[2].1, "7");
}

/// `docker rm -f` of a running container: the exit is announced (`die`) before `destroy`, and
/// `stop` answers only once `die` is out, as Docker orders them.
#[tokio::test]
async fn forced_removal_and_stop_announce_the_exit_first() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:5").await.unwrap();
    let req = ContainerCreateRequest {
        image: "local/busybox:5".into(),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        host_config: host_network(),
        ..Default::default()
    };
    for (name, stop_first) in [("forced", false), ("stopped", true)] {
        let mut events = client
            .events(&[("type", "container"), ("container", name)])
            .await
            .unwrap();
        client.create_container(Some(name), &req).await.unwrap();
        client.start_container(name).await.unwrap();
        if stop_first {
            client.stop_container(name, Some(1)).await.unwrap();
        }
        client.remove_container(name, true, false).await.unwrap();
        let mut actions = Vec::new();
        while actions.last().map(String::as_str) != Some("destroy") {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap_or_else(|_| panic!("{name}: events stopped after {actions:?}"))
                .expect("event stream ended")
                .unwrap();
            // A kill event names its signal by number, as dockerd's do.
            match event.actor.attributes.get("signal") {
                Some(signal) => actions.push(format!("{} {signal}", event.action)),
                None => actions.push(event.action),
            }
        }
        let die = actions.iter().position(|a| a == "die");
        assert!(die.is_some(), "{name}: {actions:?}");
        if !stop_first {
            // `rm -f` of a running container kills it, and says so first, as dockerd does.
            assert_eq!(
                actions,
                ["create", "start", "kill 9", "die", "destroy"],
                "{name}"
            );
        }
        if stop_first {
            let stop = actions
                .iter()
                .position(|a| a == "stop")
                .expect("stop event");
            // Each signal of the stop is announced before the die, as dockerd does: SIGTERM,
            // which `sleep` as PID 1 does not handle, then SIGKILL after the grace period.
            let term = actions.iter().position(|a| a == "kill 15");
            let kill = actions.iter().position(|a| a == "kill 9");
            assert!(
                term.is_some() && term < kill && kill < die,
                "{name}: {actions:?}"
            );
            assert!(die < Some(stop), "{name}: {actions:?}");
        }
    }
}

/// A container that asks for a TTY runs on a pty of its own devpts instance, its terminal's
/// output (CR LF line ends) logged as stdout.
#[tokio::test]
async fn a_tty_container_runs_on_its_own_pty() {
    let engine = TestEngine::start();
    let tar = busybox_tar(&engine);
    engine
        .client()
        .import_file(&tar, "local/busybox:6")
        .await
        .unwrap();
    let out = engine.docker(&["run", "-t", "--name", "withtty", "local/busybox:6", "tty"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/dev/pts/0\r\n");
    let logs = engine.docker(&["logs", "withtty"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "/dev/pts/0\r\n");
}

#[tokio::test]
async fn a_bad_import_is_refused_and_leaves_nothing() {
    let engine = TestEngine::start();
    let client = engine.client();
    let err = client
        .import(b"this is not a tar archive".to_vec(), "broken/image:1")
        .await
        .unwrap_err();
    match &err {
        ClientError::Api { status, message } => {
            // Docker answers a broken import with 500 too; the message names image and problem.
            assert_eq!(*status, 500, "{message}");
            assert!(
                message.contains("of broken/image:1: malformed layer tar: truncated tar header"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(client.list_images().await.unwrap().is_empty());
    let spool = engine.data_root().join("tmp");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
}

#[tokio::test]
async fn capability_ulimit_and_sysctl_requests_are_checked_at_create() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:4").await.unwrap();
    let request = |host: HostConfig| ContainerCreateRequest {
        image: "local/busybox:4".into(),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "grep CapEff /proc/self/status".into(),
        ]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            ..host
        }),
        ..Default::default()
    };
    let refused = [
        (
            HostConfig {
                cap_add: Some(vec!["NET_ADMIN".into(), "FLY".into()]),
                ..Default::default()
            },
            "unknown capability: \"CAP_FLY\"",
        ),
        (
            HostConfig {
                cap_drop: Some(vec!["cap_nope".into()]),
                ..Default::default()
            },
            "unknown capability: \"CAP_NOPE\"",
        ),
        (
            HostConfig {
                ulimits: Some(vec![berth::engine::wire::Ulimit {
                    name: "files".into(),
                    soft: 1,
                    hard: 1,
                }]),
                ..Default::default()
            },
            "invalid ulimit type: files",
        ),
        (
            HostConfig {
                sysctls: Some([("net.core.somaxconn".to_string(), "1".to_string())].into()),
                ..Default::default()
            },
            "sysctl \"net.core.somaxconn\" is not allowed in the host's network namespace",
        ),
    ];
    for (host, wanted) in refused {
        match client
            .create_container(Some("capped"), &request(host))
            .await
        {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status, 400, "{message}");
                assert!(message.starts_with(wanted), "{message}");
            }
            other => panic!("expected a 400 with {wanted:?}, got {other:?}"),
        }
    }
    assert!(client.list_containers(true, &[]).await.unwrap().is_empty());

    // Names are stored in Docker's spelling, whatever the request's.
    let created = client
        .create_container(
            Some("spelled"),
            &request(HostConfig {
                cap_add: Some(vec!["sys_ptrace".into(), "ALL".into()]),
                cap_drop: Some(vec!["Cap_Chown".into()]),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let inspected = client.inspect_container(&created.id).await.unwrap();
    assert_eq!(
        inspected.host_config.cap_add,
        Some(vec!["CAP_SYS_PTRACE".to_string(), "ALL".to_string()])
    );
    assert_eq!(
        inspected.host_config.cap_drop,
        Some(vec!["CAP_CHOWN".to_string()])
    );
    client
        .remove_container("spelled", false, false)
        .await
        .unwrap();

    // The real Docker CLI gets Docker's message, and a valid set is what the workload holds.
    let out = engine.docker(&[
        "create",
        "--network",
        "host",
        "--cap-add",
        "FLY",
        "local/busybox:4",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown capability: \"CAP_FLY\""),
        "{}",
        text(&out.stderr)
    );
    let out = engine.docker(&[
        "create",
        "--name",
        "netadmin",
        "--network",
        "host",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "net_admin",
        "local/busybox:4",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let out = engine.docker(&["start", "netadmin"]);
    assert!(out.status.success(), "docker start: {}", text(&out.stderr));
    let out = engine.docker(&["wait", "netadmin"]);
    assert_eq!(text(&out.stdout).trim(), "0");
    let out = engine.docker(&["logs", "netadmin"]);
    assert_eq!(text(&out.stdout), "CapEff:\t0000000000001000\n");
    let out = engine.docker(&["inspect", "-f", "{{json .HostConfig.CapAdd}}", "netadmin"]);
    assert_eq!(text(&out.stdout).trim(), "[\"CAP_NET_ADMIN\"]");
    client
        .remove_container("netadmin", false, false)
        .await
        .unwrap();
    assert!(client.list_containers(true, &[]).await.unwrap().is_empty());
}

/// The files of a container's json-file log (`<id>-json.log` and its rotated `.N`).
fn log_files(log_path: &std::path::Path) -> usize {
    let name = log_path.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(log_path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            let file = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            file == name || file.starts_with(&format!("{name}."))
        })
        .count()
}

/// `max-size` and `max-file` rotate the log as Docker's json-file driver does: `logs` reads the
/// kept files in order, a follower keeps up across rotations, and at most `max-file` files stay.
#[tokio::test]
async fn logs_rotate_at_max_size_and_a_follower_reads_across_rotations() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:6").await.unwrap();
    // 200 lines of about 80 bytes of JSON each: about 15 rotations at 1 kB. The pause lets the
    // follower below start before the output does.
    let script = "sleep 1; i=1; while [ $i -le 200 ]; do echo line $i; i=$((i+1)); done";
    let create = |max_file: &str| ContainerCreateRequest {
        image: "local/busybox:6".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            log_config: Some(LogConfig {
                r#type: "json-file".into(),
                config: [
                    ("max-size".to_string(), "1k".to_string()),
                    ("max-file".to_string(), max_file.to_string()),
                ]
                .into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let want: String = (1..=200).map(|i| format!("line {i}\n")).collect();

    // Every file kept: a follower sees each line once, in order, through every rotation.
    client
        .create_container(Some("rotkeep"), &create("100"))
        .await
        .unwrap();
    client.start_container("rotkeep").await.unwrap();
    let follow = LogsOptions {
        follow: true,
        ..Default::default()
    };
    let followed: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        client
            .logs("rotkeep", &follow)
            .await
            .unwrap()
            .map(|c| c.unwrap().bytes)
            .collect(),
    )
    .await
    .expect("the follow ends with the container");
    assert_eq!(text(&followed.concat()), want);
    assert_eq!(all_logs(&client, "rotkeep", None).await, want);
    assert_eq!(
        all_logs(&client, "rotkeep", Some("2")).await,
        "line 199\nline 200\n"
    );
    let inspected = client.inspect_container("rotkeep").await.unwrap();
    let files = log_files(std::path::Path::new(&inspected.log_path));
    assert!(files > 10, "rotated into {files} files");

    // Two files kept: the newest lines, in order, and two files on disk.
    client
        .create_container(Some("rottwo"), &create("2"))
        .await
        .unwrap();
    client.start_container("rottwo").await.unwrap();
    assert_eq!(client.wait_container("rottwo").await.unwrap(), 0);
    let kept = all_logs(&client, "rottwo", None).await;
    assert!(
        kept.ends_with("line 199\nline 200\n") && kept.len() < want.len() / 3,
        "{kept}"
    );
    assert!(want.ends_with(&kept), "a whole tail of the output: {kept}");
    let inspected = client.inspect_container("rottwo").await.unwrap();
    assert_eq!(log_files(std::path::Path::new(&inspected.log_path)), 2);

    // A bad option fails the create, in Docker's words.
    let mut bad = create("2");
    if let Some(log) = bad.host_config.as_mut().and_then(|h| h.log_config.as_mut()) {
        log.config.insert("max-size".into(), "0".into());
    }
    let err = client
        .create_container(Some("rotbad"), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("max-size must be a positive number"), "{err}");
}

/// An error the engine finds before it reads a streamed body (a `cp` into a stopped read-only
/// container) reaches the client even while the client is still writing the body: the engine
/// reads the rest first, so the connection is not reset under the client ("broken pipe").
#[tokio::test]
async fn an_early_error_reaches_a_client_still_sending_its_body() {
    let engine = TestEngine::start();
    let client = engine.client();
    let tar = busybox_tar(&engine);
    client.import_file(&tar, "local/busybox:7").await.unwrap();
    let req = ContainerCreateRequest {
        image: "local/busybox:7".into(),
        cmd: Some(vec!["true".into()]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            readonly_rootfs: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    client.create_container(Some("rofs"), &req).await.unwrap();
    client.start_container("rofs").await.unwrap();
    assert_eq!(client.wait_container("rofs").await.unwrap(), 0);

    // Without the engine reading the rest, one of the first few attempts failed here.
    for attempt in 0..30 {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // The body keeps coming, as fast as it can, after the engine has answered.
        tokio::spawn(async move {
            for _ in 0..2000 {
                if tx
                    .send(Ok(bytes::Bytes::from(vec![0u8; 4096])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let err = client
            .put_archive_stream("rofs", "/tmp", rx, true, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rootfs is marked read-only"),
            "attempt {attempt}: {err}"
        );
    }
}
