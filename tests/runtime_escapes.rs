//! Root-only: the container escapes of issue 6, each tried as an attacker would — an image or a
//! container that attempts it — asserting the attack fails and the host is untouched:
//! device nodes (`mknod`, nodes shipped in a layer) under the device cgroup and the `nodev`
//! root, `--device` passing one host device with its permissions; a setuid-root file in a layer
//! under `no-new-privileges`; `/etc/passwd -> /dev/zero` with a named user; a `WORKDIR` through
//! `/proc/self/fd`; image symlinks through `/proc/self/fd` at the targets of the hostname file, a
//! volume, a secret and a config; a destination resolving into `/proc`; and a container watching
//! `/proc/*/exe` for the exec helper.

mod common;

use std::path::{Path, PathBuf};

use common::engine::TestEngine;
use common::registry::populate_busybox_rootfs;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Import a busybox root filesystem, changed by `hostile`, as image `tag`.
fn import_image(engine: &TestEngine, tag: &str, hostile: impl FnOnce(&Path)) -> String {
    let base = engine
        .data_root()
        .parent()
        .unwrap()
        .join(format!("src-{tag}"));
    let rootfs = base.join("rootfs");
    populate_busybox_rootfs(&rootfs);
    hostile(&rootfs);
    let tar: PathBuf = base.join("image.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let image = format!("local/escape:{tag}");
    let out = engine.docker(&["import", tar.to_str().unwrap(), &image]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    std::fs::remove_dir_all(&base).unwrap();
    image
}

fn mknod(path: &Path, block: bool, major: u64, minor: u64, mode: u32) {
    let kind = if block {
        nix::sys::stat::SFlag::S_IFBLK
    } else {
        nix::sys::stat::SFlag::S_IFCHR
    };
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        nix::sys::stat::makedev(major, minor),
    )
    .expect("mknod (tests run as root)");
    // mknod obeys the umask; the attack wants the node world-readable.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Run `script` in a new container (network `none`) and return (exit code, stdout, stderr).
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
    let code = text(&out.stdout).trim().to_string();
    let logs = engine.docker(&["logs", name]);
    let out = engine.docker(&["rm", "-f", name]);
    assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    (code, text(&logs.stdout), text(&logs.stderr))
}

/// Create and start a container that must not start; returns the start error. The container
/// is removed.
fn start_fails(engine: &TestEngine, name: &str, extra: &[&str], image: &str) -> String {
    let mut args = vec!["create", "--name", name, "--network", "none"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image, "true"]);
    let out = engine.docker(&args);
    assert!(out.status.success(), "docker create: {}", text(&out.stderr));
    let out = engine.docker(&["start", name]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{name} started: {}",
        text(&out.stdout)
    );
    let running = engine.docker(&["inspect", "-f", "{{.State.Running}}", name]);
    assert_eq!(text(&running.stdout).trim(), "false", "{name}");
    let out = engine.docker(&["rm", "-f", name]);
    assert!(out.status.success(), "docker rm: {}", text(&out.stderr));
    err
}

#[test]
fn device_nodes_are_useless_without_a_device_rule() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "devices", |root| {
        // A layer shipping world-readable nodes of the host's loop device and of /dev/mem.
        mknod(&root.join("disk"), true, 7, 0, 0o666);
        mknod(&root.join("mem"), false, 1, 1, 0o666);
    });
    let script = "head -c1 /dev/zero | wc -c; \
        head -c1 /disk >/dev/null 2>&1; echo layer-disk=$?; \
        head -c1 /mem >/dev/null 2>&1; echo layer-mem=$?; \
        mknod /dev/l b 7 0 && echo mknod-ok; \
        head -c1 /dev/l >/dev/null 2>/tmp/err; echo dev-l=$?; cat /tmp/err; \
        mknod /tmp/l b 7 0; head -c1 /tmp/l >/dev/null 2>&1; echo tmp-l=$?";
    for extra in [
        &[][..],
        &["--cap-drop", "ALL", "--security-opt", "no-new-privileges"][..],
    ] {
        let (code, out, err) = run(&engine, "devices", extra, &image, script);
        assert_eq!(code, "0", "{out}{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].trim(), "1", "the allowed devices work: {out}");
        assert!(lines.contains(&"layer-disk=1"), "{extra:?}: {out}");
        assert!(lines.contains(&"layer-mem=1"), "{extra:?}: {out}");
        assert!(lines.contains(&"tmp-l=1"), "{extra:?}: {out}");
        if extra.is_empty() {
            // mknod is allowed, as in Docker; using the node is not.
            assert!(lines.contains(&"mknod-ok"), "{out}");
            assert!(lines.contains(&"dev-l=1"), "{out}");
            assert!(out.contains("Operation not permitted"), "{out}");
        }
    }
    // privileged lifts the device cgroup and nodev: the same reads succeed.
    let (_, out, _) = run(&engine, "privileged", &["--privileged"], &image, script);
    assert!(out.lines().any(|l| l == "dev-l=0"), "{out}");
    assert!(out.lines().any(|l| l == "layer-disk=0"), "{out}");
}

