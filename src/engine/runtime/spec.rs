//! The runtime spec: everything `berth shim` and `berth init` need to run one container, written by
//! the engine as `containers/<id>/runtime.json` before it spawns the shim.
//!
//! It plays the part of an OCI bundle's `config.json`, reduced to what berth supports, so the
//! container-side code never talks to the engine, the image store or the network module.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::devices::{DeviceNode, DeviceRule};

/// Docker's default `/dev/shm` size (`DefaultShmSize`).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuntimeSpec {
    pub id: String,
    /// `containers/<id>`: holds `upper/`, `work/`, `rootfs/` (the overlay mount point inside the
    /// container's mount namespace), `l/` (short links to the lower dirs) and the log file.
    pub bundle_dir: PathBuf,
    /// Overlay lower directories, topmost first.
    pub lower_dirs: Vec<PathBuf>,
    /// argv of the workload; `args[0]` is looked up in the container's `PATH` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value`, already merged (image, then request) with `PATH` and `HOME` defaults.
    pub env: Vec<String>,
    /// Absolute working directory inside the container; created when missing, as Docker does.
    pub cwd: String,
    /// Docker's `User`: empty (root), `name`, `uid`, `name:group`, `uid:gid`.
    pub user: String,
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    /// Network namespace to join; `None` keeps the host's (network mode `host`).
    pub netns: Option<PathBuf>,
    /// Binds (volumes, `/etc/hosts`, …) and tmpfs mounts, applied in order after the defaults.
    pub mounts: Vec<MountSpec>,
    /// Cgroup directories the container's processes are put in (one per hierarchy used).
    pub cgroups: Vec<PathBuf>,
    /// Docker's json-file log.
    pub log_path: PathBuf,
    /// When the shim rotates it (`max-size`, `max-file`).
    #[serde(default)]
    pub log_rotation: super::json_log::Rotation,
    /// Where the shim records the exit status (`ExitRecord`).
    pub exit_path: PathBuf,
    /// The FIFO the container's stdin is read from (`OpenStdin`); `None` = `/dev/null`.
    #[serde(default)]
    pub stdin: Option<StdinSpec>,
    /// Docker's `Tty`: the workload's stdio is a pty of the container's devpts instance, whose
    /// master the shim holds (see `runtime::console`).
    #[serde(default)]
    pub tty: Option<TtySpec>,
    pub shm_size: u64,
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// Resource limits, resolved by the engine to cgroup files of this host's layout; the shim
    /// applies them before the container's init runs.
    #[serde(default)]
    pub resources: CgroupResources,
    // Service options (capabilities, privileged, ulimits, sysctls) — kept together at the end.
    /// The workload's capability set (bit n = capability n); `None` (a spec written before
    /// this field existed) = Docker's default set.
    #[serde(default)]
    pub capabilities: Option<u64>,
    /// Docker's `--privileged`, as far as berth implements it (see `berth init`).
    #[serde(default)]
    pub privileged: bool,
    /// Resource limits set with `setrlimit` before `execve`.
    #[serde(default)]
    pub ulimits: Vec<RlimitSpec>,
    /// `key=value` kernel parameters written under `/proc/sys` inside the container's namespaces.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    /// Docker's `--init`: `berth init` stays PID 1, forwards signals and reaps zombies.
    #[serde(default)]
    pub init: bool,
    /// `security_opt`: `no-new-privileges`, `seccomp=unconfined`, `systempaths=unconfined`.
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub seccomp_unconfined: bool,
    #[serde(default)]
    pub unmasked_paths: bool,
    /// Host devices passed in (`devices:`), created in the container's `/dev`.
    #[serde(default)]
    pub devices: Vec<DeviceNode>,
}

/// The container's stdin: a FIFO the engine writes an attached client's input into.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StdinSpec {
    pub fifo: PathBuf,
    /// Docker's `StdinOnce`: the container sees EOF when the attached client's input ends. Without
    /// it the shim holds the FIFO open for writing too, so stdin never ends (`docker run -di`).
    pub once: bool,
}

