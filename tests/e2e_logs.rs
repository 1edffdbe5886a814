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

/// `logging.options` `max-size` / `max-file` rotate a service's log: `up` shows every line as
/// it comes (its attach follows the log across rotations), `logs` shows what the kept files
/// hold, the engine records the options as Docker does, and a bad size fails the `up`.
#[test]
fn logging_options_rotate_the_log() {
    let project = TestProject::new("logrot", "");
    project.import_busybox("local/logrot:1");
    let compose = |max_size: &str| {
        format!(
            r#"
x-chatty: &chatty
  image: local/logrot:1
  command: ["sh", "-c", "i=1; while [ $$i -le 200 ]; do echo $$TAG line $$i; i=$$((i+1)); done"]
services:
  keep:
    <<: *chatty
    environment: {{TAG: keep}}
    logging: {{driver: json-file, options: {{max-size: 1k, max-file: "100"}}}}
  short:
    <<: *chatty
    environment: {{TAG: short}}
    logging: {{options: {{max-size: {max_size}, max-file: "2"}}}}
"#
        )
    };
    let lines = |tag: &str| -> String { (1..=200).map(|i| format!("{tag} line {i}\n")).collect() };
    let only = |text: &str, tag: &str| -> String {
        text.lines()
            .filter(|l| l.starts_with(&format!("{tag} ")))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    project.write_compose(&compose("1k"));
    let out = project.berth(&["up", "--no-log-prefix"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("logging"), "no warning: {stderr}");
    // About 15 rotations while `up` followed the log.
    assert_eq!(only(&stdout, "keep"), lines("keep"), "up shows every line");

    assert_eq!(
        project.ok(&["logs", "--no-log-prefix", "keep"]),
        lines("keep")
    );
    let kept = project.ok(&["logs", "--no-log-prefix", "short"]);
    assert!(
        kept.ends_with("short line 200\n") && !kept.starts_with("short line 1\n"),
        "{kept}"
    );
    assert!(lines("short").ends_with(&kept), "a whole tail:\n{kept}");
    let container = format!("{}-short-1", project.name);
    let recorded = project.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}",
        &container,
    ]);
    assert_eq!(recorded.trim(), "json-file 1k 2");
    project.ok(&["down"]);

    project.write_compose(&compose("lots"));
    let err = project.fails(&["up", "-d"]);
    assert!(err.contains("invalid max-size \"lots\""), "{err}");
    assert_eq!(project.ok(&["ps", "-a", "-q"]).trim(), "", "nothing left");
    project.ok(&["down"]);
}
