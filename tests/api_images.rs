//! Images through the engine API: the real Docker CLI pulls from a real registry (progress
//! streamed as JSON lines), lists and inspects by names holding `/` and `:`, and sees pull errors
//! as Docker reports them; our client streams the same progress.

mod common;

use berth::engine::api::client::ClientError;
use common::engine::TestEngine;
use common::registry::TestRegistry;
use futures_util::StreamExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn docker_cli_pull_images_inspect_rmi() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("team/busybox", "1");
    let engine = TestEngine::start();

    let out = engine.docker(&["pull", &image]);
    assert!(out.status.success(), "docker pull: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("Status: Downloaded newer image for {image}")),
        "{stdout}"
    );

    let out = engine.docker(&["images", "--format", "{{.Repository}} {{.Tag}}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{}/team/busybox 1", registry.host())
    );

    // The name holds a registry port and a path: routed as one name.
    let out = engine.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}",
        &image,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "linux/amd64");

    let out = engine.docker(&["pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Status: Image is up to date"),
        "{}",
        text(&out.stdout)
    );

    let out = engine.docker(&["rmi", &image]);
    assert!(out.status.success(), "docker rmi: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("Untagged: {image}")));
    let out = engine.docker(&["image", "inspect", &image]);
    assert!(!out.status.success());
}

#[test]
fn docker_cli_pull_of_an_unknown_image_fails_with_the_engine_message() {
    let registry = TestRegistry::start();
    let engine = TestEngine::start();
    let missing = format!("{}/nobody/here:1", registry.host());
    let out = engine.docker(&["pull", &missing]);
    assert!(!out.status.success(), "pull of a missing image succeeded");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nobody/here"), "{stderr}");
    let out = engine.docker(&["images", "-q"]);
    assert_eq!(text(&out.stdout).trim(), "");
}

#[tokio::test]
async fn client_pull_streams_progress_and_reports_errors_in_band() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("busybox", "latest");
    let engine = TestEngine::start();
    let client = engine.client();

    let messages = client.pull_and_wait(&image).await.unwrap();
    let statuses: Vec<String> = messages.iter().filter_map(|m| m.status.clone()).collect();
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("Status: Downloaded newer image")),
        "{statuses:?}"
    );
    let listed = client.list_images().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags, std::slice::from_ref(&image));
    let inspected = client.inspect_image(&image).await.unwrap();
    assert_eq!(inspected.id, listed[0].id);

    let mut stream = client
        .pull(&format!("{}/missing:1", registry.host()))
        .await
        .unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    match last {
        Some(Err(ClientError::Stream { message })) => {
            assert!(message.contains("missing"), "{message}")
        }
        other => panic!("expected an in-band error, got {other:?}"),
    }

    let err = client.inspect_image("not/pulled:1").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 404, message } if message.contains("not/pulled:1")),
        "{err:?}"
    );
    let err = client.pull("UPPER/case").await.err().unwrap();
    assert!(
        matches!(err, ClientError::Api { status: 400, .. }),
        "{err:?}"
    );
}
