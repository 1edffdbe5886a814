//! The image store: names → image records (config digest, layers), pull and import.

use std::path::PathBuf;

use thiserror::Error;
use tokio::sync::mpsc;

use super::api::types::{ImageContainerConfig, ImageInspect, ImageSummary, ProgressMessage};
use super::paths::EngineRoots;
use super::reference::ImageReference;
use super::EngineSettings;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

impl ImageError {
    pub fn http_status(&self) -> u16 {
        match self {
            ImageError::NotFound(_) => 404,
            ImageError::Other(_) => 500,
        }
    }
}

/// A stored image: what containers are created from.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub config: ImageContainerConfig,
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub size: i64,
    pub diff_ids: Vec<String>,
}

pub struct ImageStore {
    _root: PathBuf,
}

impl ImageStore {
    pub fn open(_roots: &EngineRoots) -> Result<Self, ImageError> {
        todo!("helper: images")
    }
    /// By ID (full or 12+ hex prefix), `name:tag` (default tag `latest`) or `name@digest`.
    pub fn resolve(&self, _name_or_id: &str) -> Option<ImageRecord> {
        todo!("helper: images")
    }
    pub fn list(&self) -> Vec<ImageRecord> {
        todo!("helper: images")
    }
    /// Overlay lower directories for the image, topmost layer first.
    pub fn lower_dirs(&self, _image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        todo!("helper: images")
    }
    /// Pull from a registry, streaming Docker-style progress messages.
    pub async fn pull(
        &self,
        _reference: &ImageReference,
        _settings: &EngineSettings,
        _progress: mpsc::Sender<ProgressMessage>,
    ) -> Result<ImageRecord, ImageError> {
        todo!("helper: images")
    }
    pub fn summary(&self, _image: &ImageRecord) -> ImageSummary {
        todo!("helper: images")
    }
    pub fn inspect(&self, _image: &ImageRecord) -> ImageInspect {
        todo!("helper: images")
    }
}
