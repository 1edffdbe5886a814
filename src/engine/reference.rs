//! Image references (`busybox`, `localhost:5000/app:1.0`, `repo@sha256:…`), parsed and validated
//! before any part of them is used in a path or a URL.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReferenceError {
    #[error("invalid reference format: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `docker.io` when the name has no registry part.
    pub registry: String,
    /// `library/busybox` for Docker Hub official images.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    pub fn parse(_s: &str) -> Result<Self, ReferenceError> {
        todo!("helper: images")
    }
}
