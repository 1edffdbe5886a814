//! `openat2(2)`: the one primitive through which berth opens every path that a container or an
//! image controls (the layer unpacker, volume copy-up, the runtime's in-root resolution). Callers
//! pick the `RESOLVE_*` flags that fit; this wrapper adds `O_CLOEXEC` always (no fd leaks into a
//! container) and retries what the kernel asks to retry.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Open `path` relative to `dir` with `flags`, `mode` (used only with `O_CREAT`/`O_TMPFILE`) and
/// `resolve` (`libc::RESOLVE_*`).
pub fn openat2(
    dir: RawFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        how.mode = mode as u64;
    }
    how.resolve = resolve;
    loop {
        // SAFETY: valid pointers to a NUL-terminated path and an open_how of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a fresh fd that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        // EAGAIN: a rename raced the lookup under RESOLVE_IN_ROOT; the kernel asks for a retry.
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn in_root_resolution_keeps_an_absolute_symlink_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/x"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let path = c"link/x";
        let fd = openat2(
            root.as_raw_fd(),
            path,
            libc::O_RDONLY,
            0,
            libc::RESOLVE_IN_ROOT,
        )
        .expect("resolves inside the root");
        let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(text, "inside");
        let refused = openat2(
            root.as_raw_fd(),
            path,
            libc::O_RDONLY,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
        );
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }
}
