//! Compose logic (client side): file discovery, loading pipeline, the typed project model, the
//! service graph and the plan.

pub mod consistency;
pub mod converge;
pub mod dotenv;
pub mod emit;
pub mod error;
pub mod extends;
pub mod files;
pub mod graph;
pub mod include;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod notation;
pub mod plan;
pub mod pull_policy;
pub mod schema;
pub mod spec_schema;
pub mod support;
#[cfg(test)]
mod test_support;
pub mod watch;
pub mod yaml;

pub use error::ComposeError;
pub use load::{load, LoadOptions};
pub use model::Project;
