//! Volumes through the engine API: the real Docker CLI and our client create, list, filter,
//! inspect and remove them; bad names are refused; volumes survive an engine restart; events.

mod common;

use std::time::Duration;

use berth::engine::api::client::ClientError;
use berth::engine::wire::VolumeCreateRequest;
use common::engine::TestEngine;
use futures_util::StreamExt;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn docker_cli_volume_create_ls_inspect_rm() {
    let engine = TestEngine::start();
    let out = engine.docker(&["volume", "create", "--label", "team=db", "pgdata"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "pgdata");
    let out = engine.docker(&["volume", "create", "cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = engine.docker(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "local cache\nlocal pgdata\n");
    let out = engine.docker(&["volume", "ls", "-q", "--filter", "label=team=db"]);
    assert_eq!(text(&out.stdout), "pgdata\n");

    let out = engine.docker(&["volume", "inspect", "pgdata"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let volume = &inspected[0];
    let mountpoint = engine.data_root().join("volumes/pgdata/_data");
    assert_eq!(volume["Mountpoint"], mountpoint.display().to_string());
    assert_eq!(volume["Labels"]["team"], "db");
    assert_eq!(volume["Driver"], "local");
    assert!(mountpoint.is_dir());

    let out = engine.docker(&["volume", "rm", "pgdata"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!mountpoint.exists());
    let out = engine.docker(&["volume", "rm", "pgdata"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("get pgdata: no such volume"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn docker_cli_bad_volume_name_is_refused_and_leaves_nothing() {
    let engine = TestEngine::start();
    let out = engine.docker(&["volume", "create", "bad/name"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("\"bad/name\" includes invalid characters for a local volume name"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(engine.data_root().join("volumes"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn client_volume_lifecycle_with_filters() {
    let engine = TestEngine::start();
    let client = engine.client();
    let mut labelled = VolumeCreateRequest {
        name: "demo_data".into(),
        ..Default::default()
    };
    labelled
        .labels
        .insert("com.docker.compose.project".into(), "demo".into());
    let created = client.create_volume(&labelled).await.unwrap();
    assert_eq!(created.name, "demo_data");
    // Creating it again answers the same volume.
    assert_eq!(client.create_volume(&labelled).await.unwrap(), created);

    let anonymous = client
        .create_volume(&VolumeCreateRequest::default())
        .await
        .unwrap();
    assert_eq!(anonymous.name.len(), 64);

    let by_label = client
        .list_volumes(&[("label", "com.docker.compose.project=demo")])
        .await
        .unwrap();
    assert_eq!(
        by_label.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["demo_data"]
    );
    let by_name = client.list_volumes(&[("name", "demo")]).await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(client.list_volumes(&[]).await.unwrap().len(), 2);
    // Nothing uses the volumes, so both are dangling.
    assert_eq!(
        client
            .list_volumes(&[("dangling", "true")])
            .await
            .unwrap()
            .len(),
        2
    );

    let err = client.list_volumes(&[("colour", "red")]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 400, message } if message == "invalid filter 'colour'"),
        "{err:?}"
    );

    client.remove_volume("demo_data", false).await.unwrap();
    let err = client.inspect_volume("demo_data").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 404, .. }),
        "{err:?}"
    );
    // `force` forgives a volume that is already gone.
    client.remove_volume("demo_data", true).await.unwrap();
    client.remove_volume(&anonymous.name, false).await.unwrap();
    assert!(client.list_volumes(&[]).await.unwrap().is_empty());
}

#[test]
fn volumes_and_their_data_survive_an_engine_restart() {
    let mut engine = TestEngine::start();
    let out = engine.docker(&["volume", "create", "--label", "keep=yes", "kept"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = engine.data_root().join("volumes/kept/_data/file.txt");
    std::fs::write(&data, "still here").unwrap();
    engine.restart();
    let out = engine.docker(&["volume", "inspect", "--format", "{{.Labels.keep}}", "kept"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "yes");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "still here");
}

#[tokio::test]
async fn volume_events_are_streamed_and_filtered() {
    let engine = TestEngine::start();
    let client = engine.client();
    let mut events = client.events(&[("type", "volume")]).await.unwrap();
    let req = VolumeCreateRequest {
        name: "evented".into(),
        ..Default::default()
    };
    client.create_volume(&req).await.unwrap();
    client.remove_volume("evented", false).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("no event within 5s")
            .expect("event stream ended")
            .unwrap();
        seen.push((event.kind, event.action, event.actor.id));
    }
    assert_eq!(
        seen,
        [
            ("volume".into(), "create".into(), "evented".into()),
            ("volume".into(), "destroy".into(), "evented".into())
        ]
    );
}

#[test]
fn docker_cli_events_since_and_until_replay_past_events_and_end() {
    let engine = TestEngine::start();
    let before = chrono::Utc::now().timestamp() - 1;
    let out = engine.docker(&["volume", "create", "replayed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = engine.docker(&["volume", "rm", "replayed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = chrono::Utc::now().timestamp() + 1;
    std::thread::sleep(Duration::from_millis(1100)); // let `after` pass: the CLI then ends
    let window = [
        "events",
        "--since",
        &before.to_string(),
        "--until",
        &after.to_string(),
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ];
    let out = engine.docker(&window);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "volume create replayed\nvolume destroy replayed\n"
    );
    // A window that ends before anything happened replays nothing, and ends at once.
    let out = engine.docker(&["events", "--until", &(before - 10).to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}
