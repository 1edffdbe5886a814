//! The stdin of `OpenStdin` containers (`docker run -i`): a FIFO in the container's directory.
//!
//! The shim opens its read end as the container's fd 0 (and, unless `StdinOnce`, a write end it
//! never uses, so stdin stays open across attaches and engine restarts, as containerd's shim
//! keeps it). An attach opens a write end and copies the client's input into it. Docker buffers
//! what a client sends before the container starts (`docker run -i` sends at once, then starts
//! it); the FIFO does the same as long as someone holds it open, so the attach keeps its end
//! until the container has started before it closes it — closing it earlier would drop the
//! buffered input with the pipe.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::spec::StdinSpec;
use crate::engine::Engine;

impl ContainerStore {
    fn stdin_fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("stdin.fifo")
    }

    /// The stdin the shim gives container `id`, creating its FIFO (owner-only) if needed.
    pub(crate) fn stdin_spec(&self, id: &str) -> Result<Option<StdinSpec>> {
        let record = self.load_record(id)?;
        if !record.request.open_stdin {
            return Ok(None);
        }
        let fifo = self.stdin_fifo(id);
        match nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(ContainerError::io(format!("create {}", fifo.display()))(
                    e.into(),
                ))
            }
        }
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

impl Engine {
    /// A write end of container `id`'s stdin, and the container's `FinishedAt` now (for
    /// [`Engine::release_stdin`]).
    pub fn container_stdin(&self, id: &str) -> Result<(pipe::Sender, String)> {
        let finished_before = self.containers.state(id).finished_at;
        Ok((self.containers.stdin_writer(id)?, finished_before))
    }

    /// Close an attach's write end once the container has taken what was written.
    pub async fn release_stdin(&self, id: &str, writer: pipe::Sender, finished_before: &str) {
        self.containers.until_stdin_taken(id, finished_before).await;
        drop(writer);
    }
}
