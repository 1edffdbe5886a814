//! `/networks`: create, list (with filters), inspect and remove.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::{emit_event, json_body, json_response, ApiError, ApiResult, Filters, Params};
use crate::engine::wire::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkResource,
};
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

async fn create(State(engine): State<SharedEngine>, body: Bytes) -> ApiResult<Response> {
    let req: NetworkCreateRequest = json_body(&body)?;
    if req.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    let name = req.name.clone();
    let driver = if req.driver.is_empty() {
        "bridge".to_string()
    } else {
        req.driver.clone()
    };
    let created = engine.networks.create(req.into()).await?;
    emit_event(
        &engine,
        "network",
        "create",
        &created.id,
        &[("name", &name), ("type", &driver)],
    );
    Ok(json_response(
        StatusCode::CREATED,
        &NetworkCreateResponse::from(created),
    ))
}

async fn list(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = Filters::from_params(&params)?;
    filters.allow_only(&["name", "id", "label", "driver", "scope", "type"])?;
    let networks: Vec<NetworkResource> = engine
        .networks
        .list()
        .into_iter()
        .filter(|n| filters.any("name", |want| n.name.contains(want)))
        .filter(|n| filters.any("id", |want| n.id.starts_with(want)))
        .filter(|n| filters.any("driver", |want| n.driver == want))
        .filter(|n| filters.any("scope", |want| n.scope == want))
        .filter(|n| {
            // `builtin` networks are the ones Docker predefines (bridge, host, none).
            let builtin = matches!(n.name.as_str(), "bridge" | "host" | "none");
            filters.any("type", |want| (want == "builtin") == builtin)
        })
        .filter(|n| filters.labels_match(&n.labels))
        .map(NetworkResource::from)
        .collect();
    Ok(json_response(StatusCode::OK, &networks))
}

async fn inspect(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let network = engine.networks.inspect(&id)?;
    Ok(json_response(
        StatusCode::OK,
        &NetworkResource::from(network),
    ))
}

async fn remove(State(engine): State<SharedEngine>, Path(id): Path<String>) -> ApiResult<Response> {
    let network = engine.networks.inspect(&id)?;
    engine.networks.remove(&id).await?;
    emit_event(
        &engine,
        "network",
        "destroy",
        &network.id,
        &[("name", &network.name), ("type", &network.driver)],
    );
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_default())
}

/// Attach a container (running or not) to one more network.
async fn connect(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkConnectRequest = json_body(&body)?;
    let network = engine.networks.inspect(&id)?;
    let container = engine.containers.resolve_id(&req.container)?;
    engine
        .connect_container(
            &container,
            &network,
            req.endpoint_config.unwrap_or_default(),
        )
        .await?;
    emit_event(
        &engine,
        "network",
        "connect",
        &network.id,
        &[
            ("container", &container),
            ("name", &network.name),
            ("type", &network.driver),
        ],
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .body(Body::empty())
        .unwrap_or_default())
}

/// Take a container (running or not) off one network.
async fn disconnect(
    State(engine): State<SharedEngine>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkDisconnectRequest = json_body(&body)?;
    let network = engine.networks.inspect(&id)?;
    let container = engine.containers.resolve_id(&req.container)?;
    engine.disconnect_container(&container, &network).await?;
    emit_event(
        &engine,
        "network",
        "disconnect",
        &network.id,
        &[
            ("container", &container),
            ("name", &network.name),
            ("type", &network.driver),
        ],
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .body(Body::empty())
        .unwrap_or_default())
}
