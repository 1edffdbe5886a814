//! Container networking: bridges, veth pairs, IPAM, service DNS and published ports.

use std::collections::HashMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use thiserror::Error;

use crate::engine::api::types::{
    EndpointSettings, NetworkCreateRequest, NetworkCreateResponse, NetworkResource, PortBinding,
};
use crate::engine::paths::EngineRoots;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl NetworkError {
    pub fn http_status(&self) -> u16 {
        match self {
            NetworkError::NotFound(_) => 404,
            NetworkError::Conflict(_) => 409,
            NetworkError::Other(_) => 500,
        }
    }
}

/// What a container asks of the network when it starts.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container_id: String,
    /// Without the leading `/`.
    pub container_name: String,
    pub hostname: String,
    /// Where the container's network namespace is bind-mounted (created by `attach`).
    pub netns_path: PathBuf,
    /// Network name or ID → requested settings (aliases, static IP).
    pub networks: IndexMap<String, EndpointSettings>,
    pub port_bindings: HashMap<String, Option<Vec<PortBinding>>>,
    pub extra_hosts: Vec<String>,
}

/// What the container gets back: its endpoints and the files to bind into it.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub endpoints: IndexMap<String, EndpointSettings>,
    pub hosts_file: String,
    pub resolv_conf: String,
}

pub struct NetworkManager {
    _root: PathBuf,
}

impl NetworkManager {
    pub fn open(_roots: &EngineRoots) -> Result<Self, NetworkError> {
        todo!("helper: network")
    }
    pub async fn create(
        &self,
        _req: NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse, NetworkError> {
        todo!("helper: network")
    }
    pub fn list(&self) -> Vec<NetworkResource> {
        todo!("helper: network")
    }
    pub fn inspect(&self, _id_or_name: &str) -> Result<NetworkResource, NetworkError> {
        todo!("helper: network")
    }
    pub async fn remove(&self, _id_or_name: &str) -> Result<(), NetworkError> {
        todo!("helper: network")
    }
    /// Create the container's netns, veths, addresses, DNS names and port proxies.
    pub async fn attach(&self, _req: AttachRequest) -> Result<Attachment, NetworkError> {
        todo!("helper: network")
    }
    /// Undo `attach`; idempotent, works on a half-made attachment.
    pub async fn detach(&self, _container_id: &str) -> Result<(), NetworkError> {
        todo!("helper: network")
    }
}
