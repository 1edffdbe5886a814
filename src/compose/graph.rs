//! The service dependency graph (petgraph): start order, reverse stop order, cycle errors.

use super::model::Project;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("dependency cycle detected: {0}")]
    Cycle(String),
}

pub struct ServiceGraph {
    _services: Vec<String>,
}

impl ServiceGraph {
    pub fn new(_project: &Project) -> Result<Self, GraphError> {
        todo!("helper: compose")
    }
    /// Dependencies before dependents.
    pub fn start_order(&self) -> Vec<String> {
        todo!("helper: compose")
    }
    /// Dependents before dependencies.
    pub fn stop_order(&self) -> Vec<String> {
        todo!("helper: compose")
    }
}
