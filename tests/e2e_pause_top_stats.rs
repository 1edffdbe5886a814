//! `pause`/`unpause`, `top`, `stats`, `events`, `rename`, `update` and `deploy.restart_policy`
//! end to end: through the `berth` CLI and through the real Docker CLI pointed at berth's socket.
//! Each test asserts what a user notices: a counter that stops advancing while paused, the
//! processes `top` lists, the memory limit and PIDs `stats` shows, a lowered limit in the
//! container's cgroup file, a restart count.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::engine::{cgroups_of, raw_get};
use common::project::TestProject;

const IMAGE: &str = "pausetest/busybox:1";

fn project_with(prefix: &str, compose_for: impl Fn(&str) -> String) -> TestProject {
    let project = TestProject::new(prefix, "services: {}\n");
    project.write_compose(&compose_for(&project.name));
    project.import_busybox(IMAGE);
    project
}

/// A file of the project's named volume `data`, read on the host.
fn data_file(project: &TestProject, file: &str) -> PathBuf {
    project
        .data_root()
        .join("volumes")
        .join(format!("{}_data", project.name))
        .join("_data")
        .join(file)
}

fn counter(project: &TestProject) -> u64 {
    std::fs::read_to_string(data_file(project, "count"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Wait until the counter passes `above`; its value then.
fn counter_passes(project: &TestProject, above: u64) -> u64 {
    project
        .eventually(Duration::from_secs(15), || {
            let n = counter(project);
            (n > above).then_some(n)
        })
        .unwrap_or_else(|| panic!("the counter did not pass {above}"))
}

fn container(project: &TestProject, service: &str) -> String {
    format!("{}-{service}-1", project.name)
}

fn inspect(project: &TestProject, name: &str, template: &str) -> String {
    project
        .docker(&["inspect", "-f", template, name])
        .trim()
        .to_string()
}

/// `berth events --json` running in the background, its lines on a channel; ended by PID on
/// drop.
struct EventsFollower {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl EventsFollower {
    fn start(project: &TestProject) -> EventsFollower {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["-p", &project.name, "events", "--json"])
            .current_dir(project.dir.path())
            .env("BERTH_DATA_ROOT", project.data_root())
            .env("BERTH_RUN_ROOT", project.run_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start berth events");
        let out = BufReader::new(child.stdout.take().expect("events stdout"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let event = serde_json::from_str(line.trim()).expect("json event");
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        EventsFollower { child, lines }
    }

    /// The next event whose action starts with `prefix`, waiting at most `timeout`.
    fn next_with(&self, prefix: &str, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = self.lines.recv_timeout(left).ok()?;
            if event["action"].as_str().unwrap_or("").starts_with(prefix) {
                return Some(event);
            }
        }
    }

    /// Wait until the follower is subscribed: an exec in the container shows up in it (the
    /// process needs a moment to start and connect, and events before that are not replayed).
    fn until_subscribed(&self, project: &TestProject, service: &str) {
        for _ in 0..30 {
            project.ok(&["exec", "-T", service, "true"]);
            if self
                .next_with("exec_", Duration::from_millis(500))
                .is_some()
            {
                return;
            }
        }
        panic!("berth events never showed an exec");
    }
}

impl Drop for EventsFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter_compose(name: &str) -> String {
    format!(
        r#"
services:
  counter:
    image: {IMAGE}
    environment:
      BERTH_TEST_MARK: {name}
    command: ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$$((i+1)); echo $$i > /data/count; sleep 0.05; done"]
    volumes:
      - data:/data
volumes:
  data: {{}}
"#
    )
}

#[test]
fn pause_freezes_the_workload_until_unpause_and_survives_an_engine_restart() {
    let project = project_with("pause", counter_compose);
    project.ok(&["up", "-d"]);
    let name = container(&project, "counter");
    counter_passes(&project, 3);

    let follower = EventsFollower::start(&project);
    follower.until_subscribed(&project, "counter");
    let out = project.berth(&["pause", "counter"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Paused"),
        "{out:?}"
    );
    let ps = project.ok(&["ps"]);
    assert!(ps.contains("(Paused)"), "ps shows the state:\n{ps}");
    let json = project.ok(&["ps", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("one json row");
    assert_eq!(row["State"], "paused", "{row}");
    assert_eq!(
        inspect(&project, &name, "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    // Frozen: the counter holds still over a second (it advances 20 times a second otherwise).
    let frozen_at = counter(&project);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        counter(&project),
        frozen_at,
        "the counter moved while paused"
    );
    let refused = project.fails(&["exec", "-T", "counter", "true"]);
    assert!(refused.contains("is paused"), "{refused}");

    project.ok(&["unpause", "counter"]);
    counter_passes(&project, frozen_at);
    assert_eq!(inspect(&project, &name, "{{.State.Status}}"), "running");

    // The events follower saw both, in compose's JSON shape.
    for action in ["pause", "unpause"] {
        let event = follower
            .next_with(action, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no {action} event"));
        assert_eq!(event["action"], action, "{event}");
        assert_eq!(event["service"], "counter", "{event}");
        assert_eq!(event["attributes"]["name"], name.as_str(), "{event}");
    }
    drop(follower);

    // Paused across an engine restart: the freeze is the kernel's, the record says so.
    project.ok(&["pause"]);
    let frozen_at = counter(&project);
    project.stop_engine();
    let ps = project.ok(&["ps"]);
    assert!(
        ps.contains("(Paused)"),
        "still paused after a restart:\n{ps}"
    );
    assert_eq!(counter(&project), frozen_at);
    project.ok(&["unpause"]);
    counter_passes(&project, frozen_at);

    // stop of a paused container thaws it with its stop signal, as Docker's does: the trap
    // ends it gracefully (exit 0) long before the grace period's SIGKILL.
    project.ok(&["pause"]);
    // start of a paused service: the engine's refusal, naming the container, and a failure.
    let refused = project.fails(&["start"]);
    assert!(
        refused.contains("try unpause instead") && refused.contains(&name),
        "{refused}"
    );
    let started = std::time::Instant::now();
    project.ok(&["stop", "-t", "20"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        inspect(
            &project,
            &name,
            "{{.State.Status}} {{.State.Paused}} {{.State.ExitCode}}"
        ),
        "exited false 0"
    );
    // kill of a paused container: the SIGKILL reaches it.
    project.ok(&["start"]);
    project.ok(&["pause"]);
    project.ok(&["kill"]);
    assert_eq!(
        inspect(
            &project,
            &name,
            "{{.State.Status}} {{.State.Paused}} {{.State.ExitCode}}"
        ),
        "exited false 137"
    );
    project.ok(&["down", "-v", "-t", "1"]);
}

fn top_stats_compose(name: &str) -> String {
    format!(
        r#"
services:
  web:
    image: {IMAGE}
    mem_limit: 64m
    environment:
      BERTH_TEST_MARK: {name}
    command: ["sh", "-c", "sleep 1001 & sleep 1002 & wait"]
  other:
    image: {IMAGE}
    environment:
      BERTH_TEST_MARK: {name}
    command: ["sleep", "2002"]
"#
    )
}

/// The engine's own stats answer for `container` (one sample, no CPU delta).
fn api_stats(project: &TestProject, container: &str) -> serde_json::Value {
    let (status, body) = raw_get(
        &project.socket(),
        &format!("/containers/{container}/stats?stream=0&one-shot=1"),
    )
    .expect("engine answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats json")
}

fn rx_bytes(stats: &serde_json::Value) -> u64 {
    stats["networks"]
        .as_object()
        .map(|nets| nets.values().filter_map(|n| n["rx_bytes"].as_u64()).sum())
        .unwrap_or(0)
}

/// The container's memory limit as its cgroup file says (v2's `memory.max`, v1's
/// `memory.limit_in_bytes`).
fn cgroup_memory_limit(id: &str) -> Option<u64> {
    cgroups_of(&[id.to_string()]).iter().find_map(|dir| {
        ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .and_then(|t| t.trim().parse().ok())
    })
}

/// Run `berth stats web` (streaming) until it has drawn `wanted` tables or `timeout` passes;
/// the tables seen. The child is ended by its PID.
fn streamed_stats_frames(project: &TestProject, wanted: usize, timeout: Duration) -> usize {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name, "stats", "web"])
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start berth stats");
    let out = BufReader::new(child.stdout.take().expect("stats stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut frames = 0;
    while frames < wanted {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("CONTAINER ID") => frames += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    frames
}

#[test]
fn top_and_stats_show_the_containers_own_processes_limit_and_traffic() {
    let project = project_with("topstats", top_stats_compose);
    project.ok(&["up", "-d"]);
    let web = container(&project, "web");
    let other = container(&project, "other");

    // top: the workload's sleeps, not the other service's.
    let top = project.ok(&["top", "web"]);
    assert!(top.starts_with(&format!("{web}\n")), "{top}");
    assert!(top.contains("UID") && top.contains("CMD"), "{top}");
    assert!(
        top.contains("sleep 1001") && top.contains("sleep 1002"),
        "{top}"
    );
    assert!(!top.contains("sleep 2002"), "{top}");
    let docker_top = project.docker(&["top", &web]);
    assert!(docker_top.contains("sleep 1001"), "{docker_top}");

    // stats: the compose limit, the three processes it started (sh and two sleeps).
    let rows = project.ok(&["stats", "--no-stream", "--format", "json", "web"]);
    let row: serde_json::Value = serde_json::from_str(rows.trim()).expect("one json row");
    assert_eq!(row["Name"], web.as_str());
    assert!(
        row["MemUsage"].as_str().unwrap_or("").ends_with("/ 64MiB"),
        "{row}"
    );
    assert_eq!(row["PIDs"], "3", "{row}");
    let table = project.ok(&["stats", "--no-stream"]);
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(table.contains(&other), "{table}");
    let docker_stats = project.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        &web,
    ]);
    assert!(docker_stats.contains("/ 64MiB"), "{docker_stats}");

    // Without --no-stream the table is redrawn as samples come (about one a second).
    let frames = streamed_stats_frames(&project, 2, Duration::from_secs(15));
    assert_eq!(frames, 2, "two redrawn tables");

    // Net I/O grows with traffic on the project's own network.
    let before = rx_bytes(&api_stats(&project, &web));
    project.ok(&[
        "exec", "-T", "other", "ping", "-c", "3", "-s", "1000", "web",
    ]);
    let after = rx_bytes(&api_stats(&project, &web));
    assert!(after >= before + 3000, "rx {before} → {after}");

    // update lowers the limit live: in the cgroup file, inspect and stats.
    let id = inspect(&project, &web, "{{.Id}}");
    assert_eq!(cgroup_memory_limit(&id), Some(64 << 20));
    project.docker(&["update", "--memory", "32m", "--memory-swap", "64m", &web]);
    assert_eq!(cgroup_memory_limit(&id), Some(32 << 20));
    assert_eq!(
        inspect(&project, &web, "{{.HostConfig.Memory}}"),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        api_stats(&project, &web)["memory_stats"]["limit"].as_u64(),
        Some(32 << 20)
    );

    // A first CPU limit: the container joins the cpu controller's cgroup there and then.
    project.docker(&["update", "--cpus", "0.5", &web]);
    let quota = cgroups_of(std::slice::from_ref(&id))
        .iter()
        .find_map(|dir| {
            let v2 = std::fs::read_to_string(dir.join("cpu.max")).ok();
            let v1 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok();
            v2.or(v1).map(|t| t.trim().to_string())
        });
    assert!(
        matches!(quota.as_deref(), Some("50000" | "50000 100000")),
        "{quota:?}"
    );
    let procs_in_cpu_cgroup = cgroups_of(std::slice::from_ref(&id))
        .iter()
        .filter(|d| d.join("cpu.cfs_quota_us").exists() || d.join("cpu.max").exists())
        .map(|d| std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default())
        .map(|t| t.lines().count())
        .max();
    assert_eq!(
        procs_in_cpu_cgroup,
        Some(3),
        "sh and its two sleeps moved in"
    );

    // rename: the name changes, the compose labels do not, and the network answers to it.
    project.docker(&["rename", &web, "renamed-web"]);
    assert_eq!(
        inspect(
            &project,
            "renamed-web",
            "{{index .Config.Labels \"com.docker.compose.service\"}}"
        ),
        "web"
    );
    project.ok(&["exec", "-T", "other", "ping", "-c", "1", "renamed-web"]);
    project.docker(&["rename", "renamed-web", &web]);

    // pause and unpause through the Docker CLI, with its events.
    let since = chrono::Utc::now().timestamp().to_string();
    project.docker(&["pause", &web]);
    assert_eq!(inspect(&project, &web, "{{.State.Status}}"), "paused");
    project.docker(&["unpause", &web]);
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = project.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={web}"),
        "--format",
        "{{.Action}}",
    ]);
    // `--since` counts in seconds: the update and rename before may be in too.
    let actions: Vec<&str> = events.lines().filter(|a| a.contains("pause")).collect();
    assert_eq!(actions, ["pause", "unpause"], "{events}");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn deploy_restart_policy_on_failure_restarts_a_failing_container_max_attempts_times() {
    let project = project_with("deployrestart", |name| {
        format!(
            r#"
services:
  flaky:
    image: {IMAGE}
    environment:
      BERTH_TEST_MARK: {name}
    command: ["sh", "-c", "echo run >> /data/runs; exit 3"]
    volumes:
      - data:/data
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
volumes:
  data: {{}}
"#
        )
    });
    let out = project.berth(&["up", "-d"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("restart_policy"),
        "no warning: the policy is honoured: {out:?}"
    );
    let flaky = container(&project, "flaky");
    let runs = || {
        std::fs::read_to_string(data_file(&project, "runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let settled = project.eventually(Duration::from_secs(30), || {
        let state = inspect(&project, &flaky, "{{.State.Status}} {{.RestartCount}}");
        (state == "exited 2").then_some(())
    });
    assert!(settled.is_some(), "restarted twice then stayed exited");
    assert_eq!(runs(), 3, "one run and two restarts");
    assert_eq!(
        inspect(
            &project,
            &flaky,
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure 2"
    );
    project.ok(&["down", "-v", "-t", "1"]);
}
