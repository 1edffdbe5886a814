//! Resolve Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) against the CONTAINER's
//! `/etc/passwd` and `/etc/group`, never the host's NSS, as runc's `user` package does.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// The image's passwd or group file cannot be used; `who` is the user or group looked up.
    #[error("unable to find {who}: cannot use {file} of the image: {reason}; fix the image")]
    BadFile {
        who: String,
        file: &'static str,
        reason: String,
    },
}

/// Larger passwd or group files are refused: the lookup runs as root before the workload, and
/// an image could otherwise make it read without end (`/etc/passwd -> /dev/zero`).
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

/// The text of `file` (`etc/passwd`) under `root`: resolved inside the root without magic
/// links, opened non-blocking (a FIFO cannot stall us), a regular file of at most
/// [`MAX_FILE_SIZE`]. A missing file reads as empty, as in runc.
fn read_file(root: &Path, file: &'static str) -> Result<String, String> {
    use std::io::Read;
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let dir = std::fs::File::open(root).map_err(|e| e.to_string())?;
    let c = std::ffi::CString::new(file).expect("static name");
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd =
        match crate::fs_at::openat2(std::os::fd::AsRawFd::as_raw_fd(&dir), &c, flags, 0, resolve) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(e.to_string().to_lowercase()),
        };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(format!("larger than {} MiB", MAX_FILE_SIZE >> 20));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!("larger than {} MiB", MAX_FILE_SIZE >> 20));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Who the workload runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The image's passwd and group entries. The root user (empty spec) needs them only for its
/// home: unusable files are ignored then, as a missing one is; any named or numbered user or
/// group gets the error.
fn lookup_files(
    root: &Path,
    spec: &str,
    user_part: &str,
    group_part: Option<&str>,
) -> Result<(Vec<PasswdEntry>, Vec<GroupEntry>), UserError> {
    let read = |file: &'static str, shown: &'static str, who: String| match read_file(root, file) {
        Ok(text) => Ok(text),
        Err(_) if spec.is_empty() => Ok(String::new()),
        Err(reason) => Err(UserError::BadFile {
            who,
            file: shown,
            reason,
        }),
    };
    let passwd = read("etc/passwd", "/etc/passwd", format!("user {user_part}"))?;
    let group = read(
        "etc/group",
        "/etc/group",
        group_part.map_or_else(|| format!("user {user_part}"), |g| format!("group {g}")),
    )?;
    Ok((parse_passwd(&passwd), parse_group(&group)))
}

/// Resolve `spec` inside the filesystem rooted at `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (passwd, groups) = lookup_files(root, spec, user_part, group_part)?;

    // Numeric users need no passwd entry (Docker runs them with gid 0 and home `/`).
    let (uid, mut gid, home, name) = if user_part.is_empty() {
        let root_entry = passwd.iter().find(|p| p.uid == 0);
        (
            0,
            0,
            root_entry
                .map(|p| p.home.clone())
                .unwrap_or_else(|| "/root".into()),
            root_entry.map(|p| p.name.clone()),
        )
    } else if let Some(entry) = passwd.iter().find(|p| p.name == user_part) {
        (
            entry.uid,
            entry.gid,
            entry.home.clone(),
            Some(entry.name.clone()),
        )
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match passwd.iter().find(|p| p.uid == uid) {
            Some(entry) => (uid, entry.gid, entry.home.clone(), Some(entry.name.clone())),
            None => (uid, 0, "/".to_string(), None),
        }
    } else {
        return Err(UserError::UnknownUser(user_part.to_string()));
    };

    if let Some(group) = group_part.filter(|g| !g.is_empty()) {
        gid = if let Some(entry) = groups.iter().find(|g| g.name == group) {
            entry.gid
        } else if let Ok(gid) = group.parse::<u32>() {
            gid
        } else {
            return Err(UserError::UnknownGroup(group.to_string()));
        };
    }

    // Supplementary groups: every group listing the user by name (not with an explicit group).
    let mut additional_gids = Vec::new();
    if group_part.is_none() {
        if let Some(name) = &name {
            for g in &groups {
                if g.members.iter().any(|m| m == name) && g.gid != gid {
                    additional_gids.push(g.gid);
                }
            }
        }
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:1000:1000::/home/web:/bin/sh\n",
        )
        .expect("write passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nweb:x:1000:\naudio:x:29:web\nvideo:x:44:web,root\n",
        )
        .expect("write group");
        dir
    }

    #[test]
    fn names_and_numbers_resolve_from_the_container_files() {
        let r = root();
        assert_eq!(
            resolve(r.path(), "nobody").unwrap(),
            ExecUser {
                uid: 65534,
                gid: 65534,
                additional_gids: vec![],
                home: "/nonexistent".into()
            }
        );
        let web = resolve(r.path(), "web").unwrap();
        assert_eq!(
            (web.uid, web.gid, web.additional_gids),
            (1000, 1000, vec![29, 44])
        );
        let explicit = resolve(r.path(), "web:nogroup").unwrap();
        assert_eq!((explicit.gid, explicit.additional_gids), (65534, vec![]));
        let numeric = resolve(r.path(), "4242:99").unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 99, "/")
        );
        assert_eq!(resolve(r.path(), "").unwrap().home, "/root");
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let r = root();
        assert_eq!(
            resolve(r.path(), "ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            resolve(r.path(), "web:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }

    #[test]
    fn hostile_passwd_files_are_bounded_and_named() {
        let r = root();
        let passwd = r.path().join("etc/passwd");
        std::fs::remove_file(&passwd).unwrap();
        std::fs::create_dir(r.path().join("dev")).unwrap();
        nix::sys::stat::mknod(
            &r.path().join("dev/zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        )
        .expect("mknod (tests run as root)");
        std::os::unix::fs::symlink("/dev/zero", &passwd).unwrap();
        assert_eq!(
            resolve(r.path(), "app").unwrap_err().to_string(),
            "unable to find user app: cannot use /etc/passwd of the image: not a regular file; \
             fix the image"
        );
        // A symlink out of the root stays inside it: the host's passwd is never read.
        std::fs::remove_file(&passwd).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &passwd).unwrap();
        let err = resolve(r.path(), "root").unwrap_err().to_string();
        assert!(
            err.contains("too many levels") || err.contains("no matching"),
            "{err}"
        );
        std::fs::remove_file(&passwd).unwrap();
        nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert!(resolve(r.path(), "app")
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        std::fs::remove_file(&passwd).unwrap();
        let big = std::fs::File::create(&passwd).unwrap();
        big.set_len(MAX_FILE_SIZE + 1).unwrap();
        assert!(resolve(r.path(), "app")
            .unwrap_err()
            .to_string()
            .contains("larger than 4 MiB"));
        // The root user needs no passwd file: it still starts, with the default home.
        assert_eq!(resolve(r.path(), "").unwrap().home, "/root");
    }
}
