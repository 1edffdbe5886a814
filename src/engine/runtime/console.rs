//! Pseudo-terminals of TTY containers and execs (Docker's `Tty: true`).
//!
//! The pty always comes from the container's own `devpts` instance (mounted `newinstance` by
//! `rootfs`), so `tty` inside prints a `/dev/pts/N` of the container and the host's `/dev/pts`
//! never shows the container's terminals. Whoever opens it (`berth init` for the container,
//! `berth exec-init` for an exec) is inside the container's mount namespace: it opens the
//! instance's `ptmx`, makes the slave the workload's stdio and controlling terminal, and hands
//! the master over a unix socket (`SCM_RIGHTS`), as runc's console socket does — to the shim for
//! a container (which then owns it for the container's life), to the engine for an exec.
//!
//! Window sizes reach the shim as `ROWS COLS\n` lines on the container's resize FIFO.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("/dev/pts/ptmx of the container is not its devpts instance's ptmx")]
    NotDevpts,
}

type Result<T> = std::result::Result<T, ConsoleError>;

fn last_os(what: &'static str) -> ConsoleError {
    ConsoleError::Io {
        what,
        source: io::Error::last_os_error(),
    }
}

/// `statfs.f_type` of a devpts filesystem.
const DEVPTS_SUPER_MAGIC: libc::c_long = 0x1cd1;
/// `/dev/ptmx` is character device 5:2.
const PTMX_DEVICE: (u32, u32) = (5, 2);

/// Both ends of a new pseudo-terminal.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Open a pty of the devpts instance at `/dev/pts` as the calling process sees it (inside the
/// container's mount namespace). The ptmx is checked to be a devpts ptmx, so a container that
/// replaced its `/dev/pts` cannot make a root process open something else; the slave is opened
/// through the master (`TIOCGPTPEER`), never by a path the container controls.
pub fn open_pty() -> Result<Pty> {
    // SAFETY: open with a static C string; a non-negative result is an fd we own.
    let fd = unsafe {
        libc::open(
            c"/dev/pts/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(last_os("open the container's /dev/pts/ptmx"));
    }
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    check_is_devpts_ptmx(&master)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(last_os("unlock the pty"));
    }
    // SAFETY: TIOCGPTPEER returns a new fd for the slave or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(last_os("open the pty's slave"));
    }
    Ok(Pty {
        master,
        slave: unsafe { OwnedFd::from_raw_fd(slave) },
    })
}

fn check_is_devpts_ptmx(fd: &OwnedFd) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|source| ConsoleError::Sys {
        what: "statfs the container's ptmx",
        source,
    })?;
    let stat = nix::sys::stat::fstat(fd).map_err(|source| ConsoleError::Sys {
        what: "stat the container's ptmx",
        source,
    })?;
    let is_char = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let device = (libc::major(stat.st_rdev), libc::minor(stat.st_rdev));
    if fs.filesystem_type().0 as libc::c_long != DEVPTS_SUPER_MAGIC
        || !is_char
        || device != PTMX_DEVICE
    {
        return Err(ConsoleError::NotDevpts);
    }
    Ok(())
}

/// Set `size` (rows, columns) on a new pty before its workload starts; a zero size is none.
pub fn set_initial_size(master: BorrowedFd<'_>, size: Option<(u16, u16)>) -> Result<()> {
    match size {
        Some((rows, cols)) if rows > 0 && cols > 0 => {
            set_window_size(master, WindowSize { rows, cols })
        }
        _ => Ok(()),
    }
}

