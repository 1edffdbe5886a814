//! The container's mounts as the request describes them (`HostConfig.Binds`, `.Mounts`, `.Tmpfs`,
//! plus anonymous volumes), before their sources are resolved to host paths at start.

use std::collections::HashSet;
use std::path::PathBuf;

use super::state::AnonymousVolume;
use super::ContainerError;
use crate::engine::wire::{HostConfig, Mount, TmpfsOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    HostPath(PathBuf),
    Volume(String),
    /// tmpfs mount data (`size=…,mode=…`).
    Tmpfs(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    pub source: MountSource,
    pub destination: String,
    pub read_only: bool,
    /// Docker's `Mode` text for inspect (`ro`, `rw`, `z`, …).
    pub mode: String,
    /// `VolumeOptions.NoCopy`: do not copy the image's content into an empty volume.
    pub no_copy: bool,
    /// A missing host directory is created (legacy `Binds`), as Docker does.
    pub create_host_path: bool,
}

fn check_destination(dest: &str) -> Result<(), ContainerError> {
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return Err(ContainerError::BadRequest(format!(
            "invalid mount config: mount path {dest:?} must be absolute and without '..'"
        )));
    }
    if dest == "/" {
        return Err(ContainerError::BadRequest(
            "invalid mount config: destination can't be '/'".into(),
        ));
    }
    Ok(())
}

/// Split `HostConfig.Tmpfs` options into mount data and the read-only flag. `exec`, `suid` and
/// `dev` (and their `no` forms) stay in the data: `berth init` turns them into mount flags over
/// Docker's default `noexec,nosuid,nodev`.
fn tmpfs_options(opts: &str) -> (String, bool) {
    let mut data = Vec::new();
    let mut ro = false;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => ro = true,
            "rw" => {}
            other => data.push(other),
        }
    }
    (data.join(","), ro)
}

/// `Mount.TmpfsOptions` as tmpfs mount data, as Docker converts them (`size=<bytes>,mode=<octal>`).
fn tmpfs_data(options: Option<&TmpfsOptions>) -> String {
    let Some(o) = options else {
        return String::new();
    };
    let mut data = Vec::new();
    if o.size_bytes > 0 {
        data.push(format!("size={}", o.size_bytes));
    }
    if let Some(mode) = o.mode {
        data.push(format!("mode={:o}", mode & 0o7777));
    }
    data.join(",")
}

/// Every mount of the container, in the order they are applied. Duplicate destinations are an
/// error, as in Docker.
pub fn plan(
    host: Option<&HostConfig>,
    anonymous: &[AnonymousVolume],
) -> Result<Vec<PlannedMount>, ContainerError> {
    let mut out = Vec::new();
    if let Some(host) = host {
        for bind in host.binds.iter().flatten() {
            out.push(plan_bind(bind)?);
        }
        for m in host.mounts.iter().flatten() {
            out.extend(plan_mount(m, anonymous)?);
        }
        let mut tmpfs: Vec<(&String, &String)> = host.tmpfs.iter().flatten().collect();
        tmpfs.sort();
        for (dest, opts) in tmpfs {
            check_destination(dest)?;
            let (data, read_only) = tmpfs_options(opts);
            out.push(PlannedMount {
                source: MountSource::Tmpfs(data),
                destination: dest.clone(),
                read_only,
                mode: opts.clone(),
                no_copy: false,
                create_host_path: false,
            });
        }
    }
    // Image VOLUMEs not covered by an explicit mount get their anonymous volume.
    for anon in anonymous {
        if !out.iter().any(|m| m.destination == anon.destination) {
            out.push(PlannedMount {
                source: MountSource::Volume(anon.name.clone()),
                destination: anon.destination.clone(),
                read_only: false,
                mode: String::new(),
                no_copy: false,
                create_host_path: false,
            });
        }
    }
    check_unique_destinations(&out)?;
    Ok(out)
}

/// One `HostConfig.Binds` entry, `src:dest[:mode]`: a host path (absolute) or a volume name.
fn plan_bind(bind: &str) -> Result<PlannedMount, ContainerError> {
    let invalid = || ContainerError::BadRequest(format!("invalid volume specification: {bind:?}"));
    let parts: Vec<&str> = bind.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [src, dest] => (*src, *dest, ""),
        [src, dest, mode] => (*src, *dest, *mode),
        _ => return Err(invalid()),
    };
    if src.is_empty() {
        return Err(invalid());
    }
    check_destination(dest)?;
    let source = if src.starts_with('/') {
        MountSource::HostPath(PathBuf::from(src))
    } else {
        MountSource::Volume(src.to_string())
    };
    Ok(PlannedMount {
        create_host_path: matches!(source, MountSource::HostPath(_)),
        source,
        destination: dest.to_string(),
        read_only: mode.split(',').any(|m| m == "ro"),
        mode: mode.to_string(),
        no_copy: mode.split(',').any(|m| m == "nocopy"),
    })
}

