//! A Debian bookworm image with `gcc` for the build tests, made without a registry: the root
//! filesystem `debootstrap --variant=buildd` makes (compilers, make, libc headers), cached in
//! /var/tmp/berth-bench-debian/rootfs (shared with scripts/bench-pull and scripts/bench-build),
//! packed once into a tar next to it, and imported into a test's engine as `docker import` does.
//! debootstrap reaches the Debian mirror through its normal configuration the first time only.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::project::TestProject;

/// Where the root filesystem and its tar are cached across runs.
pub const CACHE_DIR: &str = "/var/tmp/berth-bench-debian";
const MIRROR: &str = "http://deb.debian.org/debian";

/// Holds an exclusive `flock` on the cache's lock file while alive, so test binaries running at
/// once never debootstrap or pack the same cache together.
struct CacheLock(File);

impl CacheLock {
    fn take(cache: &Path) -> CacheLock {
        std::fs::create_dir_all(cache).expect("create the Debian cache dir");
        let file = File::create(cache.join(".lock")).expect("open the cache lock");
        // SAFETY: flock on a descriptor this struct owns; released when it is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", cache.display());
        CacheLock(file)
    }
}

/// The tar of the cached Debian root filesystem, made (debootstrap, then tar) when missing.
/// `None` (after reporting a skip) when it cannot be made here.
pub fn debian_rootfs_tar() -> Option<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let _lock = CacheLock::take(cache);
    let rootfs = cache.join("rootfs");
    if !rootfs.join("usr/bin/gcc").exists() {
        if Command::new("debootstrap")
            .arg("--version")
            .output()
            .is_err()
        {
            super::precondition::skip("debootstrap is missing and no Debian root filesystem is cached in /var/tmp/berth-bench-debian");
            return None;
        }
        debootstrap(cache);
    }
    let tar = cache.join("rootfs.tar");
    if !tar.exists() {
        let partial = cache.join("rootfs.tar.partial");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of {} failed", rootfs.display());
        std::fs::rename(&partial, &tar).expect("move the rootfs tar in place");
    }
    Some(tar)
}

fn debootstrap(cache: &Path) {
    let partial = cache.join("rootfs.tmp");
    let _ = std::fs::remove_dir_all(&partial);
    let log = File::create(cache.join("debootstrap.log")).expect("debootstrap log");
    let status = Command::new("debootstrap")
        .args(["--variant=buildd", "bookworm"])
        .arg(&partial)
        .arg(MIRROR)
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .status()
        .expect("run debootstrap");
    assert!(
        status.success(),
        "debootstrap failed; see {}/debootstrap.log",
        cache.display()
    );
    // The downloaded packages are not part of the image.
    if let Ok(debs) = std::fs::read_dir(partial.join("var/cache/apt/archives")) {
        for deb in debs.flatten() {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                let _ = std::fs::remove_file(deb.path());
            }
        }
    }
    std::fs::rename(&partial, cache.join("rootfs")).expect("move the rootfs in place");
}

/// Import the Debian image into `project`'s engine as `image`; false (after reporting a skip)
/// when there is no Debian root filesystem to import.
pub fn import_debian(project: &TestProject, image: &str) -> bool {
    let Some(tar) = debian_rootfs_tar() else {
        return false;
    };
    project.ok(&["import", &tar.to_string_lossy(), image]);
    true
}
