//! Images made on this engine rather than pulled: a directory of changes becomes a layer, and
//! a config plus layers become an image.
//!
//! - [`ImageStore::commit_layer`] (the builder): the layer blob is written to the content store
//!   and the directory itself is MOVED into the snapshot store as the snapshot of the new chain
//!   id, so a build never re-extracts what it just made.
//! - [`ImageStore::commit_layer_copy`] (`docker commit`): the same blob, but the directory stays
//!   where it is (the container keeps it); the snapshot is unpacked from the blob.
//! - [`ImageStore::commit_image`]: writes the config and the OCI manifest, and the record.
//!
//! A committed layer is "fresh" until an image record names it: the sweeps of `image rm` and
//! `image prune` leave it alone meanwhile, and [`ImageStore::release_layer`] drops one a failed
//! build will not use.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageManifestBuilder, MediaType, RootFsBuilder,
    SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};

use super::layer_writer::{write_layer, LayerSummary};
use super::{
    chain_ids, container_config, io_err, short, ImageError, ImageRecord, ImageStore, LayerRecord,
    Result, MAX_CONFIG_BYTES, MAX_LAYERS,
};
use crate::engine::reference::ImageReference;
use crate::engine::wire::HealthConfig;

/// Keys of Docker's image config (`config.*`) that the OCI config has no field for, so that a
/// typed OCI document alone would drop them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerConfigExtensions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers, run when the image is used as a base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL`: the shell of shell-form `RUN`/`CMD`/`ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl DockerConfigExtensions {
    /// The extensions in a stored config document; absent or malformed ones read as none.
    pub fn from_config_document(bytes: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Doc {
            config: Option<DockerConfigExtensions>,
        }
        serde_json::from_slice::<Doc>(bytes)
            .ok()
            .and_then(|d| d.config)
            .unwrap_or_default()
    }
}

/// What [`ImageStore::commit_image`] stores.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The OCI config; `rootfs.diff_ids` are set from `layers`, `created` to now when unset.
    pub config: ImageConfiguration,
    pub extensions: DockerConfigExtensions,
    /// Every layer of the image, bottom first (the parent's, then the new ones).
    pub layers: Vec<LayerRecord>,
    /// A name to give the image (`app:1`, `busybox` = `busybox:latest`).
    pub tag: Option<String>,
    /// A build step's image: hidden from `docker images` (shown with `all`), left to the
    /// builder's prune.
    pub intermediate: bool,
}

/// The snapshot chain id of `layers`, bottom first (none for no layers).
fn top_chain(layers: &[LayerRecord]) -> Option<String> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    chain_ids(&diff_ids).pop()
}

impl ImageStore {
    /// The builder's commit (blocking): `upper` (a stopped container's or a copy step's upper
    /// directory) becomes a gzip layer blob on top of `parent_layers`, and is moved into the
    /// snapshot store as the new chain's snapshot. `exclude` names mount-point stubs
    /// (`/etc/hosts`, bind targets) to leave out when empty. `None` for an empty diff, with
    /// `upper` left in place.
    pub fn commit_layer(
        &self,
        upper: &Path,
        parent_layers: &[LayerRecord],
        exclude: &[PathBuf],
    ) -> Result<Option<LayerRecord>> {
        let (layer, summary, chain) = {
            // Sweeps wait (they take the lock alone) until the new blob is pinned.
            let _assembling = self.write_lock.blocking_read();
            let Some((layer, summary)) = self.write_layer_blob(upper, exclude)? else {
                return Ok(None);
            };
            let chain = self.pin_new_layer(&layer, parent_layers);
            (layer, summary, chain)
        };
        let stored = self
            .prepare_for_snapshot(upper, &summary)
            .and_then(|()| self.move_into_snapshot(upper, &layer, &chain));
        if let Err(e) = stored {
            self.release_layer(&layer, parent_layers);
            return Err(e);
        }
        Ok(Some(layer))
    }

