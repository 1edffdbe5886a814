//! One `sync` batch as the tar the engine's sync endpoint applies: the changed files as they are
//! on the host now (a path that is gone becomes a `.wh.NAME` deletion, so a rename is a deletion
//! plus an addition), a new directory with its content, relative to the directory it lands in.
//!
//! Nothing on the host is followed: a symlink is sent as a symlink (its text, never what it
//! points to), so a link in the watched tree that leads out of it exposes nothing outside the
//! tree; in the container it resolves in the container's own root. Owners are zeroed (the engine
//! gives the files to the container's user); modes and modification times are kept.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use thiserror::Error;

use crate::compose::watch::{Rule, ServiceWatch};

#[derive(Debug, Error)]
pub enum SyncTarError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The tar for one rule, and the container directory it applies to.
#[derive(Debug)]
pub struct SyncBatch {
    pub container_dir: String,
    pub tar: Vec<u8>,
}

/// The batch of rule `index` of `watch` for the changed paths `relatives` (relative to the rule's
/// path; `""` is the rule's path itself, e.g. for an initial sync).
pub fn batch_for(
    watch: &ServiceWatch,
    index: usize,
    relatives: &BTreeSet<String>,
) -> Result<SyncBatch, SyncTarError> {
    let rule = &watch.rules[index];
    let target = rule.target.clone().unwrap_or_default();
    let rule_is_dir = rule.path.is_dir() || relatives.iter().any(|r| !r.is_empty());
    // A rule on one file writes into the target's parent, under the target's name.
    let (container_dir, rename) = if rule_is_dir {
        (target, None)
    } else {
        let t = Path::new(&target);
        let parent = t.parent().map_or("/".into(), |p| p.display().to_string());
        let name = t.file_name().map(|n| n.to_string_lossy().into_owned());
        (parent, name)
    };
    let mut writer = Writer {
        watch,
        rule,
        builder: tar::Builder::new(Vec::new()),
    };
    for relative in outermost(relatives) {
        let host = if relative.is_empty() {
            rule.path.clone()
        } else {
            rule.path.join(&relative)
        };
        let name = match (&rename, relative.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, true) => String::new(),
            (None, false) => relative.clone(),
        };
        writer.add(&host, &name)?;
    }
    let tar = writer.builder.into_inner().map_err(read_error("tar"))?;
    Ok(SyncBatch { container_dir, tar })
}

/// The paths without those below another one of the set (a directory sent whole covers them).
/// Ancestors are looked up, not compared pairwise: a checkout's batch holds thousands of paths.
fn outermost(relatives: &BTreeSet<String>) -> Vec<String> {
    if relatives.contains("") {
        return vec![String::new()];
    }
    relatives
        .iter()
        .filter(|r| {
            let mut ancestors = r.match_indices('/').map(|(i, _)| &r[..i]);
            !ancestors.any(|a| relatives.contains(a))
        })
        .cloned()
        .collect()
}

fn read_error(path: &str) -> impl FnOnce(std::io::Error) -> SyncTarError + '_ {
    move |source| SyncTarError::Read {
        path: path.to_string(),
        source,
    }
}

struct Writer<'a> {
    watch: &'a ServiceWatch,
    rule: &'a Rule,
    builder: tar::Builder<Vec<u8>>,
}

