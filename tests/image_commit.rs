//! `docker commit` against berth's engine with the real Docker CLI: a container's changes —
//! new, changed, hard-linked and deleted files, a directory of the image replaced whole — become
//! a layer with Docker's whiteouts and opaque markers, the new image runs with those files and
//! the `--change`d config, `docker history` shows the commit, and a running container is
//! committed paused and keeps running.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::engine::TestEngine;
use common::registry::populate_busybox_rootfs;

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

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A busybox image with files for the container to change: `/etc/motd`, `/etc/gone`,
/// `/srv/old/{a,b}` (replaced whole) and `/srv/gone-dir/x` (removed whole).
fn import_base(engine: &TestEngine, name: &str) {
    let base = engine.data_root().parent().unwrap().join("image-src");
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("etc/motd"), "original\n").unwrap();
    std::fs::write(rootfs.join("etc/gone"), "to be deleted\n").unwrap();
    for (path, data) in [
        ("srv/old/a", "a\n"),
        ("srv/old/b", "b\n"),
        ("srv/gone-dir/x", "x\n"),
    ] {
        let p = rootfs.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let tar = base.join("base.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    ok(
        engine.docker(&["import", tar.to_str().unwrap(), name]),
        "docker import",
    );
}

/// The names and GNU tar's view of the top layer of `image`, from `docker save`.
fn top_layer_listing(engine: &TestEngine, image: &str, scratch: &Path) -> String {
    let archive = scratch.join("saved.tar");
    ok(
        engine.docker(&["save", "-o", archive.to_str().unwrap(), image]),
        "docker save",
    );
    let dir = scratch.join("saved");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-xf")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "the base layer and the commit's: {manifest}"
    );
    let top: PathBuf = dir.join(layers[1].as_str().unwrap());
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&top)
        .output()
        .unwrap();
    ok(out, "tar -tvzf of the committed layer")
}

#[test]
fn docker_commit_turns_a_containers_changes_into_a_runnable_layer() {
    let engine = TestEngine::start();
    let scratch = tempfile::tempdir().unwrap();
    let base = format!("{}:1", unique("commit-base"));
    import_base(&engine, &base);
    let container = unique("committer");
    let script = "echo new > /etc/new && ln /etc/new /etc/new-link && \
                  echo changed > /etc/motd && rm /etc/gone && \
                  rm -rf /srv/old /srv/gone-dir && mkdir /srv/old && echo fresh > /srv/old/fresh";
    ok(
        engine.docker(&[
            "run",
            "--name",
            &container,
            "--network",
            "host",
            &base,
            "sh",
            "-c",
            script,
        ]),
        "docker run (making changes)",
    );
    // A change docker commit does not allow: refused with its line, and no image made.
    let images_before = ok(engine.docker(&["images", "-aq"]), "docker images");
    let bad = engine.docker(&["commit", "--change", "RUN rm -rf /", &container, "bad:1"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("RUN is not a valid change command"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(
        ok(engine.docker(&["images", "-aq"]), "docker images"),
        images_before
    );
    let missing = engine.docker(&["commit", "no-such-container-here", "x:1"]);
    assert!(
        text(&missing.stderr).contains("no such container"),
        "{}",
        text(&missing.stderr)
    );

    let image = format!("{}:v1", unique("committed"));
    let id = ok(
        engine.docker(&[
            "commit",
            "--change",
            r#"CMD ["cat", "/etc/new"]"#,
            "--change",
            "ENV COMMITTED=yes",
            "-m",
            "made by the commit test",
            "-a",
            "tester",
            &container,
            &image,
        ]),
        "docker commit",
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");

    // The new image runs the changed CMD, and sees exactly the container's changes.
    let out = ok(
        engine.docker(&["run", "--rm", "--network", "host", &image]),
        "docker run (CMD)",
    );
    assert_eq!(out, "new\n");
    let probe = "cat /etc/motd; ls /srv/old; test -e /etc/gone || echo no-gone; \
                 test -e /srv/gone-dir || echo no-gone-dir; stat -c %h /etc/new-link; \
                 echo $COMMITTED";
    let out = ok(
        engine.docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            &image,
            "sh",
            "-c",
            probe,
        ]),
        "docker run (probe)",
    );
    assert_eq!(out, "changed\nfresh\nno-gone\nno-gone-dir\n2\nyes\n");

    // The layer as Docker writes one.
    let listing = top_layer_listing(&engine, &image, scratch.path());
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "etc/.wh.gone",
        "srv/.wh.gone-dir",
        "srv/old/",
        "srv/old/.wh..wh..opq",
        "srv/old/fresh",
        "etc/motd",
        "etc/new",
    ] {
        assert!(names.contains(&want), "{want} missing from:\n{listing}");
    }
    assert!(
        listing.contains("etc/new-link link to etc/new"),
        "{listing}"
    );
    for stub in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc/",
        "dev/",
    ] {
        assert!(
            !names.contains(&stub),
            "{stub} is a runtime stub:\n{listing}"
        );
    }

    // history: the commit on top, with its command, comment and a layer.
    let history = ok(
        engine.docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}|{{.Comment}}",
            &image,
        ]),
        "docker history",
    );
    let top = history.lines().next().unwrap_or_default();
    assert!(top.starts_with("sh -c echo new"), "{history}");
    assert!(top.ends_with("|made by the commit test"), "{history}");
    let images = ok(
        engine.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "docker images",
    );
    assert!(images.lines().any(|l| l == image), "{images}");

    ok(engine.docker(&["rm", &container]), "docker rm");
    ok(engine.docker(&["rmi", &image, &base]), "docker rmi");
}