/// A TTY container's terminal: the FIFO the engine writes window sizes to (`ROWS COLS\n`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TtySpec {
    pub resize_fifo: PathBuf,
    /// `(rows, columns)` set before the workload starts (`HostConfig.ConsoleSize`).
    #[serde(default)]
    pub initial_size: Option<(u16, u16)>,
}

/// What the shim does to the container's cgroups besides creating `cgroups` (in this order).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupResources {
    /// cgroup2 directories whose `cgroup.subtree_control` must enable controllers, parents
    /// first (the tree's root, then `berth/`), so the container's directory gets their files.
    #[serde(default)]
    pub enable_controllers: Vec<ControllerEnable>,
    /// v1 cpuset directories whose empty `cpuset.cpus`/`cpuset.mems` are copied from their
    /// parent, parents first: a task cannot join a cpuset without them.
    #[serde(default)]
    pub cpuset_inherit: Vec<PathBuf>,
    /// Limit files to write, in order.
    #[serde(default)]
    pub writes: Vec<CgroupWrite>,
    /// The device policy and where it is enforced. `None` only in a spec written before
    /// device rules existed; the engine always sets it.
    #[serde(default)]
    pub devices: Option<DeviceCgroup>,
}

/// Device rules for one cgroup directory: a v1 `devices` hierarchy's allow/deny files, or a
/// BPF filter attached to a cgroup2 directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceCgroup {
    pub dir: PathBuf,
    pub v2: bool,
    pub rules: Vec<DeviceRule>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ControllerEnable {
    pub dir: PathBuf,
    /// Controller names (`memory`, `cpu`, `cpuset`, `pids`).
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupWrite {
    pub file: PathBuf,
    pub value: String,
    /// The `HostConfig` field it enforces, for error messages (`Memory`, `NanoCpus`, …).
    pub limit: String,
    /// A missing file is not an error (Docker's default swap limit on a host without swap
    /// accounting is dropped, as Docker drops it).
    #[serde(default)]
    pub skip_if_missing: bool,
}

/// One `ulimit` by its Docker name (`nofile`), already validated by the engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RlimitSpec {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl RuntimeSpec {
    /// The lock a shim's mount namespace release holds until the container's previous root
    /// filesystem is gone (see the shim's `MountNamespacePin`); init takes it before mounting
    /// a new one.
    pub fn rootfs_release_lock(&self) -> PathBuf {
        self.bundle_dir.join(".rootfs-release.lock")
    }

    /// The capability set the workload (and `docker exec`s into it) gets.
    pub fn capability_mask(&self) -> u64 {
        self.capabilities.unwrap_or_else(super::caps::default_mask)
    }

    /// Whether the workload runs under Docker's default seccomp filter.
    pub fn seccomp(&self) -> bool {
        !self.privileged && !self.seccomp_unconfined
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path for binds; ignored for tmpfs.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
    /// tmpfs data (`size=…,mode=…`), as Docker's `HostConfig.Tmpfs` values.
    #[serde(default)]
    pub data: String,
}

/// What the shim writes when the container's init has exited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// Exit status, or 128 + signal number when killed by a signal (Docker's convention).
    pub exit_code: i64,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    /// Host PID the record belongs to, so a stale record is never taken for a later run.
    pub pid: i32,
    /// Set when the container never ran (init failed before `execve`).
    #[serde(default)]
    pub error: String,
    /// The kernel's OOM killer killed a process of the container (from its memory cgroup).
    #[serde(default)]
    pub oom_killed: bool,
}

impl RuntimeSpec {
    pub fn path_in(bundle_dir: &Path) -> PathBuf {
        bundle_dir.join("runtime.json")
    }
    pub fn upper_dir(&self) -> PathBuf {
        self.bundle_dir.join("upper")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.bundle_dir.join("work")
    }
    pub fn rootfs_dir(&self) -> PathBuf {
        self.bundle_dir.join("rootfs")
    }
    pub fn links_dir(&self) -> PathBuf {
        self.bundle_dir.join("l")
    }
}
