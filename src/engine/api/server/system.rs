//! `/_ping`, `/version` and `/info`: what clients call first to find and size up the engine.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::super::{API_VERSION, MIN_API_VERSION};
use crate::engine::wire::VersionResponse;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
}

/// The headers Docker clients read to negotiate the API version (`API-Version`) and features.
async fn ping() -> Response {
    let headers = [
        (HeaderName::from_static("api-version"), API_VERSION),
        (HeaderName::from_static("ostype"), "linux"),
        (HeaderName::from_static("docker-experimental"), "false"),
        (HeaderName::from_static("builder-version"), "1"),
        (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        (header::PRAGMA, "no-cache"),
    ];
    let mut response = (StatusCode::OK, "OK").into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Docker's name for the architecture (`amd64`, `arm64`), not Rust's.
pub fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

async fn version() -> Response {
    let body = VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_version: API_VERSION.to_string(),
        min_api_version: MIN_API_VERSION.to_string(),
        os: "linux".to_string(),
        arch: docker_arch().to_string(),
        kernel_version: kernel_version(),
        git_commit: String::new(),
        go_version: String::new(),
        build_time: String::new(),
    };
    // `Platform.Name` and `Components` make `docker version` print a proper "Server:" section.
    let mut json = serde_json::to_value(&body).unwrap_or_default();
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "Platform".into(),
            serde_json::json!({ "Name": "berth engine" }),
        );
        obj.insert(
            "Components".into(),
            serde_json::json!([{
                "Name": "Engine",
                "Version": body.version,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                    "Arch": docker_arch(),
                    "KernelVersion": body.kernel_version,
                }
            }]),
        );
    }
    axum::Json(json).into_response()
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn cgroup_version() -> &'static str {
    // Pure v2 has cgroup.controllers at the top; hybrid hosts keep v1 controllers there.
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

async fn info(State(engine): State<SharedEngine>) -> Response {
    let images = engine.images.list().len();
    let (running, paused, stopped) = super::containers::state_counts(&engine).await;
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = serde_json::json!({
        "ID": "",
        "Containers": running + paused + stopped,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay",
        "DockerRootDir": engine.roots.data_root.display().to_string(),
        "KernelVersion": kernel_version(),
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "Name": hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "LoggingDriver": "json-file",
        "Labels": [],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Log": ["json-file"],
        },
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Swarm": { "LocalNodeState": "inactive" },
        "Warnings": [],
    });
    axum::Json(body).into_response()
}
