//! Named volumes (local driver): `volumes/<name>/_data` under the data root, with labels.

use std::path::PathBuf;

use thiserror::Error;

use crate::engine::api::types::{Volume, VolumeCreateRequest};
use crate::engine::paths::EngineRoots;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl VolumeError {
    pub fn http_status(&self) -> u16 {
        match self {
            VolumeError::NotFound(_) => 404,
            VolumeError::Conflict(_) => 409,
            VolumeError::Other(_) => 500,
        }
    }
}

pub struct VolumeStore {
    _root: PathBuf,
}

impl VolumeStore {
    pub fn open(_roots: &EngineRoots) -> Result<Self, VolumeError> {
        todo!("helper: api")
    }
    /// Idempotent, as Docker's: creating an existing volume returns it.
    pub fn create(&self, _req: VolumeCreateRequest) -> Result<Volume, VolumeError> {
        todo!("helper: api")
    }
    pub fn get(&self, _name: &str) -> Result<Volume, VolumeError> {
        todo!("helper: api")
    }
    pub fn list(&self) -> Vec<Volume> {
        todo!("helper: api")
    }
    pub fn remove(&self, _name: &str) -> Result<(), VolumeError> {
        todo!("helper: api")
    }
    /// The host directory mounted into containers.
    pub fn mountpoint(&self, _name: &str) -> Result<PathBuf, VolumeError> {
        todo!("helper: api")
    }
}
