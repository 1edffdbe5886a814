//! A seccomp filter applied by `berth init` just before it drops privileges.
//!
//! Docker's default profile is an allowlist of ~360 system calls with argument filters; berth
//! does not carry that table yet. This filter blocks what that profile blocks for a container
//! without CAP_SYS_ADMIN and that the capability set alone does not stop: namespace creation
//! (`unshare`, `clone` with namespace flags — an unprivileged user namespace is the usual first
//! step of a kernel exploit), the keyring, `bpf`, `perf_event_open`, `userfaultfd`, `io_uring`,
//! the new mount API, kexec, module loading, and old syscalls nobody needs. `clone3` answers
//! ENOSYS so libc falls back to `clone`, whose flags can be checked (as Docker does).
//! Other architectures than x86_64 (and the x32/i386 ABIs) get ENOSYS on x86_64 hosts.

use std::io;

/// Namespace flags of `clone` (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID |
/// NEWNET), Docker's mask `0x7E020000`.
const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// Always refused with EPERM.
#[cfg(target_arch = "x86_64")]
const DENIED: &[libc::c_long] = &[
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_lookup_dcookie,
    libc::SYS_open_by_handle_at,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_nfsservctl,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_vhangup,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
];

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The classic-BPF program (see the module doc).
#[cfg(target_arch = "x86_64")]
pub fn program() -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W,
        SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO,
    };
    let ld = BPF_LD | BPF_W | BPF_ABS;
    let ret = BPF_RET | BPF_K;
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut p = vec![
        // seccomp_data: nr at 0, arch at 4, args[0] (low half on little-endian) at 16.
        stmt(ld, 4),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, enosys),
        stmt(ld, 0),
        // x32 ABI numbers carry bit 30.
        jump(BPF_JMP | BPF_JGE | BPF_K, 0x4000_0000, 0, 1),
        stmt(ret, enosys),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone as u32, 0, 4),
        stmt(ld, 16),
        jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_NAMESPACE_FLAGS, 0, 1),
        stmt(ret, eperm),
        stmt(ret, SECCOMP_RET_ALLOW),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(ret, enosys),
    ];
    let n = DENIED.len();
    for (i, nr) in DENIED.iter().enumerate() {
        // On a match, skip the remaining checks and the ALLOW to land on EPERM.
        let to_deny = u8::try_from(n - i).expect("deny list fits a BPF jump");
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr as u32, to_deny, 0));
    }
    p.push(stmt(ret, SECCOMP_RET_ALLOW));
    p.push(stmt(ret, eperm));
    p
}

/// Install the filter on this process (inherited across `execve`). Needs CAP_SYS_ADMIN, since
/// Docker's default leaves no-new-privileges off.
#[cfg(target_arch = "x86_64")]
pub fn install() -> io::Result<()> {
    let prog = program();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
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

/// No filter on other architectures yet.
#[cfg(not(target_arch = "x86_64"))]
pub fn install() -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_the_verdicts() {
        let p = program();
        let allow = p.len() - 2;
        let deny = p.len() - 1;
        assert_eq!(p[allow].k, libc::SECCOMP_RET_ALLOW);
        assert_eq!(p[deny].k, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
        for (i, insn) in p.iter().enumerate() {
            if DENIED.iter().any(|nr| *nr as u32 == insn.k) && insn.jt > 0 {
                assert_eq!(i + 1 + insn.jt as usize, deny, "instruction {i}");
            }
        }
        assert!(p.len() < 4096);
    }
}
