//! Network connect and disconnect as a container's configuration sees them.
//!
//! Docker lets clients connect a container that is not running (docker-compose 1.29 creates
//! each container, then connects it to its networks with their aliases, then starts it): the
//! endpoint is recorded in the container's `NetworkingConfig` and set up at its next start. A
//! running container is plugged in at once by the network manager, and the endpoint is recorded
//! too, so it survives a restart of the container, as in Docker.

use indexmap::IndexMap;
use thiserror::Error;

use super::state::Status;
use super::ContainerError;
use crate::engine::wire::EndpointSettings;
use crate::engine::Engine;
use crate::network::{NetworkError, NetworkInfo};

/// A connect or disconnect fails in the container's record or in the network's kernel objects;
/// each keeps its own HTTP status.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Network(#[from] NetworkError),
}

type Result<T> = std::result::Result<T, ConnectError>;

/// The endpoints a container asks for once `network` is added to (`Some`) or removed from
/// (`None`) what it asked for (`wanted`, from [`super::start::requested_networks`]).
pub fn endpoints_with(
    mut wanted: IndexMap<String, EndpointSettings>,
    network: &str,
    settings: Option<EndpointSettings>,
) -> IndexMap<String, EndpointSettings> {
    match settings {
        Some(settings) => {
            wanted.insert(network.to_string(), settings);
        }
        None => {
            wanted.shift_remove(network);
        }
    }
    wanted
}

impl Engine {
    /// `POST /networks/{id}/connect`.
    pub async fn connect_container(
        &self,
        container: &str,
        network: &NetworkInfo,
        settings: EndpointSettings,
    ) -> Result<()> {
        let id = self.containers.resolve_id(container)?;
        if self.containers.state(&id).status == Status::Running {
            self.networks
                .connect(&id, &network.id, settings.clone().into())
                .await?;
        }
        self.containers
            .update_endpoints(&id, &network.name, Some(settings))
            .await?;
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect_container(&self, container: &str, network: &NetworkInfo) -> Result<()> {
        let id = self.containers.resolve_id(container)?;
        let wanted = super::start::requested_networks(&self.containers.load_record(&id)?)?;
        let running = self.containers.state(&id).status == Status::Running;
        if !running && !wanted.contains_key(&network.name) && !wanted.contains_key(&network.id) {
            return Err(ContainerError::Conflict(format!(
                "container {container} is not connected to network {}",
                network.name
            ))
            .into());
        }
        if running {
            self.networks.disconnect(&id, &network.id).await?;
        }
        self.containers
            .update_endpoints(&id, &network.name, None)
            .await?;
        if !network.id.is_empty() {
            self.containers
                .update_endpoints(&id, &network.id, None)
                .await?;
        }
        Ok(())
    }
}

impl super::ContainerStore {
    /// Record `network`'s endpoint (or its removal) in the container's configuration.
    async fn update_endpoints(
        &self,
        id: &str,
        network: &str,
        settings: Option<EndpointSettings>,
    ) -> std::result::Result<(), ContainerError> {
        let _guard = self.lock(id).await;
        let mut record = self.load_record(id)?;
        let wanted = super::start::requested_networks(&record)?;
        let endpoints = endpoints_with(wanted, network, settings);
        if endpoints.is_empty() {
            // Off its last network: nothing is set up at start, rather than the mode's default.
            record
                .request
                .host_config
                .get_or_insert_with(Default::default)
                .network_mode = "none".into();
        }
        record
            .request
            .networking_config
            .get_or_insert_with(Default::default)
            .endpoints_config = endpoints;
        self.save_record(&record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(names: &[&str]) -> EndpointSettings {
        EndpointSettings {
            aliases: Some(names.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn connecting_adds_to_what_the_mode_asked_for() {
        let wanted: IndexMap<_, _> = [("bridge".to_string(), EndpointSettings::default())].into();
        let out = endpoints_with(wanted, "app_default", Some(aliases(&["web"])));
        assert_eq!(out.keys().collect::<Vec<_>>(), ["bridge", "app_default"]);
        assert_eq!(out["app_default"].aliases, Some(vec!["web".to_string()]));
    }

    #[test]
    fn reconnecting_replaces_the_aliases_and_disconnecting_removes() {
        let wanted: IndexMap<_, _> = [("app_default".to_string(), aliases(&["old"]))].into();
        let out = endpoints_with(wanted, "app_default", Some(aliases(&["web", "db"])));
        assert_eq!(out.len(), 1);
        assert_eq!(
            out["app_default"].aliases,
            Some(vec!["web".to_string(), "db".to_string()])
        );
        assert!(endpoints_with(out, "app_default", None).is_empty());
    }
}
