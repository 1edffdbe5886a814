//! `berth logs --since/--until` end to end: a container logs `early`, then `late` two seconds
//! later; cutting between them by the timestamps `logs -t` printed keeps exactly one side.
//! The Docker CLI asks the engine the same with fractional Unix times.

mod common;

use std::time::Duration;

use common::project::TestProject;
use common::registry::TestRegistry;

/// The RFC 3339 time `logs -t` printed for the line ending in `text`.
fn timestamp_of(logs: &str, text: &str) -> String {
    logs.lines()
        .find(|l| l.ends_with(text))
        .and_then(|l| l.split(" | ").nth(1).or(Some(l)))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {text:?} line with a timestamp in:\n{logs}"))
        .to_string()
}

#[test]
fn since_and_until_cut_the_log_at_a_time() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("logs/busybox", "1");
    let project = TestProject::new("logtime", "");
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "echo early; sleep 2; echo late; exec sleep 300"]
    stop_grace_period: 1s
"#,
        mark = project.name
    ));
    project.ok(&["up", "-d"]);
    let all = project
        .eventually(Duration::from_secs(20), || {
            let out = project.ok(&["logs", "-t", "--no-log-prefix", "web"]);
            out.contains("late").then_some(out)
        })
        .expect("the container logs both lines");
    let early = timestamp_of(&all, "early");
    let late = timestamp_of(&all, "late");
    assert!(early < late, "{early} < {late}");

    let since_late = project.ok(&["logs", "--no-log-prefix", "--since", &late, "web"]);
    assert_eq!(since_late, "late\n", "--since {late}");
    let until_early = project.ok(&["logs", "--no-log-prefix", "--until", &early, "web"]);
    assert_eq!(until_early, "early\n", "--until {early}");
    let last_hour = project.ok(&["logs", "--no-log-prefix", "--since", "1h", "web"]);
    assert_eq!(last_hour, "early\nlate\n");
    let future = project.ok(&["logs", "--no-log-prefix", "--since", "2999-01-01", "web"]);
    assert_eq!(future, "");

    let out = project.berth(&["logs", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid time \"soon\""), "{err}");

    // The Docker CLI sends `--since` as fractional Unix seconds: the engine keeps the fraction.
    let container = format!("{}-web-1", project.name);
    let by_docker = project.docker(&["logs", "--since", &late, &container]);
    assert_eq!(by_docker, "late\n");

    project.ok(&["down"]);
    assert!(project
        .leftover_processes()
        .iter()
        .all(|p| p.contains(" engine ")));
}
