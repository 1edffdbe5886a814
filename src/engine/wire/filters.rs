//! Docker's `filters` query value, shared by every list endpoint and the container store:
//! a JSON object mapping a filter name to values, in the current form `{"label":["a=b"]}` or the
//! legacy one `{"label":{"a=b":true}}` (only `true` entries count).

use indexmap::IndexMap;

/// Filter name → values. An empty or blank text means no filter. The error is a sentence
/// naming what is wrong, for the caller to wrap into its own error type.
pub fn parse_docker_filters(raw: &str) -> Result<IndexMap<String, Vec<String>>, String> {
    let mut parsed = IndexMap::new();
    if raw.trim().is_empty() {
        return Ok(parsed);
    }
    let json: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let object = json.as_object().ok_or("expected a JSON object")?;
    for (key, value) in object {
        let list: Vec<String> = match value {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("values of {key:?} must be strings"))?,
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(false))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => return Err(format!("values of {key:?} must be a list")),
        };
        parsed.insert(key.clone(), list);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_legacy_forms_parse() {
        let f = parse_docker_filters(r#"{"label":["a=1","b"],"name":{"x":true,"y":false}}"#)
            .expect("valid");
        assert_eq!(f["label"], ["a=1", "b"]);
        assert_eq!(f["name"], ["x"]);
        assert!(parse_docker_filters("  ").expect("blank").is_empty());
    }

    #[test]
    fn malformed_filters_say_why() {
        assert_eq!(
            parse_docker_filters("[1]").unwrap_err(),
            "expected a JSON object"
        );
        assert!(parse_docker_filters(r#"{"label":[1]}"#)
            .unwrap_err()
            .contains("must be strings"));
        assert!(parse_docker_filters(r#"{"label":3}"#)
            .unwrap_err()
            .contains("must be a list"));
    }
}
