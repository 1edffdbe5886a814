//! The shim's copy loop for a TTY container: the pty master's output goes to the log (raw, as
//! `stdout`, one line per read, as Docker logs a TTY container: its output has no stream
//! boundaries to keep), attached input from the stdin FIFO goes to the master, window sizes from
//! the resize FIFO are set on it. Single-threaded `poll`, like the rest of the shim.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::console;
use super::json_log::LogFile;

/// How much of `bytes` to log now: all of it but an incomplete UTF-8 character at its end (the
/// log line is text: a character cut between two reads would be logged as two U+FFFD). Bytes
/// that are invalid anyway are logged as they come.
fn whole_chars(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

/// Input not yet taken by the terminal is held up to this much before the FIFO is read again:
/// a container that never reads its terminal cannot make the shim buffer without bound.
const MAX_PENDING_INPUT: usize = 64 * 1024;

pub struct TtyRelay {
    master: OwnedFd,
    /// The stdin FIFO's read end (`OpenStdin`); `None` once it ended or without stdin.
    input: Option<File>,
    resize: File,
    pending_input: Vec<u8>,
    resize_buf: Vec<u8>,
    /// The start of a UTF-8 character a read cut off, logged with the next read.
    partial_char: Vec<u8>,
}

/// What one `poll` round found ready.
#[derive(Default)]
struct Ready {
    output: bool,
    master_writable: bool,
    master_gone: bool,
    input: bool,
    resize: bool,
    exited: bool,
}

impl TtyRelay {
    pub fn new(master: OwnedFd, input: Option<File>, resize: File) -> Self {
        Self {
            master,
            input,
            resize,
            pending_input: Vec::new(),
            resize_buf: Vec::new(),
            partial_char: Vec::new(),
        }
    }

    /// Relay until the container's init has exited (`pidfd` readable) and its output is drained
    /// (the master reports the slave closed, or two seconds passed: a process that escaped the
    /// namespace could hold the slave forever).
    pub fn run(mut self, pidfd: BorrowedFd<'_>, log: &mut LogFile) {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if drain_deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush_partial(log);
                return;
            }
            let Some(ready) = self.wait(pidfd, drain_deadline.is_some()) else {
                self.flush_partial(log);
                return;
            };
            if (ready.output && !self.copy_output(log)) || (ready.master_gone && !ready.output) {
                self.flush_partial(log);
                return;
            }
            if ready.input {
                self.read_input();
            }
            if ready.master_writable {
                self.write_input();
            }
            if ready.resize {
                self.apply_resizes();
            }
            if ready.exited && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }

    fn wait(&self, pidfd: BorrowedFd<'_>, exited: bool) -> Option<Ready> {
        let mut master_flags = PollFlags::POLLIN;
        if !self.pending_input.is_empty() {
            master_flags |= PollFlags::POLLOUT;
        }
        let mut fds = vec![
            PollFd::new(self.master.as_fd(), master_flags),
            PollFd::new(self.resize.as_fd(), PollFlags::POLLIN),
        ];
        if !exited {
            fds.push(PollFd::new(pidfd, PollFlags::POLLIN));
        }
        let input_at = fds.len();
        if let (Some(input), true) = (&self.input, self.pending_input.len() < MAX_PENDING_INPUT) {
            fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if exited {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return None,
        }
        let got = |i: usize, flags: PollFlags| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| r.intersects(flags))
        };
        let hangup = PollFlags::POLLHUP | PollFlags::POLLERR;
        Some(Ready {
            output: got(0, PollFlags::POLLIN),
            master_writable: got(0, PollFlags::POLLOUT),
            master_gone: got(0, hangup),
            resize: got(1, PollFlags::POLLIN),
            exited: !exited && got(2, PollFlags::POLLIN),
            input: input_at < fds.len() && got(input_at, PollFlags::POLLIN | hangup),
        })
    }

    /// False once the slave side is closed (EIO) or the master failed.
    fn copy_output(&mut self, log: &mut LogFile) -> bool {
        let mut buf = [0u8; 8192];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.partial_char.extend_from_slice(&buf[..n]);
                let whole = whole_chars(&self.partial_char);
                let rest = self.partial_char.split_off(whole);
                if !self.partial_char.is_empty() {
                    log.write_line("stdout", &self.partial_char);
                }
                self.partial_char = rest;
                true
            }
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => true,
            Err(_) => false,
        }
    }

    fn flush_partial(&mut self, log: &mut LogFile) {
        if !self.partial_char.is_empty() {
            log.write_line("stdout", &std::mem::take(&mut self.partial_char));
        }
    }

    fn read_input(&mut self) {
        let Some(input) = &self.input else { return };
        let mut buf = [0u8; 8192];
        match nix::unistd::read(input, &mut buf) {
            // Every writer closed (a `StdinOnce` attach ended): the terminal stays, its input
            // ends, as Docker never closes a TTY's stdin.
            Ok(0) => self.input = None,
            Ok(n) => self.pending_input.extend_from_slice(&buf[..n]),
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            Err(_) => self.input = None,
        }
    }

    fn write_input(&mut self) {
        match nix::unistd::write(&self.master, &self.pending_input) {
            Ok(n) => {
                self.pending_input.drain(..n);
            }
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            // The terminal is gone: nothing will read the rest.
            Err(_) => self.pending_input.clear(),
        }
    }

    fn apply_resizes(&mut self) {
        let mut buf = [0u8; 512];
        if let Ok(n) = nix::unistd::read(&self.resize, &mut buf) {
            self.resize_buf.extend_from_slice(&buf[..n]);
        }
        if let Some(size) = console::take_window_sizes(&mut self.resize_buf) {
            let _ = console::set_window_size(self.master.as_fd(), size);
        }
        // A writer that never ends its line cannot grow this.
        if self.resize_buf.len() > 64 {
            self.resize_buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::whole_chars;

    #[test]
    fn a_character_cut_by_a_read_waits_for_its_end() {
        let text = "né".as_bytes();
        assert_eq!(whole_chars(text), 3);
        // "n" and the first byte of "é": only "n" now.
        assert_eq!(whole_chars(&text[..2]), 1);
        // Invalid bytes are not held back.
        assert_eq!(whole_chars(b"a\xff"), 2);
        assert_eq!(whole_chars(b""), 0);
    }
}
