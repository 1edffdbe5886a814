//! The Docker-Engine-API-shaped REST interface: JSON types, the axum server and the client.

pub mod archive;
pub mod client;
pub mod filters;
pub mod server;
pub mod types;

/// The API version berth speaks; paths may be prefixed `/v1.41/` or carry no version.
pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.24";