    /// `docker commit`'s layer (blocking): as [`commit_layer`](Self::commit_layer), but `upper`
    /// is only read; the snapshot is unpacked from the new blob.
    pub fn commit_layer_copy(
        &self,
        upper: &Path,
        parent_layers: &[LayerRecord],
        exclude: &[PathBuf],
    ) -> Result<Option<LayerRecord>> {
        let (layer, chain) = {
            let _assembling = self.write_lock.blocking_read();
            let Some((layer, _)) = self.write_layer_blob(upper, exclude)? else {
                return Ok(None);
            };
            let chain = self.pin_new_layer(&layer, parent_layers);
            (layer, chain)
        };
        if !self.snapshots.exists(&chain) {
            if let Err(e) = self.unpack_into_snapshot(&layer, &chain) {
                self.release_layer(&layer, parent_layers);
                return Err(e);
            }
        }
        Ok(Some(layer))
    }

    /// Pins a layer's blob and the snapshot of its chain against sweeps; returns the chain id.
    fn pin_new_layer(&self, layer: &LayerRecord, parent_layers: &[LayerRecord]) -> String {
        let mut layers = parent_layers.to_vec();
        layers.push(layer.clone());
        let chain = top_chain(&layers).expect("at least the new layer");
        self.pin_fresh(&layer.digest, &chain);
        chain
    }

    /// Forgets a layer committed for an image that will not be made (a failed build step):
    /// its blob and snapshot go unless an image uses them.
    pub fn release_layer(&self, layer: &LayerRecord, parent_layers: &[LayerRecord]) {
        let mut layers = parent_layers.to_vec();
        layers.push(layer.clone());
        let chain = top_chain(&layers).expect("at least the layer");
        self.unpin_fresh(&[layer.digest.clone(), chain.clone()]);
        let Ok(_guard) = self.write_lock.try_write() else {
            return; // a pull is assembling: the next sweep takes them
        };
        let (blobs, snaps) = self.referenced_now();
        if !blobs.contains(&layer.digest) {
            let _ = self.content.remove(&layer.digest);
        }
        if !snaps.contains(&chain) {
            let _ = self.snapshots.remove(&chain);
        }
    }

    /// Writes the layer blob of `upper` to the content store (ingest, verify, rename).
    fn write_layer_blob(
        &self,
        upper: &Path,
        exclude: &[PathBuf],
    ) -> Result<Option<(LayerRecord, LayerSummary)>> {
        let content_err = |source| ImageError::Content {
            image: "(commit)".into(),
            source,
        };
        let mut writer = self.content.writer_unknown().map_err(content_err)?;
        let summary = write_layer(upper, exclude, &mut writer).map_err(|e| ImageError::Layer {
            dir: upper.to_path_buf(),
            source: e,
        })?;
        if summary.is_empty() {
            return Ok(None); // dropping the writer removes its ingest file
        }
        let digest = writer.commit().map_err(content_err)?;
        if digest != summary.digests.digest {
            return Err(ImageError::Other(format!(
                "layer of {}: the content store computed {digest}, the writer {}",
                upper.display(),
                summary.digests.digest
            )));
        }
        let layer = LayerRecord {
            digest,
            media_type: MediaType::ImageLayerGzip.to_string(),
            size: summary.digests.size,
            diff_id: summary.digests.diff_id.clone(),
            unpacked_size: summary.content_bytes,
        };
        Ok(Some((layer, summary)))
    }

