//! Images leave and enter berth as archives: `berth image save` / `docker save` output loads into
//! a fresh engine and runs; archives made by skopeo (docker-archive) and umoci (OCI layout) load;
//! rm refuses images in use; prune reclaims blobs; hostile archives are refused by name.

mod common;

use std::path::Path;
use std::process::Command;

use berth::engine::image::ImageStore;
use berth::engine::EngineRoots;
use common::engine::TestEngine;
use common::project::TestProject;
use common::registry::{sha256_hex, TarBuilder, TestRegistry};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

fn blob_files(data_root: &Path) -> usize {
    std::fs::read_dir(data_root.join("content/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn members(tar: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// A container from `image` on `engine` runs and prints what it is told to.
fn runs(engine: &TestEngine, image: &str) {
    let name = format!("run-{}", std::process::id());
    let args = [
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        image,
        "echo",
        "from-archive",
    ];
    ok(engine.docker(&args), "docker run");
    assert_eq!(
        ok(engine.docker(&["wait", &name]), "docker wait").trim(),
        "0"
    );
    assert_eq!(
        ok(engine.docker(&["logs", &name]), "docker logs").trim(),
        "from-archive"
    );
    ok(engine.docker(&["rm", &name]), "docker rm");
}

fn id_of(engine: &TestEngine, image: &str) -> String {
    let out = engine.docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    ok(out, "docker image inspect").trim().to_string()
}

#[test]
fn save_then_load_into_a_fresh_engine_gives_a_runnable_image() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("save/busybox", "1");
    let first = TestEngine::start();
    ok(first.docker(&["pull", &image]), "docker pull");
    let id = id_of(&first, &image);
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("berth-save.tar");
    ok(
        first.berth(&["image", "save", "-o", ours.to_str().unwrap(), &image]),
        "berth image save",
    );
    let names = members(&ours);
    for m in ["manifest.json", "index.json", "oci-layout"] {
        assert!(names.iter().any(|n| n == m), "{m} missing from {names:?}");
    }
    // Both views of the archive are readable by an independent tool.
    let inspect = |transport: &str| {
        let out = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("{transport}:{}", ours.display()))
            .output()
            .unwrap();
        ok(out, transport)
    };
    let config: serde_json::Value = serde_json::from_str(&inspect("docker-archive")).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    let oci: serde_json::Value = serde_json::from_str(&inspect("oci-archive")).unwrap();
    assert_eq!(oci["rootfs"], config["rootfs"]);

    // The Docker CLI saves through berth's socket too.
    let theirs = dir.path().join("docker-save.tar");
    ok(
        first.docker(&["save", "-o", theirs.to_str().unwrap(), &image]),
        "docker save",
    );
    assert!(members(&theirs).iter().any(|n| n == "manifest.json"));

    let second = TestEngine::start();
    let out = ok(
        second.docker(&["load", "-i", ours.to_str().unwrap()]),
        "docker load",
    );
    assert!(out.contains(&format!("Loaded image: {image}")), "{out}");
    assert_eq!(id_of(&second, &image), id);
    runs(&second, &image);
    let history = ok(second.docker(&["history", "-q", &image]), "docker history");
    assert!(history.lines().count() >= 1, "{history}");

    let third = TestEngine::start();
    let out = ok(
        third.berth(&["image", "load", "-i", theirs.to_str().unwrap()]),
        "berth image load",
    );
    assert_eq!(out.trim(), format!("Loaded image: {image}"));
    assert_eq!(id_of(&third, &image), id);
}

#[test]
fn skopeo_docker_archive_and_umoci_oci_layout_load() {
    let registry = TestRegistry::start();
    let layout = registry.busybox_layout();
    let dir = tempfile::tempdir().unwrap();
    let docker_archive = dir.path().join("skopeo.tar");
    let st = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!(
            "docker-archive:{}:skopeo/bb:1",
            docker_archive.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let oci_tar = dir.path().join("layout.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&oci_tar)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());

    let engine = TestEngine::start();
    let out = ok(
        engine.berth(&["image", "load", "-i", docker_archive.to_str().unwrap()]),
        "load docker-archive",
    );
    assert_eq!(out.trim(), "Loaded image: skopeo/bb:1");
    runs(&engine, "skopeo/bb:1");
    // The layout's only name is the bare tag "busybox": the image loads without a name.
    let out = ok(
        engine.berth(&["image", "load", "-i", oci_tar.to_str().unwrap()]),
        "load OCI layout",
    );
    let id = out
        .trim()
        .strip_prefix("Loaded image ID: ")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(id, id_of(&engine, "skopeo/bb:1"));
}

#[test]
fn rm_refuses_an_image_in_use_and_prune_reclaims_only_unused_blobs() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("prune/busybox", "1");
    let engine = TestEngine::start();
    ok(engine.docker(&["pull", &image]), "docker pull");
    ok(
        engine.berth(&["image", "tag", &image, "kept:1"]),
        "berth image tag",
    );
    ok(
        engine.docker(&[
            "create",
            "--name",
            "user",
            "--network",
            "host",
            "kept:1",
            "true",
        ]),
        "docker create",
    );
    // Another, unnamed image: what `prune` takes.
    let tarball = TarBuilder::new().file("hello", 0o644, b"hi").finish();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    std::fs::write(&tar, &tarball).unwrap();
    ok(
        engine.berth(&["import", tar.to_str().unwrap()]),
        "berth import",
    );

    // Two names: rm of one only untags; the last one is refused while a container uses it.
    let out = ok(engine.berth(&["image", "rm", &image]), "berth image rm tag");
    assert_eq!(out.trim(), format!("Untagged: {image}"));
    let out = engine.berth(&["image", "rm", "kept:1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "conflict: unable to remove repository reference \"kept:1\" (must force) - image"
        ) && text(&out.stderr).contains("is used by a container"),
        "{}",
        text(&out.stderr)
    );

    let before = blob_files(engine.data_root());
    // Dangling only: the unnamed import goes, through the Docker CLI too.
    let out = ok(
        engine.docker(&["image", "prune", "-f"]),
        "docker image prune",
    );
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(blob_files(engine.data_root()), before - 3, "{out}");
    // With -a, a named but unused image goes as well; the one a container uses stays.
    ok(
        engine.berth(&["import", tar.to_str().unwrap(), "named:1"]),
        "berth import",
    );
    let out = ok(
        engine.berth(&["image", "prune", "-a", "-f"]),
        "berth image prune",
    );
    assert!(out.contains("untagged: named:1"), "{out}");
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    // The imported image's layer, config and manifest are gone; the used image keeps its own.
    // (One row per name: the repository digest left by the untagged pull name is a second one.)
    let left = ok(engine.docker(&["images", "-q"]), "docker images");
    let ids: std::collections::BTreeSet<&str> = left.lines().collect();
    assert_eq!(ids.len(), 1, "{left}\n{out}");
    assert_eq!(blob_files(engine.data_root()), before - 3, "{out}");
    runs(&engine, "kept:1");
}

fn store() -> (tempfile::TempDir, ImageStore, EngineRoots) {
    let dir = tempfile::tempdir().unwrap();
    let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
    let store = ImageStore::open(&roots).unwrap();
    (dir, store, roots)
}

#[test]
fn hostile_archives_are_refused_naming_the_entry_and_leave_nothing() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":[]}]"#;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            TarBuilder::new()
                .file("../evil", 0o644, b"x")
                .file("manifest.json", 0o644, manifest)
                .finish(),
            "../evil",
        ),
        (
            TarBuilder::new()
                .symlink("c.json", "../../etc/passwd")
                .file("manifest.json", 0o644, manifest)
                .finish(),
            "c.json",
        ),
        (
            TarBuilder::new()
                .file(&format!("blobs/sha256/{}", "0".repeat(64)), 0o644, config)
                .finish(),
            "digest mismatch",
        ),
        (
            TarBuilder::new()
                .entry(b'3', "dev", "", 0o644, b"")
                .finish(),
            "dev",
        ),
    ];
    for (tar, named) in cases {
        let (_d, store, roots) = store();
        let e = store.load(&tar[..]).unwrap_err().to_string();
        assert!(e.contains(named), "{named}: {e}");
        assert_eq!(blob_files(&roots.data_root), 0, "{named}: {e}");
        assert!(store.list().is_empty());
    }
    // The same archive without the hostile member loads.
    let (_d, store, _roots) = store();
    let good = TarBuilder::new()
        .file("c.json", 0o644, config)
        .file("manifest.json", 0o644, manifest)
        .finish();
    let lines = store.load(&good[..]).unwrap();
    assert_eq!(lines, vec!["Loaded image: x:1".to_string()]);
    assert_eq!(
        store.resolve("x:1").unwrap().id,
        format!("sha256:{}", sha256_hex(config))
    );
}

