//! The README's commands and flags that no other suite covers, end to end through the CLI as a
//! user types them: `up --force-recreate` / `--no-recreate` / `--remove-orphans`, the global
//! `-f`, `--project-directory`, `--env-file` and `--profile`, `version`, `config`, `import`,
//! `run --service-ports`, `logs -f` on a running container, `depends_on:
//! service_completed_successfully`, restart policies (also when the engine starts), zombie
//! reaping by `init`, and the service options `labels`, `stop_signal`, `working_dir`, `user`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::project::TestProject;
use common::registry::TestRegistry;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The statuses docker compose's progress shows for `kind name`, in order
/// (` ✔ Container p-app-1  Recreate`, `... Recreated`, `... Started`).
fn statuses_of(progress: &str, kind: &str, name: &str) -> Vec<String> {
    progress
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.windows(2).any(|w| w[0] == kind && w[1] == name)
        })
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// `up` (or any command) with the given args; returns stderr, asserting success.
fn progress(project: &TestProject, args: &[&str]) -> String {
    let out = project.berth(args);
    assert!(out.status.success(), "berth {args:?}: {}", stderr(&out));
    stderr(&out)
}

fn container_id(project: &TestProject, name: &str) -> String {
    project
        .docker(&["inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn inspect(project: &TestProject, name: &str, format: &str) -> String {
    project
        .docker(&["inspect", "--format", format, name])
        .trim()
        .to_string()
}

fn exists(project: &TestProject, name: &str) -> bool {
    let out = std::process::Command::new(common::precondition::tool("docker"))
        .arg("-H")
        .arg(format!("unix://{}", project.socket().display()))
        .args(["inspect", name])
        .output()
        .expect("run docker");
    out.status.success()
}

#[test]
fn recreate_flags_and_orphans_act_as_in_docker_compose() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/recreate", "1");
    let project = TestProject::new("recreate", "");
    let mark = project.name.clone();
    let compose = |value: &str, with_extra: bool| {
        let mut text = format!(
            "services:\n  app:\n    image: {image}\n    command: [sleep, \"300\"]\n    stop_grace_period: 1s\n    environment:\n      BERTH_TEST_MARK: {mark}\n      VALUE: \"{value}\"\n"
        );
        if with_extra {
            text.push_str(&format!(
                "  extra:\n    image: {image}\n    command: [sleep, \"300\"]\n    stop_grace_period: 1s\n    environment:\n      BERTH_TEST_MARK: {mark}\n"
            ));
        }
        text
    };
    let app = format!("{}-app-1", project.name);
    let extra = format!("{}-extra-1", project.name);

    project.write_compose(&compose("1", true));
    progress(&project, &["up", "-d"]);
    let first = container_id(&project, &app);

    // Unchanged: kept as it is.
    let out = progress(&project, &["up", "-d"]);
    assert_eq!(statuses_of(&out, "Container", &app), ["Running"], "{out}");
    assert_eq!(container_id(&project, &app), first);

    // Changed, but --no-recreate: kept, still running with the old environment.
    project.write_compose(&compose("2", true));
    let out = progress(&project, &["up", "-d", "--no-recreate"]);
    assert_eq!(statuses_of(&out, "Container", &app), ["Running"], "{out}");
    assert_eq!(container_id(&project, &app), first);
    assert_eq!(
        project
            .ok(&["exec", "-T", "app", "sh", "-c", "echo $VALUE"])
            .trim(),
        "1"
    );

    // Changed: recreated with the new environment; the unchanged service is kept.
    let extra_before = container_id(&project, &extra);
    let out = progress(&project, &["up", "-d"]);
    assert_eq!(
        statuses_of(&out, "Container", &app),
        ["Recreate", "Recreated", "Started"],
        "{out}"
    );
    let second = container_id(&project, &app);
    assert_ne!(second, first);
    assert_eq!(
        project
            .ok(&["exec", "-T", "app", "sh", "-c", "echo $VALUE"])
            .trim(),
        "2"
    );
    assert_eq!(container_id(&project, &extra), extra_before);

    // Unchanged, but --force-recreate: both recreated.
    let out = progress(&project, &["up", "-d", "--force-recreate"]);
    assert_eq!(
        statuses_of(&out, "Container", &app),
        ["Recreate", "Recreated", "Started"],
        "{out}"
    );
    assert_eq!(
        statuses_of(&out, "Container", &extra),
        ["Recreate", "Recreated", "Started"],
        "{out}"
    );
    assert_ne!(container_id(&project, &app), second);

    // A service removed from the file: an orphan, warned about and kept ...
    project.write_compose(&compose("2", false));
    let out = progress(&project, &["up", "-d"]);
    assert!(
        out.contains(&format!(
            "WARN Found orphan containers ({extra}) for this project."
        )),
        "{out}"
    );
    assert!(
        exists(&project, &extra),
        "the orphan is kept without --remove-orphans"
    );
    // ... until --remove-orphans removes it.
    let out = progress(&project, &["up", "-d", "--remove-orphans"]);
    assert_eq!(statuses_of(&out, "Container", &extra), ["Removed"], "{out}");
    assert!(!exists(&project, &extra), "the orphan is removed");
    project.ok(&["down"]);
}

#[test]
fn file_project_directory_env_file_and_profile_select_what_up_runs() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/select", "1");
    let project = TestProject::new("select", "services: {}\n");
    let mark = project.name.clone();
    let dir = project.dir.path();
    // The default compose.yaml has nothing; `-f other.yaml` names the real file, whose image and
    // greeting come from a custom env file, and whose `debug` service has a profile.
    std::fs::write(
        dir.join("other.yaml"),
        format!(
            "services:\n  app:\n    image: ${{IMAGE}}\n    command: [sh, -c, 'echo $$GREETING; sleep 300']\n    stop_grace_period: 1s\n    environment:\n      GREETING: ${{GREETING}}\n      BERTH_TEST_MARK: {mark}\n  debug:\n    image: ${{IMAGE}}\n    profiles: [debug]\n    command: [sleep, \"300\"]\n    stop_grace_period: 1s\n    environment:\n      BERTH_TEST_MARK: {mark}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".env"), "GREETING=from-dot-env\n").unwrap();
    std::fs::write(
        dir.join("custom.env"),
        format!("IMAGE={image}\nGREETING=from-custom-env\n"),
    )
    .unwrap();

    // --project-directory: run from elsewhere; the files resolve against the named directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();
    let services = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["-p", &project.name, "--project-directory", &dir_arg];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["config", "--services"]);
        let out = project.berth_in(elsewhere.path(), false, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    // --env-file is relative to the working directory, as in docker compose: name it in full.
    let env_file = dir.join("custom.env").to_string_lossy().into_owned();
    // So is -f.
    let file = dir.join("other.yaml").to_string_lossy().into_owned();
    let base = ["-f", &file, "--env-file", &env_file];
    assert_eq!(services(&base), ["app"]);
    let mut with_profile = base.to_vec();
    with_profile.extend(["--profile", "debug"]);
    assert_eq!(services(&with_profile), ["app", "debug"]);

    // The same flags drive `up`: both services run, and the greeting is the custom env file's.
    let mut up = vec!["-p", project.name.as_str(), "--project-directory", &dir_arg];
    up.extend(&with_profile);
    up.extend(["up", "-d"]);
    let out = project.berth_in(elsewhere.path(), false, &up);
    assert!(out.status.success(), "{}", stderr(&out));
    let running = project.docker(&[
        "ps",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=com.docker.compose.project={}", project.name),
    ]);
    let mut running: Vec<&str> = running.lines().collect();
    running.sort();
    assert_eq!(
        running,
        [
            format!("{}-app-1", project.name),
            format!("{}-debug-1", project.name)
        ]
    );
    let logs = project
        .eventually(Duration::from_secs(10), || {
            let out = project.berth(&[
                "-f",
                &file,
                "--env-file",
                "custom.env",
                "logs",
                "--no-log-prefix",
                "app",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (!text.is_empty()).then_some(text)
        })
        .expect("app logged its greeting");
    assert_eq!(logs.trim(), "from-custom-env");
    let mut down = vec!["-p", project.name.as_str(), "--project-directory", &dir_arg];
    down.extend(&with_profile);
    down.push("down");
    let out = project.berth_in(elsewhere.path(), false, &down);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn version_config_and_import_print_and_do_what_the_readme_says() {
    let project = TestProject::new(
        "cfg",
        "services:\n  web:\n    image: example/web:${TAG:-1.0}\n    ports: [\"127.0.0.1:8080:80\"]\n    environment:\n      A: b\n",
    );
    assert_eq!(
        project.ok(&["version"]).trim(),
        format!("berth version v{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        project.ok(&["version", "--short"]).trim(),
        env!("CARGO_PKG_VERSION")
    );

    let config = project.ok(&["config"]);
    let model: serde_yaml::Value = serde_yaml::from_str(&config).expect("config prints YAML");
    assert_eq!(model["name"].as_str(), Some(project.name.as_str()));
    let web = &model["services"]["web"];
    assert_eq!(web["image"].as_str(), Some("example/web:1.0"));
    assert_eq!(web["environment"]["A"].as_str(), Some("b"));
    let port = &web["ports"][0];
    assert_eq!(port["host_ip"].as_str(), Some("127.0.0.1"));
    assert_eq!(port["published"].as_str(), Some("8080"));
    assert_eq!(port["target"].as_u64(), Some(80));
    assert_eq!(
        project.ok(&["config", "--images"]).trim(),
        "example/web:1.0"
    );

    // import: a root filesystem tar becomes an image that runs.
    let image = format!("readme-import/{}:1", project.name);
    project.import_busybox(&image);
    project.write_compose(&format!(
        "services:\n  app:\n    image: {image}\n    pull_policy: never\n    command: [echo, imported]\n"
    ));
    let out = project.ok(&["run", "--rm", "app"]);
    assert_eq!(out.trim(), "imported");
}

#[test]
fn completed_successfully_waits_for_the_exit_and_refuses_a_failure() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/completed", "1");
    let project = TestProject::new("completed", "");
    let mark = project.name.clone();
    let compose = |code: u8| {
        format!(
            r#"services:
  migrate:
    image: {image}
    command: [sh, -c, "sleep 1; echo migrated > /data/state; exit {code}"]
    volumes: [data:/data]
    environment: {{BERTH_TEST_MARK: {mark}}}
  app:
    image: {image}
    command: [sh, -c, "cat /data/state; sleep 300"]
    stop_grace_period: 1s
    volumes: [data:/data]
    environment: {{BERTH_TEST_MARK: {mark}}}
    depends_on:
      migrate: {{condition: service_completed_successfully}}
volumes:
  data: {{}}
"#
        )
    };
    project.write_compose(&compose(0));
    progress(&project, &["up", "-d"]);
    // app started only after migrate wrote its state: it printed it first thing.
    let logs = project
        .eventually(Duration::from_secs(10), || {
            let text = project.ok(&["logs", "--no-log-prefix", "app"]);
            (!text.is_empty()).then_some(text)
        })
        .expect("app logged");
    assert_eq!(logs.trim(), "migrated");
    project.ok(&["down", "-v"]);

    project.write_compose(&compose(3));
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains("service \"migrate\" didn't complete successfully: exit 3"),
        "{err}"
    );
    assert!(
        !exists(&project, &format!("{}-app-1", project.name)),
        "the dependant is not started"
    );
    project.ok(&["down", "-v"]);
}

/// `RestartCount` of a container, as the Docker CLI reads it.
fn restart_count(project: &TestProject, name: &str) -> u32 {
    inspect(project, name, "{{.RestartCount}}")
        .parse()
        .unwrap_or(0)
}

#[test]
fn restart_policies_including_unless_stopped_and_at_engine_start() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/restart", "1");
    let project = TestProject::new("restart", "");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"services:
  always:
    image: {image}
    restart: always
    command: [sh, -c, "sleep 1; exit 1"]
    environment: {{BERTH_TEST_MARK: {mark}}}
  unless:
    image: {image}
    restart: unless-stopped
    command: [sleep, "300"]
    stop_grace_period: 1s
    environment: {{BERTH_TEST_MARK: {mark}}}
  never:
    image: {image}
    restart: "no"
    command: [sh, -c, "exit 2"]
    environment: {{BERTH_TEST_MARK: {mark}}}
"#
    ));
    let always = format!("{}-always-1", project.name);
    let unless = format!("{}-unless-1", project.name);
    let never = format!("{}-never-1", project.name);
    progress(&project, &["up", "-d"]);

    // `always` comes back after each exit; `no` stays exited.
    project
        .eventually(Duration::from_secs(15), || {
            (restart_count(&project, &always) >= 2).then_some(())
        })
        .expect("the always container is restarted after it exits");
    project
        .eventually(Duration::from_secs(5), || {
            (inspect(&project, &never, "{{.State.Status}}") == "exited").then_some(())
        })
        .expect("the never container exits");
    assert_eq!(inspect(&project, &never, "{{.State.ExitCode}}"), "2");
    assert_eq!(restart_count(&project, &never), 0);

    // `unless-stopped` stopped by the user stays stopped, also when the engine starts again.
    project.ok(&["stop", "unless"]);
    assert_eq!(inspect(&project, &unless, "{{.State.Status}}"), "exited");

    // The engine goes away (containers outlive it); `always` exits meanwhile and is restarted
    // when the engine starts again.
    let pid = project.engine_pid().expect("engine runs");
    // SAFETY: kill(2) on the engine this project's CLI started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    project
        .eventually(Duration::from_secs(5), || {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        })
        .expect("engine gone");
    std::thread::sleep(Duration::from_millis(1500)); // longer than one run of `always`
    let before = Instant::now();
    project.ok(&["ps"]); // starts the engine again
    project
        .eventually(Duration::from_secs(15), || {
            (inspect(&project, &always, "{{.State.Status}}") == "running").then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "always is not running {:?} after the engine started: {} (restarts: {})",
                before.elapsed(),
                inspect(&project, &always, "{{.State.Status}} {{.State.ExitCode}}"),
                restart_count(&project, &always)
            )
        });
    assert_eq!(inspect(&project, &unless, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&project, &never, "{{.State.Status}}"), "exited");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn init_reaps_orphaned_zombies() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/init", "1");
    let project = TestProject::new("init", "");
    let mark = project.name.clone();
    // Each `sh -c 'sleep 0.2 &'` exits at once and orphans its sleep to PID 1; a PID 1 that does
    // not reap leaves the sleeps as zombies.
    let zombies_with = |init: bool| -> String {
        project.write_compose(&format!(
            r#"services:
  app:
    image: {image}
    init: {init}
    command: [sh, -c, "for i in 1 2 3; do sh -c 'sleep 0.2 &'; done; sleep 300"]
    stop_grace_period: 1s
    environment: {{BERTH_TEST_MARK: {mark}}}
"#
        ));
        progress(&project, &["up", "-d", "--force-recreate"]);
        std::thread::sleep(Duration::from_secs(1));
        let ps = project.ok(&["exec", "-T", "app", "ps", "-o", "stat,comm"]);
        ps.lines()
            .filter(|l| l.trim_start().starts_with('Z'))
            .count()
            .to_string()
    };
    assert_eq!(
        zombies_with(false),
        "3",
        "without init the orphans stay zombies (the test's premise)"
    );
    assert_eq!(zombies_with(true), "0", "berth's init reaps them");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn labels_stop_signal_working_dir_and_user_reach_the_container() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/options", "1");
    let project = TestProject::new("opts", "");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"services:
  app:
    image: {image}
    labels:
      org.example.team: backend
    stop_signal: SIGUSR1
    stop_grace_period: 20s
    working_dir: /tmp
    user: "65534:65534"
    command: [sh, -c, "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done"]
    environment: {{BERTH_TEST_MARK: {mark}}}
"#
    ));
    progress(&project, &["up", "-d"]);
    let app = format!("{}-app-1", project.name);
    assert_eq!(
        inspect(
            &project,
            &app,
            "{{index .Config.Labels \"org.example.team\"}}"
        ),
        "backend"
    );
    assert_eq!(project.ok(&["exec", "-T", "app", "pwd"]).trim(), "/tmp");
    assert_eq!(
        project.ok(&["exec", "-T", "app", "id", "-u"]).trim(),
        "65534"
    );
    assert_eq!(
        project.ok(&["exec", "-T", "app", "id", "-g"]).trim(),
        "65534"
    );
    // The workload itself (PID 1 of the container) runs as that user too.
    let status = project.ok(&["exec", "-T", "app", "cat", "/proc/1/status"]);
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534\t")),
        "{status}"
    );

    // stop sends SIGUSR1, which the workload traps and exits 0 on — well before the 20 s grace.
    let started = Instant::now();
    project.ok(&["stop", "app"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped by the signal, not the kill"
    );
    assert_eq!(inspect(&project, &app, "{{.State.ExitCode}}"), "0");
    let logs = project.ok(&["logs", "--no-log-prefix", "app"]);
    assert_eq!(logs.trim(), "got-usr1");
    project.ok(&["down"]);
}

