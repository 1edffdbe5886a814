//! Compose logic (client side): file discovery, loading pipeline, the typed project model, the
//! service graph and the plan.

pub mod graph;
pub mod load;
pub mod model;
pub mod plan;

pub use load::{load, ComposeError, LoadOptions};
pub use model::Project;
