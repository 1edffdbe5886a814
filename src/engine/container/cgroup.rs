//! One cgroup per container, used to find and kill every process of it.
//!
//! The host may run cgroup v2 alone (`/sys/fs/cgroup` is cgroup2), a hybrid (v1 controllers plus a
//! v2 tree at `/sys/fs/cgroup/unified`) or v1 alone. berth puts each container in `berth/<id>` of
//! the v2 tree when there is one (it has `cgroup.kill`), and of the v1 `pids` hierarchy when that is
//! mounted. Memory and CPU limits are not applied yet, so v1 `memory` is left alone.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy under {CGROUP_ROOT} (need cgroup2 or the v1 pids controller)"
    )]
    NoHierarchy,
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which cgroup trees this host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLayout {
    /// Root of the cgroup2 tree, if any.
    pub unified: Option<PathBuf>,
    /// Root of the v1 `pids` hierarchy, if mounted.
    pub v1_pids: Option<PathBuf>,
}

fn is_cgroup2(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => st.filesystem_type().0 == CGROUP2_SUPER_MAGIC,
        Err(_) => false,
    }
}

impl CgroupLayout {
    pub fn detect() -> Self {
        let root = Path::new(CGROUP_ROOT);
        if is_cgroup2(root) {
            return Self {
                unified: Some(root.to_path_buf()),
                v1_pids: None,
            };
        }
        let hybrid = root.join("unified");
        let unified = is_cgroup2(&hybrid).then_some(hybrid);
        let pids = root.join("pids");
        let v1_pids = pids.join("cgroup.procs").exists().then_some(pids);
        Self { unified, v1_pids }
    }

    /// The directories of container `id`, one per hierarchy used.
    pub fn container_paths(&self, id: &str) -> Result<Vec<PathBuf>, CgroupError> {
        let paths: Vec<PathBuf> = [&self.unified, &self.v1_pids]
            .into_iter()
            .flatten()
            .map(|root| root.join("berth").join(id))
            .collect();
        if paths.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(paths)
    }
}

pub fn create(paths: &[PathBuf]) -> Result<(), CgroupError> {
    for path in paths {
        std::fs::create_dir_all(path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Host PIDs of every process in the container's cgroups.
pub fn pids(paths: &[PathBuf]) -> Vec<i32> {
    let mut all = Vec::new();
    for path in paths {
        if let Ok(text) = std::fs::read_to_string(path.join("cgroup.procs")) {
            all.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// SIGKILL everything in the cgroups (`cgroup.kill` on v2, one by one on v1) and wait until they
/// are empty or `timeout` passes. Returns whether they are empty.
pub fn kill_all(paths: &[PathBuf], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = pids(paths);
        if left.is_empty() {
            return true;
        }
        for path in paths {
            let kill_file = path.join("cgroup.kill");
            if kill_file.exists() {
                let _ = std::fs::write(&kill_file, "1");
            }
        }
        for pid in left {
            // A listed PID belongs to a live member of the cgroup; the window for reuse between
            // reading cgroup.procs and kill() is a few microseconds and only matters on v1.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() >= deadline {
            return pids(paths).is_empty();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Remove the cgroup directories; missing ones are fine. Retries while the kernel still counts
/// exiting processes (EBUSY).
pub fn remove(paths: &[PathBuf]) -> Result<(), CgroupError> {
    for path in paths {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}
