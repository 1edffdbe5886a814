//! Issue 2's acceptance, end to end through the `berth` CLI as a user runs it: a `server`
//! (busybox httpd serving a file from a named volume) and a `client` that depends on it and fetches
//! `http://server/` by name; images pulled from a real registry; `ps`, `logs`, a published port;
//! data kept across `down`/`up`, removed by `down -v`; nothing left behind after `down`.

mod common;

use std::time::Duration;

use common::project::TestProject;
use common::registry::TestRegistry;

fn stack_compose(image: &str, mark: &str) -> String {
    format!(
        r#"
services:
  server:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
      GREETING: ${{GREETING:-first greeting}}
    command: ["sh", "-c", "[ -f /www/index.html ] || echo \"$$GREETING\" > /www/index.html; echo server ready; exec httpd -f -v -p 80 -h /www"]
    # httpd as PID 1 ignores SIGTERM (as under Docker): don't make every down wait 10 s.
    stop_grace_period: 1s
    volumes:
      - site:/www
    ports:
      # The kernel picks the host port (no race with other tests for a "free" one).
      - "127.0.0.1::80"
  client:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    depends_on:
      server:
        condition: service_started
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -qO- http://server/ && exit 0; sleep 0.5; done; echo fetch failed; exit 1"]
volumes:
  site: {{}}
"#
    )
}

/// The client's output once it has exited (it fetches once and exits).
fn client_output(project: &TestProject) -> String {
    project
        .eventually(Duration::from_secs(30), || {
            let ps = project.ok(&["ps", "-a", "--format", "json"]);
            // One JSON object per line, as docker compose v2 prints them.
            let rows: Vec<serde_json::Value> = ps
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .ok()?;
            let exited = rows
                .iter()
                .any(|r| r["Service"] == "client" && r["State"] == "exited");
            exited.then(|| project.ok(&["logs", "--no-log-prefix", "client"]))
        })
        .expect("the client container exits within 30 s")
}

fn bridge_of(project: &TestProject, network: &str) -> String {
    let id = project.docker(&["network", "inspect", "-f", "{{.Id}}", network]);
    format!("br-{}", &id.trim()[..12])
}

