//! `docker save` / `docker load`: images leave and enter berth as tar archives.
//!
//! `save` writes the combined layout Docker 25+ writes, readable by `docker load` (through
//! `manifest.json`) and OCI tools (through `index.json`, `oci-layout` and `blobs/sha256/`): blobs
//! are written as stored, so a pulled image keeps its manifest digest. `load` reads that layout,
//! the legacy `<id>/layer.tar` one and plain OCI layouts. The archive is never extracted by path:
//! members are streamed into the content store (hashed as they are written) and looked up by name
//! afterwards; layers are then unpacked from the store like pulled ones, with the same caps.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};

use super::{
    chain_ids, container_config, free_space, io_err, is_valid_digest, same_name, short, ImageError,
    ImageRecord, ImageStore, LayerRecord, Result, Rollback, UnpackJob, FREE_SPACE_MARGIN,
    MAX_CONFIG_BYTES, MAX_LAYERS,
};
use crate::engine::content::ContentError;
use crate::engine::reference::ImageReference;
use crate::engine::registry::{parse_manifest, Manifest};
use crate::engine::unpack::{walk_archive, ArchiveEntry, UnpackError};
use crate::engine::wire::ImageContainerConfig;

/// Metadata members (`manifest.json`, `index.json`, …) are read into memory: at most this much.
const MAX_METADATA_BYTES: u64 = 16 << 20;
const LOAD: &str = "image archive";

/// One image of `manifest.json` (Docker's docker-archive format).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image chosen for `save`, with the names it is saved under.
struct SaveItem {
    rec: ImageRecord,
    tags: Vec<String>,
}

/// A member of a loaded archive, committed to the content store.
#[derive(Debug, Clone)]
struct Member {
    digest: String,
    size: u64,
}

fn hostile(entry: &str, reason: &str) -> ImageError {
    ImageError::Unpack {
        image: LOAD.into(),
        layer: "archive".into(),
        source: UnpackError::Hostile {
            path: entry.to_string(),
            reason: reason.to_string(),
        },
    }
}

fn invalid(detail: impl Into<String>) -> ImageError {
    ImageError::InvalidImage {
        image: LOAD.into(),
        detail: detail.into(),
    }
}

