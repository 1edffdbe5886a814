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

    /// Sends without waiting, for code that must not park on the progress stream (see
    /// `ProgressBacklog`). Returns the message when the stream is full.
    fn try_send(&self, message: ProgressMessage) -> Option<ProgressMessage> {
        match self.progress.try_send(message) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(m)) => Some(m),
            // A client that went away does not stop the pull.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
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

/// Progress messages of the layer loop's own steps (commits). That loop drives the layer
/// futures: if it awaited a slot on the progress stream, a slot freed by the client could be
/// handed to a layer future the loop is not polling while it waits, and both would wait for
/// ever (a download parked on its progress message stops reading the registry). So the loop
/// never waits: what does not fit now is kept, in order, and sent once the layers are done.
#[derive(Default)]
pub(super) struct ProgressBacklog(Vec<ProgressMessage>);

impl ProgressBacklog {
    pub fn post(&mut self, cx: &PullContext<'_>, message: ProgressMessage) {
        if !self.0.is_empty() {
            self.0.push(message);
        } else if let Some(kept) = cx.try_send(message) {
            self.0.push(kept);
        }
    }

    /// Sends what was kept, in order; called once no layer future is left waiting.
    pub async fn flush(self, cx: &PullContext<'_>) {
        for message in self.0 {
            cx.send(message).await;
        }
    }
}
