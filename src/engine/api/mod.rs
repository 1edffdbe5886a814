//! The Docker-Engine-API-shaped REST interface: the axum server and the client. The JSON types
//! they exchange live in `super::wire`, which the engine's own modules use too.

pub mod archive;
pub mod client;
pub mod server;

/// The API version berth speaks; paths may be prefixed `/v1.41/` or carry no version.
pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.24";
