//! The container engine: a daemon (`berth engine`) serving the Docker Engine API over a UNIX socket.
//!
//! It knows nothing of compose except labels. It owns images (content store, registry client,
//! layer unpack, snapshots), containers (state, shim, init, logs), and uses `crate::network` and
//! `crate::volume` for networks and volumes.

pub mod api;
pub mod auth;
pub mod build;
pub mod container;
pub mod content;
pub mod daemon;
pub mod events;
pub mod image;
pub mod network_wire;
pub mod push;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod snapshot;
pub mod unpack;
pub mod wire;

use std::sync::Arc;

use crate::network::NetworkManager;
/// The data and run roots moved below the engine (networks and volumes use them too); the old
/// path still works for the engine's own code.
pub use crate::paths;
pub use crate::paths::EngineRoots;
use crate::volume::VolumeStore;
use container::ContainerStore;
use image::ImageStore;

/// Engine settings fixed at daemon start.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// Registries reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure_registries: Vec<String>,
}

/// Everything the daemon serves from; shared by every API handler.
pub struct Engine {
    pub roots: EngineRoots,
    pub settings: EngineSettings,
    pub images: ImageStore,
    pub containers: ContainerStore,
    pub networks: NetworkManager,
    pub volumes: VolumeStore,
    pub events: events::EventBus,
}

pub type SharedEngine = Arc<Engine>;
