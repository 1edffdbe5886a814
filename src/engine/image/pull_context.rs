//! What every stage of one pull shares (`pull.rs` drives the stages, `layers.rs` fetches and
//! unpacks the layers): its own module, so the two stage modules depend on it and not on each
//! other.

use tokio::sync::mpsc;

use super::{ImageError, Result};
use crate::engine::content::{sha256_digest, ContentError};
use crate::engine::registry::RegistryClient;
use crate::engine::wire::ProgressMessage;

/// What every stage of one pull needs: the image's name for errors, the registry, the progress
/// stream.
pub(super) struct PullContext<'a> {
    pub image: String,
    pub client: &'a RegistryClient,
    progress: &'a mpsc::Sender<ProgressMessage>,
}

impl<'a> PullContext<'a> {
    pub fn new(
        image: String,
        client: &'a RegistryClient,
        progress: &'a mpsc::Sender<ProgressMessage>,
    ) -> Self {
        PullContext {
            image,
            client,
            progress,
        }
    }

    pub async fn send(&self, message: ProgressMessage) {
        // A client that went away does not stop the pull (Docker behaves the same).
        let _ = self.progress.send(message).await;
    }

    pub fn invalid(&self, detail: impl Into<String>) -> ImageError {
        ImageError::InvalidImage {
            image: self.image.clone(),
            detail: detail.into(),
        }
    }

    pub fn content_error(&self, source: ContentError) -> ImageError {
        ImageError::Content {
            image: self.image.clone(),
            source,
        }
    }

    /// Bytes must hash to `expected`: a registry serves exactly what was asked for, or nothing.
    pub fn check_digest(&self, bytes: &[u8], expected: &str) -> Result<()> {
        let actual = sha256_digest(bytes);
        if actual == expected {
            return Ok(());
        }
        Err(self.content_error(ContentError::DigestMismatch {
            expected: expected.to_string(),
            actual,
            size: bytes.len() as u64,
        }))
    }
}
