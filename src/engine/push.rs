//! Push a local image to a registry (`POST /images/{name}/push`), as dockerd does: blobs the
//! repository already has are skipped (`HEAD`), a cross-repository mount is tried when the image
//! came from another repository of the same registry, the other blobs upload in parallel
//! (monolithic `PUT` for small ones, chunked `PATCH` for large ones), and the manifest goes last
//! with its own media type — so the tag never names a manifest whose blobs are missing. The
//! manifest bytes are the stored ones: the pushed digest is the image's local manifest digest.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, MediaType};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::auth::AuthConfig;
use super::content::ContentError;
use super::image::ImageStore;
use super::reference::{is_valid_digest, ImageReference};
use super::registry::{
    parse_manifest, Manifest, RegistryClient, RegistryError, UploadStart, MAX_MANIFEST_BYTES,
};
use super::wire::{ProgressDetail, ProgressMessage};
use super::EngineSettings;

/// Blobs up to this size go in one `PUT`; larger ones in chunks of `CHUNK_BYTES`, so a big
/// layer never sits whole in memory.
pub const MONOLITHIC_MAX_BYTES: u64 = 16 << 20;
pub const CHUNK_BYTES: usize = 8 << 20;
/// Blobs uploaded at once (docker's default `max-concurrent-uploads` is 5; two cores here).
const PARALLEL_UPLOADS: usize = 3;

#[derive(Debug, Error)]
pub enum PushError {
    #[error("No such image: {0}; tag a local image with that name first")]
    NotFound(String),
    #[error("cannot push {0}: push a tag, not a digest")]
    DigestReference(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("image {image}: {source}")]
    Content {
        image: String,
        #[source]
        source: ContentError,
    },
    #[error("image {image}: stored manifest is invalid: {detail}")]
    InvalidManifest { image: String, detail: String },
    #[error("reading blob {digest} of {image}: {source}")]
    Read {
        image: String,
        digest: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, PushError>;

/// What a finished push reports (docker's final `<tag>: digest: … size: …` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    pub tag: String,
    pub digest: String,
    pub size: u64,
}

/// The repository (same registry, other name) a blob of an image recorded with `repo_digests`
/// may be mounted from; `None` when the image never came from that registry.
pub fn mount_source(repo_digests: &[String], target: &ImageReference) -> Option<String> {
    repo_digests.iter().find_map(|rd| {
        let r = ImageReference::parse(rd).ok()?;
        (r.registry == target.registry && r.repository != target.repository).then_some(r.repository)
    })
}

/// How a blob of `size` bytes is uploaded: in one `PUT`, or in this many `PATCH` chunks.
pub fn chunk_count(size: u64) -> Option<u64> {
    (size > MONOLITHIC_MAX_BYTES).then(|| size.div_ceil(CHUNK_BYTES as u64))
}

fn message(status: &str, id: &str, detail: Option<ProgressDetail>) -> ProgressMessage {
    ProgressMessage {
        status: Some(status.to_string()),
        id: Some(id.to_string()).filter(|i| !i.is_empty()),
        progress_detail: detail,
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

struct Pusher<'a> {
    store: &'a ImageStore,
    client: RegistryClient,
    image: String,
    mount_from: Option<String>,
    progress: mpsc::Sender<ProgressMessage>,
}

impl Pusher<'_> {
    async fn say(&self, m: ProgressMessage) {
        // A client that went away does not stop the push (as with pulls).
        let _ = self.progress.send(m).await;
    }

    /// Uploads one blob unless the repository has it; `id` is empty for the config (docker
    /// shows no line for it).
    async fn blob(&self, d: &Descriptor, id: String) -> Result<()> {
        let digest = d.digest().to_string();
        if !is_valid_digest(&digest) {
            return Err(PushError::InvalidManifest {
                image: self.image.clone(),
                detail: format!("descriptor digest {digest} is not sha256"),
            });
        }
        if self.client.blob_exists(&digest).await? {
            self.say(message("Layer already exists", &id, None)).await;
            return Ok(());
        }
        let session = match self
            .client
            .start_upload(&digest, self.mount_from.as_deref())
            .await?
        {
            UploadStart::Mounted => {
                let from = self.mount_from.as_deref().unwrap_or("");
                self.say(message(&format!("Mounted from {from}"), &id, None))
                    .await;
                return Ok(());
            }
            UploadStart::Session(url) => url,
        };
        self.say(message("Pushing", &id, None)).await;
        self.upload(session, &digest, d.size(), &id).await?;
        self.say(message("Pushed", &id, None)).await;
        Ok(())
    }

    async fn upload(
        &self,
        mut session: reqwest::Url,
        digest: &str,
        size: u64,
        id: &str,
    ) -> Result<()> {
        let read_err = |source| PushError::Read {
            image: self.image.clone(),
            digest: digest.to_string(),
            source,
        };
        let file = self
            .store
            .content()
            .open_blob(digest)
            .map_err(|source| PushError::Content {
                image: self.image.clone(),
                source,
            })?;
        let mut file = tokio::fs::File::from_std(file);
        if chunk_count(size).is_none() {
            let mut data = Vec::with_capacity(size as usize);
            file.read_to_end(&mut data).await.map_err(read_err)?;
            return Ok(self
                .client
                .finish_upload(&session, digest, Bytes::from(data))
                .await?);
        }
        let mut offset = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK_BYTES);
            (&mut file)
                .take(CHUNK_BYTES as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(read_err)?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len() as u64;
            session = self
                .client
                .upload_chunk(&session, offset, Bytes::from(chunk))
                .await?;
            offset += n;
            let detail = ProgressDetail {
                current: Some(offset),
                total: Some(size),
            };
            self.say(message("Pushing", id, Some(detail))).await;
        }
        Ok(self
            .client
            .finish_upload(&session, digest, Bytes::new())
            .await?)
    }
}

