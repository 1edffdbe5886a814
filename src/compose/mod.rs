//! Compose logic (client side): file discovery, loading pipeline, the typed project model, the
//! service graph and the plan.

pub mod model;

pub use model::Project;
