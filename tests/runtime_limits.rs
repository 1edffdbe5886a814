//! Resource limits end to end, on a real engine: a pids limit stops a fork loop inside the
//! container, a memory limit gets a memory hog OOM-killed (exit 137, `State.OOMKilled`) while the
//! same command runs without one, CPU and cpuset limits land in the container's cgroup files on
//! the host (whatever the layout: pure v2, or v1 controllers beside an empty v2 tree), Docker's
//! validation errors come back as 400s leaving nothing, `docker inspect` shows the limits, and a
//! compose project's `mem_limit` / `cpus` / `pids_limit` / `deploy.resources` reach all of them.
//! Every cgroup directory of a container is gone after stop and remove.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth::engine::api::client::{ClientError, EngineClient};
use berth::engine::wire::{ContainerCreateRequest, ExecConfig, HostConfig};
use common::engine::{cgroups_of, TestEngine};
use common::project::TestProject;
use common::registry::{populate_busybox_rootfs, TestRegistry};

const MB: i64 = 1024 * 1024;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Import a busybox image as `repo_tag` into the engine (with the real Docker CLI).
fn busybox(engine: &TestEngine, repo_tag: &str) {
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
    let out = engine.docker(&["import", tar.to_str().unwrap(), repo_tag]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
}

/// CPUs in this process's affinity mask: the count Docker's range message names.
fn affinity_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as usize
    }
}

/// Host network, so these tests exercise limits rather than the bridge.
fn limited(host: HostConfig) -> HostConfig {
    HostConfig {
        network_mode: "host".into(),
        ..host
    }
}

fn sh(image: &str, script: &str, host: HostConfig) -> ContainerCreateRequest {
    ContainerCreateRequest {
        image: image.into(),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        host_config: Some(limited(host)),
        ..Default::default()
    }
}

async fn logs(client: &EngineClient, id: &str) -> String {
    use futures_util::StreamExt;
    let chunks: Vec<_> = client
        .logs(id, &Default::default())
        .await
        .unwrap()
        .map(|c| c.unwrap().bytes)
        .collect()
        .await;
    text(&chunks.concat())
}

