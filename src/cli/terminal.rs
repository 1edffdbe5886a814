//! The caller's side of an interactive session (`exec`, `run`, `attach`): whether to ask for a
//! TTY, the local terminal in raw mode (restored on every way out: the guard's drop, a panic's
//! unwinding, and the signal paths, which restore before exiting), the window size sent at the
//! start and on every `SIGWINCH`, stdin copied to the engine, and the output copied back.

use std::future::Future;
use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;

use anyhow::Context;
use futures_util::StreamExt;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::engine::api::client::{Hijacked, LogStream};

/// Whether a session gets a TTY, as docker compose decides: `-T` never, `-t` always, and
/// otherwise when berth's own stdin is a terminal.
pub fn wants_tty(no_tty: bool, force_tty: bool, stdin_is_terminal: bool) -> bool {
    !no_tty && (force_tty || stdin_is_terminal)
}

/// Whether the local terminal goes into raw mode: only for a TTY session and only when stdin is
/// a terminal (with `-t` and piped input there is no terminal to change).
pub fn raw_mode_applies(tty: bool, stdin_is_terminal: bool) -> bool {
    tty && stdin_is_terminal
}

/// The terminal settings before raw mode, for whichever path restores them first.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// The local terminal in raw mode for as long as this lives.
pub struct RawMode(());

impl RawMode {
    /// Raw mode on stdin's terminal when [`raw_mode_applies`]; `None` otherwise.
    pub fn enter_if(tty: bool) -> anyhow::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !raw_mode_applies(tty, stdin.is_terminal()) {
            return Ok(None);
        }
        // Handlers first: a signal between here and the session's own listeners must not end
        // berth by its default action with the terminal still raw (tokio keeps a handler
        // installed once registered).
        for kind in ENDING_SIGNALS.map(|(kind, _)| kind) {
            let _ = signal(kind);
        }
        let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("cannot put the terminal in raw mode")?;
        Ok(Some(Self(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Put the terminal back as it was before [`RawMode::enter_if`]; does nothing the second time.
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(saved) = saved {
        // TCSADRAIN: what was written in raw mode is shown as written.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &saved);
    }
}

/// berth's own window size, `(rows, columns)`, from whichever of stdin/stdout is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize we own.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_row > 0
            && ws.ws_col > 0
        {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Send the window size now and on every `SIGWINCH` until aborted. A failed resize (the
/// session ending) is not an error worth showing.
pub fn follow_window_size<F, Fut>(resize: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(u16, u16) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        loop {
            if let Some((rows, cols)) = window_size() {
                resize(rows, cols).await;
            }
            if winch.recv().await.is_none() {
                return;
            }
        }
    })
}

/// Copy berth's stdin to `input`, then half-close it so the other side sees EOF. Reading happens
/// on a plain thread: a read blocked on a terminal cannot be cancelled, and a thread of tokio's
/// blocking pool would keep the runtime (and berth) from exiting when the session ends first.
pub async fn feed_stdin(mut input: impl tokio::io::AsyncWrite + Unpin) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some(bytes) = rx.recv().await {
        if input.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = input.shutdown().await;
}

/// The signals that end a session, with the exit status each gives (128 + its number, as shells
/// report it).
const ENDING_SIGNALS: [(SignalKind, i32); 3] = [
    (SignalKind::interrupt(), 130),
    (SignalKind::terminate(), 143),
    (SignalKind::hangup(), 129),
];

/// The exit status for the first signal that ends a session.
pub async fn ending_signal() -> i32 {
    let mut waits = Vec::new();
    for (kind, code) in ENDING_SIGNALS {
        if let Ok(mut s) = signal(kind) {
            waits.push(Box::pin(async move {
                s.recv().await;
                code
            }));
        }
    }
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(waits).await.0
}

/// How a session's output copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The engine ended the stream (the process exited, or a detach).
    Closed,
    /// A signal to berth: 128 + its number.
    Signal(i32),
}

/// Copy `session`'s output to berth's stdout/stderr (and berth's stdin to it when `with_input`)
/// until the engine ends it or a signal arrives.
pub async fn run_session(session: Hijacked, with_input: bool) -> anyhow::Result<SessionEnd> {
    let Hijacked { mut output, input } = session;
    let feeding = with_input.then(|| tokio::spawn(feed_stdin(input)));
    let signalled = ending_signal();
    tokio::pin!(signalled);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let end = loop {
        tokio::select! {
            chunk = output.next() => {
                let Some(chunk) = chunk else { break SessionEnd::Closed };
                let chunk = chunk?;
                let sink: &mut dyn Write = match chunk.stream {
                    LogStream::Stderr => &mut err,
                    _ => &mut out,
                };
                // A closed pipe on our side (`… | head`) ends the copy, not the process.
                if sink.write_all(&chunk.bytes).and_then(|()| sink.flush()).is_err() {
                    break SessionEnd::Closed;
                }
            }
            code = &mut signalled => break SessionEnd::Signal(code),
        }
    };
    if let Some(feeding) = feeding {
        feeding.abort();
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tty_is_asked_for_as_docker_compose_does() {
        // From a terminal: yes, unless -T.
        assert!(wants_tty(false, false, true));
        assert!(!wants_tty(true, false, true));
        // Piped or redirected: no, unless -t; -T wins over -t.
        assert!(!wants_tty(false, false, false));
        assert!(wants_tty(false, true, false));
        assert!(!wants_tty(true, true, false));
    }

    #[test]
    fn raw_mode_only_for_a_tty_on_a_terminal() {
        assert!(raw_mode_applies(true, true));
        assert!(!raw_mode_applies(true, false));
        assert!(!raw_mode_applies(false, true));
        assert!(!raw_mode_applies(false, false));
    }

    /// Restoring with nothing saved (no raw mode entered, or restored already) changes nothing.
    #[test]
    fn restore_without_raw_mode_is_a_no_op() {
        restore();
        restore();
        assert!(SAVED.lock().unwrap().is_none());
    }
}
