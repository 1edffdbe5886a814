//! `berth cp` and the engine's archive endpoints end to end: host → running container and back
//! (content, mode, symlinks, `SRC/.`, trees, `-` tar both ways), into and out of a stopped
//! container, containers whose symlinks point at the host's root, its files and /proc (the
//! host's files are checked: nothing outside the container is read or written), and the
//! Docker CLI's `docker cp` both ways against berth's socket.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::project::TestProject;

const IMAGE: &str = "cp/busybox:1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A project with one long-running busybox service `web` (a named volume at `/vol`), up.
fn project_up(prefix: &str) -> TestProject {
    let project = TestProject::new(prefix, "");
    project.import_busybox(IMAGE);
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {IMAGE}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    volumes: ["data:/vol"]
volumes:
  data: {{}}
"#,
        mark = project.name
    ));
    project.ok(&["up", "-d"]);
    project
}

/// `sh -c script` in the service container; its stdout.
fn sh(project: &TestProject, script: &str) -> String {
    project.ok(&["exec", "-T", "web", "sh", "-c", script])
}

/// `berth -p NAME ARGS` with `input` on stdin.
fn berth_with_input(project: &TestProject, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name])
        .args(args)
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for berth");
    writer.join().expect("stdin writer");
    out
}

/// A host tree: `a.txt` (0640), `sub/b.txt`, `link -> a.txt`.
fn host_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(root.join("sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cp_round_trips_trees_files_and_tars_with_a_running_container() {
    let project = project_up("cprun");
    let host = project.dir.path();
    host_tree(&host.join("src"));

    // A directory onto a missing path is created with the contents; modes and links kept.
    project.ok(&["cp", "src", "web:/data"]);
    let seen = sh(
        &project,
        "cat /data/a.txt /data/sub/b.txt; stat -c %a /data/a.txt; readlink /data/link",
    );
    assert_eq!(seen, "alpha\nbeta\n640\na.txt\n");
    // Onto an existing directory: under its own name, or its contents with `/.`.
    sh(&project, "mkdir -p /into /contents");
    project.ok(&["cp", "src", "web:/into"]);
    project.ok(&["cp", "src/.", "web:/contents"]);
    assert_eq!(
        sh(&project, "ls /into /contents"),
        "/contents:\na.txt\nlink\nsub\n\n/into:\nsrc\n"
    );
    // A file into a directory keeps its name; onto a file, it replaces it.
    project.ok(&["cp", "src/sub/b.txt", "web:/tmp"]);
    project.ok(&["cp", "src/sub/b.txt", "web:/data/a.txt"]);
    assert_eq!(sh(&project, "cat /tmp/b.txt /data/a.txt"), "beta\nbeta\n");
    let err = project.fails(&["cp", "src", "web:/data/a.txt"]);
    assert!(err.contains("cannot copy a directory to a file"), "{err}");

    // Back to the host: a new directory, the contents into an existing one, a single file.
    project.ok(&["cp", "web:/into/src", "back"]);
    assert_eq!(
        std::fs::read_to_string(host.join("back/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("back/sub/b.txt")).unwrap(),
        "beta\n"
    );
    let mode = std::fs::metadata(host.join("back/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read_link(host.join("back/link")).unwrap(),
        Path::new("a.txt")
    );
    std::fs::create_dir(host.join("merged")).unwrap();
    project.ok(&["cp", "web:/into/src/.", "merged"]);
    assert!(host.join("merged/sub/b.txt").is_file());
    project.ok(&["cp", "web:/tmp/b.txt", "single.txt"]);
    assert_eq!(
        std::fs::read_to_string(host.join("single.txt")).unwrap(),
        "beta\n"
    );
    let err = project.fails(&["cp", "web:/nope", "x"]);
    assert!(
        err.contains("Could not find the file /nope in container"),
        "{err}"
    );

    // `-`: a tar on stdout, and one from stdin extracted into a directory.
    let out = project.berth(&["cp", "web:/into/src", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names = tar_names(&out.stdout);
    for want in ["src/", "src/a.txt", "src/link", "src/sub/", "src/sub/b.txt"] {
        assert!(
            names
                .iter()
                .any(|n| n.trim_end_matches('/') == want.trim_end_matches('/')),
            "{want} in {names:?}"
        );
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o600);
    tar.append_data(&mut h, "piped.txt", &b"piped!\n"[..])
        .unwrap();
    let out = berth_with_input(
        &project,
        &["cp", "-", "web:/tmp"],
        &tar.into_inner().unwrap(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        sh(&project, "cat /tmp/piped.txt; stat -c %a /tmp/piped.txt"),
        "piped!\n600\n"
    );
}

#[test]
fn archive_mode_owns_the_copy_by_the_container_user_and_plain_keeps_the_source_owner() {
    let project = TestProject::new("cpown", "");
    project.import_busybox(IMAGE);
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {IMAGE}
    user: "1234:5678"
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
  ro:
    image: {IMAGE}
    read_only: true
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#,
        mark = project.name
    ));
    project.ok(&["up", "-d"]);
    let file = project.dir.path().join("owned.txt");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(4321), Some(4321)).unwrap();
    project.ok(&["cp", "owned.txt", "web:/tmp/plain.txt"]);
    project.ok(&["cp", "-a", "owned.txt", "web:/tmp/archive.txt"]);
    assert_eq!(
        sh(&project, "stat -c %u:%g /tmp/plain.txt /tmp/archive.txt"),
        "4321:4321\n1234:5678\n"
    );
    // A read-only root stays so when the container is stopped, as Docker refuses it.
    project.ok(&["stop", "ro"]);
    let err = project.fails(&["cp", "owned.txt", "ro:/tmp/"]);
    assert!(err.contains("rootfs is marked read-only"), "{err}");
}

#[test]
fn cp_reads_and_writes_a_stopped_container_without_leaving_mounts() {
    let project = project_up("cpstop");
    let host = project.dir.path();
    sh(
        &project,
        "echo kept > /state.txt; rm /bin/ls; echo in volume > /vol/v.txt",
    );
    project.ok(&["stop", "web"]);
    // `docker container diff`: the added and the deleted file, the changed directory, and
    // nothing of the runtime's own mount points (/proc, /etc/hosts, …).
    let container = format!("{}-web-1", project.name);
    if Command::new("docker").arg("--version").output().is_ok() {
        let diff = project.docker(&["diff", &container]);
        assert_eq!(diff, "C /bin\nD /bin/ls\nA /state.txt\n");
    }

    project.ok(&["cp", "web:/state.txt", "state.txt"]);
    assert_eq!(
        std::fs::read_to_string(host.join("state.txt")).unwrap(),
        "kept\n"
    );
    // The volume is part of the stopped container's files, both ways.
    project.ok(&["cp", "web:/vol/v.txt", "v.txt"]);
    let in_volume = std::fs::read_to_string(host.join("v.txt")).unwrap();
    assert_eq!(in_volume, "in volume\n");
    let err = project.fails(&["cp", "web:/bin/ls", "ls"]);
    assert!(
        err.contains("Could not find the file /bin/ls"),
        "a deleted file stays deleted: {err}"
    );
    std::fs::write(host.join("new.txt"), "while stopped\n").unwrap();
    project.ok(&["cp", "new.txt", "web:/new.txt"]);
    project.ok(&["cp", "new.txt", "web:/vol/"]);
    assert!(
        project.leftover_mounts().is_empty(),
        "{:?}",
        project.leftover_mounts()
    );

    project.ok(&["start", "web"]);
    assert_eq!(
        sh(&project, "cat /new.txt /state.txt /vol/new.txt"),
        "while stopped\nkept\nwhile stopped\n"
    );
}

#[test]
fn container_symlinks_never_lead_the_copy_to_the_hosts_files() {
    let project = project_up("cpesc");
    let host = project.dir.path();
    // Host files a hostile container names by their host paths.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    let outside_path = outside.path().to_string_lossy().into_owned();
    let marker = format!("berth-cp-escape-{}", project.name);
    sh(
        &project,
        &format!(
            "ln -s / /escape; ln -s {outside_path}/secret /leak; ln -s {outside_path} /hostdir; \
             ln -s /proc/1/root /procroot; mkdir -p /etc/x; ln -s {outside_path} /etc/x/host"
        ),
    );
    std::fs::write(host.join(&marker), "payload\n").unwrap();

    // Writes through `/escape` land in the container's root, not the host's.
    project.ok(&["cp", &marker, "web:/escape/tmp/"]);
    assert_eq!(sh(&project, &format!("cat /tmp/{marker}")), "payload\n");
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "written to the host's /tmp"
    );
    // A link to a host directory is a path inside the container (missing there): refused.
    for dest in ["web:/hostdir/", "web:/etc/x/host/"] {
        project.fails(&["cp", &marker, dest]);
    }
    let listing: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(listing.len(), 1, "the host directory gained files");
    // Reads through links never return the host's file.
    for args in [
        vec!["cp", "-L", "web:/leak", "leak1"],
        vec!["cp", "web:/hostdir/secret", "leak2"],
        vec!["cp", "web:/escape/", "-"],
    ] {
        let out = project.berth(&args);
        let mut all = out.stdout.clone();
        for f in ["leak1", "leak2"] {
            if let Ok(mut file) = std::fs::File::open(host.join(f)) {
                let _ = file.read_to_end(&mut all);
            }
        }
        assert!(
            !text(&all).contains("host secret"),
            "{args:?} read the host's file"
        );
    }
    // /proc magic links and the kernel's file systems are refused both ways.
    let err = project.fails(&["cp", "web:/procroot/etc/hostname", "x"]);
    assert!(err.contains("does not follow"), "{err}");
    let err = project.fails(&["cp", "web:/proc/1/environ", "x"]);
    assert!(err.contains("procfs or sysfs"), "{err}");
    project.fails(&["cp", &marker, "web:/proc/sys/kernel/"]);
    project.fails(&["cp", &marker, "web:/procroot/tmp/"]);
    // A tree copied onto `/` may not descend into the container's procfs or sysfs mounts.
    for kernel in ["proc", "sys"] {
        let tree = host.join(format!("kern-{kernel}"));
        std::fs::create_dir_all(tree.join(kernel)).unwrap();
        std::fs::write(tree.join(kernel).join("berth-probe"), "x").unwrap();
        let src = format!("kern-{kernel}/.");
        let err = project.fails(&["cp", &src, "web:/"]);
        assert!(err.contains("a kernel file system"), "{err}");
    }
}

#[test]
fn the_docker_cli_copies_both_ways_through_berths_socket() {
    if Command::new("docker").arg("--version").output().is_err() {
        common::precondition::skip("the docker CLI is not installed");
        return;
    }
    let project = project_up("cpdock");
    let host = project.dir.path();
    let container = format!("{}-web-1", project.name);
    host_tree(&host.join("src"));
    let src = host.join("src").to_string_lossy().into_owned();
    project.docker(&["cp", &src, &format!("{container}:/fromdocker")]);
    assert_eq!(
        sh(
            &project,
            "cat /fromdocker/sub/b.txt; readlink /fromdocker/link"
        ),
        "beta\na.txt\n"
    );
    let back = host.join("docker-back").to_string_lossy().into_owned();
    project.docker(&["cp", &format!("{container}:/fromdocker/."), &back]);
    assert_eq!(
        std::fs::read_to_string(host.join("docker-back/a.txt")).unwrap(),
        "alpha\n"
    );
    let file = host.join("hosts-copy").to_string_lossy().into_owned();
    project.docker(&["cp", &format!("{container}:/fromdocker/a.txt"), &file]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "alpha\n");
}

#[test]
fn copying_to_a_scaled_service_reaches_every_replica_unless_index_picks_one() {
    let project = TestProject::new("cpidx", "");
    project.import_busybox(IMAGE);
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {IMAGE}
    scale: 2
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#,
        mark = project.name
    ));
    project.ok(&["up", "-d"]);
    let host = project.dir.path();
    std::fs::write(host.join("all.txt"), "everyone\n").unwrap();
    std::fs::write(host.join("two.txt"), "second\n").unwrap();
    project.ok(&["cp", "all.txt", "web:/tmp/"]);
    project.ok(&["cp", "--index", "2", "two.txt", "web:/tmp/"]);
    let listing = |index: &str| project.ok(&["exec", "-T", "--index", index, "web", "ls", "/tmp"]);
    assert_eq!(listing("1"), "all.txt\n");
    assert_eq!(listing("2"), "all.txt\ntwo.txt\n");
    project.ok(&["cp", "--index", "2", "web:/tmp/two.txt", "back.txt"]);
    assert_eq!(
        std::fs::read_to_string(host.join("back.txt")).unwrap(),
        "second\n"
    );
    let err = project.fails(&["cp", "--index", "3", "web:/tmp/all.txt", "x"]);
    assert!(err.contains("no container #3"), "{err}");
}

/// `docker cp` works on a created container: what goes in before its first start comes out
/// again (and is there once it starts), and the links of its image still never lead the copy
/// to the host's files.
#[test]
fn cp_into_and_out_of_a_container_that_never_started() {
    let project = project_up("cpnew");
    let host = project.dir.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    let outside_path = outside.path().to_string_lossy().into_owned();
    // An image whose links name the host's root and files.
    sh(
        &project,
        &format!(
            "ln -s / /escape; ln -s {outside_path}/secret /leak; ln -s {outside_path} /hostdir"
        ),
    );
    let web = format!("{}-web-1", project.name);
    project.docker(&["commit", &web, "cp/hostile:1"]);
    // Gone, so any mount left below is the copy's.
    project.docker(&["rm", "-f", &web]);
    project.write_compose(
        r#"
services:
  fresh:
    image: cp/hostile:1
    command: ["sleep", "300"]
    stop_grace_period: 1s
"#,
    );
    project.ok(&["create", "fresh"]);
    let fresh = format!("{}-fresh-1", project.name);
    assert_eq!(
        project
            .docker(&["inspect", "-f", "{{.State.Status}}", &fresh])
            .trim(),
        "created"
    );

    std::fs::write(host.join("note.txt"), "before the first start\n").unwrap();
    project.ok(&["cp", "note.txt", "fresh:/etc/"]);
    project.ok(&["cp", "fresh:/etc/note.txt", "back.txt"]);
    assert_eq!(
        std::fs::read_to_string(host.join("back.txt")).unwrap(),
        "before the first start\n"
    );
    // Through the image's `/escape -> /`: inside the container, never the host's /tmp.
    let marker = format!("berth-cp-created-{}", project.name);
    std::fs::write(host.join(&marker), "payload\n").unwrap();
    project.ok(&["cp", &marker, "fresh:/escape/tmp/"]);
    project.ok(&["cp", &format!("fresh:/tmp/{marker}"), "marker-back"]);
    assert_eq!(
        std::fs::read_to_string(host.join("marker-back")).unwrap(),
        "payload\n"
    );
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "written to the host's /tmp"
    );
    for args in [
        vec!["cp", "-L", "fresh:/leak", "leak1"],
        vec!["cp", "fresh:/hostdir/secret", "leak2"],
    ] {
        let out = project.berth(&args);
        let mut all = out.stdout.clone();
        for f in ["leak1", "leak2"] {
            if let Ok(mut file) = std::fs::File::open(host.join(f)) {
                let _ = file.read_to_end(&mut all);
            }
        }
        assert!(
            !text(&all).contains("host secret"),
            "{args:?} read the host's file"
        );
    }
    assert!(
        project.leftover_mounts().is_empty(),
        "{:?}",
        project.leftover_mounts()
    );

    project.ok(&["start", "fresh"]);
    let seen = project.ok(&[
        "exec",
        "-T",
        "fresh",
        "cat",
        "/etc/note.txt",
        &format!("/tmp/{marker}"),
    ]);
    assert_eq!(seen, "before the first start\npayload\n");
}
