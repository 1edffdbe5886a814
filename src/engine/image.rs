//! The image store: names → image records (config digest, layers), pull, import and removal.
//!
//! Blobs (manifests, configs, layers) live in the content store, unpacked layers in the snapshot
//! store keyed by ChainID, and one JSON record per image in `images/<id-hex>.json` (written with
//! `write_atomic`). Names are Docker's familiar forms (`busybox:latest`); every lookup normalises
//! both sides, so `busybox` and `docker.io/library/busybox:latest` are the same image.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder, SCHEMA_VERSION,
};
use oci_spec::OciSpecError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::content::{sha256_digest, ContentError, ContentStore};
use super::paths::{write_atomic, EngineRoots};
use super::reference::{is_sha256_hex, is_valid_digest, ImageReference, ReferenceError};
use super::registry::RegistryError;
use super::snapshot::{chain_ids, SnapshotError, SnapshotStore};
use super::unpack::{unpack_layer, UnpackError, UnpackLimits, UnpackStats};
use super::wire::{
    EmptyObject, ImageContainerConfig, ImageInspect, ImageMetadata, ImageRootFs, ImageSummary,
    ProgressMessage,
};

mod archive;
mod commit;
mod inflight;
pub mod layer_writer;
mod layers;
mod pull;
mod pull_context;
pub use commit::{CommitRequest, DockerConfigExtensions};
pub use maintain::{HistoryItem, PruneReport};
mod maintain;

/// An image config is small; refuse anything absurd before parsing it.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Docker refuses images deeper than this too; overlay mount options must fit in a page.
const MAX_LAYERS: usize = 125;
/// Kept free on the data root beyond what a pull takes: the engine's records and the
/// containers' writable layers must still fit.
pub const FREE_SPACE_MARGIN: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("pulling {image}: {source}")]
    Content {
        image: String,
        #[source]
        source: ContentError,
    },
    #[error("layer {layer} of {image}: {source}")]
    Unpack {
        image: String,
        layer: String,
        #[source]
        source: UnpackError,
    },
    #[error("layer {layer} of {image}: uncompressed digest {actual} does not match the config's diff_id {expected}; the image is corrupt")]
    DiffIdMismatch {
        image: String,
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("invalid image {image}: {detail}")]
    InvalidImage { image: String, detail: String },
    #[error(
        "not enough free space on {} for {image}: {detail}; remove images you no longer \
         need (docker image rm) or give berth a data root with more room",
        path.display()
    )]
    NoSpace {
        image: String,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot build the OCI {what} of {image}: {source}")]
    OciBuild {
        what: &'static str,
        image: String,
        #[source]
        source: OciSpecError,
    },
    #[error("snapshot store: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("making a layer of {}: {source}", dir.display())]
    Layer {
        dir: PathBuf,
        #[source]
        source: layer_writer::LayerError,
    },
    #[error("image store i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl ImageError {
    /// True when a layer tried to escape its snapshot root.
    pub fn is_hostile_layer(&self) -> bool {
        matches!(
            self,
            ImageError::Unpack {
                source: UnpackError::Hostile { .. },
                ..
            }
        )
    }
}

type Result<T> = std::result::Result<T, ImageError>;

/// One layer of an image as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    /// Digest of the blob as distributed (compressed or not).
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of file content once unpacked (what `docker images` counts).
    #[serde(default)]
    pub unpacked_size: u64,
}