#[test]
fn run_service_ports_publishes_only_when_asked() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/ports", "1");
    let project = TestProject::new("svcports", "");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"services:
  web:
    image: {image}
    ports: ["127.0.0.1::80"]
    command: [sh, -c, "echo served > /tmp/index.html; httpd -f -p 80 -h /tmp"]
    stop_grace_period: 1s
    environment: {{BERTH_TEST_MARK: {mark}}}
"#
    ));
    // Without --service-ports a one-off container publishes nothing.
    project.ok(&[
        "run",
        "-d",
        "--name",
        &format!("{}-plain", project.name),
        "web",
    ]);
    let ports = project.docker(&["port", &format!("{}-plain", project.name)]);
    assert_eq!(
        ports.trim(),
        "",
        "no port published without --service-ports"
    );

    project.ok(&[
        "run",
        "-d",
        "--service-ports",
        "--name",
        &format!("{}-pub", project.name),
        "web",
    ]);
    let ports = project.docker(&["port", &format!("{}-pub", project.name), "80/tcp"]);
    let address = ports.lines().next().unwrap_or_default().trim().to_string();
    assert!(address.starts_with("127.0.0.1:"), "{ports}");
    let body = project
        .eventually(Duration::from_secs(10), || {
            let out = std::process::Command::new("curl")
                .args(["-fsS", "--max-time", "2", &format!("http://{address}/")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .expect("the published port serves");
    assert_eq!(body.trim(), "served");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn logs_follow_streams_lines_from_a_running_container() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/logs", "1");
    let project = TestProject::new("logsf", "");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"services:
  ticker:
    image: {image}
    command: [sh, -c, "i=0; while true; do i=$$((i+1)); echo tick-$$i; sleep 0.2; done"]
    stop_grace_period: 1s
    environment: {{BERTH_TEST_MARK: {mark}}}
"#
    ));
    progress(&project, &["up", "-d"]);
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "-p",
            &project.name,
            "logs",
            "-f",
            "--no-log-prefix",
            "ticker",
        ])
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    // Read in a thread so that a broken -f (exiting, or never printing) fails under a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lines.len() < 15 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    let still_following = follow.try_wait().expect("poll logs -f").is_none();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        still_following,
        "logs -f keeps running while the container does"
    );
    assert_eq!(
        lines.len(),
        15,
        "lines arrive as they are written: {lines:?}"
    );
    // Consecutive ticks, none lost or repeated.
    let first: u32 = lines[0]
        .trim_start_matches("tick-")
        .parse()
        .expect("tick line");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("tick-{}", first + i as u32));
    }
    project.ok(&["down", "-t", "1"]);
}

