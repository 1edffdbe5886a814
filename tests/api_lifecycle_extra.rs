//! The pause/top/stats/rename/update endpoints' answers to the requests Docker refuses, through
//! the real Docker CLI and berth's client: the status codes and messages a script sees, and the
//! streamed stats a `docker stats` without `--no-stream` reads.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use berth::engine::api::client::ClientError;
use berth::engine::container::update::UpdateRequest;
use berth::engine::wire::{ContainerCreateRequest, HostConfig, Resources};
use common::engine::{raw_get, TestEngine};
use common::registry::populate_busybox_rootfs;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

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

/// Whether the kernel holds container `id` frozen: its cgroup2 directory says `frozen 1`, or
/// (a host without cgroup2) its v1 freeze group is FROZEN.
fn frozen_by_the_kernel(id: &str) -> bool {
    let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .filter_map(|root| std::fs::read_to_string(format!("{root}/berth/{id}/cgroup.events")).ok())
        .any(|events| events.lines().any(|l| l == "frozen 1"));
    let v1 = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/freezer/berth-freeze-{id}/freezer.state"
    ))
    .is_ok_and(|s| s.trim() == "FROZEN");
    v2 || v1
}

fn status_of(result: Result<impl Sized, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message }) => (status, message),
        Err(e) => panic!("not an API error: {e}"),
        Ok(_) => panic!("the engine accepted it"),
    }
}