/// Polls `check` until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_running_container_is_committed_and_keeps_running() {
    let engine = TestEngine::start();
    let base = format!("{}:1", unique("commit-live-base"));
    import_base(&engine, &base);
    let container = unique("live");
    ok(
        engine.docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            "host",
            &base,
            "sh",
            "-c",
            "echo live > /live && exec sleep 600",
        ]),
        "docker run -d",
    );
    assert!(
        eventually(Duration::from_secs(10), || engine
            .docker(&["exec", &container, "test", "-e", "/live"])
            .status
            .success()),
        "the container never wrote /live"
    );
    let image = format!("{}:live", unique("committed-live"));
    ok(
        engine.docker(&["commit", &container, &image]),
        "docker commit",
    );
    let out = ok(
        engine.docker(&["run", "--rm", "--network", "host", &image, "cat", "/live"]),
        "docker run (committed)",
    );
    assert_eq!(out, "live\n");
    // Thawed after the copy: it still runs and answers.
    let out = ok(
        engine.docker(&["exec", &container, "echo", "still here"]),
        "docker exec after the commit",
    );
    assert_eq!(out, "still here\n");
    let state = ok(
        engine.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Paused}}",
            &container,
        ]),
        "docker inspect",
    );
    assert_eq!(state.trim(), "true false");
    ok(engine.docker(&["rm", "-f", &container]), "docker rm -f");
    ok(engine.docker(&["rmi", &image, &base]), "docker rmi");
}

/// A build step's image (made here through the store, as the builder makes them) is hidden
/// from `docker images`, listed by `docker images -a`, runnable by ID, survives an engine
/// restart and `docker image prune -a`.
#[test]
fn intermediate_images_are_listed_only_with_all_and_survive_prune() {
    use berth::engine::image::{CommitRequest, ImageStore};
    let mut engine = TestEngine::start();
    let base = format!("{}:1", unique("commit-step-base"));
    import_base(&engine, &base);
    let status = engine.stop();
    assert!(status.success(), "{}", engine.log_text());
    let step = {
        let store = ImageStore::open(&engine.roots()).unwrap();
        let parent = store.resolve(&base).unwrap();
        let upper = engine.data_root().join("step-upper");
        std::fs::create_dir_all(upper.join("out")).unwrap();
        std::fs::write(upper.join("out/result"), "built\n").unwrap();
        let layer = store
            .commit_layer(&upper, &parent.layers, &[])
            .unwrap()
            .expect("a change");
        assert!(!upper.exists(), "moved into the snapshot store");
        let (config, extensions) = store.image_config(&parent).unwrap();
        let mut layers = parent.layers.clone();
        layers.push(layer);
        store
            .commit_image(CommitRequest {
                config,
                extensions,
                layers,
                tag: None,
                intermediate: true,
            })
            .unwrap()
    };
    engine.start_again();
    let short = &step.id["sha256:".len().."sha256:".len() + 12];
    let listed = ok(engine.docker(&["images", "-q"]), "docker images");
    assert!(!listed.contains(short), "{listed}");
    let all = ok(engine.docker(&["images", "-aq"]), "docker images -a");
    assert!(all.contains(short), "{all}");
    let out = ok(
        engine.docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            &step.id,
            "cat",
            "/out/result",
        ]),
        "docker run of the step image",
    );
    assert_eq!(out, "built\n");
    ok(
        engine.docker(&["image", "prune", "-a", "-f"]),
        "docker image prune",
    );
    let all = ok(engine.docker(&["images", "-aq"]), "docker images -a");
    assert!(all.contains(short), "prune took the step image: {all}");
    // Its layers too, though prune took the base image that shared them.
    let out = ok(
        engine.docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            &step.id,
            "cat",
            "/out/result",
        ]),
        "docker run of the step image after prune",
    );
    assert_eq!(out, "built\n");
}