/// The README's "warned" list, case by case: (README name, the service attributes that use it,
/// the attribute as the warning names it). `README_QUALIFIERS` are the other backticked words of
/// that paragraph (values and qualifiers, not attributes).
const WARNED: &[(&str, &str, &str)] = &[
    ("annotations", "annotations: {a: b}", "annotations"),
    ("attach: false", "attach: false", "attach: false"),
    (
        "blkio_config",
        "blkio_config: {weight: 300}",
        "blkio_config",
    ),
    ("cgroup", "cgroup: host", "cgroup"),
    ("cgroup_parent", "cgroup_parent: elsewhere", "cgroup_parent"),
    ("cpu_count", "cpu_count: 1", "cpu_count"),
    ("cpu_percent", "cpu_percent: 50", "cpu_percent"),
    ("cpu_rt_period", "cpu_rt_period: 1000", "cpu_rt_period"),
    ("cpu_rt_runtime", "cpu_rt_runtime: 100", "cpu_rt_runtime"),
    (
        "credential_spec",
        "credential_spec: {config: spec}",
        "credential_spec",
    ),
    (
        "deploy.restart_policy.delay",
        "deploy: {restart_policy: {condition: on-failure, delay: 5s}}",
        "deploy.restart_policy.delay",
    ),
    (
        "window",
        "deploy: {restart_policy: {window: 10s}}",
        "deploy.restart_policy.window",
    ),
    (
        "device_cgroup_rules",
        "device_cgroup_rules: [\"c 1:3 mr\"]",
        "device_cgroup_rules",
    ),
    ("dns", "dns: [192.0.2.53]", "dns"),
    (
        "external_links",
        "external_links: [elsewhere]",
        "external_links",
    ),
    ("gpus", "gpus: all", "gpus"),
    ("group_add", "group_add: [mail]", "group_add"),
    ("ipc", "ipc: host", "ipc: host"),
    ("isolation", "isolation: process", "isolation: process"),
    ("links", "links: [w0]", "links"),
    (
        "logging.driver",
        "logging: {driver: syslog}",
        "logging.driver: syslog",
    ),
    (
        "mac_address",
        "mac_address: \"02:42:ac:11:00:99\"",
        "mac_address",
    ),
    ("mem_swappiness", "mem_swappiness: 10", "mem_swappiness"),
    (
        "ipv6_address",
        "networks: {default: {ipv6_address: \"fd00::10\"}}",
        "networks.default.ipv6_address",
    ),
    (
        "link_local_ips",
        "networks: {default: {link_local_ips: [169.254.8.8]}}",
        "networks.default.link_local_ips",
    ),
    (
        "driver_opts",
        "networks: {default: {driver_opts: {a: b}}}",
        "networks.default.driver_opts",
    ),
    (
        "oom_kill_disable",
        "oom_kill_disable: true",
        "oom_kill_disable",
    ),
    ("oom_score_adj", "oom_score_adj: 100", "oom_score_adj"),
    ("pid", "pid: host", "pid: host"),
    (
        "post_start",
        "post_start: [{command: [\"true\"]}]",
        "post_start",
    ),
    (
        "pre_start",
        "pre_start: [{command: [\"true\"]}]",
        "pre_start",
    ),
    ("pre_stop", "pre_stop: [{command: [\"true\"]}]", "pre_stop"),
    ("runtime", "runtime: runc", "runtime: runc"),
    (
        "secrets",
        "secrets: [swarm_secret]",
        "secrets: swarm_secret",
    ),
    (
        "configs",
        "configs: [swarm_config]",
        "configs: swarm_config",
    ),
    ("storage_opt", "storage_opt: {size: 1G}", "storage_opt"),
    ("use_api_socket", "use_api_socket: true", "use_api_socket"),
    (
        "userns_mode",
        "userns_mode: keep-id",
        "userns_mode: keep-id",
    ),
    ("uts", "uts: host", "uts: host"),
    ("volumes_from", "volumes_from: [w0]", "volumes_from"),
];
const README_QUALIFIERS: &[&str] = &[
    "private",
    "shareable",
    "json-file",
    "local",
    "external",
    "host",
    "WARN service \"web\": berth does not support `gpus` yet; ignored",
];