    /// What the snapshot must not keep of an upper directory: the stubs the layer left out,
    /// and overlayfs' private xattrs (origin, impure, redirect) — only the opaque marker means
    /// something in a lower directory.
    fn prepare_for_snapshot(&self, upper: &Path, summary: &LayerSummary) -> Result<()> {
        // A snapshot's root is what `/` looks like where no layer sets it (as `prepare` makes
        // it), whatever mode the upper directory was made with.
        std::fs::set_permissions(upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err(upper))?;
        for stub in &summary.skipped_stubs {
            with_parent(upper, stub, |dir, name| {
                let r = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
                if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EISDIR) {
                    let r = unsafe {
                        libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR)
                    };
                    return cvt(r);
                }
                cvt(r)
            })?;
        }
        for path in &summary.overlay_private {
            with_parent(upper, path, strip_overlay_xattrs)?;
        }
        Ok(())
    }

    fn move_into_snapshot(&self, upper: &Path, layer: &LayerRecord, chain: &str) -> Result<()> {
        if self.snapshots.exists(chain) {
            // The same change was committed before: its snapshot serves.
            self.snapshots.discard(upper);
            return Ok(());
        }
        match self.snapshots.commit(upper, chain) {
            Ok(_) => Ok(()),
            // A parallel step committed the same change first: its snapshot serves.
            Err(_) if self.snapshots.exists(chain) => {
                self.snapshots.discard(upper);
                Ok(())
            }
            // Another file system (a data root split over mounts): rebuild from the blob.
            Err(crate::engine::snapshot::SnapshotError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EXDEV) =>
            {
                self.unpack_into_snapshot(layer, chain)?;
                self.snapshots.discard(upper);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Unpacks a layer's stored blob into the snapshot of `chain` (blocking).
    pub(super) fn unpack_into_snapshot(&self, layer: &LayerRecord, chain: &str) -> Result<()> {
        let image = format!("layer {}", short(&layer.digest));
        let blob = self
            .content
            .open_blob(&layer.digest)
            .map_err(|source| ImageError::Content {
                image: image.clone(),
                source,
            })?;
        let tmp = self.snapshots.prepare(chain)?;
        let unpacked = self.unpack_job(&image, &layer.digest).run(blob, &tmp);
        let checked = unpacked.and_then(|stats| {
            if stats.diff_id == layer.diff_id {
                Ok(())
            } else {
                Err(ImageError::DiffIdMismatch {
                    image: image.clone(),
                    layer: short(&layer.digest),
                    expected: layer.diff_id.clone(),
                    actual: stats.diff_id,
                })
            }
        });
        if let Err(e) = checked {
            self.snapshots.discard(&tmp);
            return Err(e);
        }
        match self.snapshots.commit(&tmp, chain) {
            Ok(_) => Ok(()),
            // A parallel commit of the same change renamed its copy first.
            Err(_) if self.snapshots.exists(chain) => {
                self.snapshots.discard(&tmp);
                Ok(())
            }
            Err(e) => {
                self.snapshots.discard(&tmp);
                Err(e.into())
            }
        }
    }

    /// Stores an image made of committed layers (blocking): config and manifest blobs, then
    /// the record, tagged when asked.
    pub fn commit_image(&self, req: CommitRequest) -> Result<ImageRecord> {
        // Its config and manifest blobs are named by no record until the end: sweeps wait.
        let _assembling = self.write_lock.blocking_read();
        let tag = match &req.tag {
            Some(t) => Some(normalised_tag(t)?),
            None => None,
        };
        self.check_layers(&req.layers)?;
        let mut config = req.config;
        let diff_ids: Vec<String> = req.layers.iter().map(|l| l.diff_id.clone()).collect();
        config.set_rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids.clone())
                .build()
                .map_err(|source| ImageError::OciBuild {
                    what: "rootfs",
                    image: "(commit)".into(),
                    source,
                })?,
        );
        if config.created().is_none() {
            config.set_created(Some(now()));
        }
        let config_bytes = config_document(&config, &req.extensions)?;
        let config_digest = self.write_blob("(commit)", &config_bytes)?;
        let manifest_digest =
            self.write_commit_manifest(&config_digest, config_bytes.len(), &req.layers)?;
        let rec = ImageRecord {
            id: config_digest,
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: crate::engine::wire::ImageContainerConfig {
                healthcheck: req.extensions.healthcheck.clone(),
                ..container_config(config.config().as_ref())
            },
            created: config.created().clone().unwrap_or_default(),
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            size: req.layers.iter().map(|l| l.unpacked_size as i64).sum(),
            diff_ids,
            manifest_digest,
            layers: req.layers.clone(),
            last_tag_time: None,
            intermediate: req.intermediate,
        };
        // The same config again (a rebuild with the same creation time) keeps its names.
        let rec = match self.read_records().get(&rec.id) {
            Some(existing) => ImageRecord {
                intermediate: existing.intermediate && req.intermediate,
                ..existing.clone()
            },
            None => rec,
        };
        let saved = self.save_with_tag(rec, tag.as_deref())?;
        let mut keys: Vec<String> = req.layers.iter().map(|l| l.digest.clone()).collect();
        keys.extend(chain_ids(&saved.diff_ids));
        self.unpin_fresh(&keys);
        Ok(saved)
    }

    /// Every layer's blob and snapshot must be there: an image is never recorded half made.
    fn check_layers(&self, layers: &[LayerRecord]) -> Result<()> {
        if layers.len() > MAX_LAYERS {
            return Err(ImageError::InvalidImage {
                image: "(commit)".into(),
                detail: format!(
                    "{} layers (overlayfs stacks at most {MAX_LAYERS})",
                    layers.len()
                ),
            });
        }
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        for (layer, chain) in layers.iter().zip(chain_ids(&diff_ids)) {
            if !self.content.contains(&layer.digest) || !self.snapshots.exists(&chain) {
                return Err(ImageError::InvalidImage {
                    image: "(commit)".into(),
                    detail: format!(
                        "layer {} is not in the store (blob or snapshot missing)",
                        short(&layer.digest)
                    ),
                });
            }
        }
        Ok(())
    }

    fn write_blob(&self, image: &str, bytes: &[u8]) -> Result<String> {
        self.content
            .write_blob(bytes, None)
            .map_err(|source| ImageError::Content {
                image: image.to_string(),
                source,
            })
    }

    fn write_commit_manifest(
        &self,
        config_digest: &str,
        config_len: usize,
        layers: &[LayerRecord],
    ) -> Result<String> {
        let build_err = |what: &'static str| {
            move |source| ImageError::OciBuild {
                what,
                image: "(commit)".into(),
                source,
            }
        };
        let digest = |d: &str| Digest::try_from(d).map_err(build_err("descriptor"));
        let mut descriptors = Vec::with_capacity(layers.len());
        for l in layers {
            let media_type = MediaType::from(l.media_type.as_str());
            descriptors.push(Descriptor::new(media_type, l.size, digest(&l.digest)?));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_len as u64,
                digest(config_digest)?,
            ))
            .layers(descriptors)
            .build()
            .map_err(build_err("manifest"))?;
        let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Other(e.to_string()))?;
        self.write_blob("(commit)", &bytes)
    }

    /// The stored config of an image with Docker's extensions (the base of a commit or a
    /// build step).
    pub fn image_config(
        &self,
        rec: &ImageRecord,
    ) -> Result<(ImageConfiguration, DockerConfigExtensions)> {
        let bytes = self
            .content
            .read_blob(&rec.id, MAX_CONFIG_BYTES)
            .map_err(|source| ImageError::Content {
                image: rec.id.clone(),
                source,
            })?;
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidImage {
                image: rec.id.clone(),
                detail: format!("bad image config: {e}"),
            })?;
        Ok((config, DockerConfigExtensions::from_config_document(&bytes)))
    }

    fn pin_fresh(&self, digest: &str, chain: &str) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        *fresh.entry(digest.to_string()).or_default() += 1;
        *fresh.entry(chain.to_string()).or_default() += 1;
    }

    fn unpin_fresh(&self, keys: &[String]) {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if let Some(n) = fresh.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    fresh.remove(k);
                }
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn normalised_tag(t: &str) -> Result<String> {
    let r = ImageReference::parse(t)?;
    if r.digest.is_some() {
        return Err(crate::engine::reference::ReferenceError::Invalid {
            reference: t.to_string(),
            reason: "a tag cannot contain a digest".into(),
        }
        .into());
    }
    Ok(r.familiar())
}