/// Resolves a symlink's target lexically against the member's directory; `None` when it leaves
/// the archive (absolute, or `..` above its root).
pub(crate) fn resolve_link(entry: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = entry.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// A symlink or hardlink member: an alias of another member, never followed on disk. A symlink
/// is relative to its directory, a hardlink to the archive's root; leaving the archive is hostile.
fn link_member(entry: &ArchiveEntry, links: &mut HashMap<String, String>) -> Result<()> {
    let path = entry.path.as_str();
    let (base, what) = if entry.kind == b'2' {
        (path, "a symlink")
    } else {
        ("", "a hardlink")
    };
    let target = resolve_link(base, &entry.link)
        .ok_or_else(|| hostile(path, &format!("is {what} that leaves the archive")))?;
    links.insert(path.to_string(), target);
    Ok(())
}

/// A minimal ustar header for a member of a saved archive (names stay under 100 bytes).
fn tar_header(name: &str, size: u64, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode: &[u8] = if kind == b'5' {
        b"0000755\0"
    } else {
        b"0000644\0"
    };
    h[100..108].copy_from_slice(mode);
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn write_member(out: &mut impl Write, name: &str, data: &mut impl Read, size: u64) -> Result<()> {
    let w = |e| io_err(std::path::Path::new("(archive output)"))(e);
    out.write_all(&tar_header(name, size, b'0')).map_err(w)?;
    let copied = std::io::copy(&mut data.take(size), out).map_err(w)?;
    if copied != size {
        return Err(ImageError::Other(format!(
            "{name} shrank while it was saved ({copied} of {size} bytes)"
        )));
    }
    let pad = ((512 - size % 512) % 512) as usize;
    out.write_all(&[0u8; 512][..pad]).map_err(w)
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

impl ImageStore {
    /// The images `names` stand for, each with the tags it is saved under: the name given when it
    /// is a tag of the image, none when the image was named by ID (as `docker save`).
    fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>> {
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            let rec = self
                .resolve(name)
                .ok_or_else(|| ImageError::NotFound(name.clone()))?;
            let tag = rec.repo_tags.iter().find(|t| same_name(t, name)).cloned();
            match items.iter_mut().find(|i| i.rec.id == rec.id) {
                Some(i) => i.tags.extend(tag.filter(|t| !i.tags.contains(t))),
                None => items.push(SaveItem {
                    rec,
                    tags: tag.into_iter().collect(),
                }),
            }
        }
        Ok(items)
    }

    /// Opens the blobs of `rec` into `blobs`; returns its manifest.
    fn open_blobs(
        &self,
        rec: &ImageRecord,
        blobs: &mut BTreeMap<String, (File, u64)>,
    ) -> Result<Vec<u8>> {
        let content_err = |source| ImageError::Content {
            image: rec.id.clone(),
            source,
        };
        let mut digests = vec![rec.id.clone(), rec.manifest_digest.clone()];
        digests.extend(rec.layers.iter().map(|l| l.digest.clone()));
        for d in &digests {
            let f = self.content.open_blob(d).map_err(content_err)?;
            let size = f.metadata().map_err(io_err(&self.root))?.len();
            blobs.insert(d.clone(), (f, size));
        }
        self.content
            .read_blob(&rec.manifest_digest, MAX_CONFIG_BYTES)
            .map_err(content_err)
    }

    /// `docker save`: writes the images as one tar to `out` (blocking). Every blob is opened
    /// before anything is written: an open file stays readable if an `rm` unlinks it meanwhile.
    pub fn save(&self, names: &[String], mut out: impl Write) -> Result<()> {
        let items = self.save_items(names)?;
        let mut blobs: BTreeMap<String, (File, u64)> = BTreeMap::new();
        let mut manifests = Vec::new();
        let mut index = Vec::new();
        for item in &items {
            let rec = &item.rec;
            if !is_valid_digest(&rec.manifest_digest) {
                return Err(ImageError::InvalidImage {
                    image: rec.id.clone(),
                    detail: "it has no stored manifest; pull it again to save it".into(),
                });
            }
            let manifest = self.open_blobs(rec, &mut blobs)?;
            let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or_else(|| MediaType::ImageManifest.to_string());
            index.extend(index_entries(
                &media_type,
                &rec.manifest_digest,
                manifest.len(),
                &item.tags,
            ));
            manifests.push(ArchiveManifest {
                config: blob_name(&rec.id),
                repo_tags: (!item.tags.is_empty()).then(|| item.tags.clone()),
                layers: rec.layers.iter().map(|l| blob_name(&l.digest)).collect(),
            });
        }
        let w = |e| io_err(std::path::Path::new("(archive output)"))(e);
        for dir in ["blobs/", "blobs/sha256/"] {
            out.write_all(&tar_header(dir, 0, b'5')).map_err(w)?;
        }
        for (digest, (mut f, size)) in blobs {
            write_member(&mut out, &blob_name(&digest), &mut f, size)?;
        }
        let index_doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index,
        });
        let docs = [
            ("index.json", serde_json::to_vec(&index_doc)),
            ("manifest.json", serde_json::to_vec(&manifests)),
            (
                "oci-layout",
                serde_json::to_vec(&serde_json::json!({"imageLayoutVersion": "1.0.0"})),
            ),
        ];
        for (name, doc) in docs {
            let doc = doc.map_err(|e| ImageError::Other(e.to_string()))?;
            write_member(&mut out, name, &mut &doc[..], doc.len() as u64)?;
        }
        out.write_all(&[0u8; 1024]).map_err(w)?;
        out.flush().map_err(w)
    }

    /// `docker load` (blocking): returns Docker's lines, `Loaded image: name:tag` or
    /// `Loaded image ID: sha256:…`. Holds the store's write lock, so no removal or pull sweeps the
    /// blobs it is assembling.
    pub fn load(&self, archive: impl Read) -> Result<Vec<String>> {
        let _guard = self.write_lock.blocking_write();
        let mut rollback = Rollback::default();
        match self.load_locked(archive, &mut rollback) {
            Ok(lines) => {
                // Members no image uses (legacy `json`/`VERSION` files) go again.
                let (used, _) = super::referenced(self.read_records().values());
                for b in rollback.blobs.iter().filter(|b| !used.contains(*b)) {
                    let _ = self.content.remove(b);
                }
                Ok(lines)
            }
            Err(e) => {
                rollback.undo(self);
                Err(e)
            }
        }
    }

    fn load_locked(&self, mut archive: impl Read, rollback: &mut Rollback) -> Result<Vec<String>> {
        let mut files: HashMap<String, Member> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
        walk_archive(&mut archive, &self.limits, |entry, data| {
            self.load_member(entry, data, &mut files, &mut links, &mut metadata, rollback)
                .map_err(|e| match e {
                    ImageError::Unpack { source, .. } => source,
                    other => UnpackError::Malformed(other.to_string()),
                })
        })
        .map_err(|source| ImageError::Unpack {
            image: LOAD.into(),
            layer: "archive".into(),
            source,
        })?;
        let lookup = |name: &str| -> Result<Member> {
            let mut name = name.trim_start_matches("./").to_string();
            for _ in 0..16 {
                if let Some(m) = files.get(&name) {
                    return Ok(m.clone());
                }
                match links.get(&name) {
                    Some(t) => name = t.clone(),
                    None => break,
                }
            }
            Err(invalid(format!("the archive has no member {name}")))
        };
        let mut lines = Vec::new();
        if let Some(doc) = metadata.get("manifest.json") {
            let manifests: Vec<ArchiveManifest> = serde_json::from_slice(doc)
                .map_err(|e| invalid(format!("bad manifest.json: {e}")))?;
            for m in manifests {
                let config = lookup(&m.config)?;
                let layers = m
                    .layers
                    .iter()
                    .map(|l| lookup(l))
                    .collect::<Result<Vec<_>>>()?;
                let tags = m.repo_tags.unwrap_or_default();
                lines.extend(self.load_image(&config, &layers, None, &tags, rollback)?);
            }
        } else if let Some(doc) = metadata.get("index.json") {
            lines.extend(self.load_oci_index(doc, rollback)?);
        } else {
            return Err(invalid(
                "neither manifest.json nor index.json in it; is it a docker save or OCI layout tar?",
            ));
        }
        Ok(lines)
    }

    /// Streams one member into the content store (or, for the layout's metadata, into memory).
    fn load_member(
        &self,
        entry: &ArchiveEntry,
        data: &mut dyn Read,
        files: &mut HashMap<String, Member>,
        links: &mut HashMap<String, String>,
        metadata: &mut HashMap<String, Vec<u8>>,
        rollback: &mut Rollback,
    ) -> Result<()> {
        let path = entry.path.as_str();
        match entry.kind {
            b'5' => return Ok(()),
            b'1' | b'2' => return link_member(entry, links),
            b'0' => {}
            k => {
                return Err(hostile(
                    path,
                    &format!(
                        "has type {:?}, which an image archive never holds",
                        k as char
                    ),
                ))
            }
        }
        if matches!(
            path,
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        ) {
            if entry.size > MAX_METADATA_BYTES {
                return Err(invalid(format!(
                    "{path} is {} bytes (limit {MAX_METADATA_BYTES})",
                    entry.size
                )));
            }
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).map_err(io_err(&self.root))?;
            metadata.insert(path.to_string(), buf);
            return Ok(());
        }
        let room = free_space(&self.root)
            .map_err(io_err(&self.root))?
            .saturating_sub(FREE_SPACE_MARGIN);
        if entry.size > room {
            return Err(ImageError::NoSpace {
                image: LOAD.into(),
                path: self.data_root(),
                detail: format!("member {path} is {} bytes and {room} are free", entry.size),
            });
        }
        let content_err = |source: ContentError| ImageError::Content {
            image: format!("{LOAD} member {path}"),
            source,
        };
        let mut w = self.content.writer_unknown().map_err(content_err)?;
        std::io::copy(data, &mut w).map_err(io_err(&self.root))?;
        let named = path
            .strip_prefix("blobs/sha256/")
            .map(|hex| format!("sha256:{hex}"));
        if let Some(named) = &named {
            let actual = w.current_digest();
            if &actual != named {
                return Err(content_err(ContentError::DigestMismatch {
                    expected: named.clone(),
                    actual,
                    size: w.written(),
                }));
            }
        }
        let size = w.written();
        let existed = self.content.contains(&w.current_digest());
        let digest = w.commit().map_err(content_err)?;
        if !existed {
            rollback.blobs.push(digest.clone());
        }
        files.insert(path.to_string(), Member { digest, size });
        Ok(())
    }
}

