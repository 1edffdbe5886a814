//! `GET /events`: the engine's event bus as a stream of JSON objects, optionally filtered; `since`
//! replays the events the bus kept (see `crate::engine::events`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{ApiError, ApiResult, Filters, Params, JSON_STREAM};
use crate::engine::wire::EventMessage;
use crate::engine::SharedEngine;

pub fn routes() -> Router<SharedEngine> {
    Router::new().route("/events", get(events))
}

/// Whether `event` passes Docker's event filters (each named filter must hold).
/// The event as Docker (API 1.41) sends it: with the deprecated `status`, `id` and `from` of
/// container and image events besides `Type`/`Action`/`Actor`, which older clients read
/// (docker-compose 1.29 follows containers by `id`).
fn with_legacy_fields(event: &EventMessage) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let (Some(object), "container" | "image") = (value.as_object_mut(), event.kind.as_str()) {
        object.insert("status".into(), event.action.clone().into());
        object.insert("id".into(), event.actor.id.clone().into());
        if let Some(image) = event.actor.attributes.get("image") {
            object.insert("from".into(), image.clone().into());
        }
    }
    value
}

fn event_matches(filters: &Filters, event: &EventMessage) -> bool {
    let attr = |key: &str| event.actor.attributes.get(key).map(String::as_str);
    let actor_is = |want: &str| event.actor.id.starts_with(want) || attr("name") == Some(want);
    filters.any("type", |t| event.kind == t)
        && filters.any("event", |a| {
            event.action == a || event.action.starts_with(&format!("{a}:"))
        })
        && filters.any("container", |c| event.kind == "container" && actor_is(c))
        && filters.any("image", |i| {
            (event.kind == "image" && actor_is(i)) || attr("image") == Some(i)
        })
        && filters.any("network", |n| event.kind == "network" && actor_is(n))
        && filters.any("volume", |v| event.kind == "volume" && actor_is(v))
        && filters.labels_match(&event.actor.attributes)
}

/// `since`/`until` as Unix seconds (Docker also accepts fractions: `1700000000.5`).
fn unix_seconds(params: &Params, key: &str) -> ApiResult<Option<f64>> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<f64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid {key} value {v:?}: expected Unix seconds"))
        }),
    }
}

async fn events(State(engine): State<SharedEngine>, params: Params) -> ApiResult<Response> {
    let filters = Filters::from_params(&params)?;
    filters.allow_only(&[
        "type",
        "event",
        "container",
        "image",
        "network",
        "volume",
        "label",
    ])?;
    let until = unix_seconds(&params, "until")?;
    let since = unix_seconds(&params, "since")?;
    // Replay the kept events in [since, until], then stream live ones until `until`.
    let (past, receiver) = match since {
        Some(s) => engine.events.subscribe_since((s * 1e9) as i64),
        None => (Vec::new(), engine.events.subscribe()),
    };
    let until_nanos = until.map(|u| (u * 1e9) as i64);
    let past = past
        .into_iter()
        .filter(move |e| until_nanos.is_none_or(|u| e.time_nano <= u));
    let deadline = until.map(|u| {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        std::time::Duration::from_secs_f64((u - now).max(0.0))
    });
    let live = futures_util::stream::unfold(receiver, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                // A slow reader loses events rather than stalling the engine.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let live = match deadline {
        Some(d) => live.take_until(tokio::time::sleep(d)).left_stream(),
        None => live.right_stream(),
    };
    let stream = futures_util::stream::iter(past)
        .chain(live)
        .filter(move |event| std::future::ready(event_matches(&filters, event)))
        .map(|event| {
            let mut line = serde_json::to_vec(&with_legacy_fields(&event)).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
    let body = Body::from_stream(stream);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(JSON_STREAM.0, JSON_STREAM.1)
        .body(body)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::EventActor;

    #[test]
    fn container_events_carry_dockers_legacy_fields() {
        let event = EventMessage {
            kind: "container".into(),
            action: "start".into(),
            actor: EventActor {
                id: "abc".into(),
                attributes: [("image".to_string(), "busybox".to_string())]
                    .into_iter()
                    .collect(),
            },
            time: 1,
            time_nano: 1,
        };
        let v = with_legacy_fields(&event);
        assert_eq!(v["status"], "start");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Action"], "start");
        let network = EventMessage {
            kind: "network".into(),
            ..event
        };
        assert!(with_legacy_fields(&network).get("id").is_none());
    }
}