#[test]
fn a_passed_device_gets_its_permissions_and_nothing_more() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "passdev", |_| {});
    let script = "ls -l /dev/xloop; head -c1 /dev/xloop >/dev/null; echo read=$?; \
        (echo x > /dev/xloop) 2>/dev/null; echo write=$?; \
        head -c1 /dev/loop0 >/dev/null 2>&1; echo other=$?; \
        echo x > /opt/mynull && echo outside-dev-ok";
    let (code, out, err) = run(
        &engine,
        "passdev",
        &[
            "--device",
            "/dev/loop0:/dev/xloop:r",
            "--device",
            "/dev/null:/opt/mynull:rw",
        ],
        &image,
        script,
    );
    assert_eq!(code, "0", "{out}{err}");
    assert!(
        out.starts_with("brw-------"),
        "a block node with the host's mode: {out}"
    );
    assert!(out.contains(" 7,   0 "), "the host's numbers: {out}");
    assert!(out.lines().any(|l| l == "read=0"), "{out}");
    assert!(
        out.lines().any(|l| l == "write=1"),
        "only r was given: {out}"
    );
    assert!(out.lines().any(|l| l == "other=1"), "{out}");
    // Outside /dev the root is nodev; the node is bound there from the container's /dev.
    assert!(out.lines().any(|l| l == "outside-dev-ok"), "{out}");

    let err = start_fails(
        &engine,
        "notdev",
        &["--device", "/etc/hostname:/dev/x"],
        &image,
    );
    assert!(
        err.contains("\"/etc/hostname\": not a device node"),
        "the bad host path is named: {err}"
    );
}

/// A static program that exits 0 when its effective uid is root, 1 otherwise.
fn build_euid_probe(dir: &Path) -> PathBuf {
    let src = dir.join("euid.c");
    std::fs::write(
        &src,
        "static long sys1(long n, long a) { long r; __asm__ volatile(\"syscall\" : \"=a\"(r) \
         : \"a\"(n), \"D\"(a) : \"rcx\", \"r11\", \"memory\"); return r; }\n\
         void _start(void) { long e = sys1(107, 0); sys1(60, e == 0 ? 0 : 1); for (;;) {} }\n",
    )
    .unwrap();
    let out = dir.join("euid");
    let status = std::process::Command::new("gcc")
        .args(["-static", "-nostdlib", "-fno-stack-protector", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc");
    out
}

#[test]
fn a_setuid_root_file_in_a_layer_grants_nothing_under_no_new_privileges() {
    let engine = TestEngine::start();
    let tmp = tempfile::tempdir().unwrap();
    let probe = build_euid_probe(tmp.path());
    let image = import_image(&engine, "setuid", |root| {
        let target = root.join("bin/euid");
        std::fs::copy(&probe, &target).unwrap();
        std::fs::set_permissions(
            &target,
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
    });
    let script = "/bin/euid; echo euid-root=$((1 - $?))";
    let (_, out, _) = run(&engine, "suid", &["--user", "65534"], &image, script);
    assert!(
        out.contains("euid-root=1"),
        "without the option setuid works: {out}"
    );
    let nnp = ["--user", "65534", "--security-opt", "no-new-privileges"];
    let (_, out, _) = run(&engine, "suid-nnp", &nnp, &image, script);
    assert!(out.contains("euid-root=0"), "no-new-privileges: {out}");
}

#[test]
fn a_passwd_file_that_never_ends_fails_the_start_with_its_name() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "passwd", |root| {
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("etc/passwd")).unwrap();
    });
    let err = start_fails(&engine, "zero-passwd", &["--user", "app"], &image);
    assert!(
        err.contains(
            "unable to find user app: cannot use /etc/passwd of the image: not a regular file"
        ),
        "{err}"
    );
    // The engine lived through it and still runs containers.
    let (code, out, _) = run(&engine, "after", &[], &image, "echo alive");
    assert_eq!((code.as_str(), out.trim()), ("0", "alive"));
}