/// One `HostConfig.Mounts` entry; `None` for an anonymous volume the image does not declare.
fn plan_mount(
    m: &Mount,
    anonymous: &[AnonymousVolume],
) -> Result<Option<PlannedMount>, ContainerError> {
    check_destination(&m.target)?;
    let source = match m.kind.as_str() {
        "bind" => {
            if !m.source.starts_with('/') {
                return Err(ContainerError::BadRequest(format!(
                    "invalid mount config for type \"bind\": invalid mount path {:?}: must be absolute",
                    m.source
                )));
            }
            MountSource::HostPath(PathBuf::from(&m.source))
        }
        "volume" if m.source.is_empty() => {
            match anonymous.iter().find(|a| a.destination == m.target) {
                Some(a) => MountSource::Volume(a.name.clone()),
                None => return Ok(None),
            }
        }
        "volume" => MountSource::Volume(m.source.clone()),
        "tmpfs" => MountSource::Tmpfs(tmpfs_data(m.tmpfs_options.as_ref())),
        other => {
            return Err(ContainerError::BadRequest(format!(
                "invalid mount config: unsupported mount type {other:?} (use bind, volume or tmpfs)"
            )))
        }
    };
    Ok(Some(PlannedMount {
        source,
        destination: m.target.clone(),
        read_only: m.read_only,
        no_copy: m.volume_options.as_ref().is_some_and(|o| o.no_copy),
        create_host_path: false,
        mode: if m.read_only {
            "ro".into()
        } else {
            String::new()
        },
    }))
}

/// Two mounts on one destination (trailing slashes aside) are refused, as Docker does.
fn check_unique_destinations(mounts: &[PlannedMount]) -> Result<(), ContainerError> {
    let mut seen = HashSet::new();
    for m in mounts {
        if !seen.insert(m.destination.trim_end_matches('/')) {
            return Err(ContainerError::BadRequest(format!(
                "duplicate mount point: {}",
                m.destination
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::Mount;

    #[test]
    fn binds_mounts_and_tmpfs_are_planned_in_order() {
        let host = HostConfig {
            binds: Some(vec!["data:/data".into(), "/srv/www:/www:ro".into()]),
            mounts: Some(vec![
                Mount {
                    kind: "tmpfs".into(),
                    target: "/scratch".into(),
                    ..Default::default()
                },
                Mount {
                    kind: "tmpfs".into(),
                    target: "/cache".into(),
                    tmpfs_options: Some(TmpfsOptions {
                        size_bytes: 1 << 20,
                        mode: Some(0o1770),
                    }),
                    ..Default::default()
                },
            ]),
            tmpfs: Some([("/run".to_string(), "size=1m,ro".to_string())].into()),
            ..Default::default()
        };
        let anon = [AnonymousVolume {
            name: "abc".into(),
            destination: "/var/lib/db".into(),
        }];
        let plan = plan(Some(&host), &anon).unwrap();
        let got: Vec<(&MountSource, &str, bool)> = plan
            .iter()
            .map(|m| (&m.source, m.destination.as_str(), m.read_only))
            .collect();
        assert_eq!(
            got,
            vec![
                (&MountSource::Volume("data".into()), "/data", false),
                (&MountSource::HostPath("/srv/www".into()), "/www", true),
                (&MountSource::Tmpfs(String::new()), "/scratch", false),
                (
                    &MountSource::Tmpfs("size=1048576,mode=1770".into()),
                    "/cache",
                    false
                ),
                (&MountSource::Tmpfs("size=1m".into()), "/run", true),
                (&MountSource::Volume("abc".into()), "/var/lib/db", false),
            ]
        );
    }

    #[test]
    fn bad_specs_are_rejected_with_their_text() {
        let host = |b: &str| HostConfig {
            binds: Some(vec![b.to_string()]),
            ..Default::default()
        };
        let err = plan(Some(&host("data:relative")), &[]).unwrap_err();
        assert!(
            err.to_string().contains("\"relative\" must be absolute"),
            "{err}"
        );
        let err = plan(Some(&host("a:b:c:d")), &[]).unwrap_err();
        assert_eq!(err.to_string(), "invalid volume specification: \"a:b:c:d\"");
        let dup = HostConfig {
            binds: Some(vec!["a:/x".into(), "b:/x".into()]),
            ..Default::default()
        };
        assert_eq!(
            plan(Some(&dup), &[]).unwrap_err().to_string(),
            "duplicate mount point: /x"
        );
    }
}