/// A stored image: what containers are created from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Familiar names (`busybox:latest`, `127.0.0.1:5000/app:1`).
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` in familiar form.
    pub repo_digests: Vec<String>,
    pub config: ImageContainerConfig,
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub size: i64,
    pub diff_ids: Vec<String>,
    /// Digest of the (platform) manifest stored in the content store.
    #[serde(default)]
    pub manifest_digest: String,
    #[serde(default)]
    pub layers: Vec<LayerRecord>,
    /// When a name was last given to the image (pull, import, tag), RFC 3339: Docker's
    /// `Metadata.LastTagTime`, which compose's `daily`/`weekly`/`every_…` pull policies read.
    /// Records written before it existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tag_time: Option<String>,
    /// A build step's image (Docker's intermediate images): resolvable by ID, hidden from
    /// `docker images` unless `all`, never taken by `image prune` (the builder's prune owns it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermediate: bool,
}

/// The container defaults of an image config (`config` in OCI and Docker configs alike) in the
/// shape the Docker API reports them.
fn container_config(config: Option<&Config>) -> ImageContainerConfig {
    let Some(c) = config else {
        return ImageContainerConfig::default();
    };
    // oci-spec reads Go's `map[string]struct{}` sets as lists: the API spells them as maps.
    let set = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|keys| keys.iter().map(|k| (k.clone(), EmptyObject {})).collect())
    };
    ImageContainerConfig {
        user: c.user().clone().unwrap_or_default(),
        env: c.env().clone(),
        cmd: c.cmd().clone(),
        entrypoint: c.entrypoint().clone(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        exposed_ports: set(c.exposed_ports()),
        volumes: set(c.volumes()),
        // oci-spec keeps labels in a HashMap; Docker writes them sorted by key, so sorting
        // restores the document's order.
        labels: c.labels().as_ref().map(|l| {
            let mut l: Vec<(String, String)> =
                l.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            l.sort();
            l.into_iter().collect()
        }),
        stop_signal: c.stop_signal().clone(),
        // Docker's extension, absent from oci-spec: read from the raw document at pull.
        healthcheck: None,
    }
}

pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    snapshots: SnapshotStore,
    records: RwLock<HashMap<String, ImageRecord>>,
    /// Pulls share it; a load, and the sweeps of removal and prune, take it alone: a pull or
    /// load assembles blobs and snapshots no image record names yet, which a sweep would take
    /// for garbage.
    write_lock: tokio::sync::RwLock<()>,
    /// Which blobs and snapshots the pulls in progress work on.
    inflight: inflight::InFlight,
    /// Blobs and snapshots committed for an image not recorded yet (`commit.rs`), with how
    /// many commits count on each: the sweeps leave them alone.
    fresh: std::sync::Mutex<HashMap<String, usize>>,
    limits: UnpackLimits,
}

/// A layer a pull still has to fetch or unpack, as its manifest describes it.
#[derive(Debug, Clone, Copy)]
pub struct LayerNeed {
    /// The blob's size from the manifest.
    pub size: u64,
    /// The blob is in the content store already: nothing to download.
    pub have_blob: bool,
}

/// Bytes a pull is expected to take on the data root: each missing blob as downloaded, its
/// unpacked content taken to be at least as large as the blob (compression only shrinks), and
/// the margin. This refuses what cannot fit before anything is fetched; a layer that expands
/// further is stopped while unpacking, at the free space left.
pub fn pull_space_needed(layers: &[LayerNeed]) -> u64 {
    layers
        .iter()
        .map(|l| {
            let download = if l.have_blob { 0 } else { l.size };
            download.saturating_add(l.size)
        })
        .fold(FREE_SPACE_MARGIN, u64::saturating_add)
}

/// Bytes an unprivileged writer could still put on the file system holding `path`.
fn free_space(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// One layer to unpack into a prepared snapshot directory (blocking; pulls run it on a
/// blocking thread).
#[derive(Clone)]
struct UnpackJob {
    image: String,
    /// Short digest, for errors.
    layer: String,
    limits: UnpackLimits,
    data_root: PathBuf,
}

impl UnpackJob {
    /// A layer may expand far beyond its blob (a gzip bomb): it gets the free space of the
    /// data root, less the margin, and no more; running out of it is a free-space error.
    fn run(mut self, blob: impl Read, dest: &Path) -> Result<UnpackStats> {
        let room = free_space(dest)
            .map_err(io_err(dest))?
            .saturating_sub(FREE_SPACE_MARGIN);
        let capped_by_room = room < self.limits.max_total_bytes;
        self.limits.max_total_bytes = self.limits.max_total_bytes.min(room);
        unpack_layer(blob, dest, &self.limits).map_err(|source| match source {
            UnpackError::ContentLimit { limit } if capped_by_room => ImageError::NoSpace {
                image: self.image.clone(),
                path: self.data_root.clone(),
                detail: format!(
                    "layer {} unpacks to more than the {limit} bytes free (less a margin of \
                     {FREE_SPACE_MARGIN})",
                    self.layer
                ),
            },
            source => ImageError::Unpack {
                image: self.image.clone(),
                layer: self.layer.clone(),
                source,
            },
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn status_msg(status: impl Into<String>, id: Option<&str>) -> ProgressMessage {
    ProgressMessage {
        status: Some(status.into()),
        id: id.map(str::to_string),
        ..Default::default()
    }
}

fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

fn same_name(a: &str, b: &str) -> bool {
    match (ImageReference::parse(a), ImageReference::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The blob of an imported tarball.
struct ImportedLayer {
    digest: String,
    size: u64,
    media_type: MediaType,
}

/// What a failed pull or import must undo.
#[derive(Default)]
struct Rollback {
    blobs: Vec<String>,
    snapshots: Vec<String>,
}

impl Rollback {
    /// Removes what the failed pull or import created, except what an image record names or
    /// another pull in progress counts on.
    fn undo(self, store: &ImageStore) {
        let (used_blobs, used_snaps) = store.referenced_now();
        for b in self.blobs.iter().filter(|b| !used_blobs.contains(*b)) {
            store.inflight.remove_unless_shared(b, || {
                let _ = store.content.remove(b);
            });
        }
        for s in self.snapshots.iter().filter(|s| !used_snaps.contains(*s)) {
            store.inflight.remove_unless_shared(s, || {
                let _ = store.snapshots.remove(s);
            });
        }
    }
}

impl ImageStore {
    pub fn open(roots: &EngineRoots) -> Result<Self> {
        let root = roots.images_dir();
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        let content =
            ContentStore::open(roots.content_dir()).map_err(|source| ImageError::Content {
                image: "(store)".into(),
                source,
            })?;
        let snapshots = SnapshotStore::open(roots.snapshots_dir())?;
        // Unpacked layers hold setuid binaries: no host user may traverse into them
        // (CVE-2021-41091).
        for dir in [roots.content_dir(), roots.snapshots_dir(), root.clone()] {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_err(&dir))?;
        }
        let mut records = HashMap::new();
        for entry in std::fs::read_dir(&root).map_err(io_err(&root))? {
            let entry = entry.map_err(io_err(&root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_sha256_hex(hex) {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(io_err(&entry.path()))?;
            let rec: ImageRecord = serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Other(format!(
                    "image record {} is unreadable: {e}; remove it to forget the image",
                    entry.path().display()
                ))
            })?;
            records.insert(rec.id.clone(), rec);
        }
        // A crash between committing a layer and writing the image record leaves blobs and
        // snapshots no image names: sweep them while no pull can be running.
        let (used_blobs, used_snaps) = referenced(records.values());
        for b in content.list().unwrap_or_default() {
            if !used_blobs.contains(&b) {
                let _ = content.remove(&b);
            }
        }
        for s in snapshots.list() {
            if !used_snaps.contains(&s) {
                let _ = snapshots.remove(&s);
            }
        }
        Ok(ImageStore {
            root,
            content,
            snapshots,
            records: RwLock::new(records),
            write_lock: tokio::sync::RwLock::new(()),
            inflight: inflight::InFlight::default(),
            fresh: std::sync::Mutex::default(),
            limits: UnpackLimits::default(),
        })
    }

    /// Every blob and snapshot an image record or a commit in progress uses.
    fn referenced_now(&self) -> (HashSet<String>, HashSet<String>) {
        let (mut blobs, mut snaps) = referenced(self.read_records().values());
        self.add_fresh(&mut blobs, &mut snaps);
        (blobs, snaps)
    }

    fn add_fresh(&self, blobs: &mut HashSet<String>, snaps: &mut HashSet<String>) {
        for key in self.fresh.lock().unwrap_or_else(|p| p.into_inner()).keys() {
            // Keys are blob digests and chain ids alike; each set only asks about its own.
            blobs.insert(key.clone());
            snaps.insert(key.clone());
        }
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root
            .join(format!("{}.json", id.strip_prefix("sha256:").unwrap_or(id)))
    }

    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ImageRecord>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_records(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ImageRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, rec: &ImageRecord) -> Result<()> {
        let path = self.record_path(&rec.id);
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| ImageError::Other(e.to_string()))?;
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// By ID (full or hex prefix), `name:tag` (default tag `latest`) or `name@digest`.
    pub fn resolve(&self, name_or_id: &str) -> Option<ImageRecord> {
        let records = self.read_records();
        let hex = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        let looks_like_id = !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if looks_like_id && (hex.len() == 64 || name_or_id.starts_with("sha256:")) {
            return Self::by_id_prefix(&records, hex);
        }
        if let Ok(r) = ImageReference::parse(name_or_id) {
            let found = records.values().find(|rec| {
                if r.digest.is_some() {
                    rec.repo_digests.iter().any(|d| {
                        ImageReference::parse(d).is_ok_and(|x| {
                            x.registry == r.registry
                                && x.repository == r.repository
                                && x.digest == r.digest
                        })
                    })
                } else {
                    rec.repo_tags.iter().any(|t| same_name(t, name_or_id))
                }
            });
            if let Some(rec) = found {
                return Some(rec.clone());
            }
        }
        if looks_like_id {
            return Self::by_id_prefix(&records, hex);
        }
        None
    }

    fn by_id_prefix(records: &HashMap<String, ImageRecord>, hex: &str) -> Option<ImageRecord> {
        let mut it = records
            .values()
            .filter(|r| r.id["sha256:".len()..].starts_with(hex));
        let first = it.next()?;
        if it.next().is_some() {
            return None; // ambiguous
        }
        Some(first.clone())
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let mut v: Vec<ImageRecord> = self.read_records().values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        v
    }

    /// Overlay lower directories for the image, topmost layer first. A snapshot dropped at
    /// start because a machine crash may have lost part of it is unpacked again from its blob
    /// here (blocking), the first time the image is used.
    pub fn lower_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        let chains = chain_ids(&image.diff_ids);
        for (i, chain) in chains.iter().enumerate().rev() {
            let p = self.snapshots.path(chain)?;
            if !p.is_dir() {
                if let Some(layer) = image
                    .layers
                    .get(i)
                    .filter(|l| l.diff_id == image.diff_ids[i] && self.content.contains(&l.digest))
                {
                    self.unpack_into_snapshot(layer, chain)?;
                    dirs.push(p);
                    continue;
                }
                return Err(ImageError::InvalidImage {
                    image: image.id.clone(),
                    detail: format!(
                        "snapshot {} is missing; pull or import the image again",
                        short(chain)
                    ),
                });
            }
            dirs.push(p);
        }
        Ok(dirs)
    }

    /// Makes every snapshot committed so far durable (one `syncfs`), so that a later machine
    /// crash does not cost their re-unpack (a clean engine exit).
    pub fn settle_snapshots(&self) -> Result<()> {
        self.snapshots.settle().map_err(ImageError::from)
    }

    /// The content store (for tests and GC).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The data root, as named in errors about its free space.
    fn data_root(&self) -> PathBuf {
        self.root.parent().unwrap_or(&self.root).to_path_buf()
    }

    /// Refuses a pull whose layers would not fit the free space of the data root.
    fn check_room(&self, image: &str, todo: &[layers::LayerTask<'_>]) -> Result<()> {
        let needs: Vec<LayerNeed> = todo
            .iter()
            .map(|t| LayerNeed {
                size: t.desc.size(),
                have_blob: self.content.contains(t.desc.digest().as_ref()),
            })
            .collect();
        let need = pull_space_needed(&needs);
        let free = free_space(&self.root).map_err(io_err(&self.root))?;
        if need > free {
            return Err(ImageError::NoSpace {
                image: image.to_string(),
                path: self.data_root(),
                detail: format!(
                    "{} layers to fetch and unpack need about {need} bytes with a margin of \
                     {FREE_SPACE_MARGIN}, and {free} are free",
                    needs.len()
                ),
            });
        }
        Ok(())
    }

    /// The blocking unpacker for one layer of `image`, with the store's limits.
    fn unpack_job(&self, image: &str, digest: &str) -> UnpackJob {
        UnpackJob {
            image: image.to_string(),
            layer: short(digest),
            limits: self.limits.clone(),
            data_root: self.data_root(),
        }
    }

    /// Unpacked size of a layer another image already unpacked (its snapshot is shared).
    fn known_unpacked_size(&self, diff_id: &str) -> u64 {
        self.read_records()
            .values()
            .flat_map(|r| r.layers.iter())
            .find(|l| l.diff_id == diff_id && l.unpacked_size > 0)
            .map(|l| l.unpacked_size)
            .unwrap_or(0)
    }

    /// Stores `rec`, moving `tag` to it from whichever image had it.
    fn save_with_tag(&self, mut rec: ImageRecord, tag: Option<&str>) -> Result<ImageRecord> {
        // Every pull counts, even one that finds the image up to date (and a pull by digest):
        // a refresh policy asks how long ago the image was last fetched, not last changed.
        rec.last_tag_time =
            Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        let mut records = self.write_records();
        if let Some(t) = tag {
            for other in records.values_mut() {
                if other.id != rec.id && other.repo_tags.iter().any(|x| same_name(x, t)) {
                    other.repo_tags.retain(|x| !same_name(x, t));
                    let o = other.clone();
                    self.persist(&o)?;
                }
            }
            if !rec.repo_tags.iter().any(|x| same_name(x, t)) {
                rec.repo_tags.push(t.to_string());
            }
        }
        self.persist(&rec)?;
        records.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    /// `docker import`: a root filesystem tarball (plain or gzip) becomes a one-layer image with
    /// an OCI config (linux/amd64, no command), stored in the content store like a pulled one.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn import(&self, tar: impl Read, repo_tag: Option<&str>) -> Result<ImageRecord> {
        let tag = match repo_tag {
            Some(t) => {
                let r = ImageReference::parse(t)?;
                if r.digest.is_some() {
                    return Err(ReferenceError::Invalid {
                        reference: t.to_string(),
                        reason: "an import is tagged, not addressed by digest".into(),
                    }
                    .into());
                }
                Some(r.familiar())
            }
            None => None,
        };
        let mut rollback = Rollback::default();
        match self.import_inner(tar, tag.as_deref(), &mut rollback) {
            Ok(r) => Ok(r),
            Err(e) => {
                rollback.undo(self);
                Err(e)
            }
        }
    }

    fn import_inner(
        &self,
        tar: impl Read,
        tag: Option<&str>,
        rollback: &mut Rollback,
    ) -> Result<ImageRecord> {
        let image = tag.unwrap_or("imported image").to_string();
        let layer = self.ingest_import(tar, &image, rollback)?;
        let (diff_id, unpacked) = self.unpack_import(&layer.digest, &image, rollback)?;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let (config_digest, manifest_digest) =
            self.write_import_documents(&image, &created, &layer, &diff_id, rollback)?;
        let rec = ImageRecord {
            id: config_digest,
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: ImageContainerConfig::default(),
            created,
            architecture: "amd64".into(),
            os: "linux".into(),
            size: unpacked as i64,
            diff_ids: vec![diff_id.clone()],
            manifest_digest,
            layers: vec![LayerRecord {
                digest: layer.digest,
                media_type: layer.media_type.to_string(),
                size: layer.size,
                diff_id,
                unpacked_size: unpacked,
            }],
            last_tag_time: None,
            intermediate: false,
        };
        let rec = self.save_with_tag(rec, tag)?;
        *rollback = Rollback::default();
        Ok(rec)
    }

    /// Stores the imported tarball as it came (plain or gzip) as the image's one layer blob.
    fn ingest_import(
        &self,
        mut tar: impl Read,
        image: &str,
        rollback: &mut Rollback,
    ) -> Result<ImportedLayer> {
        let content_err = |source| ImageError::Content {
            image: image.to_string(),
            source,
        };
        let mut writer = self.content.writer_unknown().map_err(content_err)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        loop {
            let n = tar.read(&mut buf).map_err(|e| ImageError::Io {
                path: PathBuf::from("(import stream)"),
                source: e,
            })?;
            if n == 0 {
                break;
            }
            if head.len() < 2 {
                head.extend_from_slice(&buf[..n.min(2)]);
            }
            writer.write_chunk(&buf[..n]).map_err(content_err)?;
        }
        let size = writer.written();
        let existed = self.content.contains(&writer.current_digest());
        let digest = writer.commit().map_err(content_err)?;
        if !existed {
            rollback.blobs.push(digest.clone());
        }
        let media_type = if head.starts_with(&[0x1f, 0x8b]) {
            MediaType::ImageLayerGzip
        } else {
            MediaType::ImageLayer
        };
        Ok(ImportedLayer {
            digest,
            size,
            media_type,
        })
    }

    /// Unpacks the imported layer; returns its DiffID and unpacked bytes. The chain id is the
    /// DiffID, known only after unpacking: the snapshot is built under a temporary name first.
    fn unpack_import(
        &self,
        digest: &str,
        image: &str,
        rollback: &mut Rollback,
    ) -> Result<(String, u64)> {
        let blob = self
            .content
            .open_blob(digest)
            .map_err(|source| ImageError::Content {
                image: image.to_string(),
                source,
            })?;
        let tmp = self.snapshots.prepare(digest)?;
        let stats = match self.unpack_job(image, digest).run(blob, &tmp) {
            Ok(s) => s,
            Err(e) => {
                self.snapshots.discard(&tmp);
                return Err(e);
            }
        };
        let diff_id = stats.diff_id;
        let snapshot_existed = self.snapshots.exists(&diff_id);
        self.snapshots.commit(&tmp, &diff_id)?;
        if !snapshot_existed {
            rollback.snapshots.push(diff_id.clone());
        }
        Ok((diff_id, stats.bytes))
    }

    /// Writes the OCI config (linux/amd64, no command, as `docker import` leaves it) and the
    /// manifest of an imported layer; returns their digests.
    fn write_import_documents(
        &self,
        image: &str,
        created: &str,
        layer: &ImportedLayer,
        diff_id: &str,
        rollback: &mut Rollback,
    ) -> Result<(String, String)> {
        let build_err = |what: &'static str| {
            let image = image.to_string();
            move |source| ImageError::OciBuild {
                what,
                image,
                source,
            }
        };
        let config = ImageConfigurationBuilder::default()
            .created(created.to_string())
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .build()
                    .map_err(build_err("config"))?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()
                    .map_err(build_err("rootfs"))?,
            )
            .history(vec![HistoryBuilder::default()
                .created(created.to_string())
                .created_by("berth import")
                .comment("Imported from tarball")
                .build()
                .map_err(build_err("history"))?])
            .build()
            .map_err(build_err("config"))?;
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::Other(e.to_string()))?;
        // The config carries a creation time, so it (and the manifest naming it) is always new
        // and belongs to this import's rollback.
        let config_digest = self.write_new_blob(image, &config_bytes, rollback)?;
        let digest = |d: &str| Digest::try_from(d).map_err(build_err("descriptor"));
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                digest(&config_digest)?,
            ))
            .layers(vec![Descriptor::new(
                layer.media_type.clone(),
                layer.size,
                digest(&layer.digest)?,
            )])
            .build()
            .map_err(build_err("manifest"))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        let manifest_digest = self.write_new_blob(image, &manifest_bytes, rollback)?;
        Ok((config_digest, manifest_digest))
    }

    fn write_new_blob(&self, image: &str, bytes: &[u8], rollback: &mut Rollback) -> Result<String> {
        let digest =
            self.content
                .write_blob(bytes, None)
                .map_err(|source| ImageError::Content {
                    image: image.to_string(),
                    source,
                })?;
        rollback.blobs.push(digest.clone());
        Ok(digest)
    }

    /// `docker tag`: adds `new_tag` (moved from any other image) to the image `name_or_id`.
    pub fn tag(&self, name_or_id: &str, new_tag: &str) -> Result<ImageRecord> {
        let r = ImageReference::parse(new_tag)?;
        if r.digest.is_some() {
            return Err(ReferenceError::Invalid {
                reference: new_tag.to_string(),
                reason: "a tag cannot contain a digest".into(),
            }
            .into());
        }
        let rec = self
            .resolve(name_or_id)
            .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))?;
        self.save_with_tag(rec, Some(&r.familiar()))
    }

    /// `docker rmi`: untags `name_or_id`, and deletes the image (record, then blobs and snapshots
    /// no other image uses) once no tag is left. Refuses images `in_use` by containers unless
    /// `force`, which then only untags. Returns Docker's lines: `Untagged: …`, `Deleted: …`.
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let rec = self
            .resolve(name_or_id)
            .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))?;
        let by_name = rec.repo_tags.iter().any(|t| same_name(t, name_or_id));
        let mut out = Vec::new();
        let mut records = self.write_records();
        let mut rec = records
            .get(&rec.id)
            .cloned()
            .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))?;
        if by_name && rec.repo_tags.len() > 1 {
            rec.repo_tags.retain(|t| {
                let drop = same_name(t, name_or_id);
                if drop {
                    out.push(format!("Untagged: {t}"));
                }
                !drop
            });
            self.persist(&rec)?;
            records.insert(rec.id.clone(), rec);
            return Ok(out);
        }
        if !by_name && rec.repo_tags.len() > 1 && !force {
            return Err(ImageError::Conflict(format!(
                "unable to delete {} (must be forced): image is referenced in multiple repositories",
                short(&rec.id)
            )));
        }
        if in_use(&rec.id) {
            if !force {
                // Docker's wording, by name and by ID.
                let what = if by_name {
                    format!("remove repository reference \"{name_or_id}\" (must force)")
                } else {
                    format!("delete {} (must be forced)", short(&rec.id))
                };
                return Err(ImageError::Conflict(format!(
                    "unable to {what} - image {} is used by a container; remove the container \
                     first",
                    short(&rec.id)
                )));
            }
            for t in rec.repo_tags.drain(..) {
                out.push(format!("Untagged: {t}"));
            }
            self.persist(&rec)?;
            records.insert(rec.id.clone(), rec);
            return Ok(out);
        }
        for t in &rec.repo_tags {
            out.push(format!("Untagged: {t}"));
        }
        for d in &rec.repo_digests {
            out.push(format!("Untagged: {d}"));
        }
        let path = self.record_path(&rec.id);
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        records.remove(&rec.id);
        out.push(format!("Deleted: {}", rec.id));

        self.remove_unused_content(&rec, &records)?;
        Ok(out)
    }

    /// Deletes the blobs and snapshots of the removed image `rec` that no image in `records`
    /// still uses.
    fn remove_unused_content(
        &self,
        rec: &ImageRecord,
        records: &HashMap<String, ImageRecord>,
    ) -> Result<()> {
        // A pull in progress may be about to reuse these blobs and snapshots without an image
        // record naming them yet: leave them to the sweep at the next start.
        let Ok(_pull_guard) = self.write_lock.try_write() else {
            return Ok(());
        };
        let (mut used_blobs, mut used_snaps) = referenced(records.values());
        self.add_fresh(&mut used_blobs, &mut used_snaps);
        let mut mine: Vec<String> = vec![rec.id.clone(), rec.manifest_digest.clone()];
        mine.extend(rec.layers.iter().map(|l| l.digest.clone()));
        mine.extend(
            rec.repo_digests
                .iter()
                .filter_map(|d| d.split_once('@').map(|(_, x)| x.to_string())),
        );
        for b in mine {
            if is_valid_digest(&b) && !used_blobs.contains(&b) {
                let _ = self.content.remove(&b);
            }
        }
        for s in chain_ids(&rec.diff_ids) {
            if !used_snaps.contains(&s) {
                self.snapshots.remove(&s)?;
            }
        }
        Ok(())
    }

    pub fn summary(&self, image: &ImageRecord) -> ImageSummary {
        ImageSummary {
            id: image.id.clone(),
            parent_id: String::new(),
            repo_tags: image.repo_tags.clone(),
            repo_digests: image.repo_digests.clone(),
            created: chrono::DateTime::parse_from_rfc3339(&image.created)
                .map(|t| t.timestamp())
                .unwrap_or(0),
            size: image.size,
            shared_size: -1,
            labels: image.config.labels.clone().unwrap_or_default(),
            containers: -1,
        }
    }

    pub fn inspect(&self, image: &ImageRecord) -> ImageInspect {
        ImageInspect {
            id: image.id.clone(),
            repo_tags: image.repo_tags.clone(),
            repo_digests: image.repo_digests.clone(),
            created: image.created.clone(),
            architecture: image.architecture.clone(),
            os: image.os.clone(),
            size: image.size,
            config: image.config.clone(),
            root_fs: ImageRootFs {
                kind: "layers".into(),
                layers: image.diff_ids.clone(),
            },
            metadata: ImageMetadata {
                // Docker reports Go's zero time for an image never tagged.
                last_tag_time: image
                    .last_tag_time
                    .clone()
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            },
        }
    }
}

/// Every blob digest and snapshot chain id the given images use.
fn referenced<'a>(
    records: impl Iterator<Item = &'a ImageRecord>,
) -> (HashSet<String>, HashSet<String>) {
    let mut blobs = HashSet::new();
    let mut snaps = HashSet::new();
    for rec in records {
        blobs.insert(rec.id.clone());
        blobs.insert(rec.manifest_digest.clone());
        for d in &rec.repo_digests {
            if let Some((_, dg)) = d.split_once('@') {
                blobs.insert(dg.to_string());
            }
        }
        for l in &rec.layers {
            blobs.insert(l.digest.clone());
        }
        snaps.extend(chain_ids(&rec.diff_ids));
    }
    (blobs, snaps)
}

fn progress_from(reference: &ImageReference) -> ProgressMessage {
    // Docker: {"status":"Pulling from library/busybox","id":"latest"}
    let id = reference
        .tag
        .clone()
        .or_else(|| reference.digest.clone())
        .unwrap_or_else(|| "latest".into());
    status_msg(format!("Pulling from {}", reference.repository), Some(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageConfiguration;

    #[test]
    fn space_needed_counts_downloads_unpacking_and_the_margin() {
        let mb = 1 << 20;
        let fetch = LayerNeed {
            size: 10 * mb,
            have_blob: false,
        };
        let stored = LayerNeed {
            size: 30 * mb,
            have_blob: true,
        };
        // Nothing to do: only the margin.
        assert_eq!(pull_space_needed(&[]), FREE_SPACE_MARGIN);
        // A missing blob is downloaded and unpacked; a stored one is only unpacked.
        assert_eq!(pull_space_needed(&[fetch]), 20 * mb + FREE_SPACE_MARGIN);
        assert_eq!(
            pull_space_needed(&[fetch, stored]),
            50 * mb + FREE_SPACE_MARGIN
        );
        // Sizes a manifest makes up cannot wrap around to a small number.
        let huge = LayerNeed {
            size: u64::MAX / 2 + 1,
            have_blob: false,
        };
        assert_eq!(pull_space_needed(&[huge, huge]), u64::MAX);
    }
    use std::process::Command;

    /// A config as `docker build` writes it: Docker-only keys, `null`s, Go sets and labels.
    #[test]
    fn docker_built_config_parses_into_the_api_config() {
        let diff = format!("sha256:{}", "a".repeat(64));
        let doc = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-05-01T10:00:00.123456789Z",
            "docker_version":"24.0.7","container":"0b1c","container_config":{{"Hostname":"0b1c","Cmd":["/bin/sh"]}},
            "config":{{"Hostname":"","Domainname":"","User":"nobody","AttachStdin":false,"Tty":false,
              "ExposedPorts":{{"80/tcp":{{}},"443/tcp":{{}}}},
              "Env":["PATH=/usr/local/sbin:/usr/bin"],"Cmd":["httpd-foreground"],"Healthcheck":{{"Test":["CMD","true"]}},
              "ArgsEscaped":true,"Image":"sha256:{hex}","Volumes":null,"WorkingDir":"/srv","Entrypoint":null,
              "OnBuild":null,"Labels":{{"z.last":"1","a.first":"2"}},"StopSignal":"SIGWINCH"}},
            "rootfs":{{"type":"layers","diff_ids":["{diff}"]}},
            "history":[{{"created":"2024-05-01T10:00:00Z","created_by":"/bin/sh -c #(nop) CMD","empty_layer":true}}]}}"#,
            hex = "b".repeat(64)
        );
        let config: ImageConfiguration = serde_json::from_str(&doc).unwrap();
        assert_eq!(config.architecture().to_string(), "amd64");
        assert_eq!(config.os().to_string(), "linux");
        assert_eq!(config.rootfs().diff_ids(), &vec![diff]);
        let c = container_config(config.config().as_ref());
        assert_eq!(c.user, "nobody");
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.cmd, Some(vec!["httpd-foreground".to_string()]));
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.volumes, None);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGWINCH"));
        let mut ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
        ports.sort();
        assert_eq!(ports, ["443/tcp", "80/tcp"]);
        let labels: Vec<(&String, &String)> = c.labels.as_ref().unwrap().iter().collect();
        assert_eq!(
            labels,
            [
                (&"a.first".to_string(), &"2".to_string()),
                (&"z.last".to_string(), &"1".to_string())
            ]
        );
        assert!(container_config(None).cmd.is_none());
    }

    /// Writes an OCI layout of exactly the blobs of `rec` and unpacks it with umoci; returns the
    /// bundle.
    fn umoci_unpack(store: &ImageStore, rec: &ImageRecord, scratch: &Path) -> PathBuf {
        let read = |d: &str| store.content().read_blob(d, 1 << 20).unwrap();
        let manifest_bytes = read(&rec.manifest_digest);
        let layout = scratch.join("layout");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for d in [&rec.id, &rec.manifest_digest, &rec.layers[0].digest] {
            std::fs::write(blobs.join(&d["sha256:".len()..]), read(d)).unwrap();
        }
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .manifests(vec![oci_spec::image::DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(Digest::try_from(rec.manifest_digest.as_str()).unwrap())
                .size(manifest_bytes.len() as u64)
                .annotations(HashMap::from([(
                    "org.opencontainers.image.ref.name".to_string(),
                    "t".to_string(),
                )]))
                .build()
                .unwrap()])
            .build()
            .unwrap();
        std::fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let bundle = scratch.join("bundle");
        let out = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle)
            .output()
            .expect("run umoci (package umoci)");
        assert!(
            out.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bundle
    }

    /// The config and manifest `import` writes are what oci-spec and umoci read as OCI.
    #[test]
    fn import_writes_an_oci_config_and_manifest_umoci_can_unpack() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hello"), b"hi\n").unwrap();
        let tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&src)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        assert!(tar.status.success());
        let roots = EngineRoots::new(tmp.path().join("data"), tmp.path().join("run"));
        let store = ImageStore::open(&roots).unwrap();
        let rec = store.import(&tar.stdout[..], Some("imp:1")).unwrap();

        let read = |d: &str| store.content().read_blob(d, 1 << 20).unwrap();
        let manifest_bytes = read(&rec.manifest_digest);
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest.media_type(), &Some(MediaType::ImageManifest));
        assert_eq!(manifest.config().media_type(), &MediaType::ImageConfig);
        assert_eq!(manifest.config().digest().as_ref(), rec.id);
        assert_eq!(manifest.layers().len(), 1);
        // A plain tar stays a plain tar.
        assert_eq!(manifest.layers()[0].media_type(), &MediaType::ImageLayer);
        assert_eq!(manifest.layers()[0].size(), tar.stdout.len() as u64);
        let text = String::from_utf8(manifest_bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:"#),
            "{text}"
        );
        let config_bytes = read(&rec.id);
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(config.rootfs().diff_ids(), &rec.diff_ids);
        assert_eq!(config.architecture(), &Arch::Amd64);
        let raw: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(raw["config"], serde_json::json!({}));
        assert_eq!(raw["history"][0]["created_by"], "berth import");

        // An OCI layout of exactly those blobs unpacks with umoci.
        let bundle = umoci_unpack(&store, &rec, tmp.path());
        assert_eq!(
            std::fs::read(bundle.join("rootfs/etc/hello")).unwrap(),
            b"hi\n"
        );
    }

    /// Import and tag record when the image was last named; the inspect answer reports it as
    /// Docker's `Metadata.LastTagTime`, it survives a reopen, and an older record without it
    /// reads as Go's zero time.
    #[test]
    fn tagging_records_last_tag_time_for_inspect() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        let roots = EngineRoots::new(tmp.path().join("data"), tmp.path().join("run"));
        let store = ImageStore::open(&roots).unwrap();
        let rec = store.import(&tar.stdout[..], Some("imp:1")).unwrap();
        let imported = rec.last_tag_time.clone().expect("import sets the time");
        let inspect = serde_json::to_value(store.inspect(&rec)).unwrap();
        assert_eq!(inspect["Metadata"]["LastTagTime"], imported.as_str());

        std::thread::sleep(std::time::Duration::from_millis(5));
        let tagged = store.tag("imp:1", "imp:2").unwrap();
        let tag_time = tagged.last_tag_time.clone().unwrap();
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
        assert!(
            parse(&tag_time) > parse(&imported),
            "{tag_time} after {imported}"
        );

        let reopened = ImageStore::open(&roots).unwrap();
        let rec = reopened.resolve("imp:2").unwrap();
        assert_eq!(rec.last_tag_time.as_deref(), Some(tag_time.as_str()));

        let mut old = serde_json::to_value(&rec).unwrap();
        old.as_object_mut().unwrap().remove("last_tag_time");
        let old: ImageRecord = serde_json::from_value(old).unwrap();
        assert_eq!(old.last_tag_time, None);
        let inspect = serde_json::to_value(reopened.inspect(&old)).unwrap();
        assert_eq!(inspect["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    }
}
