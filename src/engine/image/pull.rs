//! A pull, stage by stage: resolve the manifest (through an index to linux/amd64's) → fetch the
//! config → fetch and unpack the layers (`layers.rs`) → commit the config, manifests and image
//! record. Pulls of different images run at once; what they share is coordinated per blob
//! (`inflight.rs`).

use oci_spec::image::{ImageConfiguration, ImageManifest};
use tokio::sync::mpsc;

use super::layers::LayerTask;
use super::pull_context::PullContext;
use super::{
    container_config, progress_from, same_name, short, status_msg, ImageRecord, ImageStore,
    LayerRecord, Result, Rollback, MAX_CONFIG_BYTES, MAX_LAYERS,
};
use crate::engine::auth::AuthConfig;
use crate::engine::content::{sha256_digest, ContentError};
use crate::engine::reference::{is_valid_digest, ImageReference};
use crate::engine::registry::{
    parse_manifest, select_platform, FetchedManifest, Manifest, RegistryClient,
};
use crate::engine::snapshot::chain_ids;
use crate::engine::wire::{ImageContainerConfig, ProgressMessage};
use crate::engine::EngineSettings;

/// The manifest a pull resolved, with the document the tag pointed at (an index, or the same
/// manifest).
struct Resolved {
    top: Vec<u8>,
    top_digest: String,
    bytes: Vec<u8>,
    digest: String,
    manifest: ImageManifest,
}

/// The image config, checked against the manifest.
struct PulledConfig {
    bytes: Vec<u8>,
    digest: String,
    config: ImageConfiguration,
    diff_ids: Vec<String>,
    chains: Vec<String>,
}

impl ImageStore {
    /// Pull from a registry, streaming Docker-style progress messages.
    pub async fn pull(
        &self,
        reference: &ImageReference,
        settings: &EngineSettings,
        progress: mpsc::Sender<ProgressMessage>,
    ) -> Result<ImageRecord> {
        self.pull_with_auth(reference, settings, None, progress)
            .await
    }

    /// Pull with credentials for this pull only (`X-Registry-Auth`); they are never stored.
    pub async fn pull_with_auth(
        &self,
        reference: &ImageReference,
        settings: &EngineSettings,
        credentials: Option<AuthConfig>,
        progress: mpsc::Sender<ProgressMessage>,
    ) -> Result<ImageRecord> {
        // Shared: pulls run together; a removal's sweep or a load waits for them.
        let _pulling = self.write_lock.read().await;
        let client = RegistryClient::new(reference, settings)?.with_credentials(credentials);
        let cx = PullContext::new(reference.familiar(), &client, &progress);
        cx.send(progress_from(reference)).await;
        let resolved = self.resolve_manifest(&cx, reference).await?;
        let config = self.fetch_config(&cx, &resolved.manifest).await?;
        let _pins = self.inflight.pin(pulled_keys(&resolved, &config));
        let mut rollback = Rollback::default();
        let pulled = self
            .pull_layers_and_commit(&cx, reference, &resolved, &config, &mut rollback)
            .await;
        if pulled.is_err() {
            rollback.undo(self);
        }
        pulled
    }

    async fn pull_layers_and_commit(
        &self,
        cx: &PullContext<'_>,
        reference: &ImageReference,
        resolved: &Resolved,
        config: &PulledConfig,
        rollback: &mut Rollback,
    ) -> Result<ImageRecord> {
        let layers = resolved.manifest.layers();
        let tasks = layers
            .iter()
            .enumerate()
            .map(|(i, desc)| LayerTask {
                desc,
                diff_id: &config.diff_ids[i],
                chain: &config.chains[i],
                id: short(desc.digest().as_ref()),
            })
            .collect();
        let unpacked_sizes = self.fetch_layers(cx, tasks, rollback).await?;
        // Config and manifest(s) last: a failed pull leaves no half image behind.
        for (bytes, digest) in [
            (&config.bytes, &config.digest),
            (&resolved.bytes, &resolved.digest),
            (&resolved.top, &resolved.top_digest),
        ] {
            if !self.content.contains(digest) {
                self.content
                    .write_blob(bytes, Some(digest))
                    .map_err(|source| cx.content_error(source))?;
                rollback.blobs.push(digest.clone());
            }
        }
        let record = self.image_record(resolved, config, |diff_id| {
            unpacked_sizes.get(diff_id).copied()
        });
        self.commit_record(cx, reference, record, &resolved.top_digest)
            .await
    }

