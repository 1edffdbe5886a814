//! `/containers`: create, list, inspect, start, stop, kill, wait, restart, remove and logs.

use std::collections::HashMap;

use axum::Router;

use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    // The container verbs are served once the container store (runtime helper) lands.
    Router::new()
}

/// Running, paused and stopped container counts for `/info`.
pub fn state_counts(_engine: &SharedEngine) -> (usize, usize, usize) {
    // Until the container store lands there are no containers to count.
    (0, 0, 0)
}

/// Volume name → IDs of the containers (any state) whose mounts use it.
pub fn volumes_in_use(engine: &SharedEngine) -> HashMap<String, Vec<String>> {
    engine.volumes_in_use()
}
