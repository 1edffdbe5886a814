//! `HostConfig.Sysctls`: only kernel parameters that live in one of the container's own
//! namespaces can be set (runc's rule, which Docker applies): `net.*` in its network namespace,
//! the System V IPC and POSIX message queue ones in its IPC namespace. Anything else would change
//! the host for everyone, so it is refused when the container is created. `berth init` writes
//! the values under `/proc/sys` after it has joined or created those namespaces.

use std::io;
use std::path::Path;

use indexmap::IndexMap;
use thiserror::Error;

use super::syscall::Syscall;

#[derive(Debug, Error)]
pub enum SysctlError {
    #[error(
        "sysctl {0:?} is not allowed: it is not namespaced, so setting it would change the host; \
         only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* can be set per container"
    )]
    NotNamespaced(String),
    #[error(
        "sysctl {0:?} is not allowed in the host's network namespace (network_mode: host); \
         remove it or give the container its own network"
    )]
    HostNetwork(String),
    #[error("invalid sysctl name {0:?}: expected dotted words such as net.ipv4.ip_forward")]
    BadName(String),
    #[error("cannot set sysctl {key}={value}: {source}")]
    Write {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, SysctlError>;

/// IPC-namespace parameters (runc's `validateSysctl` list).
const IPC_NAMESPACED: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Check every key; `host_network` = the container shares the host's network namespace.
pub fn validate(sysctls: &IndexMap<String, String>, host_network: bool) -> Result<()> {
    for key in sysctls.keys() {
        let well_formed = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            });
        if !well_formed {
            return Err(SysctlError::BadName(key.clone()));
        }
        if key.starts_with("net.") {
            if host_network {
                return Err(SysctlError::HostNetwork(key.clone()));
            }
            continue;
        }
        if IPC_NAMESPACED.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            continue;
        }
        return Err(SysctlError::NotNamespaced(key.clone()));
    }
    Ok(())
}

/// Write each value to `/proc/sys/<key with / for .>`. Runs in `berth init`, inside the
/// container's namespaces, after its own `/proc` is mounted and before `/proc/sys` is made
/// read-only.
pub fn apply(sys: &dyn Syscall, sysctls: &[(String, String)]) -> Result<()> {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        sys.write_file(Path::new(&path), value)
            .map_err(|source| SysctlError::Write {
                key: key.clone(),
                value: value.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_namespaced_parameters_pass() {
        let ok = map(&[
            ("net.ipv4.ip_forward", "1"),
            ("kernel.shmmax", "1000"),
            ("fs.mqueue.msg_max", "20"),
        ]);
        validate(&ok, false).unwrap();
        let err = validate(&map(&[("vm.swappiness", "1")]), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sysctl \"vm.swappiness\" is not allowed: it is not namespaced"),
            "{err}"
        );
        let err = validate(&map(&[("kernel.hostname", "x")]), false).unwrap_err();
        assert!(matches!(err, SysctlError::NotNamespaced(_)));
        let err = validate(&map(&[("net.core.somaxconn", "1")]), true).unwrap_err();
        assert!(matches!(err, SysctlError::HostNetwork(_)), "{err}");
        let err = validate(&map(&[("net/../../kernel", "1")]), false).unwrap_err();
        assert!(matches!(err, SysctlError::BadName(_)), "{err}");
    }

    #[test]
    fn each_value_is_written_under_proc_sys() {
        let sys = crate::engine::runtime::syscall::recording::RecordingSyscall::new();
        let sysctls = vec![
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("kernel.msgmax".to_string(), "65536".to_string()),
        ];
        apply(&sys, &sysctls).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "write /proc/sys/net/ipv4/ip_forward 1",
                "write /proc/sys/kernel/msgmax 65536"
            ]
        );
    }
}
