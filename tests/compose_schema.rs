//! berth's own compose schema (`src/compose/schema.rs`, rendered to `schema/compose.schema.json`)
//! checked against the official compose-spec schema, used here as an oracle only: the same
//! attribute names for the top level, services, networks, volumes, secrets, configs and deploy.
//! Skipped (with a message; fatal under `BERTH_CI=1`) when `$BERTH_CONFORMANCE_DIR` is not set;
//! fails when it is set and the schema is missing.

#[path = "common/precondition.rs"]
mod precondition;

use std::collections::BTreeSet;

use berth::compose::schema;

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn ours(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn attribute_names_match_the_compose_spec() {
    let Some(dir) = std::env::var_os("BERTH_CONFORMANCE_DIR") else {
        precondition::skip("BERTH_CONFORMANCE_DIR is not set: schema oracle check not run");
        return;
    };
    let path = std::path::Path::new(&dir).join("schema/compose-go/compose-spec.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (BERTH_CONFORMANCE_DIR must name the corpus)",
            path.display()
        )
    });
    let spec: serde_json::Value = serde_json::from_str(&text).expect("official schema is JSON");
    let defs = &spec["$defs"];
    assert_eq!(ours(schema::TOP_LEVEL_KEYS), keys(&spec["properties"]));
    assert_eq!(
        ours(schema::SERVICE_KEYS),
        keys(&defs["service"]["properties"])
    );
    assert_eq!(
        ours(schema::NETWORK_KEYS),
        keys(&defs["network"]["properties"])
    );
    assert_eq!(
        ours(schema::VOLUME_KEYS),
        keys(&defs["volume"]["properties"])
    );
    assert_eq!(
        ours(schema::SECRET_KEYS),
        keys(&defs["secret"]["properties"])
    );
    assert_eq!(
        ours(schema::CONFIG_KEYS),
        keys(&defs["config"]["properties"])
    );
    assert_eq!(
        ours(schema::DEPLOY_KEYS),
        keys(&defs["deployment"]["properties"])
    );
}

#[test]
fn rendered_schema_lists_every_service_attribute_with_a_shape() {
    let rendered = schema::json_schema();
    let service = &rendered["properties"]["services"]["patternProperties"]["^[a-zA-Z0-9._-]+$"]
        ["oneOf"][0]["properties"];
    assert_eq!(keys(service), ours(schema::SERVICE_KEYS));
    assert_eq!(service["image"]["type"], "string");
    assert_eq!(service["ports"]["type"], "array");
}
