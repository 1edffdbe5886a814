//! The image builder (issue 9): Dockerfile → image, on the engine's own containers and stores.
//!
//! [`layer`] turns a directory of changes (an overlay upper dir) into an OCI layer blob.

pub mod cache;
pub mod context;
pub mod copy;
pub mod layer;
pub mod progress;
pub mod run_step;
