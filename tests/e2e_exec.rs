//! `berth exec` end to end: output on the right streams, the command's exit status, stdin
//! piped through (small and large), -e/-w/-u/-d, and docker compose's errors for a service
//! without a running container. The Docker CLI's `exec -i` goes through the same engine path.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::project::TestProject;
use common::registry::TestRegistry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `berth -p NAME ARGS` with `input` on its stdin.
fn berth_with_input(project: &TestProject, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name])
        .args(args)
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for berth");
    writer.join().expect("stdin writer");
    out
}

#[test]
fn exec_runs_in_the_service_container_with_stdin_output_and_exit_status() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("exec/busybox", "1");
    let project = TestProject::new("exec", "");
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
      GREETING: hello
    command: ["sleep", "300"]
    stop_grace_period: 1s
  job:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["true"]
"#,
        mark = project.name
    ));
    project.ok(&["up", "-d"]);

    // Streams and status.
    let out = project.berth(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "echo out $GREETING; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out hello\n");
    assert_eq!(text(&out.stderr), "err\n");

    // stdin reaches the command, and its end is the command's EOF.
    let out = berth_with_input(&project, &["exec", "-T", "web", "cat"], b"piped in\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "piped in\n");
    let big = vec![b'x'; 3 * 1024 * 1024 + 17];
    let out = berth_with_input(&project, &["exec", "-T", "web", "wc", "-c"], &big);
    assert_eq!(text(&out.stdout).trim(), big.len().to_string());
    // A command that never reads stdin still ends when it exits.
    let out = berth_with_input(&project, &["exec", "-T", "web", "true"], b"");
    assert_eq!(out.status.code(), Some(0));

    // -e, -w, -u.
    let out = project.ok(&[
        "exec",
        "-T",
        "-e",
        "EXTRA=1",
        "-w",
        "/tmp",
        "-u",
        "1234:1234",
        "web",
        "sh",
        "-c",
        "echo $EXTRA $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "1 /tmp 1234:1234\n");

    // -d: runs in the background, berth returns at once.
    project.ok(&["exec", "-d", "web", "sh", "-c", "echo detached > /tmp/d"]);
    let seen = project.eventually(std::time::Duration::from_secs(10), || {
        let o = project.berth(&["exec", "-T", "web", "cat", "/tmp/d"]);
        (text(&o.stdout) == "detached\n").then_some(())
    });
    assert!(seen.is_some(), "the detached command ran");

    // The Docker CLI's `exec -i` on the same engine.
    let container = format!("{}-web-1", project.name);
    let mut docker = Command::new("docker")
        .args(["-H", &format!("unix://{}", project.socket().display())])
        .args(["exec", "-i", &container, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker exec");
    docker
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"via docker\n")
        .expect("write");
    let out = docker.wait_with_output().expect("docker exec output");
    assert_eq!(text(&out.stdout), "via docker\n");

    // docker compose's errors, naming the service.
    for (args, wording) in [
        (
            vec!["exec", "-T", "nosuch", "true"],
            "no such service: nosuch",
        ),
        (
            vec!["exec", "-T", "job", "true"],
            "service \"job\" is not running",
        ),
        (
            vec!["exec", "-T", "--index", "2", "web", "true"],
            "service \"web\" has no container #2",
        ),
    ] {
        let out = project.berth(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(wording),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = project.berth(&["exec", "web"]);
    assert_eq!(out.status.code(), Some(2), "COMMAND is required");

    project.ok(&["down"]);
    assert!(project
        .leftover_processes()
        .iter()
        .all(|p| p.contains(" engine ")));
}