impl Writer<'_> {
    /// `host` as tar entry `name` (`""`: the sync directory itself, whose content goes in).
    fn add(&mut self, host: &Path, name: &str) -> Result<(), SyncTarError> {
        let shown = host.display().to_string();
        let meta = match std::fs::symlink_metadata(host) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.delete(name),
            Err(e) => return Err(read_error(&shown)(e)),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            if !name.is_empty() {
                self.append(&meta, tar::EntryType::Directory, name, &[][..])?;
            }
            return self.add_children(host, name);
        }
        if kind.is_symlink() {
            let link = std::fs::read_link(host).map_err(read_error(&shown))?;
            let mut header = header_of(&meta, tar::EntryType::Symlink);
            self.builder
                .append_link(&mut header, name, &link)
                .map_err(read_error(&shown))?;
            return Ok(());
        }
        if !kind.is_file() {
            // Sockets, FIFOs, devices: nothing a container could use from the host.
            return Ok(());
        }
        match std::fs::File::open(host) {
            Ok(file) => self.append(&meta, tar::EntryType::Regular, name, file),
            // Removed between the look and the read: it is a deletion now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.delete(name),
            Err(e) => Err(read_error(&shown)(e)),
        }
    }

    fn add_children(&mut self, dir: &Path, name: &str) -> Result<(), SyncTarError> {
        let shown = dir.display().to_string();
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_error(&shown))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        children.sort();
        for child in children {
            let host = dir.join(&child);
            // The rule's filters (ignore, include, noise, .dockerignore) apply inside new
            // directories as to single changes.
            if !self
                .watch
                .triggers(&host)
                .iter()
                .any(|t| std::ptr::eq(&self.watch.rules[t.rule], self.rule))
            {
                continue;
            }
            let child = child.to_string_lossy();
            let entry = if name.is_empty() {
                child.into_owned()
            } else {
                format!("{name}/{child}")
            };
            self.add(&host, &entry)?;
        }
        Ok(())
    }

    fn append(
        &mut self,
        meta: &std::fs::Metadata,
        kind: tar::EntryType,
        name: &str,
        data: impl std::io::Read,
    ) -> Result<(), SyncTarError> {
        let mut header = header_of(meta, kind);
        self.builder
            .append_data(&mut header, name, data)
            .map_err(read_error(name))?;
        Ok(())
    }

    fn delete(&mut self, name: &str) -> Result<(), SyncTarError> {
        if name.is_empty() {
            // The whole watched directory is gone; its container copy stays (docker compose
            // never removes a rule's target itself).
            return Ok(());
        }
        let (parent, leaf) = match name.rsplit_once('/') {
            Some((p, l)) => (format!("{p}/"), l),
            None => (String::new(), name),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o600);
        self.builder
            .append_data(&mut header, format!("{parent}.wh.{leaf}"), &[][..])
            .map_err(read_error(name))?;
        Ok(())
    }
}

fn header_of(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.permissions().mode() & 0o7777);
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_size(if kind == tar::EntryType::Regular {
        meta.len()
    } else {
        0
    });
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::{Project, Service};

    fn watch_of(dir: &Path, rules: serde_json::Value) -> ServiceWatch {
        let project = Project {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let service: Service =
            serde_json::from_value(serde_json::json!({"image": "x", "develop": {"watch": rules}}))
                .unwrap();
        crate::compose::watch::rules_of(&project, "web", &service, None)
            .unwrap()
            .unwrap()
    }

    fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let kind = e.header().entry_type();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                let mut body = String::new();
                std::io::Read::read_to_string(&mut e, &mut body).unwrap();
                (path, kind, if link.is_empty() { body } else { link })
            })
            .collect()
    }

    #[test]
    fn a_batch_carries_changes_deletions_new_dirs_and_links_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("new/.git")).unwrap();
        std::fs::write(src.join("a.txt"), "A").unwrap();
        std::fs::write(src.join("new/b.txt"), "B").unwrap();
        std::fs::write(src.join("new/.git/HEAD"), "ref").unwrap();
        std::fs::write(src.join("new/skip.log"), "no").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("leak")).unwrap();
        let watch = watch_of(
            dir.path(),
            serde_json::json!([{"action": "sync", "path": "src", "target": "/app",
                                "ignore": "**/*.log"}]),
        );
        let changed: BTreeSet<String> = ["a.txt", "gone.txt", "new", "new/b.txt", "leak", "d/x"]
            .into_iter()
            .map(String::from)
            .collect();
        let batch = batch_for(&watch, 0, &changed).unwrap();
        assert_eq!(batch.container_dir, "/app");
        let got = entries(&batch.tar);
        let want = vec![
            (
                "a.txt".to_string(),
                tar::EntryType::Regular,
                "A".to_string(),
            ),
            ("d/.wh.x".into(), tar::EntryType::Regular, String::new()),
            (
                ".wh.gone.txt".into(),
                tar::EntryType::Regular,
                String::new(),
            ),
            ("leak".into(), tar::EntryType::Symlink, "/etc/shadow".into()),
            ("new".into(), tar::EntryType::Directory, String::new()),
            ("new/b.txt".into(), tar::EntryType::Regular, "B".into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_rule_on_one_file_writes_under_the_target_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.conf"), "conf").unwrap();
        let watch = watch_of(
            dir.path(),
            serde_json::json!([{"action": "sync", "path": "app.conf", "target": "/etc/x.conf"}]),
        );
        let batch = batch_for(&watch, 0, &BTreeSet::from([String::new()])).unwrap();
        assert_eq!(batch.container_dir, "/etc");
        assert_eq!(
            entries(&batch.tar),
            vec![("x.conf".into(), tar::EntryType::Regular, "conf".into())]
        );
    }
}
