//! The `berth up` flags scripts and CI rely on, end to end through the CLI: services'
//! `pull_policy` (never / missing / every_<duration>, and `berth pull` skipping never),
//! `--wait` and `--wait-timeout`, `--abort-on-container-exit` and `--exit-code-from`,
//! `--no-deps` and `--no-start`.

mod common;

use std::process::Output;

use common::project::TestProject;
use common::registry::TestRegistry;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn project_filter(project: &TestProject) -> String {
    format!("label=com.docker.compose.project={}", project.name)
}

/// IDs of the project's containers (all of them, or only the running ones).
/// The lines of a child's stdout, read on a thread so the reader can wait with a deadline.
fn stdout_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = std::io::BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut out, &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if tx.send(line).is_err() => return,
                Ok(_) => {}
            }
        }
    });
    rx
}

fn containers(project: &TestProject, all: bool) -> Vec<String> {
    let filter = project_filter(project);
    let mut args = vec!["ps", "-q", "--filter", &filter];
    if all {
        args.push("-a");
    }
    project
        .docker(&args)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn networks(project: &TestProject) -> Vec<String> {
    let filter = project_filter(project);
    project
        .docker(&["network", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn state_of(project: &TestProject, container: &str) -> String {
    project
        .docker(&["inspect", "--format", "{{.State.Status}}", container])
        .trim()
        .to_string()
}

/// The image's `Metadata.LastTagTime` as the Docker CLI reads it from the engine.
fn last_tag_time(project: &TestProject, image: &str) -> String {
    let out = project.docker(&["image", "inspect", image]);
    let inspect: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    inspect[0]["Metadata"]["LastTagTime"]
        .as_str()
        .unwrap_or_else(|| panic!("no Metadata.LastTagTime in {out}"))
        .to_string()
}

fn assert_nothing_left_running(project: &TestProject) {
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(procs.is_empty(), "nothing left running: {procs:?}");
}

fn policy_compose(image: &str, mark: &str, policy: &str) -> String {
    format!(
        r#"
services:
  app:
    image: {image}
    pull_policy: {policy}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#
    )
}

#[test]
fn pull_policy_never_missing_and_refresh() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("policy/busybox", "1");
    let project = TestProject::new("pullpolicy", "");
    let mark = project.name.clone();

    // never, with the image absent: a clear error naming the service, and nothing made.
    project.write_compose(&policy_compose(&image, &mark, "never"));
    let out = project.berth(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "service \"app\": image {image} is not present and its pull_policy is never"
        )),
        "{err}"
    );
    assert!(containers(&project, true).is_empty(), "no container made");
    assert!(networks(&project).is_empty(), "no network made");
    let images = project.docker(&["images", "-q"]);
    assert!(images.trim().is_empty(), "nothing pulled: {images}");

    // --pull never overrides a policy that would pull, with its own message.
    project.write_compose(&policy_compose(&image, &mark, "missing"));
    let err = project.fails(&["up", "-d", "--pull", "never"]);
    assert!(
        err.contains(&format!(
            "service \"app\": image {image} is not present and --pull never was given"
        )),
        "{err}"
    );
    // A policy that is not one is refused, naming the service and the valid ones.
    project.write_compose(&policy_compose(&image, &mark, "sometimes"));
    let err = project.fails(&["up", "-d"]);
    // As compose-go's schema says it: the file, line and column, and the valid ones.
    assert!(
        err.contains(
            "compose.yaml:5:18: services.app.pull_policy does not match pattern 'always|never|build|if_not_present|missing|refresh|daily|weekly|every_([0-9]+[wdhms])+'"
        ),
        "{err}"
    );
    assert!(containers(&project, true).is_empty());

    // `berth pull` skips a `never` service, as docker compose does.
    project.write_compose(&policy_compose(&image, &mark, "never"));
    let out = project.berth(&["pull"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("app"), "{}", stderr(&out));
    assert!(stderr(&out).contains("Skipped"), "{}", stderr(&out));
    assert!(project.docker(&["images", "-q"]).trim().is_empty());

    // A service that only builds cannot run with --no-build: the error names the service.
    project.write_compose(&format!(
        "services:\n  made:\n    build: .\n    environment:\n      BERTH_TEST_MARK: {mark}\n"
    ));
    let err = project.fails(&["up", "-d", "--no-build"]);
    assert!(
        err.contains("service \"made\"") && err.contains("must be built, but --no-build was given"),
        "{err}"
    );
    assert!(containers(&project, true).is_empty());
    assert!(networks(&project).is_empty());

    // missing: pulled once, then used as it is.
    project.write_compose(&policy_compose(&image, &mark, "missing"));
    let out = project.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pulled"), "{}", stderr(&out));
    let first = last_tag_time(&project, &image);
    assert!(first.starts_with("20"), "a real time: {first}");
    let out = project.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Pulled"), "{}", stderr(&out));
    assert_eq!(
        last_tag_time(&project, &image),
        first,
        "missing does not pull"
    );
    // Nor does `berth pull` for an explicit `missing` whose image is there.
    let out = project.berth(&["pull"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Skipped - Image is already present locally"),
        "{}",
        stderr(&out)
    );
    assert_eq!(last_tag_time(&project, &image), first);

    // every_1s: once the period has passed, up pulls again and the tag time moves on.
    project.write_compose(&policy_compose(&image, &mark, "every_1s"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = project.berth(&["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pulled"), "{}", stderr(&out));
    let second = last_tag_time(&project, &image);
    assert_ne!(second, first, "every_1s pulled again");

    // --pull never overrides the policy: no pull even though the period has passed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = project.berth(&["up", "-d", "--pull", "never"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_tag_time(&project, &image), second);

    project.ok(&["down", "-v", "-t", "1"]);
    assert!(containers(&project, true).is_empty());
    assert_nothing_left_running(&project);
}

fn wait_compose(image: &str, mark: &str, healthcheck: &str) -> String {
    format!(
        r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
    stop_grace_period: 1s
    healthcheck:
{healthcheck}
  web:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#
    )
}

#[test]
fn wait_returns_once_healthy_and_fails_naming_an_unhealthy_service() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("wait/busybox", "1");
    let project = TestProject::new("upwait", "");
    let mark = project.name.clone();
    let db = format!("{}-db-1", project.name);
    let web = format!("{}-web-1", project.name);

    project.write_compose(&wait_compose(
            &image,
            &mark,
            "      test: [\"CMD-SHELL\", \"test -f /tmp/ready\"]\n      interval: 200ms\n      retries: 30",
        ),
    );
    let out = project.berth(&["up", "--wait"]);
    assert!(out.status.success(), "up --wait failed:\n{}", stderr(&out));
    assert!(stderr(&out).contains("Healthy"), "{}", stderr(&out));
    // --wait is detached, and it returned only once the healthcheck had passed.
    let health = project.docker(&["inspect", "--format", "{{.State.Health.Status}}", &db]);
    assert_eq!(health.trim(), "healthy");
    assert_eq!(state_of(&project, &web), "running");
    project.ok(&["down", "-t", "1"]);

    // A check that fails: exit 1, naming the service.
    project.write_compose(&wait_compose(
        &image,
        &mark,
        "      test: [\"CMD\", \"false\"]\n      interval: 100ms\n      retries: 2",
    ));
    let out = project.berth(&["up", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("service \"db\": container {db} is unhealthy")),
        "{err}"
    );
    project.ok(&["down", "-t", "1"]);

    // A check that neither passes nor gives up: --wait-timeout ends the wait, naming db.
    project.write_compose(&wait_compose(
        &image,
        &mark,
        "      test: [\"CMD-SHELL\", \"test -f /never\"]\n      interval: 1s\n      retries: 1000",
    ));
    let out = project.berth(&["up", "--wait", "--wait-timeout", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("application not healthy after 2s") && err.contains("\"db\""),
        "{err}"
    );
    assert!(!err.contains("\"web\""), "web was running: {err}");

    project.ok(&["down", "-v", "-t", "1"]);
    assert!(containers(&project, true).is_empty());
    assert_nothing_left_running(&project);
}

fn exit_compose(image: &str, mark: &str) -> String {
    format!(
        r#"
services:
  job:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "sleep 1; echo job done; exit 3"]
  server:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#
    )
}

#[test]
fn exit_code_from_and_abort_on_container_exit_stop_the_rest() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("abort/busybox", "1");
    let project = TestProject::new("upabort", "");
    let mark = project.name.clone();
    project.write_compose(&exit_compose(&image, &mark));
    let server = format!("{}-server-1", project.name);
    // Start the engine (the refused runs below never reach it) so the Docker CLI can look.
    project.ok(&["ps", "-a"]);

    // The combinations docker compose refuses, refused before anything is made.
    for (args, wording) in [
        (
            vec!["up", "-d", "--exit-code-from", "job"],
            "--detach cannot be combined with --abort-on-container-exit",
        ),
        (
            vec!["up", "--wait", "--abort-on-container-exit"],
            "--wait cannot be combined with --abort-on-container-exit",
        ),
        (
            vec!["up", "--exit-code-from", "nosuch"],
            "no such service: nosuch",
        ),
    ] {
        let out = project.berth(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(wording), "{args:?}: {}", stderr(&out));
    }
    assert!(containers(&project, true).is_empty());

    let out = project.berth(&["up", "--exit-code-from", "job"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "berth exits with job's code:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("job done"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("job-1 exited with code 3"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("Aborting on container exit..."), "{err}");
    assert!(err.contains(&server) && err.contains("Stopped"), "{err}");
    assert!(
        containers(&project, false).is_empty(),
        "every container stopped"
    );
    assert_eq!(state_of(&project, &server), "exited");

    // Without --exit-code-from, the code is the one of the container that ended the run.
    let out = project.berth(&["up", "--abort-on-container-exit"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("Aborting on container exit..."));
    assert!(containers(&project, false).is_empty());
    assert_eq!(state_of(&project, &server), "exited");

    // --exit-code-from a service that was stopped by the abort: its own (signal) code.
    let out = project.berth(&["up", "--exit-code-from", "server"]);
    let code = out.status.code();
    assert!(
        code == Some(137) || code == Some(143),
        "server's stop code, got {code:?}: {}",
        stderr(&out)
    );

    project.ok(&["down", "-v", "-t", "1"]);
    assert!(containers(&project, true).is_empty());
    assert_nothing_left_running(&project);
}

#[test]
fn no_deps_starts_only_the_named_service_and_no_start_only_creates() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("nodeps/busybox", "1");
    let project = TestProject::new("upnodeps", "");
    let mark = project.name.clone();
    project.write_compose(&format!(
        r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "false"]
      interval: 100ms
      retries: 1
  app:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    depends_on:
      db:
        condition: service_healthy
"#
    ));
    let app = format!("{}-app-1", project.name);
    let db = format!("{}-db-1", project.name);

    // db would never be healthy; with --no-deps it is neither started nor waited for.
    let out = project.berth(&["up", "-d", "--no-deps", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(containers(&project, true).len(), 1, "only app");
    assert_eq!(state_of(&project, &app), "running");
    project.ok(&["down", "-t", "1"]);

    let out = project.berth(&["up", "--no-start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(containers(&project, true).len(), 2);
    assert_eq!(state_of(&project, &app), "created");
    assert_eq!(state_of(&project, &db), "created");

    project.ok(&["down", "-v", "-t", "1"]);
    assert!(containers(&project, true).is_empty());
    assert_nothing_left_running(&project);
}

/// Ctrl-C on an attached `up`: docker compose's "Gracefully stopping..." line, every container
/// stopped, and exit status 130 (143 for SIGTERM) so scripts see the interruption.
#[test]
fn interrupted_attached_up_stops_the_containers_and_exits_130() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("interrupt/busybox", "1");
    let project = TestProject::new("upint", "");
    project.write_compose(&format!(
            "services:\n  web:\n    image: {image}\n    environment:\n      BERTH_TEST_MARK: {}\n    \
             command: [\"sh\", \"-c\", \"echo web is up; exec sleep 300\"]\n    stop_grace_period: 1s\n",
            project.name
        ),
    );
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["-p", &project.name, "up"])
            .current_dir(project.dir.path())
            .env("BERTH_DATA_ROOT", project.data_root())
            .env("BERTH_RUN_ROOT", project.run_root())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn berth up");
        // Wait for the container's first line: the run is attached and the container runs.
        // stdout is read on a thread so every wait has a deadline: a `berth up` that ignores
        // the signal fails the test instead of hanging it.
        let lines = stdout_lines(child.stdout.take().expect("stdout"));
        let mut seen = String::new();
        while !seen.contains("web is up") {
            match lines.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(line) => seen.push_str(&line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("berth up ended or stalled before the container spoke: {seen}");
                }
            }
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal berth up");
        // The container's grace period is 1 s: 30 s is ample for the stop and the exit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().expect("poll berth up").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{signal:?}: berth up did not exit within 30 s of the signal");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("wait for berth up");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{signal:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("Gracefully stopping..."),
            "{}",
            stderr(&output)
        );
        assert!(
            containers(&project, false).is_empty(),
            "{signal:?}: every container stopped"
        );
    }
    project.ok(&["down"]);
    assert_nothing_left_running(&project);
}
