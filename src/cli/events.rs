//! `berth events`: the project's container events as they happen, in docker compose's line
//! format (`2026-12-02 22:34:22.123456 container start <id> (image=…, name=…)`) or, with
//! `--json`, one object per line.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{Local, TimeZone};
use futures_util::StreamExt;
use serde_json::json;

use super::containers::check_services;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::wire::EventMessage;

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Output events as a stream of json objects
    #[arg(long)]
    pub json: bool,
    /// Services whose events to show (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// The event's attributes without compose's own labels (docker compose leaves them out).
fn shown_attributes(e: &EventMessage) -> Vec<(String, String)> {
    let mut attrs: Vec<(String, String)> = e
        .actor
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("com.docker.compose."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attrs.sort();
    attrs
}

/// docker compose's text line for one container event, with the time in `tz`.
pub fn event_line<Tz: TimeZone>(e: &EventMessage, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let time = tz.timestamp_nanos(e.time_nano);
    let attrs: Vec<String> = shown_attributes(e)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{} container {} {} ({})",
        time.format("%Y-%m-%d %H:%M:%S%.6f"),
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}

/// docker compose's `--json` object for one container event.
pub fn event_json<Tz: TimeZone>(e: &EventMessage, tz: &Tz) -> serde_json::Value
where
    Tz::Offset: std::fmt::Display,
{
    let attributes: serde_json::Map<String, serde_json::Value> = shown_attributes(e)
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    json!({
        "time": tz.timestamp_nanos(e.time_nano).to_rfc3339(),
        "type": "container",
        "service": e.actor.attributes.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        "id": e.actor.id,
        "action": e.action,
        "attributes": attributes,
    })
}

pub async fn run(project_args: &ProjectArgs, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    if project.is_some() {
        let containers = super::containers::of_project(&client, &name, true).await?;
        check_services(project.as_ref(), &containers, &args.services)?;
    }
    let label = format!("{LABEL_PROJECT}={name}");
    let filters = [("type", "container"), ("label", label.as_str())];
    let mut events = client
        .events(&filters)
        .await
        .context("cannot follow the engine's events")?;
    while let Some(event) = events.next().await {
        let event = event.context("reading the engine's events")?;
        let service = event.actor.attributes.get(LABEL_SERVICE);
        if !args.services.is_empty() && !service.is_some_and(|s| args.services.contains(s)) {
            continue;
        }
        if args.json {
            println!("{}", event_json(&event, &Local));
        } else {
            println!("{}", event_line(&event, &Local));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::EventActor;

    fn event() -> EventMessage {
        EventMessage {
            kind: "container".into(),
            action: "start".into(),
            actor: EventActor {
                id: "0123abcd".into(),
                attributes: [
                    ("name", "demo-web-1"),
                    ("image", "nginx"),
                    (LABEL_SERVICE, "web"),
                    (LABEL_PROJECT, "demo"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            },
            time: 1_764_714_862,
            time_nano: 1_764_714_862_123_456_789,
        }
    }

    #[test]
    fn line_is_docker_composes_without_its_labels() {
        assert_eq!(
            event_line(&event(), &chrono::Utc),
            "2025-12-02 22:34:22.123456 container start 0123abcd (image=nginx, name=demo-web-1)"
        );
    }

    #[test]
    fn json_names_the_service_and_the_action() {
        let v = event_json(&event(), &chrono::Utc);
        assert_eq!(v["service"], "web");
        assert_eq!(v["action"], "start");
        assert_eq!(v["id"], "0123abcd");
        assert_eq!(v["attributes"]["name"], "demo-web-1");
        assert!(v["attributes"].get(LABEL_SERVICE).is_none());
    }
}
