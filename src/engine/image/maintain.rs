//! `docker image history` and `docker image prune`, and the sweep of blobs and snapshots no image
//! references any more.

use std::collections::HashMap;

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use super::{chain_ids, ImageError, ImageRecord, ImageStore, Result};

/// One row of `GET /images/{name}/history`, newest first, as Docker reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Option<Vec<String>>,
    pub size: i64,
    pub comment: String,
}

/// What `prune` removed.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    /// `{"Untagged": …}` / `{"Deleted": …}` objects, as `DELETE /images/{name}` answers.
    pub images_deleted: Option<Vec<serde_json::Value>>,
    pub space_reclaimed: u64,
}

/// Which images `prune` takes: dangling ones (no tag) or, with `all`, every one; never one a
/// container uses, nor a build step's (the build cache names it; the builder's prune takes it).
pub fn prune_candidates(
    images: &[ImageRecord],
    all: bool,
    in_use: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    images
        .iter()
        .filter(|r| all || r.repo_tags.is_empty())
        .filter(|r| !r.intermediate)
        .filter(|r| !in_use(&r.id))
        .map(|r| r.id.clone())
        .collect()
}

/// History rows from an image config: layer sizes go to the entries that made a layer (Docker
/// marks the others `empty_layer`), the newest row carries the image ID and tags.
pub fn history_rows(rec: &ImageRecord, config: &ImageConfiguration) -> Vec<HistoryItem> {
    let mut sizes = rec.layers.iter().map(|l| l.unpacked_size as i64);
    let mut rows: Vec<HistoryItem> = config
        .history()
        .iter()
        .flatten()
        .map(|h| HistoryItem {
            id: "<missing>".into(),
            created: h
                .created()
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|t| t.timestamp())
                .unwrap_or(0),
            created_by: h.created_by().clone().unwrap_or_default(),
            tags: None,
            size: if h.empty_layer().unwrap_or(false) {
                0
            } else {
                sizes.next().unwrap_or(0)
            },
            comment: h.comment().clone().unwrap_or_default(),
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = rec.id.clone();
        top.tags = Some(rec.repo_tags.clone());
    }
    rows
}

impl ImageStore {
    /// `docker history`: read from the image's config in the content store.
    pub fn history(&self, rec: &ImageRecord) -> Result<Vec<HistoryItem>> {
        let (config, _) = self.image_config(rec)?;
        Ok(history_rows(rec, &config))
    }

    /// `docker image prune [-a]` (blocking): removes dangling (or, with `all`, unused) images and
    /// the blobs and snapshots only they used, and reports the bytes freed on the data root.
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport> {
        let before = self.list();
        let candidates = prune_candidates(&before, all, in_use);
        let bytes_before = self.stored_bytes(&before);
        let mut deleted = Vec::new();
        for id in candidates {
            match self.remove(&id, true, in_use) {
                Ok(lines) => deleted.extend(lines),
                // Removed meanwhile by someone else: nothing to prune.
                Err(ImageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.sweep();
        let reclaimed = bytes_before.saturating_sub(self.stored_bytes(&before));
        let objects: Vec<serde_json::Value> = deleted
            .iter()
            .filter_map(|l| l.split_once(": "))
            .map(|(kind, what)| serde_json::json!({ kind: what }))
            .collect();
        Ok(PruneReport {
            images_deleted: (!objects.is_empty()).then_some(objects),
            space_reclaimed: reclaimed,
        })
    }

    /// Bytes of blobs in the content store plus the unpacked size of the snapshots (known from
    /// the `images` that used them) still present.
    fn stored_bytes(&self, images: &[ImageRecord]) -> u64 {
        let blobs: u64 = self
            .content
            .list()
            .unwrap_or_default()
            .iter()
            .filter_map(|d| self.content.blob_path(d).ok())
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let mut snaps: HashMap<String, u64> = HashMap::new();
        for rec in images {
            for (chain, l) in chain_ids(&rec.diff_ids).into_iter().zip(&rec.layers) {
                snaps.insert(chain, l.unpacked_size);
            }
        }
        let unpacked: u64 = snaps
            .iter()
            .filter(|(c, _)| self.snapshots.exists(c))
            .map(|(_, s)| *s)
            .sum();
        blobs + unpacked
    }

    /// Removes blobs and snapshots no image references. Skipped while a pull or load holds the
    /// store's lock: it may be assembling an image whose record does not exist yet.
    pub fn sweep(&self) -> usize {
        let Ok(_guard) = self.write_lock.try_write() else {
            return 0;
        };
        let (blobs, snaps) = self.referenced_now();
        let mut removed = 0;
        for b in self.content.list().unwrap_or_default() {
            if !blobs.contains(&b) && self.content.remove(&b).is_ok() {
                removed += 1;
            }
        }
        for s in self.snapshots.list() {
            if !snaps.contains(&s) && self.snapshots.remove(&s).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::ImageContainerConfig;

    fn rec(id: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![],
            config: ImageContainerConfig::default(),
            created: String::new(),
            architecture: "amd64".into(),
            os: "linux".into(),
            size: 0,
            diff_ids: vec![],
            manifest_digest: String::new(),
            layers: vec![],
            last_tag_time: None,
            intermediate: false,
        }
    }

    #[test]
    fn prune_takes_dangling_or_all_unused_never_in_use() {
        let images = [rec("a", &[]), rec("b", &["x:1"]), rec("c", &[])];
        let used = |id: &str| id == "c";
        assert_eq!(prune_candidates(&images, false, &used), vec!["a"]);
        assert_eq!(prune_candidates(&images, true, &used), vec!["a", "b"]);
    }

    #[test]
    fn history_is_newest_first_with_sizes_on_layer_entries() {
        let mut r = rec("sha256:top", &["x:1"]);
        r.layers = vec![super::super::LayerRecord {
            digest: String::new(),
            media_type: String::new(),
            size: 0,
            diff_id: String::new(),
            unpacked_size: 42,
        }];
        let config: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs"},
                {"created": "2024-01-02T00:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}
            ]
        }))
        .unwrap();
        let rows = history_rows(&r, &config);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "sha256:top");
        assert_eq!(rows[0].created_by, "CMD [\"sh\"]");
        assert_eq!(rows[0].size, 0);
        assert_eq!(rows[1].id, "<missing>");
        assert_eq!(rows[1].size, 42);
        assert_eq!(rows[1].created, 1704067200);
    }
}