    /// The manifest for linux/amd64, each document verified against the digest it was asked
    /// for (or that the registry announced).
    async fn resolve_manifest(
        &self,
        cx: &PullContext<'_>,
        reference: &ImageReference,
    ) -> Result<Resolved> {
        let fetched = cx.client.manifest(reference.manifest_ref()).await?;
        if let Some(d) = &reference.digest {
            cx.check_digest(&fetched.bytes, d)?;
        }
        if let Some(h) = fetched
            .header_digest
            .as_deref()
            .filter(|h| is_valid_digest(h))
        {
            cx.check_digest(&fetched.bytes, h)?;
        }
        let top_digest = sha256_digest(&fetched.bytes);
        let (bytes, manifest) = match self.parse(cx, &fetched)? {
            Manifest::Image(m) => (fetched.bytes.clone(), *m),
            Manifest::Index(index) => {
                let entry = select_platform(&index)
                    .ok_or_else(|| cx.invalid("no linux/amd64 manifest in the index"))?;
                // oci-spec checked the syntax, but admits any algorithm: berth addresses
                // content by sha256 only.
                let digest: &str = entry.digest().as_ref();
                if !is_valid_digest(digest) {
                    return Err(cx.invalid(format!("bad manifest digest {digest:?}")));
                }
                let inner = cx.client.manifest(digest).await?;
                cx.check_digest(&inner.bytes, digest)?;
                match self.parse(cx, &inner)? {
                    Manifest::Image(m) => (inner.bytes, *m),
                    Manifest::Index(_) => return Err(cx.invalid("index points to another index")),
                }
            }
        };
        check_manifest(cx, &manifest)?;
        Ok(Resolved {
            top: fetched.bytes,
            top_digest,
            digest: sha256_digest(&bytes),
            bytes,
            manifest,
        })
    }

    fn parse(&self, cx: &PullContext<'_>, fetched: &FetchedManifest) -> Result<Manifest> {
        parse_manifest(&fetched.bytes, fetched.content_type.as_deref()).map_err(|d| cx.invalid(d))
    }

    /// The config, from the store if it is there, else from the registry (verified), checked
    /// against the manifest's layers.
    async fn fetch_config(
        &self,
        cx: &PullContext<'_>,
        manifest: &ImageManifest,
    ) -> Result<PulledConfig> {
        let digest = manifest.config().digest().to_string();
        let size = manifest.config().size();
        if size > MAX_CONFIG_BYTES {
            return Err(cx.invalid(format!("config of {size} bytes")));
        }
        let bytes = if self.content.contains(&digest) {
            self.content
                .read_blob(&digest, MAX_CONFIG_BYTES)
                .map_err(|source| cx.content_error(source))?
        } else {
            download_small(cx, &digest, size).await?
        };
        let config: ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|e| cx.invalid(format!("bad image config: {e}")))?;
        let diff_ids = checked_diff_ids(cx, &config, manifest.layers().len())?;
        Ok(PulledConfig {
            chains: chain_ids(&diff_ids),
            bytes,
            digest,
            config,
            diff_ids,
        })
    }

    /// The record for a pulled image: the stored one if the image was pulled before (its
    /// names are kept), else a new one.
    fn image_record(
        &self,
        resolved: &Resolved,
        pulled: &PulledConfig,
        unpacked_size: impl Fn(&str) -> Option<u64>,
    ) -> ImageRecord {
        if let Some(existing) = self.read_records().get(&pulled.digest).cloned() {
            return existing;
        }
        let config = &pulled.config;
        ImageRecord {
            id: pulled.digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: ImageContainerConfig {
                healthcheck: crate::engine::wire::HealthConfig::from_image_config(&pulled.bytes),
                ..container_config(config.config().as_ref())
            },
            created: config.created().clone().unwrap_or_default(),
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            size: 0,
            diff_ids: pulled.diff_ids.clone(),
            manifest_digest: resolved.digest.clone(),
            layers: resolved
                .manifest
                .layers()
                .iter()
                .zip(&pulled.diff_ids)
                .map(|(l, d)| LayerRecord {
                    digest: l.digest().to_string(),
                    media_type: l.media_type().to_string(),
                    size: l.size(),
                    diff_id: d.clone(),
                    unpacked_size: unpacked_size(d).unwrap_or_else(|| self.known_unpacked_size(d)),
                })
                .collect(),
            last_tag_time: None,
            intermediate: false,
        }
    }

    /// Names the image (tag and repo digest), stores its record, and reports as Docker does.
    async fn commit_record(
        &self,
        cx: &PullContext<'_>,
        reference: &ImageReference,
        mut record: ImageRecord,
        top_digest: &str,
    ) -> Result<ImageRecord> {
        let name = reference.familiar_name();
        let repo_digest = format!("{name}@{top_digest}");
        let tag = reference.tag.as_ref().map(|t| format!("{name}:{t}"));
        let pulled_before = self.read_records().contains_key(&record.id);
        let had_tag = pulled_before
            && tag
                .as_ref()
                .is_none_or(|t| record.repo_tags.iter().any(|x| same_name(x, t)));
        record.size = record.layers.iter().map(|l| l.unpacked_size as i64).sum();
        if !record.repo_digests.iter().any(|d| d == &repo_digest) {
            record.repo_digests.push(repo_digest);
        }
        let record = self.save_with_tag(record, tag.as_deref())?;
        cx.send(status_msg(format!("Digest: {top_digest}"), None))
            .await;
        let status = if had_tag {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        cx.send(status_msg(
            format!("Status: {status} {}", reference.familiar()),
            None,
        ))
        .await;
        Ok(record)
    }
}

