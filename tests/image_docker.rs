//! berth's images seen by the real Docker tools: the Docker CLI pulling through berth's socket
//! shows docker's per-layer progress, and `berth image save` output loads into a real dockerd
//! (the one at `DOCKER_HOST`, else `/var/run/docker.sock`, which `.ci/run` starts).

mod common;

use std::process::{Command, Output};

use common::engine::TestEngine;
use common::precondition::{skip, tool};
use common::registry::{TarBuilder, TestRegistry};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

#[test]
fn docker_pull_through_berth_shows_each_layer_complete() {
    let registry = TestRegistry::start();
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            TarBuilder::new()
                .file(&format!("layer{i}"), 0o644, &vec![b'a' + i; 200_000])
                .finish()
        })
        .collect();
    let image = registry.push_layers("docker/progress", "1", &layers);
    let engine = TestEngine::start();
    let out = ok(engine.docker(&["pull", &image]), "docker pull");
    // Not a terminal: the Docker CLI prints `<layer>: <status>` lines from berth's JSON stream.
    let complete: Vec<&str> = out
        .lines()
        .filter(|l| l.ends_with(": Pull complete"))
        .collect();
    assert_eq!(complete.len(), 3, "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    let again = ok(engine.docker(&["pull", &image]), "docker pull again");
    assert!(again.contains("Image is up to date"), "{again}");
}

/// The real dockerd to load into, or a reason there is none.
fn dockerd_host() -> Result<String, String> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let socket = host.strip_prefix("unix://").unwrap_or(&host);
    if !std::path::Path::new(socket).exists() {
        return Err(format!("no dockerd listens on {host}"));
    }
    let info = Command::new(tool("docker"))
        .args(["-H", &host, "info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| e.to_string())?;
    if !info.status.success() {
        return Err(format!(
            "dockerd on {host} does not answer: {}",
            text(&info.stderr)
        ));
    }
    Ok(host)
}

#[test]
fn berth_image_save_loads_into_a_real_dockerd() {
    let host = match dockerd_host() {
        Ok(h) => h,
        Err(reason) => return skip(&format!("docker load of berth's save: {reason}")),
    };
    let registry = TestRegistry::start();
    let tag = format!("berth-save-{}", std::process::id());
    let layers = vec![
        TarBuilder::new()
            .dir("etc/", 0o755)
            .file("etc/hello", 0o644, b"from berth\n")
            .finish(),
        TarBuilder::new()
            .file("etc/second", 0o600, b"layer two\n")
            .finish(),
    ];
    let image = registry.push_layers("docker/save", &tag, &layers);
    let engine = TestEngine::start();
    ok(engine.docker(&["pull", &image]), "pull into berth");
    let berth_id = ok(
        engine.docker(&["image", "inspect", "--format", "{{.Id}}", &image]),
        "inspect in berth",
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("save.tar");
    ok(
        engine.berth(&["image", "save", "-o", archive.to_str().unwrap(), &image]),
        "berth image save",
    );

    let docker = |args: &[&str]| {
        Command::new(tool("docker"))
            .arg("-H")
            .arg(&host)
            .args(args)
            .output()
            .expect("run docker")
    };
    let loaded = ok(
        docker(&["load", "-i", archive.to_str().unwrap()]),
        "docker load",
    );
    let inspected = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{len .RootFS.Layers}}",
        &image,
    ]);
    let _ = docker(&["rmi", "-f", &image]);
    assert!(
        loaded.contains(&format!("Loaded image: {image}")),
        "{loaded}"
    );
    let inspected = ok(inspected, "docker image inspect");
    assert_eq!(
        inspected.trim(),
        format!("{} 2", berth_id.trim()),
        "dockerd has the same image ID and both layers"
    );
}
