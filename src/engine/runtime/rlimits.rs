//! Resource limits (Docker's ulimits): checked against Docker's names and rules when the container
//! is created,
//! applied with `setrlimit` by `berth init` just before the workload runs (so the workload and
//! everything it forks inherit them).

use std::io;

use thiserror::Error;

use super::spec::RlimitSpec;
use super::syscall::Syscall;

#[derive(Debug, Error)]
pub enum RlimitError {
    /// go-units' wording, which Docker returns.
    #[error("invalid ulimit type: {0}")]
    UnknownName(String),
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    SoftAboveHard { soft: i64, hard: i64 },
    #[error("invalid ulimit {name}: {value} is negative (use -1 for unlimited)")]
    Negative { name: String, value: i64 },
    #[error("ulimit {0} is given more than once")]
    Duplicate(String),
    #[error(
        "cannot set ulimit {name} (soft {soft}, hard {hard}): the hard limit is above the \
         engine's own hard limit {current_hard}, and raising it needs CAP_SYS_RESOURCE, which \
         the engine does not have; lower the hard limit of `{name}` to at most {current_hard}"
    )]
    AboveHostHard {
        name: String,
        soft: String,
        hard: String,
        current_hard: String,
    },
    #[error("cannot set ulimit {name} (soft {soft}, hard {hard}): {source}")]
    Set {
        name: String,
        soft: String,
        hard: String,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, RlimitError>;

/// Docker's ulimit names (go-units) and the resources they set.
const NAMES: &[(&str, libc::__rlimit_resource_t)] = &[
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

/// -1 is Docker's "unlimited".
fn to_rlim(name: &str, value: i64) -> Result<u64> {
    match value {
        -1 => Ok(libc::RLIM_INFINITY),
        v if v < 0 => Err(RlimitError::Negative {
            name: name.to_string(),
            value: v,
        }),
        v => Ok(v as u64),
    }
}

/// The requested `(name, soft, hard)` limits (Docker's values: -1 = unlimited) checked and
/// converted, in the order given.
pub fn validate<'a>(
    requested: impl IntoIterator<Item = (&'a str, i64, i64)>,
) -> Result<Vec<RlimitSpec>> {
    let mut out: Vec<RlimitSpec> = Vec::new();
    for (name, soft_asked, hard_asked) in requested {
        if !NAMES.iter().any(|(n, _)| *n == name) {
            return Err(RlimitError::UnknownName(name.to_string()));
        }
        if out.iter().any(|r| r.name == name) {
            return Err(RlimitError::Duplicate(name.to_string()));
        }
        let soft = to_rlim(name, soft_asked)?;
        let hard = to_rlim(name, hard_asked)?;
        if soft > hard {
            return Err(RlimitError::SoftAboveHard {
                soft: soft_asked,
                hard: hard_asked,
            });
        }
        out.push(RlimitSpec {
            name: name.to_string(),
            soft,
            hard,
        });
    }
    Ok(out)
}

fn show(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Set every limit on this process. A hard limit above the current one needs CAP_SYS_RESOURCE:
/// without it the kernel refuses, and so do we, naming the limit (never capping it silently).
pub fn apply(sys: &dyn Syscall, limits: &[RlimitSpec]) -> Result<()> {
    for l in limits {
        let Some((_, resource)) = NAMES.iter().find(|(n, _)| *n == l.name) else {
            return Err(RlimitError::UnknownName(l.name.clone()));
        };
        // Only read to explain a refusal; an unreadable limit reads as 0.
        let (_, current_hard) = sys.getrlimit(*resource).unwrap_or((0, 0));
        if let Err(source) = sys.setrlimit(*resource, l.soft, l.hard) {
            if source.raw_os_error() == Some(libc::EPERM) && l.hard > current_hard {
                return Err(RlimitError::AboveHostHard {
                    name: l.name.clone(),
                    soft: show(l.soft),
                    hard: show(l.hard),
                    current_hard: show(current_hard),
                });
            }
            return Err(RlimitError::Set {
                name: l.name.clone(),
                soft: show(l.soft),
                hard: show(l.hard),
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulimit(name: &str, soft: i64, hard: i64) -> (&str, i64, i64) {
        (name, soft, hard)
    }

    #[test]
    fn docker_names_and_rules() {
        let ok = validate([ulimit("nofile", 1024, 2048), ulimit("core", -1, -1)]).unwrap();
        assert_eq!(ok[0].soft, 1024);
        assert_eq!(ok[1].hard, libc::RLIM_INFINITY);
        assert_eq!(
            validate([ulimit("files", 1, 1)]).unwrap_err().to_string(),
            "invalid ulimit type: files"
        );
        assert_eq!(
            validate([ulimit("nofile", 2, 1)]).unwrap_err().to_string(),
            "ulimit soft limit must be less than or equal to hard limit: 2 > 1"
        );
        assert!(validate([ulimit("nproc", -5, 1)]).is_err());
        assert_eq!(
            validate([ulimit("nproc", 1, 1), ulimit("nproc", 2, 2)])
                .unwrap_err()
                .to_string(),
            "ulimit nproc is given more than once"
        );
    }

    #[test]
    fn limits_are_set_in_the_order_given() {
        let sys = crate::engine::runtime::syscall::recording::RecordingSyscall::new();
        let limits = validate([ulimit("nofile", 1024, 2048), ulimit("core", -1, -1)]).unwrap();
        apply(&sys, &limits).unwrap();
        assert_eq!(
            sys.calls(),
            [
                format!("setrlimit {} 1024 2048", libc::RLIMIT_NOFILE),
                format!(
                    "setrlimit {} {} {}",
                    libc::RLIMIT_CORE,
                    libc::RLIM_INFINITY,
                    libc::RLIM_INFINITY
                ),
            ]
        );
    }
}