/// The image's manifest as stored (the exact bytes are pushed, so the digest stays the same).
fn stored_manifest(
    store: &ImageStore,
    image: &str,
    digest: &str,
) -> Result<(Vec<u8>, Box<oci_spec::image::ImageManifest>)> {
    let bytes = store
        .content()
        .read_blob(digest, MAX_MANIFEST_BYTES)
        .map_err(|source| PushError::Content {
            image: image.to_string(),
            source,
        })?;
    let invalid = |detail: String| PushError::InvalidManifest {
        image: image.to_string(),
        detail,
    };
    match parse_manifest(&bytes, None).map_err(invalid)? {
        Manifest::Image(m) => Ok((bytes, m)),
        Manifest::Index(_) => Err(invalid("an index, not an image manifest".into())),
    }
}

/// Pushes the local image named `target` (with its tag) to its registry.
pub async fn push(
    store: &ImageStore,
    target: &ImageReference,
    settings: &EngineSettings,
    credentials: Option<AuthConfig>,
    progress: mpsc::Sender<ProgressMessage>,
) -> Result<PushResult> {
    let image = target.familiar();
    if target.digest.is_some() {
        return Err(PushError::DigestReference(image));
    }
    let rec = store
        .resolve(&image)
        .ok_or_else(|| PushError::NotFound(image.clone()))?;
    let (bytes, manifest) = stored_manifest(store, &image, &rec.manifest_digest)?;
    let media_type = manifest
        .media_type()
        .clone()
        .unwrap_or(MediaType::ImageManifest)
        .to_string();
    let mount_from = mount_source(&rec.repo_digests, target);
    let sources: Vec<String> = mount_from.iter().cloned().collect();
    let client = RegistryClient::new(target, settings)?
        .with_credentials(credentials)
        .for_push(&sources);
    let pusher = Pusher {
        store,
        client,
        image: image.clone(),
        mount_from,
        progress: progress.clone(),
    };
    pusher
        .say(message(
            &format!("The push refers to repository [{}]", target.familiar_name()),
            "",
            None,
        ))
        .await;
    let mut blobs: Vec<(Descriptor, String)> = manifest
        .layers()
        .iter()
        .map(|l| (l.clone(), short(l.digest().as_ref())))
        .collect();
    for (_, id) in &blobs {
        pusher.say(message("Preparing", id, None)).await;
    }
    blobs.push((manifest.config().clone(), String::new()));
    futures_util::stream::iter(blobs)
        .map(|(d, id)| {
            let p = &pusher;
            async move { p.blob(&d, id).await }
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    let tag = target.manifest_ref().to_string();
    let size = bytes.len() as u64;
    pusher.client.put_manifest(&tag, &media_type, bytes).await?;
    pusher
        .say(message(
            &format!("{tag}: digest: {} size: {size}", rec.manifest_digest),
            "",
            None,
        ))
        .await;
    Ok(PushResult {
        tag,
        digest: rec.manifest_digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_only_from_another_repository_of_the_same_registry() {
        let d = format!("sha256:{}", "a".repeat(64));
        let target = ImageReference::parse("127.0.0.1:5000/team/app:1").unwrap();
        let from_same = vec![format!("127.0.0.1:5000/base/img@{d}")];
        assert_eq!(
            mount_source(&from_same, &target),
            Some("base/img".to_string())
        );
        let itself = vec![format!("127.0.0.1:5000/team/app@{d}")];
        assert_eq!(mount_source(&itself, &target), None);
        let other_registry = vec![format!("busybox@{d}")];
        assert_eq!(mount_source(&other_registry, &target), None);
        assert_eq!(mount_source(&[], &target), None);
    }

    #[test]
    fn small_blobs_go_whole_and_large_ones_in_chunks() {
        assert_eq!(chunk_count(0), None);
        assert_eq!(chunk_count(MONOLITHIC_MAX_BYTES), None);
        assert_eq!(chunk_count(MONOLITHIC_MAX_BYTES + 1), Some(3));
        assert_eq!(chunk_count(4 * CHUNK_BYTES as u64), Some(4));
    }
}