/// `index.json` entries for one saved image: one per tag, annotated as Docker 25+ does.
fn index_entries(
    media_type: &str,
    digest: &str,
    size: usize,
    tags: &[String],
) -> Vec<serde_json::Value> {
    let entry = |annotations: Option<serde_json::Value>| {
        let mut v = serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
        if let Some(a) = annotations {
            v["annotations"] = a;
        }
        v
    };
    if tags.is_empty() {
        return vec![entry(None)];
    }
    tags.iter()
        .filter_map(|t| ImageReference::parse(t).ok())
        .map(|r| {
            entry(Some(serde_json::json!({
                "io.containerd.image.name": r.normalized(),
                "org.opencontainers.image.ref.name": r.tag.clone().unwrap_or_else(|| "latest".into()),
            })))
        })
        .collect()
}

/// The name an OCI index entry gives its image: containerd's full name, or a ref name that is a
/// full reference itself (a bare tag names nothing).
fn oci_entry_name(d: &Descriptor) -> Option<String> {
    let a = d.annotations().as_ref()?;
    if let Some(n) = a.get("io.containerd.image.name") {
        return Some(n.clone());
    }
    let r = a.get("org.opencontainers.image.ref.name")?;
    (r.contains('/') || r.contains(':')).then(|| r.clone())
}