#[test]
fn down_rmi_all_removes_service_images_and_local_keeps_tagged_ones() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("down/busybox", "1");
    let project = TestProject::new("rmi", "");
    project.write_compose(&format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"300\"]\n    stop_grace_period: 1s\n"
    ));
    project.ok(&["up", "-d"]);
    // Every service names its image: nothing is "local" (built without a custom tag).
    let out = project.berth(&["down", "--rmi", "local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("Image"),
        "{}",
        text(&out.stderr)
    );
    project.docker(&["image", "inspect", &image]);

    let out = project.berth(&["down", "--rmi", "all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("Image {image}")),
        "{}",
        text(&out.stderr)
    );
    assert!(project.docker(&["images", "-q"]).trim().is_empty());
}

#[test]
fn legacy_layer_tar_layout_with_linked_layers_loads() {
    let layer = TarBuilder::new().file("hello", 0o644, b"legacy").finish();
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}","{diff_id}"]}}}}"#
    );
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["legacy:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#
    );
    // As older `docker save` wrote a layer used twice: the second is a symlink to the first.
    let archive = TarBuilder::new()
        .dir("aaa", 0o755)
        .file("aaa/layer.tar", 0o644, &layer)
        .file("aaa/VERSION", 0o644, b"1.0")
        .dir("bbb", 0o755)
        .symlink("bbb/layer.tar", "../aaa/layer.tar")
        .file(&config_name, 0o644, config.as_bytes())
        .file("manifest.json", 0o644, manifest.as_bytes())
        .finish();
    let (_d, store, roots) = store();
    assert_eq!(
        store.load(&archive[..]).unwrap(),
        vec!["Loaded image: legacy:1".to_string()]
    );
    let rec = store.resolve("legacy:1").unwrap();
    assert_eq!(rec.config.cmd, Some(vec!["sh".to_string()]));
    let lowers = store.lower_dirs(&rec).unwrap();
    assert_eq!(lowers.len(), 2);
    assert_eq!(std::fs::read(lowers[0].join("hello")).unwrap(), b"legacy");
    // Layer, config and the manifest berth wrote; the VERSION file is not kept.
    assert_eq!(blob_files(&roots.data_root), 3);
}
