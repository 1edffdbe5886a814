//! Named-volume copy-up end to end: an empty volume mounted over image content gets that
//! content with owners, setuid bits and symlinks intact; and a second container sharing the
//! volume that keeps swapping names in it for symlinks to a host directory (issue 6, finding 2)
//! never gets the engine to write into, or chmod, that host directory.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::project::TestProject;
use common::registry::{TarBuilder, TestRegistry};

/// busybox (layer 1) and `/srv/data` with a file, a setuid tool owned by 1000 and an absolute
/// symlink (layer 2).
fn image_layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let base = TarBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .symlink("bin/sh", "busybox")
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .finish();
    let content = TarBuilder::new()
        .dir("srv", 0o755)
        .dir("srv/data", 0o2775)
        .file("srv/data/hello", 0o644, b"from the image\n")
        .dir("srv/data/sub", 0o750)
        .pax(&[("uid", b"1000"), ("gid", b"1000")])
        .file("srv/data/sub/tool", 0o4755, b"#!/bin/sh\n")
        .symlink("srv/data/link", "/etc/passwd")
        .finish();
    vec![base, content]
}

fn listing(dir: &Path) -> Vec<(String, u32, u32, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, m.mode(), m.uid(), m.len())
        })
        .collect();
    let m = std::fs::symlink_metadata(dir).unwrap();
    out.push((".".into(), m.mode(), m.uid(), m.len()));
    out.sort();
    out
}

#[test]
fn copy_up_fills_an_empty_volume_and_a_racing_container_cannot_redirect_it() {
    let registry = TestRegistry::start();
    let image = registry.push_layers("copyup/app", "1", &image_layers());
    let project = TestProject::new("copyup", "");
    // The host directory the racer points its symlinks at (an absolute host path: the engine
    // would reach it if it followed them).
    let host = project.roots.path().join("host-sentinel");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("keep"), "host").unwrap();
    let before = listing(&host);
    let h = host.display();
    let mark = &project.name;
    project.write_compose(&format!(
        r#"
services:
  app:
    image: {image}
    network_mode: none
    environment: {{ BERTH_TEST_MARK: {mark} }}
    command: ["/bin/busybox", "sleep", "600"]
    volumes: ["data:/srv/data"]
  racer:
    image: {image}
    network_mode: none
    environment: {{ BERTH_TEST_MARK: {mark} }}
    command: ["/bin/busybox", "sh", "-c", "while :; do busybox rm -rf /vol/sub /vol/hello /vol/link; for n in sub hello link; do busybox ln -s {h} /vol/$$n; done; done"]
    volumes: ["shared:/vol"]
  victim:
    image: {image}
    network_mode: none
    environment: {{ BERTH_TEST_MARK: {mark} }}
    depends_on: [racer]
    command: ["/bin/busybox", "sleep", "600"]
    volumes: ["shared:/srv/data"]
volumes:
  data: {{}}
  shared: {{}}
"#
    ));
    // The victim may find the volume taken by the racer's links, or race it: either way the
    // engine must not follow them.
    // `up -d` returns once every container started, so the copy-ups are done.
    let up = project.berth(&["up", "-d"]);
    let volumes = project.data_root().join("volumes");
    let data = volumes.join(format!("{}_data/_data", project.name));
    let hello = std::fs::read_to_string(data.join("hello"));
    let tool = std::fs::symlink_metadata(data.join("sub/tool"));
    let link = std::fs::read_link(data.join("link"));
    let root = std::fs::metadata(&data);
    let in_container = project.berth(&[
        "exec",
        "-T",
        "app",
        "/bin/busybox",
        "cat",
        "/srv/data/hello",
    ]);
    let after = listing(&host);
    project.berth(&["down", "-v", "-t", "0"]);

    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(after, before, "the host directory changed");
    assert_eq!(hello.unwrap(), "from the image\n");
    let tool = tool.unwrap();
    assert_eq!(
        (tool.mode() & 0o7777, tool.uid(), tool.gid()),
        (0o4755, 1000, 1000)
    );
    assert_eq!(link.unwrap(), Path::new("/etc/passwd"));
    assert_eq!(root.unwrap().mode() & 0o7777, 0o2775);
    assert_eq!(
        String::from_utf8_lossy(&in_container.stdout),
        "from the image\n"
    );
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(procs.is_empty(), "no container process left: {procs:?}");
    assert!(
        project.leftover_mounts().is_empty(),
        "{:?}",
        project.leftover_mounts()
    );
}