/// The config document: the OCI config with Docker's extensions merged into `config`.
fn config_document(config: &ImageConfiguration, ext: &DockerConfigExtensions) -> Result<Vec<u8>> {
    let json_err = |e: serde_json::Error| ImageError::Other(format!("image config: {e}"));
    let mut doc = serde_json::to_value(config).map_err(json_err)?;
    let extra = serde_json::to_value(ext).map_err(json_err)?;
    if let (Some(obj), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        if !extra.is_empty() {
            let inner = obj.entry("config").or_insert_with(|| serde_json::json!({}));
            if let Some(inner) = inner.as_object_mut() {
                for (k, v) in extra {
                    inner.insert(k.clone(), v.clone());
                }
            }
        }
    }
    serde_json::to_vec(&doc).map_err(json_err)
}

fn cvt(r: libc::c_int) -> std::io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `act` on the directory holding `rel` (inside `root`, reached one component at a time
/// without following symlinks) and the last component's name.
fn with_parent(
    root: &Path,
    rel: &Path,
    act: impl FnOnce(&OwnedFd, &CString) -> std::io::Result<()>,
) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let full = root.join(rel);
    let err = io_err(&full);
    let mut dir = OwnedFd::from(
        std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(root)
            .map_err(io_err(root))?,
    );
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some((last, parents)) = parts.split_last() else {
        return Ok(());
    };
    for p in parents {
        let name = CString::new(p.as_bytes()).map_err(std::io::Error::other);
        let name = name.map_err(io_err(&full))?;
        dir = nix::fcntl::openat(
            &dir,
            name.as_c_str(),
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io_err(&full)(e.into()))?;
    }
    let name =
        CString::new(last.as_bytes()).map_err(|e| io_err(&full)(std::io::Error::other(e)))?;
    act(&dir, &name).map_err(err)
}

