//! Healthchecks and `depends_on: condition: service_healthy`, end to end through the `berth` CLI:
//! `up` starts a dependent only once its dependency's healthcheck passes, `ps` shows the health,
//! the schedule resumes after an engine restart, and an unhealthy dependency (or one without a
//! healthcheck) fails `up` with docker compose's message and leaves nothing behind.

mod common;

use std::time::Duration;

use common::project::TestProject;
use common::registry::TestRegistry;

fn healthy_compose(image: &str, mark: &str) -> String {
    format!(
        r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    # Ready only after a second: the app must not start before then.
    command: ["sh", "-c", "sleep 1; touch /tmp/ready /shared/ready; exec sleep 300"]
    stop_grace_period: 1s
    volumes:
      - shared:/shared
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 200ms
      timeout: 2s
      retries: 15
  app:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    depends_on:
      db:
        condition: service_healthy
    command: ["sh", "-c", "if [ -f /shared/ready ]; then echo db was ready; else echo db was NOT ready; fi; exec sleep 300"]
    stop_grace_period: 1s
    volumes:
      - shared:/shared
volumes:
  shared: {{}}
"#
    )
}

fn ps_row(project: &TestProject, service: &str) -> String {
    let ps = project.ok(&["ps", "-a"]);
    ps.lines()
        .find(|l| l.contains(&format!("{}-{service}-1", project.name)))
        .unwrap_or_else(|| panic!("no {service} row in:\n{ps}"))
        .to_string()
}

fn health_of(project: &TestProject, container: &str) -> serde_json::Value {
    let out = project.docker(&["inspect", "--format", "{{json .State.Health}}", container]);
    serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null)
}

#[test]
fn up_waits_for_a_healthy_dependency_and_health_survives_an_engine_restart() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("health/busybox", "1");
    let project = TestProject::new("health", "");
    let mark = project.name.clone();
    project.write_compose(&healthy_compose(&image, &mark));
    let db = format!("{}-db-1", project.name);

    let out = project.berth(&["up", "-d"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "up failed:\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("Healthy"), "up reports the wait: {stderr}");

    let logs = project
        .eventually(Duration::from_secs(10), || {
            let logs = project.ok(&["logs", "--no-log-prefix", "app"]);
            (!logs.trim().is_empty()).then_some(logs)
        })
        .expect("app logs");
    assert_eq!(
        logs.trim(),
        "db was ready",
        "app started before db was healthy"
    );

    // Docker's inspect shape and ps text.
    let health = health_of(&project, &db);
    assert_eq!(health["Status"], "healthy", "{health}");
    assert_eq!(health["FailingStreak"], 0, "{health}");
    let log = health["Log"].as_array().expect("Log");
    assert!(!log.is_empty() && log.len() <= 5, "{health}");
    assert_eq!(log.last().unwrap()["ExitCode"], 0, "{health}");
    let row = ps_row(&project, "db");
    assert!(row.contains("Up ") && row.contains("(healthy)"), "{row}");
    let row = ps_row(&project, "app");
    assert!(
        !row.contains("healthy)") && !row.contains("(health:"),
        "app has no healthcheck: {row}"
    );

    // The engine goes away and comes back (the CLI starts it again): the status is kept and the
    // schedule resumes, so breaking the check makes db unhealthy.
    project.stop_engine();
    let row = ps_row(&project, "db");
    assert!(
        row.contains("(healthy)"),
        "health kept across restart: {row}"
    );
    project.docker(&["exec", &db, "rm", "/tmp/ready"]);
    let health = project
        .eventually(Duration::from_secs(20), || {
            let h = health_of(&project, &db);
            (h["Status"] == "unhealthy").then_some(h)
        })
        .expect("db turns unhealthy once its check fails after the restart");
    assert!(health["FailingStreak"].as_i64().unwrap() >= 15, "{health}");
    let last = health["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 1, "{health}");
    assert!(ps_row(&project, "db").contains("(unhealthy)"));

    project.ok(&["down", "-v"]);
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(procs.is_empty(), "nothing left running: {procs:?}");
}

#[test]
fn unhealthy_or_unchecked_dependency_fails_up_and_rolls_back() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("unhealthy/busybox", "1");
    let project = TestProject::new("unhealthy", "");
    let mark = project.name.clone();
    let compose = |healthcheck: &str| {
        format!(
            r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
{healthcheck}
  app:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    depends_on:
      db:
        condition: service_healthy
    command: ["sleep", "300"]
"#
        )
    };
    let db = format!("{}-db-1", project.name);
    let no_containers = |project: &TestProject| {
        let label = format!("label=com.docker.compose.project={}", project.name);
        project
            .docker(&["ps", "-aq", "--filter", &label])
            .trim()
            .is_empty()
    };

    project.write_compose(&compose(
            "    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 100ms\n      retries: 2",
        ),
    );
    let stderr = project.fails(&["up", "-d"]);
    assert!(
        stderr.contains(&format!(
            "dependency failed to start: container {db} is unhealthy"
        )),
        "{stderr}"
    );
    assert!(no_containers(&project), "the failed run was rolled back");

    // A probe that outlives its timeout is killed and counts as a failure.
    project.write_compose(&compose(
            "    healthcheck:\n      test: [\"CMD\", \"sleep\", \"30\"]\n      interval: 100ms\n      timeout: 300ms\n      retries: 1",
        ),
    );
    let stderr = project.fails(&["up", "-d"]);
    assert!(
        stderr.contains(&format!("container {db} is unhealthy")),
        "{stderr}"
    );
    assert!(no_containers(&project));

    // Waiting for health of a container that has no healthcheck is an error, not a hang.
    project.write_compose(&compose(""));
    let stderr = project.fails(&["up", "-d"]);
    assert!(
        stderr.contains(&format!("container {db} has no healthcheck configured")),
        "{stderr}"
    );
    assert!(no_containers(&project));
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(
        procs.is_empty(),
        "nothing left running (probes included): {procs:?}"
    );
}