impl ImageStore {
    fn load_oci_index(&self, doc: &[u8], rollback: &mut Rollback) -> Result<Vec<String>> {
        let index = match parse_manifest(doc, None)
            .map_err(|e| invalid(format!("index.json: {e}")))?
        {
            Manifest::Index(i) => i,
            Manifest::Image(_) => return Err(invalid("index.json is a manifest, not an index")),
        };
        let mut lines = Vec::new();
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for d in index.manifests() {
            let tags: Vec<String> = oci_entry_name(d).into_iter().collect();
            seen.entry(d.digest().to_string()).or_default().extend(tags);
        }
        for d in index.manifests() {
            let Some(tags) = seen.remove(&d.digest().to_string()) else {
                continue;
            };
            lines.extend(self.load_oci_manifest(d.digest().as_ref(), &tags, rollback)?);
        }
        Ok(lines)
    }

    fn load_oci_manifest(
        &self,
        digest: &str,
        tags: &[String],
        rollback: &mut Rollback,
    ) -> Result<Vec<String>> {
        let content_err = |source| ImageError::Content {
            image: LOAD.into(),
            source,
        };
        let bytes = self
            .content
            .read_blob(digest, MAX_CONFIG_BYTES)
            .map_err(content_err)?;
        let manifest = match parse_manifest(&bytes, None)
            .map_err(|e| invalid(format!("manifest {}: {e}", short(digest))))?
        {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                return Err(invalid(format!(
                    "manifest {} is a nested index; load one platform's image",
                    short(digest)
                )))
            }
        };
        // The size recorded is the stored blob's, never the descriptor's claim.
        let member = |d: &Descriptor| -> Result<Member> {
            let digest = d.digest().to_string();
            let missing = || {
                invalid(format!(
                    "blob {} is missing from the archive",
                    short(&digest)
                ))
            };
            let blob = self.content.open_blob(&digest).map_err(|_| missing())?;
            let size = blob.metadata().map_err(|_| missing())?.len();
            Ok(Member { digest, size })
        };
        let config = member(manifest.config())?;
        let layers = manifest
            .layers()
            .iter()
            .map(member)
            .collect::<Result<Vec<_>>>()?;
        self.load_image(&config, &layers, Some(digest), tags, rollback)
    }

    /// Makes an image of a config and layer blobs already in the content store: unpacks the
    /// layers whose snapshot is missing (checking each DiffID), writes a manifest when the
    /// archive had none, and names it.
    fn load_image(
        &self,
        config: &Member,
        layers: &[Member],
        manifest_digest: Option<&str>,
        tags: &[String],
        rollback: &mut Rollback,
    ) -> Result<Vec<String>> {
        let content_err = |source| ImageError::Content {
            image: LOAD.into(),
            source,
        };
        let config_bytes = self
            .content
            .read_blob(&config.digest, MAX_CONFIG_BYTES)
            .map_err(content_err)?;
        let parsed: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("bad image config {}: {e}", short(&config.digest))))?;
        let diff_ids = parsed.rootfs().diff_ids().clone();
        if diff_ids.len() != layers.len() || layers.len() > MAX_LAYERS {
            return Err(invalid(format!(
                "{} layers but {} diff_ids in config {} (at most {MAX_LAYERS} layers)",
                layers.len(),
                diff_ids.len(),
                short(&config.digest)
            )));
        }
        if let Some(bad) = diff_ids.iter().find(|d| !is_valid_digest(d)) {
            return Err(invalid(format!("bad diff_id {bad:?}")));
        }
        let chains = chain_ids(&diff_ids);
        let records = self.unpack_layers(layers, &diff_ids, &chains, rollback)?;
        let manifest_digest = match manifest_digest {
            Some(d) => d.to_string(),
            None => self.write_manifest(config, &config_bytes, &records, rollback)?,
        };
        let existing = self.read_records().get(&config.digest).cloned();
        let mut rec = existing.unwrap_or_else(|| ImageRecord {
            id: config.digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: ImageContainerConfig {
                healthcheck: crate::engine::wire::HealthConfig::from_image_config(&config_bytes),
                ..container_config(parsed.config().as_ref())
            },
            created: parsed.created().clone().unwrap_or_default(),
            architecture: parsed.architecture().to_string(),
            os: parsed.os().to_string(),
            size: records.iter().map(|l| l.unpacked_size as i64).sum(),
            diff_ids: diff_ids.clone(),
            manifest_digest,
            layers: records,
            last_tag_time: None,
            intermediate: false,
        });
        let mut lines = Vec::new();
        if tags.is_empty() {
            rec = self.save_with_tag(rec, None)?;
            lines.push(format!("Loaded image ID: {}", rec.id));
        }
        for t in tags {
            let name = ImageReference::parse(t)?.familiar();
            rec = self.save_with_tag(rec, Some(&name))?;
            lines.push(format!("Loaded image: {name}"));
        }
        rollback.blobs.retain(|b| {
            b != &rec.id && b != &rec.manifest_digest && !rec.layers.iter().any(|l| &l.digest == b)
        });
        rollback.snapshots.retain(|s| !chains.contains(s));
        Ok(lines)
    }

    /// Unpacks the layers whose snapshot is missing; their records, bottom first.
    fn unpack_layers(
        &self,
        layers: &[Member],
        diff_ids: &[String],
        chains: &[String],
        rollback: &mut Rollback,
    ) -> Result<Vec<LayerRecord>> {
        let mut records = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let unpacked = if self.snapshots.exists(&chains[i]) {
                self.known_unpacked_size(&diff_ids[i])
            } else {
                let bytes = self.unpack_stored(&layer.digest, &diff_ids[i], &chains[i])?;
                rollback.snapshots.push(chains[i].clone());
                bytes
            };
            let blob =
                self.content
                    .open_blob(&layer.digest)
                    .map_err(|source| ImageError::Content {
                        image: LOAD.into(),
                        source,
                    })?;
            records.push(LayerRecord {
                digest: layer.digest.clone(),
                media_type: layer_media_type(&blob),
                size: layer.size,
                diff_id: diff_ids[i].clone(),
                unpacked_size: unpacked,
            });
        }
        Ok(records)
    }

    /// A docker-archive has no manifest: an OCI one is made (and stored) for the image.
    fn write_manifest(
        &self,
        config: &Member,
        config_bytes: &[u8],
        layers: &[LayerRecord],
        rollback: &mut Rollback,
    ) -> Result<String> {
        let build = |source| ImageError::OciBuild {
            what: "manifest",
            image: LOAD.into(),
            source,
        };
        let digest = |d: &str| Digest::try_from(d).map_err(build);
        let mut descs = Vec::new();
        for l in layers {
            descs.push(Descriptor::new(
                MediaType::from(l.media_type.as_str()),
                l.size,
                digest(&l.digest)?,
            ));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(oci_spec::image::SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                digest(&config.digest)?,
            ))
            .layers(descs)
            .build()
            .map_err(build)?;
        let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        let existed = self.content.contains(&super::sha256_digest(&bytes));
        let d = self
            .content
            .write_blob(&bytes, None)
            .map_err(|source| ImageError::Content {
                image: LOAD.into(),
                source,
            })?;
        if !existed {
            rollback.blobs.push(d.clone());
        }
        Ok(d)
    }

    /// Unpacks a layer blob of the store into snapshot `chain`, checking its DiffID (blocking).
    fn unpack_stored(&self, digest: &str, diff_id: &str, chain: &str) -> Result<u64> {
        let blob = self
            .content
            .open_blob(digest)
            .map_err(|source| ImageError::Content {
                image: LOAD.into(),
                source,
            })?;
        let tmp = self.snapshots.prepare(chain)?;
        let job = UnpackJob {
            image: LOAD.into(),
            layer: short(digest),
            limits: self.limits.clone(),
            data_root: self.data_root(),
        };
        let stats = match job.run(blob, &tmp) {
            Ok(s) if s.diff_id == diff_id => s,
            Ok(s) => {
                self.snapshots.discard(&tmp);
                return Err(ImageError::DiffIdMismatch {
                    image: LOAD.into(),
                    layer: short(digest),
                    expected: diff_id.to_string(),
                    actual: s.diff_id,
                });
            }
            Err(e) => {
                self.snapshots.discard(&tmp);
                return Err(e);
            }
        };
        self.snapshots.commit(&tmp, chain)?;
        Ok(stats.bytes)
    }
}

