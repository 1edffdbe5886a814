//! Networks through the engine API: the real Docker CLI creates, lists (with filters), inspects,
//! connects a running container to, disconnects and removes bridge networks; the container itself
//! reports the address the engine gave it.

mod common;

use std::time::{Duration, Instant};

use berth::engine::api::client::ClientError;
use berth::engine::wire::NetworkCreateRequest;
use common::engine::TestEngine;
use common::project::unique_name;
use common::registry::populate_busybox_rootfs;
use futures_util::StreamExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn import_busybox(engine: &TestEngine, name: &str) {
    let base = engine.data_root().parent().unwrap().join("image-src");
    populate_busybox_rootfs(&base.join("rootfs"));
    let tar = base.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(base.join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = engine.docker(&["import", tar.to_str().unwrap(), name]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
}

#[test]
fn docker_cli_network_create_ls_inspect_rm() {
    let engine = TestEngine::start();
    let name = unique_name("apinet");
    let out = engine.docker(&["network", "create", "--label", "owner=api-test", &name]);
    assert!(
        out.status.success(),
        "network create: {}",
        text(&out.stderr)
    );
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    let out = engine.docker(&[
        "network",
        "ls",
        "--filter",
        "label=owner=api-test",
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert!(out.status.success(), "network ls: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("{name} bridge"));

    let out = engine.docker(&[
        "network",
        "inspect",
        "--format",
        "{{.Id}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}",
        &name,
    ]);
    assert!(
        out.status.success(),
        "network inspect: {}",
        text(&out.stderr)
    );
    let fields: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fields[0], id);
    assert!(fields[1].contains('/'), "subnet {:?}", fields[1]);
    assert!(!fields[2].is_empty(), "no gateway");

    // Docker refuses a second network of the same name.
    let out = engine.docker(&["network", "create", &name]);
    assert!(!out.status.success(), "duplicate network was created");
    assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));

    let out = engine.docker(&["network", "rm", &name]);
    assert!(out.status.success(), "network rm: {}", text(&out.stderr));
    let out = engine.docker(&["network", "inspect", &name]);
    assert!(!out.status.success());
}

#[test]
fn docker_cli_network_connect_gives_a_running_container_an_address() {
    let engine = TestEngine::start();
    import_busybox(&engine, "local/busybox:net");
    let name = unique_name("apiconn");
    let out = engine.docker(&["network", "create", &name]);
    assert!(
        out.status.success(),
        "network create: {}",
        text(&out.stderr)
    );
    // No network at start; the container waits for the interface the connect adds.
    let out = engine.docker(&[
        "create",
        "--name",
        "joiner",
        "--network",
        "none",
        "local/busybox:net",
        "sh",
        "-c",
        "until ip -4 -o addr show eth0 2>/dev/null | grep -q inet; do sleep 0.1; done; \
         ip -4 -o addr show eth0 | awk '{print $4}'; sleep 30",
    ]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let out = engine.docker(&["start", "joiner"]);
    assert!(out.status.success(), "start: {}", text(&out.stderr));

    let out = engine.docker(&["network", "connect", &name, "joiner"]);
    assert!(
        out.status.success(),
        "network connect: {}",
        text(&out.stderr)
    );
    let out = engine.docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
        &name,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout).trim().to_string();
    let (container, address) = listed.split_once(' ').expect("one attached container");
    assert_eq!(container, "joiner");

    let started = Instant::now();
    let seen = loop {
        let out = engine.docker(&["logs", "joiner"]);
        let logs = text(&out.stdout);
        if !logs.trim().is_empty() {
            break logs.trim().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the container never saw eth0"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        seen, address,
        "container sees {seen}, network says {address}"
    );

    let out = engine.docker(&["network", "disconnect", &name, "joiner"]);
    assert!(
        out.status.success(),
        "network disconnect: {}",
        text(&out.stderr)
    );
    let out = engine.docker(&[
        "network",
        "inspect",
        "--format",
        "{{len .Containers}}",
        &name,
    ]);
    assert_eq!(text(&out.stdout).trim(), "0");
}

#[tokio::test]
async fn client_network_errors_and_events() {
    let engine = TestEngine::start();
    let client = engine.client();
    let name = unique_name("apiev");
    let mut events = client
        .events(&[("type", "network"), ("event", "create")])
        .await
        .unwrap();
    let created = client
        .create_network(&NetworkCreateRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("no network event within 5s")
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.kind.as_str(), event.action.as_str()),
        ("network", "create")
    );
    assert_eq!(event.actor.id, created.id);
    assert_eq!(event.actor.attributes.get("name"), Some(&name));

    let listed = client.list_networks(&[("name", &name)]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.id);

    let err = client
        .connect_network(&name, "no-such-container", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 404, message } if message.contains("no-such-container")),
        "{err:?}"
    );
    let err = client.inspect_network("no-such-network").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 404, .. }),
        "{err:?}"
    );
    let err = client
        .list_networks(&[("colour", "red")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 400, .. }),
        "{err:?}"
    );

    client.remove_network(&created.id).await.unwrap();
    assert!(client
        .list_networks(&[("name", &name)])
        .await
        .unwrap()
        .is_empty());
}

/// Once `stop` returns, the container holds no endpoint: the network can go at once, as with
/// Docker (which releases the network before it answers).
#[test]
fn a_network_can_be_removed_right_after_its_container_stops() {
    let engine = TestEngine::start();
    import_busybox(&engine, "local/busybox:netstop");
    let name = unique_name("apistop");
    let out = engine.docker(&["network", "create", &name]);
    assert!(
        out.status.success(),
        "network create: {}",
        text(&out.stderr)
    );
    for round in 0..3 {
        let container = format!("{name}-c{round}");
        let out = engine.docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &name,
            "local/busybox:netstop",
            "sleep",
            "300",
        ]);
        assert!(out.status.success(), "run: {}", text(&out.stderr));
        let out = engine.docker(&["stop", "-t", "1", &container]);
        assert!(out.status.success(), "stop: {}", text(&out.stderr));
        let out = engine.docker(&["network", "inspect", "-f", "{{len .Containers}}", &name]);
        assert_eq!(
            text(&out.stdout).trim(),
            "0",
            "round {round}: endpoints left after stop"
        );
        let out = engine.docker(&["rm", &container]);
        assert!(out.status.success(), "rm: {}", text(&out.stderr));
    }
    let out = engine.docker(&["network", "rm", &name]);
    assert!(out.status.success(), "network rm: {}", text(&out.stderr));
}
