//! Where the engine keeps its state: the data root (persistent) and the run root (sockets, pids),
//! and the crash-safe file write everything under them uses. Below `engine`, `network` and
//! `volume` alike, so that neither of the latter two imports the engine that uses them.
//!
//! Layout follows `DESIGN.md` ("On disk"). Everything the engine writes lives under these two roots,
//! so a test that gives the engine temporary roots never shares state with another test.

use std::path::{Path, PathBuf};

/// Default persistent root, as `dockerd` uses `/var/lib/docker`.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
/// Default runtime root (tmpfs on most hosts).
pub const DEFAULT_RUN_ROOT: &str = "/run/berth";

#[derive(Debug, Clone)]
pub struct EngineRoots {
    pub data_root: PathBuf,
    pub run_root: PathBuf,
}

impl EngineRoots {
    pub fn new(data_root: impl Into<PathBuf>, run_root: impl Into<PathBuf>) -> Self {
        Self {
            data_root: data_root.into(),
            run_root: run_root.into(),
        }
    }

    /// Roots from `BERTH_DATA_ROOT` / `BERTH_RUN_ROOT`, falling back to the defaults.
    pub fn from_env() -> Self {
        let data = std::env::var_os("BERTH_DATA_ROOT").map(PathBuf::from);
        let run = std::env::var_os("BERTH_RUN_ROOT").map(PathBuf::from);
        Self::new(
            data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT)),
            run.unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_ROOT)),
        )
    }

    pub fn socket_path(&self) -> PathBuf {
        self.run_root.join("berth.sock")
    }
    pub fn engine_pid_file(&self) -> PathBuf {
        self.run_root.join("engine.pid")
    }
    pub fn content_dir(&self) -> PathBuf {
        self.data_root.join("content")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.data_root.join("snapshots")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.data_root.join("images")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.data_root.join("containers")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.data_root.join("volumes")
    }
    pub fn networks_dir(&self) -> PathBuf {
        self.data_root.join("networks")
    }
    /// Bind-mounted network namespaces, one per running container.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_root.join("netns")
    }
    /// Per-container runtime state of the shim (pid files, exit status, control socket).
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }
}

/// Write `bytes` to `path` crash-safely: temporary name, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = write_renamed(path, bytes, true)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// [`write_atomic`] without the directory fsync: the content is on disk before the name points
/// to it, so after a power loss the name holds the new version or the one before (nothing, for
/// a new file), never a torn one. For records the engine re-derives after a crash (a container's
/// state beside its exit record and the process table), where each fsync is a journal commit
/// (3-7 ms on the bench host) on the path of every start and stop. Docker's own atomic writes
/// sync no directory either.
pub fn replace_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_renamed(path, bytes, true).map(drop)
}

/// Write `bytes` to `path` under a temporary name and rename it, with no fsync: readers see the
/// old or the new content, but a power loss may leave either or an empty file. Only for files
/// rewritten before each use (a container's runtime spec and `/etc` files, made at every start).
pub fn write_volatile(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_renamed(path, bytes, false).map(drop)
}

/// Write to a temporary name beside `path` (synced when `sync`), rename it over `path`; returns
/// the directory.
fn write_renamed<'p>(path: &'p Path, bytes: &[u8], sync: bool) -> std::io::Result<&'p Path> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    Ok(dir)
}