/// Where the host keeps `controller`'s files for container `id`: the v2 tree when its root
/// offers the controller, else the controller's v1 hierarchy. `(dir, is_v2)`.
fn controller_dir(controller: &str, id: &str) -> (PathBuf, bool) {
    let root = Path::new("/sys/fs/cgroup");
    for v2 in [root.to_path_buf(), root.join("unified")] {
        let offered = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if offered.split_whitespace().any(|c| c == controller) {
            return (v2.join("berth").join(id), true);
        }
    }
    (root.join(controller).join("berth").join(id), false)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

async fn wait_exit(client: &EngineClient, id: &str) -> i64 {
    tokio::time::timeout(Duration::from_secs(60), client.wait_container(id))
        .await
        .expect("the container did not exit within 60s")
        .unwrap()
}

#[tokio::test]
async fn a_pids_limit_makes_a_fork_loop_fail_inside_the_container() {
    let engine = TestEngine::start();
    let client = engine.client();
    busybox(&engine, "limits/busybox:pids");
    let req = sh(
        "limits/busybox:pids",
        "i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done; echo all forked",
        HostConfig {
            resources: berth::engine::wire::Resources {
                pids_limit: Some(10),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let id = client.create_container(None, &req).await.unwrap().id;
    client.start_container(&id).await.unwrap();
    let code = wait_exit(&client, &id).await;
    let out = logs(&client, &id).await;
    assert!(out.contains("can't fork"), "exit {code}, logs: {out}");
    assert!(!out.contains("all forked"), "{out}");
    assert_ne!(code, 0);
    let inspected = client.inspect_container(&id).await.unwrap();
    assert_eq!(inspected.host_config.resources.pids_limit, Some(10));
    assert!(!inspected.state.oom_killed);
    assert!(cgroups_of(std::slice::from_ref(&id)).is_empty());

    // The same loop without a limit forks all 30 (and the sleeps die with the container).
    let req = sh(
        "limits/busybox:pids",
        "i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done; echo all forked",
        HostConfig::default(),
    );
    let free = client.create_container(None, &req).await.unwrap().id;
    client.start_container(&free).await.unwrap();
    assert_eq!(wait_exit(&client, &free).await, 0);
    assert_eq!(logs(&client, &free).await, "all forked\n");
    let inspected = client.inspect_container(&free).await.unwrap();
    assert_eq!(inspected.host_config.resources.pids_limit, None);

    for c in [&id, &free] {
        client.remove_container(c, false, true).await.unwrap();
    }
    assert!(cgroups_of(&[id, free]).is_empty());
}

#[test]
fn a_memory_limit_oom_kills_a_memory_hog_that_runs_fine_without_one() {
    let engine = TestEngine::start();
    busybox(&engine, "limits/busybox:mem");
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"];
    // Docker's `oom` event comes before the `die` it causes. The engine subscribes before it
    // answers, so once `events` returns nothing can be missed.
    let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
    let client = engine.client();
    let watcher = std::thread::spawn(move || {
        common::engine::block_on(async move {
            use futures_util::StreamExt;
            let mut events = client
                .events(&[("container", "hog-limited")])
                .await
                .expect("subscribe to events");
            subscribed_tx.send(()).expect("test thread gone");
            let mut actions = Vec::new();
            while let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_secs(60), events.next()).await
            {
                let action = event.expect("event").action;
                let done = action == "die";
                actions.push(action);
                if done {
                    break;
                }
            }
            actions
        })
    });
    subscribed_rx.recv().expect("events watcher failed");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "hog-limited",
        "--network",
        "host",
        "--memory",
        "32m",
        "limits/busybox:mem",
    ];
    args.extend(hog);
    let out = engine.docker(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&["wait", "hog-limited"]);
    assert_eq!(text(&out.stdout).trim(), "137", "{}", text(&out.stderr));
    let actions = watcher.join().expect("events watcher panicked");
    assert_eq!(actions, ["create", "start", "oom", "die"]);
    let out = engine.docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}} {{.State.OOMKilled}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}",
        "hog-limited",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("137 true {} {}", 32 * MB, 64 * MB),
        "{}",
        text(&out.stderr)
    );

    let mut args = vec![
        "run",
        "-d",
        "--name",
        "hog-free",
        "--network",
        "host",
        "limits/busybox:mem",
    ];
    args.extend(hog);
    let out = engine.docker(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&["wait", "hog-free"]);
    assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));
    let out = engine.docker(&["logs", "hog-free"]);
    assert!(
        text(&out.stderr).contains("1+0 records out"),
        "{}",
        text(&out.stderr)
    );
    let out = engine.docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}} {{.State.OOMKilled}} {{.HostConfig.Memory}}",
        "hog-free",
    ]);
    assert_eq!(text(&out.stdout).trim(), "0 false 0");

    let ids: Vec<String> = ["hog-limited", "hog-free"]
        .iter()
        .map(|n| {
            let out = engine.docker(&["inspect", "--format", "{{.Id}}", n]);
            text(&out.stdout).trim().to_string()
        })
        .collect();
    let out = engine.docker(&["rm", "hog-limited", "hog-free"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(cgroups_of(&ids).is_empty());
}

#[tokio::test]
async fn cpu_cpuset_memory_and_swap_limits_reach_the_cgroup_files_and_go_with_stop() {
    let engine = TestEngine::start();
    let client = engine.client();
    busybox(&engine, "limits/busybox:cpu");
    let req = sh(
        "limits/busybox:cpu",
        "grep Cpus_allowed_list /proc/self/status; echo ready; exec sleep 300",
        HostConfig {
            resources: berth::engine::wire::Resources {
                nano_cpus: 500_000_000,
                cpu_shares: 512,
                cpuset_cpus: "0".into(),
                memory: 32 * MB,
                memory_swap: 96 * MB,
                memory_reservation: 16 * MB,
                pids_limit: Some(50),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let id = client.create_container(None, &req).await.unwrap().id;
    client.start_container(&id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !logs(&client, &id).await.contains("ready") {
        assert!(std::time::Instant::now() < deadline, "no ready line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the container sees: only CPU 0.
    let out = logs(&client, &id).await;
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "0"]),
        "{out}"
    );

    let (cpu, v2) = controller_dir("cpu", &id);
    if v2 {
        assert_eq!(read_trimmed(&cpu.join("cpu.max")), "50000 100000");
        assert_eq!(read_trimmed(&cpu.join("cpu.weight")), "20");
    } else {
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read_trimmed(&cpu.join("cpu.shares")), "512");
    }
    let (cpuset, _) = controller_dir("cpuset", &id);
    assert_eq!(read_trimmed(&cpuset.join("cpuset.cpus")), "0");
    let (pids, _) = controller_dir("pids", &id);
    assert_eq!(read_trimmed(&pids.join("pids.max")), "50");
    let (memory, v2) = controller_dir("memory", &id);
    if v2 {
        assert_eq!(
            read_trimmed(&memory.join("memory.max")),
            (32 * MB).to_string()
        );
        assert_eq!(
            read_trimmed(&memory.join("memory.low")),
            (16 * MB).to_string()
        );
        // memory.swap.max is the swap alone; present only with swap accounting (else the
        // explicit swap limit would have failed the start).
        assert_eq!(
            read_trimmed(&memory.join("memory.swap.max")),
            (64 * MB).to_string()
        );
    } else {
        assert_eq!(
            read_trimmed(&memory.join("memory.limit_in_bytes")),
            (32 * MB).to_string()
        );
        assert_eq!(
            read_trimmed(&memory.join("memory.soft_limit_in_bytes")),
            (16 * MB).to_string()
        );
        assert_eq!(
            read_trimmed(&memory.join("memory.memsw.limit_in_bytes")),
            (96 * MB).to_string()
        );
    }
    // The container's init is in each of those cgroups.
    let pid = client.inspect_container(&id).await.unwrap().state.pid;
    for dir in [&cpu, &cpuset, &pids, &memory] {
        let procs = read_trimmed(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}: {procs}",
            dir.display()
        );
    }

    // An exec'd process is held by the same limits: it runs in the container's memory cgroup
    // and on CPU 0 only.
    let exec_id = client
        .create_exec(
            &id,
            &ExecConfig {
                attach_stdout: true,
                attach_stderr: true,
                cmd: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "grep Cpus_allowed_list /proc/self/status; cat /proc/self/cgroup".into(),
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stream = client.start_exec(&exec_id).await.unwrap();
    let mut exec_out = String::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        exec_out.push_str(&text(&chunk.unwrap().bytes));
    }
    assert!(
        exec_out
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "0"]),
        "{exec_out}"
    );
    // The container has no cgroup namespace, so its paths are the host's.
    let memory_line = if v2 {
        format!("0::/berth/{id}")
    } else {
        format!(":memory:/berth/{id}")
    };
    assert!(
        exec_out.contains(&memory_line),
        "{memory_line} not in {exec_out}"
    );

    client.stop_container(&id, Some(1)).await.unwrap();
    assert!(
        cgroups_of(std::slice::from_ref(&id)).is_empty(),
        "cgroups left after stop: {:?}",
        cgroups_of(std::slice::from_ref(&id))
    );
    // A restart applies the same limits again.
    client.start_container(&id).await.unwrap();
    let (cpu, v2) = controller_dir("cpu", &id);
    let quota = if v2 { "cpu.max" } else { "cpu.cfs_quota_us" };
    assert!(read_trimmed(&cpu.join(quota)).starts_with("50000"));
    client.remove_container(&id, true, true).await.unwrap();
    assert!(cgroups_of(&[id]).is_empty());
}

#[tokio::test]
async fn an_explicit_cfs_quota_and_period_are_written_as_given() {
    let engine = TestEngine::start();
    let client = engine.client();
    busybox(&engine, "limits/busybox:cfs");
    let req = sh(
        "limits/busybox:cfs",
        "exec sleep 300",
        HostConfig {
            resources: berth::engine::wire::Resources {
                cpu_quota: 25_000,
                cpu_period: 50_000,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let id = client.create_container(None, &req).await.unwrap().id;
    client.start_container(&id).await.unwrap();
    let (cpu, v2) = controller_dir("cpu", &id);
    if v2 {
        assert_eq!(read_trimmed(&cpu.join("cpu.max")), "25000 50000");
    } else {
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "25000");
        assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "50000");
    }
    // No memory limit: the container is not moved into a v1 memory hierarchy.
    let (memory, v2) = controller_dir("memory", &id);
    if !v2 {
        assert!(
            !memory.exists(),
            "{} made without a memory limit",
            memory.display()
        );
    }
    client.remove_container(&id, true, true).await.unwrap();
    assert!(cgroups_of(&[id]).is_empty());
}

#[tokio::test]
async fn dockers_validation_errors_are_400s_that_leave_nothing() {
    let engine = TestEngine::start();
    let client = engine.client();
    busybox(&engine, "limits/busybox:bad");
    let cpus = affinity_cpus();
    let cases: Vec<(HostConfig, String)> = vec![
        (
            HostConfig {
                resources: berth::engine::wire::Resources {
                    memory: MB,
                    ..Default::default()
                },
                ..Default::default()
            },
            "Minimum memory limit allowed is 6MB".into(),
        ),
        (
            HostConfig {
                resources: berth::engine::wire::Resources {
                    memory: 64 * MB,
                    memory_swap: 32 * MB,
                    ..Default::default()
                },
                ..Default::default()
            },
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ),
        (
            HostConfig {
                resources: berth::engine::wire::Resources {
                    nano_cpus: 64_000_000_000,
                    ..Default::default()
                },
                ..Default::default()
            },
            format!(
                "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            ),
        ),
        (
            HostConfig {
                resources: berth::engine::wire::Resources {
                    nano_cpus: 500_000_000,
                    cpu_period: 50_000,
                    ..Default::default()
                },
                ..Default::default()
            },
            "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
        ),
        (
            HostConfig {
                resources: berth::engine::wire::Resources {
                    cpuset_cpus: "0-127".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            "Requested CPUs are not available - requested 0-127, available: ".into(),
        ),
    ];
    for (host, message) in cases {
        let req = sh("limits/busybox:bad", "true", host.clone());
        let err = client.create_container(None, &req).await.unwrap_err();
        match err {
            ClientError::Api { status, message: m } => {
                assert_eq!(status, 400, "{m}");
                assert!(m.contains(&message), "{host:?}: {m}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The real Docker CLI gets the same message.
    let out = engine.docker(&["create", "--memory", "4m", "limits/busybox:bad", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        text(&out.stderr)
    );
    assert!(client.list_containers(true, &[]).await.unwrap().is_empty());
}

#[test]
fn docker_inspect_shows_every_limit_as_docker_does() {
    let engine = TestEngine::start();
    busybox(&engine, "limits/busybox:inspect");
    let out = engine.docker(&[
        "create",
        "--name",
        "limited",
        "--memory",
        "64m",
        "--memory-swap",
        "-1",
        "--memory-reservation",
        "32m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "20",
        "limits/busybox:inspect",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
        "limited",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{} -1 {} 500000000 512 0 20 0 0", 64 * MB, 32 * MB),
        "{}",
        text(&out.stderr)
    );
    let out = engine.docker(&["rm", "limited"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn compose_text(image: &str, mark: &str) -> String {
    format!(
        r#"
services:
  plain:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 20
  deployed:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    deploy:
      resources:
        limits:
          cpus: "0.25"
          memory: 48M
          pids: 30
        reservations:
          memory: 16M
"#
    )
}

#[test]
fn compose_limits_reach_docker_inspect_and_the_cgroups() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("limits/busybox", "1");
    let project = TestProject::new("limits", "");
    let mark = project.name.clone();
    std::fs::write(
        project.dir.path().join("compose.yaml"),
        compose_text(&image, &mark),
    )
    .unwrap();
    project.ok(&["up", "-d"]);

    let mut ids = Vec::new();
    for (service, memory, nano, pids, reservation) in [
        ("plain", 64 * MB, 500_000_000, 20, 0),
        ("deployed", 48 * MB, 250_000_000, 30, 16 * MB),
    ] {
        let name = format!("{}-{service}-1", project.name);
        let shown = project.docker(&[
            "inspect",
            "--format",
            "{{.Id}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.MemoryReservation}}",
            &name,
        ]);
        let fields: Vec<&str> = shown.split_whitespace().collect();
        assert_eq!(
            fields[1..],
            [
                memory.to_string(),
                nano.to_string(),
                pids.to_string(),
                reservation.to_string()
            ],
            "{service}: {shown}"
        );
        let id = fields[0].to_string();
        let (mem_dir, v2) = controller_dir("memory", &id);
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        assert_eq!(read_trimmed(&mem_dir.join(file)), memory.to_string());
        let (pids_dir, _) = controller_dir("pids", &id);
        assert_eq!(read_trimmed(&pids_dir.join("pids.max")), pids.to_string());
        let (cpu_dir, v2) = controller_dir("cpu", &id);
        let quota = nano / 10_000;
        if v2 {
            assert_eq!(
                read_trimmed(&cpu_dir.join("cpu.max")),
                format!("{quota} 100000")
            );
        } else {
            assert_eq!(
                read_trimmed(&cpu_dir.join("cpu.cfs_quota_us")),
                quota.to_string()
            );
        }
        ids.push(id);
    }

    project.ok(&["down", "-t", "1"]);
    assert!(cgroups_of(&ids).is_empty(), "{:?}", cgroups_of(&ids));
    assert!(project
        .leftover_processes()
        .iter()
        .all(|p| !p.contains("sleep")));
}

#[test]
fn compose_refuses_distinct_service_and_deploy_limits_before_creating_anything() {
    let project = TestProject::new(
        "limitsbad",
        "services:\n  web:\n    image: busybox\n    mem_limit: 64m\n    deploy:\n      resources:\n        limits:\n          memory: 128M\n",
    );
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains("can't set distinct values on 'mem_limit' (67108864) and 'deploy.resources.limits.memory' (134217728)"),
        "{err}"
    );
    // Refused while loading: no engine was needed, so none was started.
    assert!(project.engine_pid().is_none());
}
