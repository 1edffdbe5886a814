//! `builder prune` (`POST /build/prune`): the build cache's entries go, and with them the
//! intermediate images they name — never an image with a tag, a final build result, or one a
//! container was created from. Shared layers stay while any image uses them (the image store's
//! removal only deletes what no record names).

use serde::Serialize;

use super::cache::{BuildCache, CacheError};
use crate::engine::Engine;

/// Docker's answer to `POST /build/prune`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct BuildPruneReport {
    pub caches_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// Removes every cache entry and the intermediate images only they kept (blocking).
pub fn prune(
    engine: &Engine,
    in_use: &dyn Fn(&str) -> bool,
) -> Result<BuildPruneReport, CacheError> {
    let cache = BuildCache::open(&engine.roots.data_root)?;
    let mut report = BuildPruneReport::default();
    let mut images: Vec<String> = Vec::new();
    for entry in cache.entries() {
        cache.remove(&entry.key)?;
        report.caches_deleted.push(entry.key);
        if !images.contains(&entry.image) {
            images.push(entry.image);
        }
    }
    for id in images {
        let Some(rec) = engine.images.resolve(&id) else {
            continue;
        };
        if !rec.intermediate || !rec.repo_tags.is_empty() || in_use(&rec.id) {
            continue;
        }
        if engine.images.remove(&rec.id, false, in_use).is_ok() {
            report.space_reclaimed += rec.size.max(0) as u64;
        }
    }
    Ok(report)
}