#[test]
fn refusals_carry_dockers_codes_and_stats_stream_one_sample_a_second() {
    let engine = TestEngine::start();
    let tar = busybox_tar(&engine);
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:1"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    let client = engine.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let create = |name: &'static str, cmd: &[&str]| {
        let req = ContainerCreateRequest {
            image: "local/busybox:1".into(),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            host_config: Some(HostConfig {
                network_mode: "host".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        rt.block_on(client.create_container(Some(name), &req))
            .expect("create")
            .id
    };
    let sleeper = create("xtra-sleeper", &["sleep", "300"]);
    let idle = create("xtra-idle", &["true"]);
    rt.block_on(client.start_container(&sleeper))
        .expect("start");

    // Pausing what does not run, pausing twice, unpausing what is not paused: 409s.
    let (code, message) = status_of(rt.block_on(client.pause_container(&idle)));
    assert_eq!(code, 409, "{message}");
    assert!(message.contains("is not running"), "{message}");
    rt.block_on(client.pause_container(&sleeper))
        .expect("pause");
    let (code, message) = status_of(rt.block_on(client.pause_container(&sleeper)));
    assert_eq!((code, message.contains("already paused")), (409, true));
    // A commit of a paused container copies it frozen and leaves it paused.
    let out = engine.docker(&["commit", &sleeper, "local/paused-commit:1"]);
    assert!(out.status.success(), "docker commit: {}", text(&out.stderr));
    let inspect = rt
        .block_on(client.inspect_container(&sleeper))
        .expect("inspect");
    assert!(inspect.state.paused, "still paused after the commit");
    assert!(frozen_by_the_kernel(&sleeper), "and still frozen");
    rt.block_on(client.unpause_container(&sleeper))
        .expect("unpause");
    let (code, message) = status_of(rt.block_on(client.unpause_container(&sleeper)));
    assert_eq!((code, message.contains("is not paused")), (409, true));

    // Rename to a taken name, an invalid name; top of a stopped container.
    let (code, message) = status_of(rt.block_on(client.rename_container(&sleeper, "xtra-idle")));
    assert_eq!(code, 409, "{message}");
    let (code, _) = status_of(rt.block_on(client.rename_container(&sleeper, "-bad")));
    assert_eq!(code, 400);
    let (code, _) = status_of(rt.block_on(client.top_container(&idle, "")));
    assert_eq!(code, 409);
    // An update Docker refuses (memory below 6 MB) changes nothing.
    let tiny = UpdateRequest {
        resources: Resources {
            memory: 1 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let (code, message) = status_of(rt.block_on(client.update_container(&sleeper, &tiny)));
    assert_eq!(code, 400, "{message}");
    let inspect = rt
        .block_on(client.inspect_container(&sleeper))
        .expect("inspect");
    assert_eq!(inspect.host_config.resources.memory, 0);

    // The Docker CLI's top with its own ps arguments: the host's ps, filtered to the container.
    let out = engine.docker(&["top", &sleeper, "-o", "pid,args"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let top = text(&out.stdout);
    assert!(top.contains("sleep 300"), "{top}");
    assert_eq!(
        top.lines().count(),
        2,
        "the header and the container's one process: {top}"
    );

    // A streamed stats request: samples keep coming, each with the previous one's CPU figures.
    let started = std::time::Instant::now();
    let mut stream = std::os::unix::net::UnixStream::connect(engine.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::{BufRead, Write};
    write!(
        stream,
        "GET /containers/{sleeper}/stats HTTP/1.0\r\nHost: berth\r\n\r\n"
    )
    .unwrap();
    let reader = std::io::BufReader::new(stream);
    let samples: Vec<serde_json::Value> = reader
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .take(3)
        .map(|l| serde_json::from_str(&l).expect("json sample"))
        .collect();
    assert_eq!(samples.len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(2), "one a second");
    assert_eq!(samples[1]["preread"], samples[0]["read"]);
    assert_eq!(
        samples[2]["precpu_stats"]["cpu_usage"],
        samples[1]["cpu_stats"]["cpu_usage"]
    );
    assert_eq!(samples[2]["pids_stats"]["current"], 1);
    assert!(samples[2]["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0);
    // A host-network container has no interfaces of its own to report.
    assert!(samples[2].get("networks").is_none());

    let (status, body) = raw_get(
        &engine.socket(),
        &format!("/containers/{idle}/stats?stream=0"),
    )
    .expect("engine answers");
    assert_eq!(status, 200, "{body}");
    let stopped: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stopped["read"], "0001-01-01T00:00:00Z", "{stopped}");

    rt.block_on(client.remove_container(&sleeper, true, false))
        .expect("rm -f");
    rt.block_on(client.remove_container(&idle, true, false))
        .expect("rm");
}

/// A start of a paused container is Docker's 409 ("try unpause instead"), not the 304 of a
/// running one, and leaves it paused; the Docker CLI shows the refusal.
#[test]
fn start_of_a_paused_container_is_a_conflict() {
    let engine = TestEngine::start();
    let tar = busybox_tar(&engine);
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:1"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    let client = engine.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = ContainerCreateRequest {
        image: "local/busybox:1".into(),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .block_on(client.create_container(Some("xtra-paused-start"), &req))
        .expect("create")
        .id;
    rt.block_on(client.start_container(&id)).expect("start");
    rt.block_on(client.pause_container(&id)).expect("pause");

    let (code, message) = status_of(rt.block_on(client.start_container(&id)));
    assert_eq!(code, 409, "{message}");
    assert_eq!(
        message,
        "cannot start a paused container, try unpause instead"
    );
    let out = engine.docker(&["start", "xtra-paused-start"]);
    assert!(!out.status.success(), "docker start of a paused container");
    assert!(
        text(&out.stderr).contains("try unpause instead"),
        "{}",
        text(&out.stderr)
    );
    let inspect = rt.block_on(client.inspect_container(&id)).expect("inspect");
    assert!(inspect.state.paused, "still paused after the refused start");
    assert!(frozen_by_the_kernel(&id), "and still frozen");

    rt.block_on(client.remove_container(&id, true, false))
        .expect("rm -f");
}

/// The actions of the container events on `events` up to and including `last`.
fn actions_until(
    rt: &tokio::runtime::Runtime,
    events: &mut (impl futures_util::Stream<Item = Result<berth::engine::wire::EventMessage, ClientError>>
              + Unpin),
    last: &str,
) -> Vec<String> {
    use futures_util::StreamExt;
    let mut actions: Vec<String> = Vec::new();
    while actions.last().map(String::as_str) != Some(last) {
        let event = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), events.next()).await })
            .unwrap_or_else(|_| panic!("events stopped after {actions:?}"))
            .expect("event stream ended")
            .expect("event");
        actions.push(event.action);
    }
    actions
}

/// A stop of a paused container signals it and thaws it, as dockerd's does: it ends at once
/// (its trap runs; no grace period spent behind the freezer), and `/events` shows the thaw as
/// `unpause` before the `die`. A forced remove of a paused container does the same.
#[test]
fn stop_of_a_paused_container_thaws_it_at_once_and_says_unpause() {
    let engine = TestEngine::start();
    let tar = busybox_tar(&engine);
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:1"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    let client = engine.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let req = ContainerCreateRequest {
        image: "local/busybox:1".into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        host_config: Some(HostConfig {
            network_mode: "host".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .block_on(client.create_container(Some("xtra-paused-stop"), &req))
        .expect("create")
        .id;
    let mut events = rt
        .block_on(client.events(&[("container", id.as_str())]))
        .expect("events");
    rt.block_on(client.start_container(&id)).expect("start");
    rt.block_on(client.pause_container(&id)).expect("pause");
    assert!(frozen_by_the_kernel(&id));

    let started = std::time::Instant::now();
    rt.block_on(client.stop_container(&id, Some(5)))
        .expect("stop");
    let took = started.elapsed();
    // Well inside the 5 s grace period (about 0.1 s on an idle host; the bound leaves room for
    // a loaded one); the exit code below shows the trap ended it, not the SIGKILL.
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    let inspect = rt.block_on(client.inspect_container(&id)).expect("inspect");
    assert_eq!(
        (
            inspect.state.status.as_str(),
            inspect.state.paused,
            inspect.state.exit_code
        ),
        ("exited", false, 0),
        "ended by its trap, not by the SIGKILL"
    );
    assert_eq!(
        actions_until(&rt, &mut events, "stop"),
        ["start", "pause", "unpause", "kill", "die", "stop"]
    );

    // Forced remove of a paused container: thawed, killed, announced in Docker's order.
    rt.block_on(client.start_container(&id))
        .expect("start again");
    rt.block_on(client.pause_container(&id)).expect("pause");
    rt.block_on(client.remove_container(&id, true, false))
        .expect("rm -f");
    assert_eq!(
        actions_until(&rt, &mut events, "destroy"),
        ["start", "pause", "unpause", "kill", "die", "destroy"]
    );
}
