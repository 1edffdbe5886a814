//! Root-only: an image of 100 layers pulled from a real registry and run by a real daemon. The
//! overlay mount data is limited to one page, so the lower dirs must be passed by short names;
//! the container must see the merged result (later layers overwrite, whiteouts and opaque
//! directories hide earlier content).

mod common;

use std::path::Path;

use common::engine::TestEngine;
use common::registry::{populate_busybox_rootfs, TarBuilder, TestRegistry};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const LAYERS: usize = 100;

/// Layer 0: the busybox root filesystem, as an uncompressed tar.
fn busybox_layer(dir: &Path) -> Vec<u8> {
    let rootfs = dir.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let tar = dir.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    std::fs::read(&tar).expect("read busybox tar")
}

/// Layer `i` (1..100): adds `layers/l<i>`, overwrites `layers/top`; every layer ending in 5
/// whites out `layers/l<i-1>`; layer 50 makes `doomed/` with a file, layer 80 makes it opaque.
fn layer(i: usize) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("layers/", 0o755);
    t.file(
        &format!("layers/l{i}"),
        0o644,
        format!("layer {i}\n").as_bytes(),
    );
    t.file("layers/top", 0o644, format!("top {i}\n").as_bytes());
    if i % 10 == 5 {
        t.file(&format!("layers/.wh.l{}", i - 1), 0o644, b"");
    }
    if i == 50 {
        t.dir("doomed/", 0o755);
        t.file("doomed/old", 0o644, b"old\n");
    }
    if i == 80 {
        t.dir("doomed/", 0o755);
        t.file("doomed/.wh..wh..opq", 0o644, b"");
        t.file("doomed/new", 0o644, b"new\n");
    }
    t.finish()
}

#[test]
fn hundred_layer_image_runs_with_the_merged_view() {
    let registry = TestRegistry::start();
    let engine = TestEngine::start();
    let src = engine.data_root().parent().unwrap().join("layer-src");
    std::fs::create_dir_all(&src).unwrap();
    let mut layers = vec![busybox_layer(&src)];
    layers.extend((1..LAYERS).map(layer));
    let image = registry.push_layers("deep/image", "100", &layers);

    let out = engine.docker(&["pull", &image]);
    assert!(out.status.success(), "docker pull: {}", text(&out.stderr));
    let out = engine.docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &image,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), LAYERS.to_string());

    let script = "cat /layers/l1 /layers/l50 /layers/l99 /layers/top; \
                  ls /layers | wc -l; ls /doomed; \
                  for f in /layers/l4 /layers/l94 /doomed/old; do \
                    [ -e $f ] && echo still there: $f; done; \
                  echo changed > /layers/l1 && cat /layers/l1";
    let out = engine.docker(&[
        "create",
        "--name",
        "deep",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let out = engine.docker(&["start", "deep"]);
    assert!(out.status.success(), "docker start: {}", text(&out.stderr));
    let out = engine.docker(&["wait", "deep"]);
    assert!(out.status.success(), "docker wait: {}", text(&out.stderr));
    let out_logs = engine.docker(&["logs", "deep"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "0",
        "exit code; logs: {} {}",
        text(&out_logs.stdout),
        text(&out_logs.stderr)
    );
    // 99 files l1..l99 minus 10 whited out (l4, l14, …, l94), plus `top`.
    assert_eq!(
        text(&out_logs.stdout),
        "layer 1\nlayer 50\nlayer 99\ntop 99\n90\nnew\nchanged\n"
    );
    assert_eq!(text(&out_logs.stderr), "");

    let out = engine.docker(&["rm", "deep"]);
    assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    let out = engine.docker(&["rmi", &image]);
    assert!(out.status.success(), "docker rmi: {}", text(&out.stderr));
}

/// The markers of snapshots committed unsynced (`.unsynced-<chain>@<boot id>`).
fn unsynced_markers(snapshots: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".unsynced-"))
        .collect();
    names.sort();
    names
}

fn run_to_exit(engine: &TestEngine, name: &str, image: &str, script: &str) -> String {
    let out = engine.docker(&[
        "run",
        "--name",
        name,
        "--network",
        "none",
        image,
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "docker run: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A pull commits its snapshots without syncing them, marked with the boot they were unpacked
/// under. An engine killed on the same boot keeps them; after a (simulated) reboot they are
/// untrusted: dropped at start and unpacked again from their blobs when a container needs them.
#[test]
fn snapshots_unsynced_before_a_reboot_are_unpacked_again() {
    let registry = TestRegistry::start();
    let mut engine = TestEngine::start();
    let src = engine.data_root().parent().unwrap().join("layer-src");
    std::fs::create_dir_all(&src).unwrap();
    let image = registry.push_layers("reboot/image", "1", &[busybox_layer(&src), layer(1)]);
    let out = engine.docker(&["pull", &image]);
    assert!(out.status.success(), "docker pull: {}", text(&out.stderr));
    let snapshots = engine.data_root().join("snapshots");
    let markers = unsynced_markers(&snapshots);
    assert_eq!(markers.len(), 2, "one marker per snapshot: {markers:?}");
    let hex = |m: &str| {
        m["unsynced-".len() + 1..]
            .split('@')
            .next()
            .unwrap()
            .to_string()
    };

    // A crash of the engine alone loses nothing: the snapshots stay.
    engine.crash();
    engine.start_again();
    assert_eq!(
        run_to_exit(&engine, "same-boot", &image, "cat /layers/l1"),
        "layer 1\n"
    );

    // The machine "crashed" and lost part of a snapshot that was never synced: the markers now
    // name another boot.
    engine.crash();
    let top = snapshots.join(hex(&markers[1]));
    let lost = if top.join("layers/l1").exists() {
        top
    } else {
        snapshots.join(hex(&markers[0]))
    };
    std::fs::remove_file(lost.join("layers/l1")).unwrap();
    for m in &markers {
        let earlier = format!(
            "{}@00000000-0000-0000-0000-000000000000",
            m.split('@').next().unwrap()
        );
        std::fs::rename(snapshots.join(m), snapshots.join(earlier)).unwrap();
    }
    engine.start_again();
    assert!(
        unsynced_markers(&snapshots).is_empty(),
        "markers of the earlier boot are dropped"
    );
    assert!(
        !lost.exists(),
        "the untrusted snapshot was removed at start"
    );
    assert!(engine
        .log_text()
        .contains("was not synced before the machine restarted"));

    // The container sees the layer again, unpacked from its blob.
    assert_eq!(
        run_to_exit(&engine, "after-reboot", &image, "cat /layers/l1"),
        "layer 1\n"
    );
    assert!(lost.join("layers/l1").is_file());

    // A clean exit syncs once and leaves no marker behind.
    let status = engine.stop();
    assert!(status.success());
    assert!(unsynced_markers(&snapshots).is_empty());
    engine.start_again();
    for name in ["same-boot", "after-reboot"] {
        let out = engine.docker(&["rm", name]);
        assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    }
}
