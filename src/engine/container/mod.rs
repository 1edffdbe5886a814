//! Containers: state on disk, lifecycle verbs (one file each), the shim and the init re-exec.

use std::path::PathBuf;

use thiserror::Error;

use super::paths::EngineRoots;

#[derive(Debug, Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Other(String),
}

impl ContainerError {
    pub fn http_status(&self) -> u16 {
        match self {
            ContainerError::NotFound(_) => 404,
            ContainerError::Conflict(_) => 409,
            ContainerError::BadRequest(_) => 400,
            ContainerError::Other(_) => 500,
        }
    }
}

pub struct ContainerStore {
    _root: PathBuf,
}

impl ContainerStore {
    pub fn open(_roots: &EngineRoots) -> Result<Self, ContainerError> {
        todo!("helper: runtime")
    }
}

pub mod init;
pub mod shim;