/// Make `slave` the calling process's controlling terminal and its fds 0, 1 and 2, in a new
/// session. Raw system calls only: also called between fork and exec.
pub fn become_session_on(slave: RawFd) -> io::Result<()> {
    // SAFETY: plain system calls on fds this process owns.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        for target in 0..3 {
            if libc::dup2(slave, target) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Send `fd` over the unix socket `socket` (one byte of payload carries it).
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(b"m")],
        &control,
        MsgFlags::empty(),
        None,
    )
    .map_err(|source| ConsoleError::Sys {
        what: "send the pty master",
        source,
    })?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`]; `None` when the peer closed without sending one
/// (it failed before it had a pty; its error arrives on its own channel).
pub fn recv_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            other => {
                break other.map_err(|source| ConsoleError::Sys {
                    what: "receive the pty master",
                    source,
                })?
            }
        }
    };
    for cmsg in msg.cmsgs().map_err(|source| ConsoleError::Sys {
        what: "read the pty master message",
        source,
    })? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                // SAFETY: the kernel installed these fds in this process for us.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            if !owned.is_empty() {
                return Ok(Some(owned.swap_remove(0)));
            }
        }
    }
    Ok(None)
}

/// A terminal window size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl WindowSize {
    /// The line the engine writes on a container's resize FIFO.
    pub fn to_line(self) -> String {
        format!("{} {}\n", self.rows, self.cols)
    }

    /// One `ROWS COLS` line; `None` for anything else (including a zero size, which would
    /// make the terminal unusable: Docker ignores it too).
    pub fn parse_line(line: &str) -> Option<Self> {
        let mut parts = line.split_ascii_whitespace();
        let rows = parts.next()?.parse::<u16>().ok()?;
        let cols = parts.next()?.parse::<u16>().ok()?;
        if parts.next().is_some() || rows == 0 || cols == 0 {
            return None;
        }
        Some(Self { rows, cols })
    }
}

/// `TIOCSWINSZ` on a pty's master: the processes on its slave get `SIGWINCH`.
pub fn set_window_size(master: BorrowedFd<'_>, size: WindowSize) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(last_os("set the terminal size"));
    }
    Ok(())
}

/// The window sizes in `buf` (complete lines, which are consumed); the last one wins.
pub fn take_window_sizes(buf: &mut Vec<u8>) -> Option<WindowSize> {
    let end = buf.iter().rposition(|b| *b == b'\n')?;
    let lines: Vec<u8> = buf.drain(..=end).collect();
    String::from_utf8_lossy(&lines)
        .lines()
        .rev()
        .find_map(WindowSize::parse_line)
}

/// Make `fd` non-blocking (the shim multiplexes the master with `poll`).
pub fn set_nonblocking(fd: impl AsFd) -> Result<()> {
    nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|source| ConsoleError::Sys {
        what: "make the pty master non-blocking",
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_lines_parse_and_the_last_complete_one_wins() {
        assert_eq!(
            WindowSize::parse_line("24 80"),
            Some(WindowSize { rows: 24, cols: 80 })
        );
        assert_eq!(WindowSize::parse_line("0 80"), None);
        assert_eq!(WindowSize::parse_line("24"), None);
        assert_eq!(WindowSize::parse_line("24 80 1"), None);
        assert_eq!(WindowSize::parse_line("x 80"), None);
        let mut buf = b"10 20\n30 40\n50 6".to_vec();
        assert_eq!(
            take_window_sizes(&mut buf),
            Some(WindowSize { rows: 30, cols: 40 })
        );
        assert_eq!(buf, b"50 6".to_vec());
        assert_eq!(take_window_sizes(&mut buf), None);
        assert_eq!(
            WindowSize { rows: 5, cols: 7 }.to_line(),
            "5 7\n".to_string()
        );
    }

    /// The pty handoff works between two ends of a socket pair, and the size set on the
    /// master is what the slave reports.
    #[test]
    fn a_master_sent_over_a_socket_resizes_the_slave() {
        let pty = Pty::host_pair_for_test();
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        send_fd(a.as_fd(), pty.master.as_fd()).expect("send");
        let received = recv_fd(b.as_fd()).expect("recv").expect("an fd");
        set_window_size(
            received.as_fd(),
            WindowSize {
                rows: 33,
                cols: 101,
            },
        )
        .expect("resize");
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize we own.
        assert_eq!(
            unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
        drop(a);
        assert!(recv_fd(b.as_fd()).expect("recv after close").is_none());
    }

    impl Pty {
        /// A pty of the host's devpts, for tests of the fd handling only.
        fn host_pair_for_test() -> Self {
            let pty = nix::pty::openpty(None, None).expect("openpty");
            Self {
                master: pty.master,
                slave: pty.slave,
            }
        }
    }
}