/// Bounds and digests of a manifest, before any of its digests names a file.
fn check_manifest(cx: &PullContext<'_>, manifest: &ImageManifest) -> Result<()> {
    let layers = manifest.layers();
    if layers.len() > MAX_LAYERS {
        return Err(cx.invalid(format!(
            "{} layers (overlayfs stacks at most {MAX_LAYERS})",
            layers.len()
        )));
    }
    // As for the index entry: sha256 only.
    for d in std::iter::once(manifest.config()).chain(layers.iter()) {
        if !is_valid_digest(d.digest().as_ref()) {
            return Err(cx.invalid(format!("bad descriptor digest {:?}", d.digest().as_ref())));
        }
    }
    Ok(())
}

/// The config's DiffIDs, one per layer; they name snapshot directories, so each is checked.
fn checked_diff_ids(
    cx: &PullContext<'_>,
    config: &ImageConfiguration,
    layers: usize,
) -> Result<Vec<String>> {
    let rootfs = config.rootfs();
    if rootfs.typ() != "layers" {
        return Err(cx.invalid(format!("rootfs type {:?}", rootfs.typ())));
    }
    let diff_ids = rootfs.diff_ids();
    if diff_ids.len() != layers {
        return Err(cx.invalid(format!(
            "{layers} layers but {} diff_ids in the config",
            diff_ids.len()
        )));
    }
    if let Some(bad) = diff_ids.iter().find(|d| !is_valid_digest(d)) {
        return Err(cx.invalid(format!("bad diff_id {bad:?}")));
    }
    Ok(diff_ids.clone())
}

/// Every blob and snapshot a pull may create: pinned so that a concurrent pull's rollback
/// leaves them alone.
fn pulled_keys(resolved: &Resolved, config: &PulledConfig) -> Vec<String> {
    let mut keys = vec![
        config.digest.clone(),
        resolved.digest.clone(),
        resolved.top_digest.clone(),
    ];
    keys.extend(
        resolved
            .manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string()),
    );
    keys.extend(config.chains.iter().cloned());
    keys
}

/// Downloads a small blob (the config) into memory, capped and verified.
async fn download_small(cx: &PullContext<'_>, digest: &str, size: u64) -> Result<Vec<u8>> {
    let mut response = cx.client.blob(digest).await?;
    let mut buf = Vec::new();
    while let Some(chunk) = cx.client.next_chunk(&mut response).await? {
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > size {
            return Err(cx.content_error(ContentError::TooLarge {
                digest: digest.to_string(),
                limit: size,
            }));
        }
    }
    cx.check_digest(&buf, digest)?;
    Ok(buf)
}