/// Whether `done` holds within 5 s (polled every 20 ms).
fn soon(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

fn links_on_bridge(bridge: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn two_service_stack_up_down_keeps_data_until_down_v() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("stack/busybox", "1");
    let mut project = TestProject::new("stack", "");
    let mark = project.name.clone();
    std::fs::write(
        project.dir.path().join("compose.yaml"),
        stack_compose(&image, &mark),
    )
    .expect("write compose");

    project.ok(&["up", "-d"]);
    let published = project.ok(&["port", "server", "80"]).trim().to_string();
    let port: u16 = published
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port prints the published loopback address: {published:?}"));

    // The client reached the server by its service name over the project network.
    assert!(
        client_output(&project).contains("first greeting"),
        "client fetched the page from the volume"
    );

    // ps shows both services with their state.
    let ps = project.ok(&["ps", "-a"]);
    let header = ps.lines().next().expect("ps header");
    for column in ["NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"] {
        assert!(header.contains(column), "ps header has {column}: {header}");
    }
    let server_row = ps
        .lines()
        .find(|l| l.contains(&format!("{}-server-1", project.name)))
        .expect("server row");
    assert!(server_row.contains("Up "), "server is up: {server_row}");
    assert!(
        server_row.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "published port shown: {server_row}"
    );
    let client_row = ps
        .lines()
        .find(|l| l.contains(&format!("{}-client-1", project.name)))
        .expect("client row");
    assert!(
        client_row.contains("Exited (0)"),
        "client exited cleanly: {client_row}"
    );

    // logs of the server show its output, prefixed with the service replica name.
    let logs = project.ok(&["logs", "server"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("server-1") && l.contains("server ready")),
        "server logs: {logs}"
    );

    // The published port answers on the host's loopback.
    let page = std::process::Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&page.stdout).trim(),
        "first greeting"
    );

    let network = format!("{}_default", project.name);
    let bridge = bridge_of(&project, &network);
    let veths = links_on_bridge(&bridge);
    assert!(!veths.is_empty(), "containers are attached to {bridge}");

    // down removes containers, network, bridge and veths, and leaves no process or mount…
    project.ok(&["down"]);
    assert_eq!(
        project
            .docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.compose.project={}", project.name)
            ])
            .trim(),
        ""
    );
    // The engine deletes a removed network's bridge and a stopped container's veths in the
    // background (the kernel takes ~40 ms per device): give it a moment.
    let gone = |link: &str| !std::path::Path::new(&format!("/sys/class/net/{link}")).exists();
    assert!(soon(|| gone(&bridge)), "bridge {bridge} removed within 5 s");
    for veth in &veths {
        assert!(soon(|| gone(veth)), "veth {veth} removed within 5 s");
    }
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(
        procs.is_empty(),
        "no container or shim process remains: {procs:?}"
    );
    let mounts: Vec<String> = project.leftover_mounts();
    assert!(mounts.is_empty(), "no mount remains: {mounts:?}");
    // …but keeps the named volume and its data.
    assert!(project
        .docker(&["volume", "ls", "-q"])
        .contains(&format!("{}_site", project.name)));

    // up again with a different greeting: the page written into the volume the first time is served.
    project
        .env
        .push(("GREETING".into(), "second greeting".into()));
    project.ok(&["up", "-d"]);
    assert!(
        client_output(&project).contains("first greeting"),
        "data in the named volume survived down/up"
    );
    project.ok(&["down", "-v"]);
    assert!(
        !project
            .docker(&["volume", "ls", "-q"])
            .contains(&format!("{}_site", project.name)),
        "down -v removed the volume"
    );

    // With the volume gone, the server starts from an empty volume again.
    project.ok(&["up", "-d"]);
    assert!(
        client_output(&project).contains("second greeting"),
        "a fresh volume after down -v"
    );
    project.ok(&["down", "-v"]);
}

#[test]
fn attached_up_prefixes_each_containers_output_and_returns_when_all_exit() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("attached/busybox", "1");
    let project = TestProject::new("attached", "");
    let mark = project.name.clone();
    std::fs::write(
        project.dir.path().join("compose.yaml"),
        format!(
            r#"
services:
  web:
    image: {image}
    environment: {{ BERTH_TEST_MARK: {mark} }}
    command: ["sh", "-c", "echo hello from web; echo oops >&2"]
  worker:
    image: {image}
    environment: {{ BERTH_TEST_MARK: {mark} }}
    depends_on: [web]
    command: ["sh", "-c", "for i in 1 2 3; do echo tick $$i; sleep 0.2; done; exit 3"]
"#
        ),
    )
    .expect("write compose");

    let stdout = project.ok(&["up"]);
    // docker compose's prefix: the replica name padded to the longest one plus a space.
    assert!(
        stdout.contains("web-1    | hello from web"),
        "prefixed stdout: {stdout}"
    );
    assert!(
        stdout.contains("web-1    | oops"),
        "stderr is shown too: {stdout}"
    );
    for i in 1..=3 {
        assert!(
            stdout.contains(&format!("worker-1 | tick {i}")),
            "worker line {i}: {stdout}"
        );
    }
    assert!(
        stdout.contains("web-1 exited with code 0"),
        "exit reported: {stdout}"
    );
    assert!(
        stdout.contains("worker-1 exited with code 3"),
        "exit code reported: {stdout}"
    );

    // `logs -f` on exited containers prints everything and returns.
    let logs = project.ok(&["logs", "-f", "--no-log-prefix", "worker"]);
    assert_eq!(
        logs.lines().filter(|l| l.starts_with("tick")).count(),
        3,
        "{logs}"
    );
    let ps = project.ok(&["ps", "-a"]);
    assert!(
        ps.contains("Exited (3)"),
        "ps shows the worker's exit code: {ps}"
    );
}
