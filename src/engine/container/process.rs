//! Engine-side process handling: spawning `berth shim` from the (multi-threaded) daemon, and
//! telling whether a recorded PID is still the process we started (pidfd plus start time, so a
//! reused PID is never signalled).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;

use crate::engine::runtime::shim::{ShimReport, REPORT_FD};

/// The binary re-executed as `berth shim`; `BERTH_SELF_EXE` overrides it for unit tests, where
/// `/proc/self/exe` is the test harness.
pub fn self_exe() -> PathBuf {
    std::env::var_os("BERTH_SELF_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// A process as recorded on disk: its PID and its start time in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcIdentity {
    pub pid: i32,
    pub start_time: u64,
}

/// Field 22 of `/proc/<pid>/stat` (start time), or `None` if the process is gone or a zombie
/// (a daemonised shim is reaped by whoever adopted it, which may take a while).
pub fn start_time(pid: i32) -> Option<u64> {
    start_time_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in a `/proc/<pid>/stat` text, `None` for a zombie.
fn start_time_in(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z") | Some("X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl ProcIdentity {
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// The root this process sees (`/proc/<pid>/root`, an `O_PATH` directory fd) if it is still
    /// the one recorded: the container's own view, volumes and all. The `/proc/<pid>` directory
    /// fd is tied to that process, so once the start time is read through it a reused PID
    /// cannot answer instead.
    pub fn open_root(&self) -> Option<OwnedFd> {
        if self.pid <= 0 {
            return None;
        }
        let dir = File::open(format!("/proc/{}", self.pid)).ok()?;
        let at = |name: &std::ffi::CStr, flags| {
            crate::fs_at::openat2(dir.as_raw_fd(), name, flags, 0, libc::RESOLVE_NO_SYMLINKS).ok()
        };
        let stat = std::io::read_to_string(File::from(at(c"stat", libc::O_RDONLY)?)).ok()?;
        if start_time_in(&stat) != Some(self.start_time) {
            return None;
        }
        // `root` is a magic link by design; only the symlink walk of the name is refused.
        crate::fs_at::openat2(
            dir.as_raw_fd(),
            c"root",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            0,
        )
        .ok()
    }

    /// A pidfd for this process if it is still the one recorded (and not a zombie we can't see).
    pub fn open(&self) -> Option<OwnedFd> {
        if self.pid <= 0 {
            return None;
        }
        // SAFETY: plain system call; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return None;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // Checked after opening: if the start time still matches, the pidfd pins our process.
        (start_time(self.pid) == Some(self.start_time)).then_some(fd)
    }

    pub fn alive(&self) -> bool {
        self.open().is_some()
    }

    /// Send `signal` through a pidfd; false if the process is gone or not ours any more.
    pub fn signal(&self, signal: i32) -> bool {
        let Some(fd) = self.open() else { return false };
        // SAFETY: pidfd_send_signal with a null siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        rc == 0
    }

    /// Wait until the process exits (immediately if it is already gone).
    pub async fn exited(&self) {
        let Some(fd) = self.open() else { return };
        // SAFETY: the AsyncFd owns the pidfd and drops its registration before closing it.
        match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
            Ok(afd) => {
                let _ = afd.readable().await;
            }
            Err(_) => {
                while self.alive() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Why the shim could not be started or did not report.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start berth shim ({exe}): {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("berth shim did not report: {0}")]
    NoReport(String),
    #[error("berth shim sent an unreadable report {0:?}")]
    BadReport(String),
}

/// Spawn `berth shim <spec>` detached from the daemon (new session, stdio to /dev/null and
/// `shim_log`) and wait for its report: the container's PID, or init's error.
/// `berth-shim <id>` (the id's first 12 characters, as `docker ps` shows them): what `ps` shows
/// as the shim's command instead of `/proc/self/exe`, followed by `shim <runtime.json>`.
fn shim_title(spec_path: &Path) -> String {
    let id: String = spec_path
        .parent()
        .and_then(|bundle| bundle.file_name())
        .map(|name| name.to_string_lossy().chars().take(12).collect())
        .unwrap_or_default();
    format!("berth-shim {id}")
}

pub async fn spawn_shim(spec_path: &Path, shim_log: &Path) -> Result<ShimReport, SpawnError> {
    let exe = self_exe();
    let spawn_err = |source| SpawnError::Spawn {
        exe: exe.clone(),
        source,
    };
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(shim_log)
        .map_err(spawn_err)?;
    let w = report_w.as_raw_fd();
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(shim_title(spec_path))
        .arg("shim")
        .arg(spec_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            let rc = if w == REPORT_FD {
                libc::fcntl(w, libc::F_SETFD, 0)
            } else {
                libc::dup2(w, REPORT_FD)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(spawn_err)?;
    drop(report_w);
    // The first shim process forks the real shim and exits at once.
    let _ = child.wait().await;

    let mut reader = tokio::fs::File::from_std(File::from(report_r));
    let mut text = String::new();
    let read =
        tokio::time::timeout(Duration::from_secs(120), reader.read_to_string(&mut text)).await;
    match read {
        Err(_) => return Err(SpawnError::NoReport("timed out after 120s".into())),
        Ok(Err(e)) => return Err(SpawnError::NoReport(e.to_string())),
        Ok(Ok(_)) => {}
    }
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        let log = std::fs::read_to_string(shim_log).unwrap_or_default();
        let last = log
            .lines()
            .last()
            .unwrap_or("it exited without a word")
            .to_string();
        return Err(SpawnError::NoReport(last));
    }
    serde_json::from_str(line).map_err(|_| SpawnError::BadReport(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_is_titled_with_its_short_container_id() {
        assert_eq!(
            shim_title(Path::new(
                "/var/lib/berth/containers/0123456789abcdef0123/runtime.json"
            )),
            "berth-shim 0123456789ab"
        );
    }
}