/// The README's "refused" list: (README name, service attributes, the start of the message).
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "security_opt",
        "security_opt: [\"seccomp:/etc/profile.json\"]",
        "berth does not support `security_opt: seccomp:/etc/profile.json` yet;",
    ),
    (
        "platform",
        "platform: linux/arm64",
        "berth does not support `platform: linux/arm64` yet; berth runs linux/amd64 images only",
    ),
    (
        "subpath",
        "volumes: [{type: volume, source: data, target: /data, volume: {subpath: sub}}]",
        "berth does not support `volumes[0].volume.subpath` yet; the whole volume would be mounted",
    ),
];

/// The backticked words of the README paragraph that starts with `start` (up to the next blank
/// line). Backticks inside a backticked example (`` `gpus` `` in the WARN line) are kept whole.
fn readme_words(start: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let from = readme
        .find(start)
        .unwrap_or_else(|| panic!("README has {start:?}"));
    let paragraph = readme[from..].split("\n\n").next().unwrap_or_default();
    let paragraph = paragraph.replace('\n', " ");
    let mut words = Vec::new();
    // The example warning line is quoted whole: `WARN service "web": ... `gpus` ...`.
    let mut rest = paragraph.as_str();
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        let close = if after.starts_with("WARN ") {
            after.find("ignored`").map(|i| i + "ignored".len())
        } else {
            after.find('`')
        };
        let Some(close) = close else { break };
        words.push(after[..close].to_string());
        rest = &after[close + 1..];
    }
    words
}

