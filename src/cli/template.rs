//! The subset of Go's `text/template` that scripts pass to `--format` (`ps --format
//! '{{.Name}}\t{{.State}}'`): field access, `.Label "key"`, `json .` / `json .Field`, the literal
//! `\t`/`\n` escapes and the `table` prefix, rendered against rows that are JSON objects keyed by
//! docker compose's field names. Anything else in `{{ }}` is refused by name instead of printed
//! wrong, so a script learns at once that berth does not understand its template.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template: unclosed action starting at {0:?}")]
    Unclosed(String),
    #[error("template: unsupported action {{{{{0}}}}} (berth supports .Field, .Label \"key\", json . and json .Field)")]
    Unsupported(String),
    #[error("template: can't evaluate field {0}")]
    NoSuchField(String),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    Label(String),
    Json(Option<String>),
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// `table …`: a header row first, columns aligned on the tabs.
    pub table: bool,
}

impl Template {
    /// Parse a `--format` value, after docker's own preprocessing: the `table` prefix is taken
    /// off, surrounding spaces trimmed, and the two-character `\t` and `\n` become real ones.
    pub fn parse(format: &str) -> Result<Self, TemplateError> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(rest[start..].to_string()))?;
            parts.push(parse_action(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts, table })
    }

    /// The template applied to one row.
    pub fn render(&self, row: &Map<String, Value>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(name) => out.push_str(&go_print(field(row, name)?)),
                Part::Label(key) => out.push_str(&label(row, key)),
                Part::Json(None) => out.push_str(&Value::Object(row.clone()).to_string()),
                Part::Json(Some(name)) => out.push_str(&field(row, name)?.to_string()),
            }
        }
        Ok(out)
    }

    /// The header row of a `table` template: each field's column title from `headers`
    /// (docker's names, e.g. `RunningFor` → `CREATED`), else the field name in capitals.
    pub fn header(&self, headers: &[(&str, &str)]) -> String {
        let title = |name: &str| {
            headers
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, title)| title.to_string())
                .unwrap_or_else(|| name.to_uppercase())
        };
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(t) => t.clone(),
                Part::Field(name) | Part::Json(Some(name)) => title(name),
                Part::Label(key) => key.clone(),
                Part::Json(None) => String::new(),
            })
            .collect()
    }
}

/// `.Name`, `.Label "key"`, `json .`, `json .Name`.
fn parse_action(action: &str) -> Result<Part, TemplateError> {
    let unsupported = || TemplateError::Unsupported(action.to_string());
    if let Some(arg) = action.strip_prefix("json ") {
        return match arg.trim() {
            "." => Ok(Part::Json(None)),
            field => Ok(Part::Json(Some(field_name(field).ok_or_else(unsupported)?))),
        };
    }
    if let Some(key) = action.strip_prefix(".Label ") {
        let key = key.trim();
        let quoted = key.len() >= 2 && key.starts_with('"') && key.ends_with('"');
        return match quoted {
            true => Ok(Part::Label(key[1..key.len() - 1].to_string())),
            false => Err(unsupported()),
        };
    }
    field_name(action).map(Part::Field).ok_or_else(unsupported)
}

/// `Name` of `.Name`, when the action is exactly one field access.
fn field_name(action: &str) -> Option<String> {
    let name = action.strip_prefix('.')?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| name.to_string())
}

fn field<'a>(row: &'a Map<String, Value>, name: &str) -> Result<&'a Value, TemplateError> {
    row.get(name)
        .ok_or_else(|| TemplateError::NoSuchField(name.to_string()))
}

/// The value of one label; the row carries them as docker's `k=v,k=v` text or as an object.
fn label(row: &Map<String, Value>, key: &str) -> String {
    match row.get("Labels") {
        Some(Value::Object(labels)) => labels.get(key).map(go_print).unwrap_or_default(),
        Some(Value::String(joined)) => joined
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A value as Go's `fmt` prints it in a template: strings bare, lists as `[a b]`, structs as
/// `{v1 v2}` (what `{{.Publishers}}` shows under docker compose).
fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields.values().map(go_print).collect::<Vec<_>>().join(" ")
        ),
    }
}

/// Rows whose cells are separated by tabs, aligned as Go's `tabwriter` does for docker (minimum
/// cell width 10, padding 3); the last cell of a line is not padded.
pub fn align_tabs(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for row in rows {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            match i == last {
                true => out.push_str(cell),
                false => out.push_str(&format!("{cell:<w$}", w = widths[i])),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Map<String, Value> {
        let value = serde_json::json!({
            "Name": "demo-web-1",
            "ExitCode": 0,
            "Labels": "com.docker.compose.service=web,x=y",
            "Publishers": [{"URL": "0.0.0.0", "TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp"}],
        });
        value.as_object().expect("object").clone()
    }

    #[test]
    fn fields_labels_and_escapes_render_like_go() {
        let t = Template::parse(r#"{{.Name}}\t{{ .ExitCode }} {{.Label "x"}} {{.Publishers}}"#)
            .expect("parse");
        assert!(!t.table);
        assert_eq!(
            t.render(&row()).expect("render"),
            "demo-web-1\t0 y [{0.0.0.0 80 8080 tcp}]"
        );
    }

    #[test]
    fn json_renders_the_row_or_one_field() {
        let t = Template::parse("{{json .Publishers}}|{{json .Name}}").expect("parse");
        assert_eq!(
            t.render(&row()).expect("render"),
            r#"[{"URL":"0.0.0.0","TargetPort":80,"PublishedPort":8080,"Protocol":"tcp"}]|"demo-web-1""#
        );
        let whole = Template::parse("{{json .}}").expect("parse");
        let back: Value =
            serde_json::from_str(&whole.render(&row()).expect("render")).expect("json");
        assert_eq!(back["Name"], "demo-web-1");
    }

    #[test]
    fn table_templates_have_a_header_and_aligned_columns() {
        let t = Template::parse(r"table {{.Name}}\t{{.RunningFor}}").expect("parse");
        assert!(t.table);
        assert_eq!(t.header(&[("RunningFor", "CREATED")]), "NAME\tCREATED");
        let lines = vec![
            "NAME\tCREATED".to_string(),
            "demo-web-1\t1 second ago".to_string(),
        ];
        assert_eq!(
            align_tabs(&lines),
            "NAME         CREATED\ndemo-web-1   1 second ago\n"
        );
    }

    #[test]
    fn unknown_actions_and_fields_are_errors() {
        assert_eq!(
            Template::parse("{{range .}}").unwrap_err(),
            TemplateError::Unsupported("range .".into())
        );
        assert_eq!(
            Template::parse("{{.Name").unwrap_err(),
            TemplateError::Unclosed("{{.Name".into())
        );
        let t = Template::parse("{{.Nope}}").expect("parse");
        assert_eq!(
            t.render(&row()).unwrap_err().to_string(),
            "template: can't evaluate field Nope"
        );
    }
}
