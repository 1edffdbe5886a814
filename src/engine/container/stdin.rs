//! The stdin of `OpenStdin` containers (`docker run -i`): a FIFO in the container's directory;
//! and the resize FIFO of `Tty` containers, on which the shim takes window sizes.
//!
//! The shim opens its read end as the container's fd 0 (and, unless `StdinOnce`, a write end it
//! never uses, so stdin stays open across attaches and engine restarts, as containerd's shim
//! keeps it). An attach opens a write end and copies the client's input into it. Docker buffers
//! what a client sends before the container starts (`docker run -i` sends at once, then starts
//! it); the FIFO does the same as long as someone holds it open, so the attach keeps its end
//! until the container has started before it closes it — closing it earlier would drop the
//! buffered input with the pipe.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::console::WindowSize;
use crate::engine::runtime::spec::{StdinSpec, TtySpec};
use crate::engine::Engine;

impl ContainerStore {
    fn stdin_fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("stdin.fifo")
    }

    fn resize_fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("resize.fifo")
    }

    /// The terminal of a TTY container (`Tty`): its resize FIFO, created (owner-only) if needed.
    pub(crate) fn tty_spec(&self, id: &str) -> Result<Option<TtySpec>> {
        let record = self.load_record(id)?;
        if !record.request.tty {
            return Ok(None);
        }
        let fifo = self.resize_fifo(id);
        make_fifo(&fifo)?;
        let initial_size = record
            .request
            .host_config
            .as_ref()
            .and_then(|h| h.console_size)
            .filter(|[rows, cols]| *rows > 0 && *cols > 0)
            .map(|[rows, cols]| (rows, cols));
        Ok(Some(TtySpec {
            resize_fifo: fifo,
            initial_size,
        }))
    }

    /// `POST /containers/{id}/resize`: hand the size to the shim, which sets it on the pty.
    pub fn resize_tty(&self, id: &str, size: WindowSize) -> Result<()> {
        let record = self.load_record(id)?;
        if !record.request.tty {
            // Docker accepts and ignores a resize of a container without a terminal.
            return Ok(());
        }
        if self.state(id).status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "cannot resize container {}: it is not running",
                record.name
            )));
        }
        let fifo = self.resize_fifo(id);
        // Write-only and non-blocking: fails (ENXIO) rather than waits when no shim reads it.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => ContainerError::Conflict(format!(
                    "cannot resize container {}: it is not running",
                    record.name
                )),
                _ => ContainerError::io(format!("open {}", fifo.display()))(e),
            })?;
        // One short line is written whole (under PIPE_BUF) or not at all.
        file.write_all(size.to_line().as_bytes())
            .map_err(ContainerError::io(format!("write {}", fifo.display())))
    }

    /// The stdin the shim gives container `id`, creating its FIFO (owner-only) if needed.
    pub(crate) fn stdin_spec(&self, id: &str) -> Result<Option<StdinSpec>> {
        let record = self.load_record(id)?;
        if !record.request.open_stdin {
            return Ok(None);
        }
        let fifo = self.stdin_fifo(id);
        make_fifo(&fifo)?;
        Ok(Some(StdinSpec {
            fifo,
            once: record.request.stdin_once,
        }))
    }

    /// A write end of container `id`'s stdin for an attached client.
    pub fn stdin_writer(&self, id: &str) -> Result<pipe::Sender> {
        let spec = self.stdin_spec(id)?.ok_or_else(|| {
            ContainerError::Conflict(format!(
                "container {id} was not created with OpenStdin (docker run -i): it has no stdin \
                 to attach to"
            ))
        })?;
        // Read-write, so the open never blocks and never fails for want of a reader (the
        // container may not have started yet); the engine never reads from it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&spec.fifo)
            .map_err(ContainerError::io(format!("open {}", spec.fifo.display())))?;
        pipe::Sender::from_file_unchecked(file)
            .map_err(ContainerError::io(format!("watch {}", spec.fifo.display())))
    }

    /// Resolves once the input written so far is safe to release: the container has started
    /// (its shim holds the read end), or has gone.
    async fn until_stdin_taken(&self, id: &str, finished_before: &str) {
        loop {
            if self.load_record(id).is_err() {
                return;
            }
            let state = self.state(id);
            if state.status == Status::Running || state.finished_at != finished_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn make_fifo(fifo: &Path) -> Result<()> {
    match nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(ContainerError::io(format!("create {}", fifo.display()))(
            e.into(),
        )),
    }
}

impl Engine {
    /// A write end of container `id`'s stdin, and the container's `FinishedAt` now (for
    /// [`Engine::release_stdin`]).
    pub fn container_stdin(&self, id: &str) -> Result<(pipe::Sender, String)> {
        let finished_before = self.containers.state(id).finished_at;
        Ok((self.containers.stdin_writer(id)?, finished_before))
    }

    /// See [`ContainerStore::resize_tty`].
    pub fn resize_container_tty(&self, id_or_name: &str, size: WindowSize) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.resize_tty(&id, size)
    }

    /// Close an attach's write end once the container has taken what was written.
    pub async fn release_stdin(&self, id: &str, writer: pipe::Sender, finished_before: &str) {
        self.containers.until_stdin_taken(id, finished_before).await;
        drop(writer);
    }
}