#[test]
fn the_readme_lists_exactly_the_warned_and_refused_cases_tested_here() {
    let warned = readme_words("Attributes berth does not implement are never ignored silently");
    let mut listed: Vec<&str> = warned.iter().map(String::as_str).collect();
    listed.retain(|w| !README_QUALIFIERS.contains(w) && *w != "up");
    let mut tested: Vec<&str> = WARNED.iter().map(|(name, _, _)| *name).collect();
    // `mac_address` is named twice: for the service and per network.
    tested.push("mac_address");
    listed.sort();
    tested.sort();
    assert_eq!(
        listed, tested,
        "README's warned list and this test's table differ"
    );

    let refused = readme_words("`up` refuses, before creating anything");
    for (name, _, _) in REFUSED {
        assert!(
            refused.iter().any(|w| w == name),
            "README's refused list names {name}: {refused:?}"
        );
    }
}

#[test]
fn each_warned_attribute_warns_and_the_service_runs_without_it() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/warned", "1");
    let project = TestProject::new("warned", "");
    let mark = project.name.clone();
    let mut compose = String::from("services:\n");
    for (i, (_, attrs, _)) in WARNED.iter().enumerate() {
        compose.push_str(&format!(
            "  w{i}:\n    image: {image}\n    command: [sleep, \"300\"]\n    stop_grace_period: 1s\n    environment: {{BERTH_TEST_MARK: {mark}}}\n    {attrs}\n"
        ));
    }
    // Only `external` (swarm) secrets and configs are warned about now.
    compose.push_str(
        "secrets:\n  swarm_secret: {external: true}\nconfigs:\n  swarm_config: {external: true}\n",
    );
    project.write_compose(&compose);
    let out = project.berth(&["up", "-d"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for (i, (_, _, field)) in WARNED.iter().enumerate() {
        let warning =
            format!("WARN service \"w{i}\": berth does not support `{field}` yet; ignored");
        assert!(err.contains(&warning), "missing {warning:?} in:\n{err}");
    }
    let running = project.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", project.name),
    ]);
    assert_eq!(running.lines().count(), WARNED.len(), "every service runs");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn each_refused_attribute_refuses_up_before_anything_is_made() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("readme/refused", "1");
    let project = TestProject::new("refused", "");
    let mark = project.name.clone();
    for (name, attrs, message) in REFUSED {
        project.write_compose(&format!(
            "services:\n  ok:\n    image: {image}\n    command: [sleep, \"300\"]\n    environment: {{BERTH_TEST_MARK: {mark}}}\n  bad:\n    image: {image}\n    command: [sleep, \"300\"]\n    environment: {{BERTH_TEST_MARK: {mark}}}\n    {attrs}\nvolumes:\n  data: {{}}\n"
        ));
        let err = project.fails(&["up", "-d"]);
        assert!(
            err.contains(&format!("service \"bad\": {message}")),
            "{name}: {err}"
        );
        // Refused on the client's side: the engine was not even needed.
        if !project.socket().exists() {
            continue;
        }
        let filter = format!("label=com.docker.compose.project={}", project.name);
        for kind in [
            &["ps", "-a", "-q"][..],
            &["network", "ls", "-q"],
            &["volume", "ls", "-q"],
        ] {
            let mut args = kind.to_vec();
            args.extend(["--filter", &filter]);
            assert_eq!(
                project.docker(&args).trim(),
                "",
                "{name}: {kind:?} made nothing"
            );
        }
    }
}
