//! `berth create` (containers made, none started), `berth port` (the published address scripts
//! read) and `berth wait` (the first stopped container's status; `--down-project`), end to end.

mod common;

use common::project::TestProject;
use common::registry::TestRegistry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn create_port_and_wait_behave_like_docker_compose() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("portwait/busybox", "1");
    let project = TestProject::new("portwait", "");
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    ports: ["127.0.0.1::80", "9/udp"]
  job:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "sleep 1; exit 5"]
"#,
        mark = project.name
    ));
    let states = |p: &TestProject| {
        p.docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.State}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", p.name),
        ])
    };

    // create: every container exists, none runs.
    project.ok(&["create"]);
    let listed = states(&project);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.lines().all(|l| l.ends_with(" created")), "{listed}");
    let out = project.berth(&["port", "web", "80"]);
    assert_eq!(out.status.code(), Some(1), "no running container yet");
    assert!(text(&out.stderr).contains("service \"web\" is not running"));

    project.ok(&["up", "-d"]);
    let address = project.ok(&["port", "web", "80"]);
    let (ip, port) = address.trim().rsplit_once(':').expect("IP:PORT");
    assert_eq!(ip, "127.0.0.1");
    let port: u16 = port.parse().expect("a port number");
    assert!(port > 0);
    let inspected = project.docker(&["port", &format!("{}-web-1", project.name), "80/tcp"]);
    assert!(
        inspected.contains(&format!("127.0.0.1:{port}")),
        "{inspected}"
    );
    let udp = project.ok(&["port", "--protocol", "udp", "web", "9"]);
    assert!(udp.trim().starts_with("0.0.0.0:"), "{udp}");
    let out = project.berth(&["port", "web", "81"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no port 81/tcp"),
        "{}",
        text(&out.stderr)
    );

    // wait: the job's status is berth's; the others keep running.
    let out = project.berth(&["wait", "job"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(states(&project).contains(&format!("{}-web-1 running", project.name)));
    let out = project.berth(&["wait", "nosuch"]);
    assert!(text(&out.stderr).contains("no such service: nosuch"));

    // --down-project: once the first container stops, the project goes.
    let out = project.berth(&["wait", "--down-project", "job"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(states(&project).trim(), "");
    assert!(project
        .leftover_processes()
        .iter()
        .all(|p| p.contains(" engine ")));
}
