//! Docker's own clients against berth's engine: the Docker CLI (`docker run` with attach, wait
//! conditions and auto-remove, published ports on the default bridge, ps/logs/exec/inspect/rm,
//! networks and volumes) and docker-compose 1.29 (create, connect, start; services reaching each
//! other by name; ps, logs, down). Each test runs its own engine and imports a busybox image.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::engine::TestEngine;
use common::project::unique_name;
use common::registry::{free_port, populate_busybox_rootfs};

const IMAGE: &str = "local/busybox:clients";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run `command` with `input` on its stdin; SIGKILL after `secs` (a hung client fails the test
/// instead of hanging it: `docker run` forwards SIGTERM to the container, so only KILL works).
fn run_bounded(mut command: Command, input: Option<&[u8]>, secs: u64) -> Output {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn client");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{command:?} did not finish within {secs}s; stdout: {} stderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn docker(engine: &TestEngine, args: &[&str]) -> Output {
    let mut command = engine.docker_command();
    command.args(args);
    run_bounded(command, None, 60)
}

/// `docker ARGS` that must succeed; its stdout.
fn docker_ok(engine: &TestEngine, args: &[&str]) -> String {
    let out = docker(engine, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}\n{}",
        text(&out.stderr),
        engine.log_text()
    );
    text(&out.stdout)
}

