//! The engine daemon and its API framing, driven through the real Docker CLI, our client and bare
//! HTTP: version negotiation, errors, single instance per run root, auto-start, clean shutdown.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth::engine::api::client::{ClientError, EngineClient};
use berth::engine::{EngineRoots, EngineSettings};
use common::engine::{berth_exe, raw_get, TestEngine};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn docker_cli_version_negotiates_and_reports_berth() {
    let engine = TestEngine::start();
    let out = engine.docker(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert!(
        out.status.success(),
        "docker version failed: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{} 1.41 linux", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn docker_cli_info_shows_the_engine_and_its_roots() {
    let engine = TestEngine::start();
    let out = engine.docker(&[
        "info",
        "--format",
        "{{.ServerVersion}} {{.Images}} {{.Containers}} {{.OSType}} {{.DockerRootDir}} {{.Swarm.LocalNodeState}}",
    ]);
    assert!(
        out.status.success(),
        "docker info failed: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{} 0 0 linux {} inactive",
            env!("CARGO_PKG_VERSION"),
            engine.data_root().display()
        )
    );
}

#[test]
fn unknown_paths_and_old_versions_get_docker_errors() {
    let engine = TestEngine::start();
    let (status, body) = raw_get(&engine.socket(), "/v1.41/no/such/thing").unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        body,
        r#"{"message":"berth does not implement GET /no/such/thing: this part of the Docker Engine API is not supported by berth yet"}"#
    );
    let (status, _) = raw_get(&engine.socket(), "/nothing-here").unwrap();
    assert_eq!(status, 404);
    let (status, body) = raw_get(&engine.socket(), "/v1.12/version").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("client version 1.12 is too old"), "{body}");
    // Versioned and unversioned paths reach the same handler.
    let (status, body) = raw_get(&engine.socket(), "/v1.41/_ping").unwrap();
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = raw_get(&engine.socket(), "/version").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(r#""ApiVersion":"1.41""#), "{body}");
}

#[test]
fn two_engines_on_two_roots_run_side_by_side() {
    let first = TestEngine::start();
    let second = TestEngine::start();
    assert_ne!(first.socket(), second.socket());
    let out = first.docker(&["volume", "create", "only-in-first"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = |engine: &TestEngine| {
        let out = engine.docker(&["volume", "ls", "--format", "{{.Name}}"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(listed(&first).trim(), "only-in-first");
    assert_eq!(listed(&second).trim(), "");
}

#[test]
fn a_second_engine_on_the_same_run_root_is_refused() {
    let engine = TestEngine::start();
    let out = Command::new(berth_exe())
        .arg("engine")
        .arg("--data-root")
        .arg(engine.data_root())
        .arg("--run-root")
        .arg(engine.run_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let pid = engine.pid().unwrap();
    assert!(
        stderr.contains(&format!(
            "another berth engine (pid {pid}) is already running"
        )),
        "{stderr}"
    );
    // The first engine is untouched: its socket still answers.
    assert_eq!(raw_get(&engine.socket(), "/_ping").unwrap().0, 200);
}

#[test]
fn sigterm_stops_the_engine_cleanly_and_a_restart_keeps_state() {
    let mut engine = TestEngine::start();
    let out = engine.docker(&["volume", "create", "survivor"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = engine.stop();
    assert!(status.success(), "engine exited with {status}");
    assert!(!engine.socket().exists(), "socket left behind");
    assert!(
        !engine.roots().engine_pid_file().exists(),
        "pid file left behind"
    );
    assert!(engine.log_text().contains("SIGTERM received"));

    engine.start_again();
    let out = engine.docker(&["volume", "ls", "--format", "{{.Name}}"]);
    assert_eq!(text(&out.stdout).trim(), "survivor");
}

#[test]
fn a_stale_socket_from_a_crashed_engine_is_replaced() {
    let mut engine = TestEngine::start();
    // A crash (SIGKILL) leaves the socket file behind.
    engine.crash();
    assert!(engine.socket().exists());
    assert!(raw_get(&engine.socket(), "/_ping").is_none());
    engine.start_again();
    assert_eq!(raw_get(&engine.socket(), "/_ping").unwrap().0, 200);
    assert!(engine.log_text().contains("removed stale socket"));
}

/// Kills the engine started by `connect_or_start` (found through its pid file) at the end.
struct StartedEngine {
    roots: EngineRoots,
    _temp: tempfile::TempDir,
}

impl StartedEngine {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.roots.engine_pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for StartedEngine {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..200 {
                if !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }
}

#[tokio::test]
async fn connect_or_start_starts_the_engine_once_and_then_reuses_it() {
    let temp = tempfile::Builder::new()
        .prefix("berth-test-")
        .tempdir()
        .unwrap();
    let roots = EngineRoots::new(temp.path().join("data"), temp.path().join("run"));
    let guard = StartedEngine {
        roots: roots.clone(),
        _temp: temp,
    };
    assert!(!roots.socket_path().exists());
    let settings = EngineSettings::default();
    let client = EngineClient::connect_or_start_with(&roots, &settings, &berth_exe())
        .await
        .unwrap();
    assert_eq!(client.ping().await.unwrap(), "1.41");
    let first_pid = guard.pid().expect("engine pid file");
    // The engine is in its own session, detached from ours.
    let sid = unsafe { libc::getsid(first_pid) };
    assert_eq!(sid, first_pid);
    let log = std::fs::read_to_string(roots.run_root.join("engine.log")).unwrap();
    assert!(log.contains("serving the API"), "{log}");

    let again = EngineClient::connect_or_start_with(&roots, &settings, &berth_exe())
        .await
        .unwrap();
    again.ping().await.unwrap();
    assert_eq!(guard.pid(), Some(first_pid), "a second engine was started");
}

#[tokio::test]
async fn connect_or_start_names_the_log_when_the_engine_cannot_start() {
    let temp = tempfile::Builder::new()
        .prefix("berth-test-")
        .tempdir()
        .unwrap();
    // A data root that cannot be created: its parent is a regular file.
    std::fs::write(temp.path().join("file"), "").unwrap();
    let roots = EngineRoots::new(temp.path().join("file/data"), temp.path().join("run"));
    let err = EngineClient::connect_or_start_with(&roots, &EngineSettings::default(), &berth_exe())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ClientError::Start { .. }), "{message}");
    assert!(message.contains(&roots.run_root.join("engine.log").display().to_string()));
    assert!(message.contains("file/data"), "{message}");
    assert!(!roots.socket_path().exists());
}

#[tokio::test]
async fn connecting_to_an_absent_engine_names_the_socket() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("berth.sock");
    let err = EngineClient::new(&socket).version().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot connect to the berth engine at {}",
            socket.display()
        )),
        "{message}"
    );
    assert!(message.contains("engine.log"), "{message}");
}

#[tokio::test]
async fn client_reports_api_errors_verbatim() {
    let engine = TestEngine::start();
    let err = engine.client().inspect_volume("nope").await.unwrap_err();
    match err {
        ClientError::Api { status, message } => {
            assert_eq!(status, 404);
            assert_eq!(message, "get nope: no such volume");
        }
        other => panic!("unexpected error {other:?}"),
    }
}