/// Removes every `trusted.overlay.*` xattr of `name` but the opaque marker.
fn strip_overlay_xattrs(dir: &OwnedFd, name: &CString) -> std::io::Result<()> {
    let mut target = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    target.extend_from_slice(name.as_bytes());
    let target = CString::new(target).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 64 << 10];
    let n = unsafe { libc::llistxattr(target.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    for key in buf.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(b"trusted.overlay.") && key != b"trusted.overlay.opaque" {
            let key = CString::new(key).map_err(std::io::Error::other)?;
            cvt(unsafe { libc::lremovexattr(target.as_ptr(), key.as_ptr()) })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::paths::EngineRoots;
    use oci_spec::image::{ConfigBuilder, HistoryBuilder};

    fn store(tmp: &Path) -> ImageStore {
        ImageStore::open(&EngineRoots::new(tmp.join("data"), tmp.join("run"))).unwrap()
    }

    fn upper(tmp: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = tmp.join("data").join(name);
        for (path, data) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The builder's path: two layers committed by moving their directories, an image of them
    /// with Docker's extensions, found by its tag with its config, manifest and snapshots.
    #[test]
    fn committed_layers_become_a_tagged_image_with_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let first = upper(
            tmp.path(),
            "u1",
            &[("bin/tool", b"#!/bin/sh\n"), ("etc/hosts", b"")],
        );
        let exclude = [PathBuf::from("/etc/hosts")];
        let l1 = s.commit_layer(&first, &[], &exclude).unwrap().unwrap();
        assert!(
            !first.exists(),
            "the upper directory moved into the snapshot store"
        );
        let second = upper(tmp.path(), "u2", &[("app/data", b"42")]);
        let l2 = s
            .commit_layer(&second, std::slice::from_ref(&l1), &[])
            .unwrap()
            .unwrap();
        let empty = upper(tmp.path(), "u3", &[]);
        assert_eq!(
            s.commit_layer(&empty, &[l1.clone(), l2.clone()], &[])
                .unwrap(),
            None
        );
        assert!(empty.exists(), "an empty diff leaves its directory");

        let config = ImageConfiguration::default();
        let mut config = config;
        config.set_config(Some(
            ConfigBuilder::default()
                .cmd(vec!["/bin/tool".to_string()])
                .build()
                .unwrap(),
        ));
        config.set_history(Some(vec![HistoryBuilder::default()
            .created_by("RUN make")
            .build()
            .unwrap()]));
        let ext = DockerConfigExtensions {
            shell: Some(vec!["/bin/bash".into(), "-c".into()]),
            healthcheck: Some(HealthConfig {
                test: Some(vec!["CMD".into(), "true".into()]),
                ..Default::default()
            }),
            on_build: None,
        };
        let rec = s
            .commit_image(CommitRequest {
                config,
                extensions: ext.clone(),
                layers: vec![l1.clone(), l2.clone()],
                tag: Some("built".into()),
                intermediate: false,
            })
            .unwrap();
        let found = s.resolve("built:latest").unwrap();
        assert_eq!(found.id, rec.id);
        assert_eq!(found.config.cmd, Some(vec!["/bin/tool".to_string()]));
        assert!(found.config.healthcheck.is_some());
        let (stored, stored_ext) = s.image_config(&found).unwrap();
        assert_eq!(stored_ext, ext);
        assert_eq!(
            stored.rootfs().diff_ids(),
            &vec![l1.diff_id.clone(), l2.diff_id.clone()]
        );
        let lowers = s.lower_dirs(&found).unwrap();
        assert_eq!(std::fs::read(lowers[0].join("app/data")).unwrap(), b"42");
        assert!(lowers[1].join("bin/tool").is_file());
        assert!(
            !lowers[1].join("etc/hosts").exists(),
            "the stub left with the layer"
        );
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(
            &s.content()
                .read_blob(&found.manifest_digest, 1 << 20)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.layers().len(), 2);
        assert_eq!(manifest.layers()[1].digest().to_string(), l2.digest);
        assert_eq!(
            manifest.layers()[1].media_type(),
            &MediaType::ImageLayerGzip
        );
        // The sweep of a prune keeps all of it.
        assert_eq!(s.sweep(), 0);
    }

    /// `docker commit`'s path leaves the directory; a layer never made into an image is
    /// released without leaving blob or snapshot.
    #[test]
    fn a_copied_layer_leaves_its_directory_and_a_released_one_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let dir = upper(tmp.path(), "u", &[("f", b"x")]);
        let layer = s.commit_layer_copy(&dir, &[], &[]).unwrap().unwrap();
        assert!(dir.join("f").is_file());
        assert!(s.content().contains(&layer.digest));
        assert!(s.snapshots.exists(&layer.diff_id));
        assert_eq!(s.sweep(), 0, "fresh layers survive a sweep");
        s.release_layer(&layer, &[]);
        assert!(!s.content().contains(&layer.digest));
        assert!(!s.snapshots.exists(&layer.diff_id));
        let err = s
            .commit_image(CommitRequest {
                layers: vec![layer],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("not in the store"), "{err}");
    }

    /// Two build stages making the same change at once: one snapshot, both commits succeed,
    /// both directories consumed.
    #[test]
    fn parallel_commits_of_the_same_change_share_one_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(store(tmp.path()));
        let src = upper(
            tmp.path(),
            "src",
            &[("app/bin", b"binary"), ("etc/conf", b"c")],
        );
        let copies: Vec<PathBuf> = (0..4)
            .map(|i| {
                let dest = tmp.path().join("data").join(format!("copy{i}"));
                let st = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&src)
                    .arg(&dest)
                    .status()
                    .unwrap();
                assert!(st.success());
                dest
            })
            .collect();
        let layers: Vec<LayerRecord> = std::thread::scope(|scope| {
            let handles: Vec<_> = copies
                .iter()
                .map(|dir| {
                    let s = s.clone();
                    scope.spawn(move || s.commit_layer(dir, &[], &[]).unwrap().unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(layers.iter().all(|l| l == &layers[0]), "{layers:?}");
        assert!(copies.iter().all(|d| !d.exists()));
        assert!(s.snapshots.exists(&layers[0].diff_id));
        assert_eq!(s.snapshots.list().len(), 1);
    }

    #[test]
    fn intermediate_images_resolve_but_prune_leaves_them() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let dir = upper(tmp.path(), "u", &[("f", b"x")]);
        let layer = s.commit_layer(&dir, &[], &[]).unwrap().unwrap();
        let rec = s
            .commit_image(CommitRequest {
                layers: vec![layer],
                intermediate: true,
                ..Default::default()
            })
            .unwrap();
        assert!(s.resolve(&rec.id).unwrap().intermediate);
        let report = s.prune(true, &|_| false).unwrap();
        assert!(report.images_deleted.is_none(), "{report:?}");
        assert!(s.resolve(&rec.id).is_some());
    }
}
