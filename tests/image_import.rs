//! `docker import` of a rootfs tarball, `docker tag` and `docker rmi` semantics.

mod common;

use std::path::Path;
use std::process::Command;

use berth::engine::image::ImageStore;
use berth::engine::EngineRoots;
use common::registry::{populate_busybox_rootfs, TarBuilder};

struct Roots {
    dir: tempfile::TempDir,
    roots: EngineRoots,
}

fn roots() -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
    Roots { dir, roots }
}

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A gzip tarball of a busybox rootfs made by GNU tar, as a user would make one.
fn busybox_tarball(dir: &Path) -> Vec<u8> {
    let rootfs = dir.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let out = dir.join("rootfs.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

#[test]
fn import_makes_a_real_one_layer_image() {
    let r = roots();
    let tarball = busybox_tarball(r.dir.path());
    let store = ImageStore::open(&r.roots).unwrap();
    let rec = store.import(&tarball[..], Some("bb:imported")).unwrap();
    assert_eq!(rec.repo_tags, vec!["bb:imported".to_string()]);
    assert_eq!(
        (rec.os.as_str(), rec.architecture.as_str()),
        ("linux", "amd64")
    );
    assert_eq!(rec.config.cmd, None);
    assert_eq!(
        store.resolve("docker.io/library/bb:imported").unwrap().id,
        rec.id
    );

    let lowers = store.lower_dirs(&rec).unwrap();
    assert_eq!(lowers.len(), 1);
    assert!(lowers[0].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(lowers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(std::fs::read_to_string(lowers[0].join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));

    // The content store holds the layer (as given, gzip), the config and the manifest.
    let content = store.content();
    assert_eq!(
        rec.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert!(content.contains(&rec.layers[0].digest));
    assert!(content.contains(&rec.manifest_digest));
    let config: serde_json::Value =
        serde_json::from_slice(&content.read_blob(&rec.id, 1 << 20).unwrap()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], rec.diff_ids[0].as_str());
    assert_eq!(config["os"], "linux");
    let manifest: serde_json::Value =
        serde_json::from_slice(&content.read_blob(&rec.manifest_digest, 1 << 20).unwrap()).unwrap();
    assert_eq!(manifest["config"]["digest"], rec.id.as_str());
    assert_eq!(
        manifest["layers"][0]["digest"],
        rec.layers[0].digest.as_str()
    );

    // Unpacked setuid binaries are not reachable by other host users (CVE-2021-41091).
    use std::os::unix::fs::MetadataExt;
    for d in [
        r.roots.snapshots_dir(),
        r.roots.content_dir(),
        r.roots.images_dir(),
    ] {
        assert_eq!(
            std::fs::metadata(&d).unwrap().mode() & 0o777,
            0o700,
            "{}",
            d.display()
        );
    }

    // Known after a restart, and what a crash left behind is swept: an unreferenced blob, an
    // unreferenced snapshot, a half-written ingest file, a half-unpacked snapshot.
    drop(store);
    let blobs = r.roots.content_dir().join("blobs/sha256");
    let orphan_hex = common::registry::sha256_hex(b"orphan");
    std::fs::write(blobs.join(&orphan_hex), b"orphan").unwrap();
    let orphan_snap = r.roots.snapshots_dir().join("ab".repeat(32));
    std::fs::create_dir_all(orphan_snap.join("etc")).unwrap();
    let half = r.roots.snapshots_dir().join(".tmp-xyz");
    std::fs::create_dir_all(half.join("bin")).unwrap();
    std::fs::write(r.roots.content_dir().join("ingest/partial"), b"par").unwrap();
    let store = ImageStore::open(&r.roots).unwrap();
    assert_eq!(store.resolve("bb:imported").unwrap().id, rec.id);
    assert!(!blobs.join(&orphan_hex).exists());
    assert!(!orphan_snap.exists() && !half.exists());
    assert!(entries(&r.roots.content_dir().join("ingest")).is_empty());
    assert_eq!(entries(&blobs).len(), 3, "layer, config, manifest stay");
    assert!(store.lower_dirs(&rec).unwrap()[0]
        .join("bin/busybox")
        .is_file());
}

#[test]
fn import_untagged_plain_tar_and_hostile_tar() {
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let tar = TarBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/hostname", 0o644, b"box\n")
        .finish();
    let rec = store.import(&tar[..], None).unwrap();
    assert!(rec.repo_tags.is_empty());
    assert_eq!(
        rec.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(store.resolve(&rec.id[7..19]).unwrap().id, rec.id);
    let lower = &store.lower_dirs(&rec).unwrap()[0];
    assert_eq!(std::fs::read(lower.join("etc/hostname")).unwrap(), b"box\n");

    let blobs_before = entries(&r.roots.content_dir().join("blobs/sha256"));
    let snaps_before = entries(&r.roots.snapshots_dir());
    let hostile = TarBuilder::new()
        .file("../../../../escape", 0o644, b"x")
        .finish();
    let e = store.import(&hostile[..], Some("evil:1")).unwrap_err();
    assert!(e.to_string().contains("hostile layer"), "{e}");
    assert!(e.is_hostile_layer());
    assert_eq!(
        entries(&r.roots.content_dir().join("blobs/sha256")),
        blobs_before
    );
    assert_eq!(entries(&r.roots.snapshots_dir()), snaps_before);
    assert!(store.resolve("evil:1").is_none());
    assert!(!r.dir.path().join("escape").exists());

    let e = store.import(&tar[..], Some("bad/../name")).unwrap_err();
    assert!(e.to_string().contains("invalid reference format"), "{e}");
    assert_eq!(berth::engine::api::server::errors::image_status(&e), 400);
}

#[test]
fn tag_and_remove_follow_docker_rmi() {
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let base = TarBuilder::new().file("a", 0o644, b"a").finish();
    let rec = store.import(&base[..], Some("app:1")).unwrap();
    store.tag("app:1", "app:2").unwrap();
    store.tag(&rec.id, "127.0.0.1:5000/app:3").unwrap();
    assert_eq!(store.resolve("app:2").unwrap().id, rec.id);
    assert_eq!(store.resolve("127.0.0.1:5000/app:3").unwrap().id, rec.id);

    let never = |_: &str| false;
    let always = |_: &str| true;
    // One of several tags: only untagged.
    let out = store.remove("app:2", false, &never).unwrap();
    assert_eq!(out, vec!["Untagged: app:2".to_string()]);
    assert!(store.resolve("app:2").is_none());
    // By id with two tags left: refused unless forced.
    let e = store.remove(&rec.id, false, &never).unwrap_err();
    assert_eq!(berth::engine::api::server::errors::image_status(&e), 409);
    assert!(
        e.to_string()
            .contains("referenced in multiple repositories"),
        "{e}"
    );
    // Used by a container: refused, then force only untags.
    store.remove("127.0.0.1:5000/app:3", false, &never).unwrap();
    let e = store.remove("app:1", false, &always).unwrap_err();
    assert_eq!(berth::engine::api::server::errors::image_status(&e), 409);
    assert!(e.to_string().contains("used by a container"), "{e}");
    let out = store.remove("app:1", true, &always).unwrap();
    assert_eq!(out, vec!["Untagged: app:1".to_string()]);
    assert!(store.resolve(&rec.id).is_some(), "in-use image is kept");

    // Deleting removes record, blobs and snapshot.
    let out = store.remove(&rec.id, false, &never).unwrap();
    assert_eq!(out.last().unwrap(), &format!("Deleted: {}", rec.id));
    assert!(store.resolve(&rec.id).is_none());
    assert!(entries(&r.roots.content_dir().join("blobs/sha256")).is_empty());
    assert!(entries(&r.roots.snapshots_dir()).is_empty());
    assert!(entries(&r.roots.images_dir()).is_empty());
    let e = store.remove("app:1", false, &never).unwrap_err();
    assert_eq!(berth::engine::api::server::errors::image_status(&e), 404);
    assert!(e.to_string().contains("no such image: app:1"), "{e}");

    // Two images sharing a layer: removing one keeps the shared snapshot and blob.
    let x = store.import(&base[..], Some("x:1")).unwrap();
    let y = store.import(&base[..], Some("y:1")).unwrap();
    assert_ne!(x.id, y.id);
    assert_eq!(x.diff_ids, y.diff_ids);
    store.remove("x:1", false, &never).unwrap();
    assert!(store.lower_dirs(&y).unwrap()[0].join("a").is_file());
    assert!(store.content().contains(&y.layers[0].digest));
}