/// Import a busybox root filesystem as `IMAGE`.
fn import_busybox(engine: &TestEngine) {
    let base = engine.data_root().parent().unwrap().join("image-src");
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let tar = base.join("busybox.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    docker_ok(engine, &["import", tar.to_str().unwrap(), IMAGE]);
}

/// GET `http://127.0.0.1:<port><path>` from the host, retried while the server comes up.
fn http_get(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let started = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-s", "-f", "-m", "3", &url])
            .output()
            .unwrap();
        if out.status.success() {
            return text(&out.stdout);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "curl {url} failed: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn docker_cli_run_attaches_publishes_and_manages_networks_and_volumes() {
    let engine = TestEngine::start();
    import_busybox(&engine);

    // Attach + wait(removed) + AutoRemove: the output comes back and nothing is left.
    assert_eq!(
        docker_ok(&engine, &["run", "--rm", IMAGE, "echo", "hi"]),
        "hi\n"
    );
    let out = docker(
        &engine,
        &[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    // stdin with -i: what the client sends before the start reaches the process, then EOF.
    let mut command = engine.docker_command();
    command.args(["run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo done"]);
    let out = run_bounded(command, Some(b"piped\n"), 60);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "piped\ndone\n");
    assert_eq!(docker_ok(&engine, &["ps", "-aq"]), "");
    // Without --rm the CLI waits for the next exit; `start -a` attaches to the next run.
    assert_eq!(
        docker_ok(&engine, &["run", "--name", "once", IMAGE, "echo", "again"]),
        "again\n"
    );
    assert_eq!(docker_ok(&engine, &["start", "-a", "once"]), "again\n");
    assert_eq!(docker_ok(&engine, &["logs", "once"]), "again\nagain\n");
    docker_ok(&engine, &["rm", "once"]);
    // A TTY: the container's own pty, its output raw (the terminal's CR LF).
    assert_eq!(
        docker_ok(&engine, &["run", "--rm", "-t", IMAGE, "tty"]),
        "/dev/pts/0\r\n"
    );

    // Networks and volumes.
    let network = unique_name("dcnet");
    let volume = unique_name("dcvol");
    docker_ok(&engine, &["network", "create", &network]);
    docker_ok(&engine, &["volume", "create", &volume]);
    assert!(
        docker_ok(&engine, &["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == network)
    );
    assert!(docker_ok(&engine, &["volume", "ls", "-q"])
        .lines()
        .any(|n| n == volume));

    // -d -p on the CLI's "default" network: Docker's default bridge, created on first use.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let mount = format!("{volume}:/www");
    docker_ok(
        &engine,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            "-v",
            &mount,
            IMAGE,
            "sh",
            "-c",
            "echo served by berth > /www/index.html; echo web up; exec httpd -f -p 80 -h /www",
        ],
    );
    assert_eq!(http_get(port, "/index.html"), "served by berth\n");
    let ps = docker_ok(&engine, &["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(ps.trim(), format!("web 127.0.0.1:{port}->80/tcp"));
    let networks = docker_ok(
        &engine,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
            "web",
        ],
    );
    assert_eq!(networks.trim(), "running bridge");
    // As on Docker's default bridge, containers there do not resolve each other by name.
    let lookup = docker_ok(
        &engine,
        &[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "timeout 3 nslookup web >/dev/null 2>&1 && echo resolved || echo unresolved",
        ],
    );
    assert_eq!(lookup, "unresolved\n");
    assert_eq!(docker_ok(&engine, &["logs", "web"]), "web up\n");
    assert_eq!(
        docker_ok(&engine, &["exec", "web", "cat", "/www/index.html"]),
        "served by berth\n"
    );

    // A container on the user network sees the volume's content too.
    let out = docker_ok(
        &engine,
        &[
            "run",
            "--rm",
            "--network",
            &network,
            "-v",
            &mount,
            IMAGE,
            "cat",
            "/www/index.html",
        ],
    );
    assert_eq!(out, "served by berth\n");

    docker_ok(&engine, &["rm", "-f", "web"]);
    assert_eq!(docker_ok(&engine, &["ps", "-aq"]), "");
    docker_ok(&engine, &["network", "rm", &network]);
    docker_ok(&engine, &["volume", "rm", &volume]);
    assert!(
        !docker_ok(&engine, &["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == network)
    );
    assert_eq!(docker_ok(&engine, &["volume", "ls", "-q"]), "");
}

/// `docker-compose -p <project> ARGS` (the Python 1.29 one) in `dir`, against `engine`.
fn compose(engine: &TestEngine, dir: &Path, project: &str, args: &[&str]) -> Output {
    let mut command = Command::new("docker-compose");
    command
        .args(["-p", project, "--ansi", "never"])
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", engine.docker_host())
        .env("DOCKER_CONFIG", dir.join(".docker"))
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME");
    run_bounded(command, None, 120)
}

fn compose_ok(engine: &TestEngine, dir: &Path, project: &str, args: &[&str]) -> String {
    let out = compose(engine, dir, project, args);
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed: {}\n{}",
        text(&out.stderr),
        engine.log_text()
    );
    text(&out.stdout)
}

#[test]
fn docker_compose_1_29_runs_a_stack_whose_services_reach_each_other_by_name() {
    let engine = TestEngine::start();
    import_busybox(&engine);
    let dir: PathBuf = engine.data_root().parent().unwrap().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3.7"
services:
  server:
    image: {IMAGE}
    command: sh -c 'mkdir /www && echo hello from server > /www/index.html && echo server up && exec httpd -f -p 8080 -h /www'
  client:
    image: {IMAGE}
    command: sh -c 'echo client up; exec sleep 3600'
    depends_on: [server]
"#
        ),
    )
    .unwrap();
    let project = unique_name("dc");

    compose_ok(&engine, &dir, &project, &["up", "-d"]);
    let ps = compose_ok(&engine, &dir, &project, &["ps"]);
    for service in ["server", "client"] {
        let line = ps
            .lines()
            .find(|l| l.starts_with(&format!("{project}_{service}_1")))
            .unwrap_or_else(|| panic!("no {service} in ps:\n{ps}"));
        assert!(line.contains(" Up"), "{line}");
    }
    // By service name, through the aliases compose gave at connect time.
    let fetch = |target: &str| {
        compose(
            &engine,
            &dir,
            &project,
            &[
                "exec", "-T", "client", "timeout", "3", "wget", "-qO-", target,
            ],
        )
    };
    let started = Instant::now();
    let answer = loop {
        let out = fetch("http://server:8080/index.html");
        if out.status.success() || started.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(answer.status.success(), "{}", text(&answer.stderr));
    assert_eq!(text(&answer.stdout), "hello from server\n");

    let logs = compose_ok(&engine, &dir, &project, &["logs"]);
    assert!(logs.contains("server up"), "{logs}");
    assert!(logs.contains("client up"), "{logs}");

    compose_ok(&engine, &dir, &project, &["down"]);
    assert_eq!(docker_ok(&engine, &["ps", "-aq"]), "");
    let networks = docker_ok(&engine, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.contains(&project), "{networks}");
}
