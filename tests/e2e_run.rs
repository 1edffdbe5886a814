//! `berth run` end to end: a one-off container with its dependencies brought up first, COMMAND
//! or the service's own, the exit status passed on, `--rm`, `-d`, `--name`, `--entrypoint`,
//! `-e/-w/-u`, `--no-deps`; `up` keeps one-offs apart from the service's container and `down`
//! removes them with the rest.

mod common;

use std::process::{Command, Output, Stdio};

use common::project::TestProject;
use common::registry::TestRegistry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Names of the project's containers that match `filter` (a `docker ps --filter`), all states.
fn names(project: &TestProject, filter: &str) -> Vec<String> {
    let mut n: Vec<String> = project
        .docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", project.name),
            "--filter",
            filter,
        ])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    n.sort();
    n
}

fn run_with_stdin(project: &TestProject, args: &[&str], input: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name])
        .args(args)
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdin(input)
        .output()
        .expect("run berth")
}

#[test]
fn run_makes_a_one_off_container_after_its_dependencies() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("run/busybox", "1");
    let project = TestProject::new("run", "");
    project.write_compose(&format!(
        r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
  web:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
      FROM_SERVICE: yes-it-is
    command: ["echo", "the service's own command"]
    depends_on: [db]
"#,
        mark = project.name
    ));
    let db = format!("{}-db-1", project.name);
    let web = format!("{}-web-1", project.name);
    let oneoff = "label=com.docker.compose.oneoff=True";

    // COMMAND given: its output and status; the dependency is up; --rm leaves nothing.
    let out = run_with_stdin(
        &project,
        &[
            "run",
            "--rm",
            "web",
            "sh",
            "-c",
            "echo hi $FROM_SERVICE; echo oops >&2",
        ],
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi yes-it-is\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    assert_eq!(names(&project, "status=running"), vec![db.clone()]);
    assert!(names(&project, oneoff).is_empty(), "--rm removed it");
    assert!(!names(&project, "label=com.docker.compose.service=web").contains(&web));

    // No COMMAND: the service's; the exit status is berth's; without --rm the container stays.
    let out = run_with_stdin(&project, &["run", "web"], Stdio::null());
    assert_eq!(text(&out.stdout), "the service's own command\n");
    let out = run_with_stdin(
        &project,
        &["run", "web", "sh", "-c", "exit 4"],
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(4));
    let kept = names(&project, oneoff);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let prefix = format!("{}-web-run-", project.name);
    assert!(kept.iter().all(|n| n.starts_with(&prefix)), "{kept:?}");
    // `ps` lists one-offs only with -a; `rm` removes the stopped ones, as docker compose does.
    assert!(!project.ok(&["ps"]).contains(&prefix));
    assert!(project.ok(&["ps", "-a"]).contains(&prefix));
    let removed = project.ok(&["rm", "-f"]);
    assert!(
        kept.iter().all(|n| removed.contains(n.as_str())),
        "{removed}"
    );
    assert!(names(&project, oneoff).is_empty());
    assert_eq!(names(&project, "status=running"), vec![db.clone()]);

    // --entrypoint, -e, -w, -u, --name, -d.
    let out = run_with_stdin(
        &project,
        &[
            "run",
            "--rm",
            "-e",
            "EXTRA=1",
            "-w",
            "/tmp",
            "-u",
            "4321",
            "--entrypoint",
            "sh -c",
            "web",
            "echo $EXTRA $(pwd) $(id -u)",
        ],
        Stdio::null(),
    );
    assert_eq!(text(&out.stdout), "1 /tmp 4321\n", "{}", text(&out.stderr));
    let custom = format!("{}-custom", project.name);
    let out = run_with_stdin(
        &project,
        &["run", "-d", "--name", &custom, "web", "sleep", "300"],
        Stdio::null(),
    );
    assert_eq!(text(&out.stdout).trim(), custom, "{}", text(&out.stderr));
    assert!(names(&project, "status=running").contains(&custom));

    // Piped input reaches the container, and its end (here at once) is the container's EOF.
    let out = run_with_stdin(&project, &["run", "--rm", "web", "cat"], Stdio::piped());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    // `up` creates the service's own container next to the one-offs.
    project.ok(&["up", "-d"]);
    assert!(names(&project, "label=com.docker.compose.service=web").contains(&web));

    let out = project.berth(&["run", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such service: nosuch"));

    // `down` removes one-offs too (their network could not go otherwise).
    project.ok(&["down"]);
    assert!(names(&project, "status=exited").is_empty());
    assert!(names(&project, "status=running").is_empty());
    assert!(names(&project, oneoff).is_empty());

    // --no-deps: the dependency stays down.
    let out = run_with_stdin(
        &project,
        &["run", "--rm", "--no-deps", "web", "true"],
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(names(&project, "label=com.docker.compose.service=db").is_empty());
    project.ok(&["down"]);
    assert!(project
        .leftover_processes()
        .iter()
        .all(|p| p.contains(" engine ")));
}
