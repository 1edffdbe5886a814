//! Docker's `filters` query parameter: JSON mapping a filter name to values, in either the current
//! form `{"label":["a=b"]}` or the legacy one `{"label":{"a=b":true}}`.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Filters {
    values: HashMap<String, Vec<String>>,
}

impl Filters {
    /// Parse the `filters` parameter of a request (absent or empty means no filter).
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        match params.get("filters") {
            None => Ok(Self::default()),
            Some(raw) => Self::parse(raw),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let values = crate::engine::wire::filters::parse_docker_filters(raw)
            .map_err(|why| ApiError::bad_request(format!("invalid filter {raw:?}: {why}")))?;
        Ok(Filters {
            values: values.into_iter().collect(),
        })
    }

    /// Refuse filter names the endpoint does not know, as Docker does.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), ApiError> {
        for key in self.values.keys() {
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when the filter is absent or any of its values satisfies `matches`.
    pub fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        let values = self.get(key);
        values.is_empty() || values.iter().any(|v| matches(v))
    }

    /// `label` filters: every one must hold (`key` = present, `key=value` = equal).
    pub fn labels_match(&self, labels: &IndexMap<String, String>) -> bool {
        self.get("label")
            .iter()
            .all(|want| label_matches(want, labels))
    }

    /// Docker's `true`/`false`/`1`/`0` for filters like `dangling`.
    pub fn bool_value(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key).first().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid filter '{key}={other}': expected true or false"
            ))),
        }
    }
}

pub fn label_matches(want: &str, labels: &IndexMap<String, String>) -> bool {
    match want.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn both_json_forms_parse() {
        let f = Filters::parse(r#"{"label":["a=1","b"],"name":{"x":true,"y":false}}"#).unwrap();
        assert_eq!(f.get("label"), ["a=1", "b"]);
        assert_eq!(f.get("name"), ["x"]);
        assert!(f.labels_match(&labels(&[("a", "1"), ("b", "")])));
        assert!(!f.labels_match(&labels(&[("a", "2"), ("b", "")])));
        assert!(!f.labels_match(&labels(&[("a", "1")])));
    }

    #[test]
    fn bad_filters_are_400_with_the_reason() {
        let err = Filters::parse("{not json").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.message.starts_with("invalid filter"));
        let f = Filters::parse(r#"{"colour":["red"]}"#).unwrap();
        let err = f.allow_only(&["label", "name"]).unwrap_err();
        assert_eq!(err.message, "invalid filter 'colour'");
    }
}
