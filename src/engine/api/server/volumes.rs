//! `/volumes`: create, list (with filters), inspect and remove named volumes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::{emit_event, flag, json_body, json_response, ApiResult, Filters, Params};
use crate::engine::wire::{Volume, VolumeCreateRequest, VolumeListResponse};
use crate::engine::SharedEngine;
use crate::volume::{VolumeInfo, VolumeSpec};

pub fn routes() -> Router<SharedEngine> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

async fn create(State(engine): State<SharedEngine>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateRequest = json_body(&body)?;
    let existed = !req.name.is_empty() && engine.volumes.get(&req.name).is_ok();
    let volume = wire(engine.volumes.create(spec(req))?);
    if !existed {
        emit_event(
            &engine,
            "volume",
            "create",
            &volume.name,
            &[("driver", "local")],
        );
    }
    Ok(json_response(StatusCode::CREATED, &volume))
}

async fn list(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = Filters::from_params(&params)?;
    filters.allow_only(&["name", "label", "driver", "dangling"])?;
    let dangling = filters.bool_value("dangling")?;
    let in_use = match dangling {
        Some(_) => super::containers::volumes_in_use(&engine),
        None => Default::default(),
    };
    let volumes = engine
        .volumes
        .list()
        .into_iter()
        .filter(|v| filters.any("name", |n| v.name.contains(n)))
        .filter(|v| filters.any("driver", |d| v.driver == d))
        .filter(|v| filters.labels_match(&v.labels))
        .filter(|v| match dangling {
            Some(want) => want != in_use.contains_key(&v.name),
            None => true,
        })
        .map(wire)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &VolumeListResponse {
            volumes,
            warnings: Vec::new(),
        },
    ))
}

async fn inspect(
    State(engine): State<SharedEngine>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let volume = wire(engine.volumes.get(&name)?);
    Ok(json_response(StatusCode::OK, &volume))
}

async fn remove(
    State(engine): State<SharedEngine>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let users = super::containers::volumes_in_use(&engine)
        .remove(&name)
        .unwrap_or_default();
    let existed = engine.volumes.get(&name).is_ok();
    engine
        .volumes
        .remove(&name, flag(&params, "force"), &users)?;
    if existed {
        emit_event(&engine, "volume", "destroy", &name, &[("driver", "local")]);
    }
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(axum::body::Body::empty())
        .unwrap_or_default())
}

/// Docker's create request as the store's spec.
fn spec(req: VolumeCreateRequest) -> VolumeSpec {
    VolumeSpec {
        name: req.name,
        driver: req.driver,
        driver_options: req.driver_opts,
        labels: req.labels,
    }
}

/// The store's volume as Docker shows it (`Scope` is always `local`: berth has one host).
fn wire(v: VolumeInfo) -> Volume {
    Volume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.display().to_string(),
        created_at: v.created_at,
        labels: v.labels,
        scope: "local".to_string(),
        options: v.options,
    }
}