#[test]
fn a_working_directory_through_proc_self_fd_fails_cleanly() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "workdir", |_| {});
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/data:ro", host.path().display());
    for fd in 3..=8 {
        let dir = format!("/proc/self/fd/{fd}");
        let err = start_fails(
            &engine,
            &format!("wd{fd}"),
            &["-w", &dir, "-v", &bind],
            &image,
        );
        assert!(err.contains(&format!("working directory {dir}")), "{err}");
    }
    // An exec into a running container with the same working directory fails too.
    let out = engine.docker(&[
        "run",
        "-d",
        "--name",
        "wd",
        "--network",
        "none",
        "-v",
        &bind,
        &image,
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
    for fd in 3..=8 {
        let dir = format!("/proc/self/fd/{fd}");
        let out = engine.docker(&["exec", "-w", &dir, "wd", "sh", "-c", "pwd; touch escaped"]);
        assert!(
            !out.status.success(),
            "exec in {dir}: {}",
            text(&out.stdout)
        );
    }
    let _ = engine.docker(&["rm", "-f", "wd"]);
    assert_eq!(
        std::fs::read_dir(host.path()).unwrap().count(),
        0,
        "host dir untouched"
    );
}

#[test]
fn mount_targets_through_proc_self_fd_never_reach_the_host() {
    let engine = TestEngine::start();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret");
    let conf = host.path().join("app.conf");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::write(&conf, "conf").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ro_dir = format!("{}:/data:ro", dir.path().display());
    // (symlink in the image, what it points to under the fd, the mount that lands on it).
    let cases: [(&str, &str, String); 4] = [
        ("etc/hostname", "/x", String::new()),
        ("vol", "/v", "escvol:/vol".to_string()),
        (
            "run/secrets",
            "",
            format!("{}:/run/secrets/token:ro", secret.display()),
        ),
        (
            "app.conf",
            "/app.conf",
            format!("{}:/app.conf:ro", conf.display()),
        ),
    ];
    for (at, under, mount) in &cases {
        for fd in 3..=7 {
            let image = import_image(
                &engine,
                &format!("fd{fd}-{}", at.replace('/', "-")),
                |root| {
                    let link = root.join(at);
                    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(format!("/proc/self/fd/{fd}{under}"), link).unwrap();
                },
            );
            let mut extra = vec!["-v", ro_dir.as_str()];
            if !mount.is_empty() {
                extra.extend(["-v", mount.as_str()]);
            }
            let err = start_fails(&engine, &format!("fd{fd}"), &extra, &image);
            let target = mount.split(':').nth(1).unwrap_or("/etc/hostname");
            assert!(err.contains(&format!(" on {target}: /")), "fd {fd}: {err}");
            let out = engine.docker(&["rmi", &image]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
    let out = engine.docker(&["volume", "rm", "escvol"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "bound host dir untouched"
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret");
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 2);
}

#[test]
fn a_destination_resolving_into_proc_is_refused_naming_the_mount() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "intoproc", |root| {
        std::os::unix::fs::symlink("/proc/sys/kernel", root.join("kern")).unwrap();
        std::os::unix::fs::symlink("../sys/fs", root.join("etc/sysfs")).unwrap();
    });
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("core_pattern");
    std::fs::write(&file, "|/tmp/pwn").unwrap();
    let bind = format!("{}:/kern/core_pattern", file.display());
    let err = start_fails(&engine, "intoproc", &["-v", &bind], &image);
    assert!(
        err.contains(&format!(
            "mount {} on /kern/core_pattern: /kern resolves into /proc",
            file.display()
        )),
        "{err}"
    );
    let bind = format!("{}:/etc/sysfs/x", host.path().display());
    let err = start_fails(&engine, "intosys", &["-v", &bind], &image);
    assert!(err.contains("/etc/sysfs/x resolves into /sys"), "{err}");
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    assert!(!pattern.contains("/tmp/pwn"), "{pattern}");
}

#[test]
fn the_exec_helper_cannot_be_reached_through_proc_exe() {
    let engine = TestEngine::start();
    let image = import_image(&engine, "exe", |_| {});
    let berth = common::engine::berth_exe();
    let before = std::fs::read(&berth).unwrap();
    // Watch every process for an exe that is berth; try to open it for writing when seen.
    let scan = "while :; do for p in /proc/[0-9]*; do \
        t=$(readlink $p/exe 2>/dev/null) || continue; \
        case \"$t\" in *berth*) echo \"seen $p $t\" >> /tmp/scan; \
        (: >> $p/exe) 2>/dev/null && echo \"opened-for-write $p\" >> /tmp/scan;; esac; \
        done; done";
    let out = engine.docker(&[
        "run",
        "-d",
        "--name",
        "watcher",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        scan,
    ]);
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
    for _ in 0..40 {
        let out = engine.docker(&["exec", "watcher", "sh", "-c", "sleep 0.05"]);
        assert!(out.status.success(), "docker exec: {}", text(&out.stderr));
    }
    let out = engine.docker(&[
        "exec",
        "watcher",
        "sh",
        "-c",
        "cat /tmp/scan 2>/dev/null; echo end",
    ]);
    let seen = text(&out.stdout);
    let _ = engine.docker(&["rm", "-f", "watcher"]);
    assert_eq!(
        seen.trim(),
        "end",
        "the container saw the helper's binary: {seen}"
    );
    assert!(
        std::fs::read(&berth).unwrap() == before,
        "host binary unchanged"
    );
}
