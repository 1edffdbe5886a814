//! Capability sets: Docker's default set, the request's `CapAdd`/`CapDrop`/`Privileged` turned
//! into one mask (moby's `TweakCapabilities` rules), applied by `berth init` just before `execve`.
//!
//! The system calls themselves (`prctl(PR_CAPBSET_DROP)`, `capset`) are made through [`Syscall`];
//! this module only decides the masks.

use std::io;

use super::syscall::Syscall;

/// Every capability Linux defines, as Docker names them (moby's list, by number).
pub const ALL_CAPS: [(&str, u32); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// A capability name the request gave that Linux does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability: {0:?}")]
pub struct UnknownCapability(pub String);

/// Docker's spelling of one requested capability: upper case, `CAP_` prefixed (`ALL` stays `ALL`).
fn normalize(name: &str) -> Result<String, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.iter().any(|(n, _)| *n == full) {
        Ok(full)
    } else {
        Err(UnknownCapability(full))
    }
}

/// Docker's spelling of a requested list (`net_admin` → `CAP_NET_ADMIN`), as the daemon stores
/// and inspects it.
pub fn normalize_all(names: &[String]) -> Result<Vec<String>, UnknownCapability> {
    names.iter().map(|c| normalize(c)).collect()
}

fn bit_of(name: &str) -> u64 {
    ALL_CAPS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, bit)| 1u64 << bit)
}

/// Every capability this kernel knows (Docker's "all": its list cut at `cap_last_cap`).
pub fn all_mask() -> u64 {
    let last = last_cap();
    ALL_CAPS
        .iter()
        .filter(|(_, bit)| *bit <= last)
        .fold(0u64, |mask, (_, bit)| mask | (1u64 << bit))
}

/// The capabilities this process may still hold (its bounding set). The engine may run with
/// fewer than the kernel knows (e.g. as root of an outer container without CAP_SYS_RESOURCE);
/// nothing it starts can have more.
pub fn bounding_set() -> u64 {
    (0..=last_cap()).fold(0u64, |mask, cap| {
        // SAFETY: prctl with integer arguments.
        let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if held == 1 {
            mask | (1u64 << cap)
        } else {
            mask
        }
    })
}

/// Names of the capabilities in `mask`, for messages.
pub fn names(mask: u64) -> Vec<&'static str> {
    ALL_CAPS
        .iter()
        .filter(|(_, bit)| mask & (1u64 << bit) != 0)
        .map(|(name, _)| *name)
        .collect()
}

/// True when the request asks for "every capability" (privileged, or `ALL` in CapAdd): then
/// every capability the engine has is what the container gets.
pub fn wants_all(cap_add: &[String], privileged: bool) -> bool {
    privileged || cap_add.iter().any(|c| c.trim().eq_ignore_ascii_case("ALL"))
}

/// The container's capability set from `CapAdd`, `CapDrop` and `Privileged`, by moby's
/// `TweakCapabilities`: privileged gets everything; `ALL` in CapAdd means everything but the
/// drops; `ALL` in CapDrop means only the adds; otherwise the defaults minus drops plus adds.
/// Unknown names are refused with Docker's message.
pub fn container_mask(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
) -> Result<u64, UnknownCapability> {
    let adds = cap_add
        .iter()
        .map(|c| normalize(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = cap_drop
        .iter()
        .map(|c| normalize(c))
        .collect::<Result<Vec<_>, _>>()?;
    if privileged {
        return Ok(all_mask());
    }
    let mask_of = |names: &[String]| names.iter().fold(0u64, |m, n| m | bit_of(n));
    let all = all_mask();
    let mask = if adds.iter().any(|c| c == "ALL") {
        all & !mask_of(&drops)
    } else if drops.iter().any(|c| c == "ALL") {
        mask_of(&adds)
    } else {
        (default_mask() & !mask_of(&drops)) | mask_of(&adds)
    };
    Ok(mask & all)
}

/// Docker's 14 default capabilities (moby `caps/defaults.go`), as (name, number).
pub const DOCKER_DEFAULT_CAPS: [(&str, u32); 14] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// The default set as a 64-bit mask (`0xa80425fb`, what `CapEff` shows for root in Docker).
pub fn default_mask() -> u64 {
    DOCKER_DEFAULT_CAPS
        .iter()
        .fold(0u64, |mask, (_, bit)| mask | (1u64 << bit))
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability outside `keep` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(sys: &dyn Syscall, keep: u64) -> io::Result<()> {
    for cap in 0..=last_cap() {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        if let Err(err) = sys.drop_bounding_capability(cap) {
            // EINVAL: the kernel does not know this capability; nothing to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_docker_cap_eff() {
        assert_eq!(default_mask(), 0xa804_25fb);
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn adds_and_drops_follow_dockers_rules() {
        let net_admin = 1u64 << 12;
        let chown = 1u64;
        // With or without the prefix, any case.
        let mask = container_mask(&names(&["net_admin"]), &names(&["CAP_CHOWN"]), false).unwrap();
        assert_eq!(mask, (default_mask() | net_admin) & !chown);
        assert_eq!(
            container_mask(&names(&["ALL"]), &names(&["chown"]), false).unwrap(),
            all_mask() & !chown
        );
        assert_eq!(
            container_mask(&names(&["NET_ADMIN"]), &names(&["all"]), false).unwrap(),
            net_admin
        );
        assert_eq!(
            container_mask(&[], &names(&["CHOWN"]), true).unwrap(),
            all_mask()
        );
        assert_eq!(container_mask(&[], &[], false).unwrap(), default_mask());
    }

    #[test]
    fn unknown_capabilities_get_dockers_error() {
        let err = container_mask(&names(&["FLY"]), &[], false).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FLY\"");
        let err = container_mask(&[], &names(&["cap_nope"]), true).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_NOPE\"");
    }
}
