//! Root-only: containers run under Docker's default seccomp profile. Through a real daemon and
//! the real Docker CLI, a busybox container sees the filter (`Seccomp: 2`), cannot create
//! namespaces or mount, and everyday programs (a shell, httpd and wget over loopback, ls, sleep,
//! cat, id) work, as root and as an unprivileged user. Also the checks `berth init` makes before
//! trusting the container's `/proc` and `/dev/null` (masks are binds of a verified null device;
//! mounts inside `/proc` are refused).

mod common;

use std::path::PathBuf;

use common::engine::{mounts_under, TestEngine};
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

/// Creates a container and starts it, expecting the start to fail; returns the error text.
fn start_fails(engine: &TestEngine, name: &str, extra: &[&str], image: &str) -> String {
    let mut args = vec!["create", "--name", name, "--network", "none"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "true"]);
    let out = engine.docker(&args);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let out = engine.docker(&["start", name]);
    assert!(!out.status.success(), "{name} started");
    let out_rm = engine.docker(&["rm", "-f", name]);
    assert!(
        out_rm.status.success(),
        "docker rm: {}",
        text(&out_rm.stderr)
    );
    text(&out.stderr)
}

#[test]
fn masks_use_a_verified_null_device_and_proc_is_the_runtimes() {
    let engine = TestEngine::start();
    let image = import_busybox(&engine);

    // Masked files are the null device (this kernel has no /proc/kcore), /proc/sys is read-only.
    let (code, stdout, stderr) = run(
        &engine,
        "masked",
        &[],
        &image,
        "stat -c %t:%T /proc/keys /proc/timer_list; wc -c < /proc/timer_list; \
         echo x > /proc/sys/kernel/domainname || echo read-only",
    );
    assert_eq!(code, "0", "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, "1:3\n1:3\n0\nread-only\n", "stderr: {stderr}");

    // A bind over /dev/null (CVE-2025-31133's shape): masks would bind a writable file.
    let fake = engine.data_root().parent().unwrap().join("fake-null");
    std::fs::write(&fake, b"not null").unwrap();
    let bind = format!("{}:/dev/null", fake.display());
    let err = start_fails(&engine, "fake-null", &["-v", &bind], &image);
    assert!(
        err.contains("/dev/null is not the null device (a regular file)"),
        "{err}"
    );
    assert_eq!(std::fs::read(&fake).unwrap(), b"not null");

    // Mounts inside /proc could hide the masks (CVE-2019-16884).
    let dir = engine.data_root().parent().unwrap().join("proc-src");
    std::fs::create_dir_all(&dir).unwrap();
    let bind = format!("{}:/proc/sys/kernel", dir.display());
    let err = start_fails(&engine, "in-proc", &["-v", &bind], &image);
    assert!(
        err.contains("mount destination \"/proc/sys/kernel\" is inside /proc"),
        "{err}"
    );

    // runc's short list of /proc files a bind may replace (lxcfs-style) still works.
    let uptime = engine.data_root().parent().unwrap().join("uptime");
    std::fs::write(&uptime, b"12.00 34.00\n").unwrap();
    let bind = format!("{}:/proc/uptime:ro", uptime.display());
    let (code, stdout, stderr) = run(
        &engine,
        "uptime",
        &["-v", &bind],
        &image,
        "cat /proc/uptime",
    );
    assert_eq!(code, "0", "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, "12.00 34.00\n");

    // Failed starts leave nothing mounted under the engine's roots.
    assert_eq!(mounts_under(engine.data_root()), Vec::<PathBuf>::new());
    assert_eq!(mounts_under(engine.run_root()), Vec::<PathBuf>::new());
    let out = engine.docker(&["rmi", &image]);
    assert!(out.status.success(), "docker rmi: {}", text(&out.stderr));
}
