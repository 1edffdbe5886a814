//! The privilege system calls of [`super::LinuxSyscall`]: `capset(2)` and the seccomp `prctl`.
//! They take plain data (a capability mask, a compiled program), so the modules that decide
//! those (`runtime::caps`, `runtime::seccomp`) depend on the seam, never the other way round.

use std::io;

use super::SeccompFilter;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set the effective, permitted and inheritable sets of this process to `mask` (`capset(2)`).
pub(super) fn capset_all(mask: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: lo,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: hi,
        },
    ];
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Install a compiled seccomp program on this process (inherited across `execve`); an empty
/// program installs nothing. Needs CAP_SYS_ADMIN unless no-new-privileges is set.
pub(super) fn install_filter(filter: &SeccompFilter) -> io::Result<()> {
    if filter.program.is_empty() {
        return Ok(());
    }
    let len = u16::try_from(filter.program.len())
        .map_err(|_| io::Error::other("seccomp program longer than 65535 instructions"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at a live program for the duration of the call.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
