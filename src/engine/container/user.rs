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

fn read_passwd(root: &Path) -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
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

fn read_group(root: &Path) -> Vec<GroupEntry> {
    let text = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
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

/// Resolve `spec` inside the filesystem rooted at `root`.
pub fn resolve(root: &Path, spec: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_passwd(root);
    let groups = read_group(root);

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
}