/// gzip is sniffed, as when unpacking; anything else is taken for a plain tar.
fn layer_media_type(mut blob: &File) -> String {
    let mut head = [0u8; 2];
    let gz = blob.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b];
    if gz {
        MediaType::ImageLayerGzip.to_string()
    } else {
        MediaType::ImageLayer.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_archive_or_not_at_all() {
        assert_eq!(
            resolve_link("abc/layer.tar", "../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_link("abc/layer.tar", "../../etc/passwd"), None);
        assert_eq!(resolve_link("abc/layer.tar", "/etc/passwd"), None);
        assert_eq!(resolve_link("", "blobs/x").as_deref(), Some("blobs/x"));
    }

    #[test]
    fn tar_headers_are_valid_ustar() {
        let h = tar_header("blobs/sha256/abc", 1234, b'0');
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(std::str::from_utf8(&h[124..135]).unwrap(), "00000002322");
        let mut sum_block = h;
        sum_block[148..156].copy_from_slice(b"        ");
        let sum: u32 = sum_block.iter().map(|&b| b as u32).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
    }

    #[test]
    fn index_entries_carry_docker_25_annotations() {
        let e = index_entries("m", "sha256:x", 3, &["busybox:1".to_string()]);
        assert_eq!(
            e[0]["annotations"]["io.containerd.image.name"],
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            e[0]["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        assert!(index_entries("m", "sha256:x", 3, &[])[0]
            .get("annotations")
            .is_none());
    }
}
