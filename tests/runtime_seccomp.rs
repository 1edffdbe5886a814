//! Root-only: containers run under Docker's default seccomp profile. Through a real daemon and
//! the real Docker CLI, a busybox container sees the filter (`Seccomp: 2`), cannot create
//! namespaces or mount, and everyday programs (a shell, httpd and wget over loopback, ls, sleep,
//! cat, id) work, as root and as an unprivileged user.

mod common;

use std::path::PathBuf;

use common::engine::TestEngine;
use common::registry::populate_busybox_rootfs;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn import_busybox(engine: &TestEngine) -> String {
    let base = engine.data_root().parent().unwrap().join("image-src");
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    let tar: PathBuf = base.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let out = engine.docker(&["import", tar.to_str().unwrap(), "local/busybox:sc"]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    "local/busybox:sc".to_string()
}

/// Runs `script` in a new container (network `none`: loopback only) and returns (exit code, stdout,
/// stderr); the container is removed.
fn run(
    engine: &TestEngine,
    name: &str,
    extra: &[&str],
    image: &str,
    script: &str,
) -> (String, String, String) {
    let mut args = vec!["create", "--name", name, "--network", "none"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    let out = engine.docker(&args);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let out = engine.docker(&["start", name]);
    assert!(out.status.success(), "docker start: {}", text(&out.stderr));
    let out = engine.docker(&["wait", name]);
    assert!(out.status.success(), "docker wait: {}", text(&out.stderr));
    let code = text(&out.stdout).trim().to_string();
    let logs = engine.docker(&["logs", name]);
    assert!(logs.status.success(), "docker logs: {}", text(&logs.stderr));
    let out = engine.docker(&["rm", "-f", name]);
    assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    (code, text(&logs.stdout), text(&logs.stderr))
}

#[test]
fn default_profile_blocks_namespaces_and_mounts_and_keeps_programs_working() {
    let engine = TestEngine::start();
    let image = import_busybox(&engine);

    let script = "grep Seccomp: /proc/self/status; \
        unshare -n true; echo unshare-net=$?; \
        unshare -U true; echo unshare-user=$?; \
        mkdir -p /mnt; mount -t tmpfs x /mnt; echo mount=$?; \
        mkdir -p /tmp/www && echo served > /tmp/www/index.html; \
        httpd -p 127.0.0.1:8080 -h /tmp/www; \
        sleep 1; timeout 3 wget -qO- http://127.0.0.1:8080/index.html; \
        ls /tmp/www; id; cat /tmp/www/index.html";
    let (code, stdout, stderr) = run(&engine, "filtered", &[], &image, script);
    assert_eq!(code, "0", "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stdout,
        "Seccomp:\t2\nunshare-net=1\nunshare-user=1\nmount=1\nserved\nindex.html\n\
         uid=0(root) gid=0(root)\nserved\n",
        "stderr: {stderr}"
    );
    // EPERM from the filter, not a missing applet or another error.
    assert!(
        stderr.contains("unshare(0x40000000): Operation not permitted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unshare(0x10000000): Operation not permitted"),
        "{stderr}"
    );
    assert!(stderr.contains("mount: permission denied"), "{stderr}");

    // The filter is installed before setuid: an unprivileged user still gets through it.
    let (code, stdout, stderr) = run(
        &engine,
        "unprivileged",
        &["--user", "1000:1000"],
        &image,
        "id -u; grep Seccomp: /proc/self/status; unshare -U true || echo refused",
    );
    assert_eq!(code, "0", "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, "1000\nSeccomp:\t2\nrefused\n", "stderr: {stderr}");

    let out = engine.docker(&["rmi", &image]);
    assert!(out.status.success(), "docker rmi: {}", text(&out.stderr));
}
