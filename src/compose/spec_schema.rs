//! Validation of the merged, interpolated model against the compose specification's own JSON
//! schema, as compose-go does before it builds its model (`loader/loader.go` → `schema.Validate`).
//!
//! The schema is compose-go's `schema/compose-spec.json` (Apache-2.0, as berth), embedded as is,
//! so every nested rule it states (ulimits entries need `hard`, `command` items are strings,
//! `ipam.config` items are mappings, `driver_opts` values are scalars, …) is enforced without
//! berth restating it. Only the keywords that file uses are implemented: `$ref`, `type`,
//! `properties`, `patternProperties`, `additionalProperties`, `required`, `items`, `oneOf`,
//! `enum`, `minimum`, `maximum` and `pattern` (`uniqueItems` is moot, see `check_seq`).
//!
//! Of all violations the most specific one is reported, as compose-go does
//! (`schema.getMostSpecificError`): the deepest path wins, a type error wins a tie, and a
//! `oneOf` with no matching branch reports its branches' deepest complaint.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value as J;

use super::error::ComposeError;
use super::yaml::{Node, Value};

const SPEC: &str = include_str!("compose-spec.json");

fn spec() -> &'static J {
    static SPEC_JSON: OnceLock<J> = OnceLock::new();
    SPEC_JSON.get_or_init(|| {
        let mut spec: J = serde_json::from_str(SPEC).expect("embedded compose-spec.json");
        // `berth config` prints byte sizes as integers (compose-go's model holds them so, and
        // `docker compose config` prints them so), and its output must load back: accept an
        // integer `deploy.resources.*.memory` as the service-level sizes already are.
        for k in ["limits", "reservations"] {
            let p = format!(
                "/$defs/deployment/properties/resources/properties/{k}/properties/memory/type"
            );
            if let Some(t) = spec.pointer_mut(&p) {
                *t = serde_json::json!(["integer", "string"]);
            }
        }
        spec
    })
}

/// One schema object of the specification, compiled: its `$ref`s followed, its keywords read
/// out, its sub-schemas as indices into `Compiled::rules`. Validation then looks up no keyword
/// by name; a 500-service project visits tens of thousands of (node, schema) pairs.
struct Rule {
    types: Vec<&'static str>,
    one_of: Vec<usize>,
    enum_values: Option<&'static [J]>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    pattern: Option<Pattern>,
    required: Vec<&'static str>,
    properties: HashMap<&'static str, usize>,
    pattern_properties: Vec<(Pattern, usize)>,
    additional: Additional,
    items: Option<usize>,
}

/// `additionalProperties`: absent or `true`, `false`, or a schema.
enum Additional {
    Allowed,
    Forbidden,
    Schema(usize),
}

/// A `pattern`/`patternProperties` expression, compiled on first use (most never are) and then
/// kept with its search cache. An expression the regex crate cannot compile matches nothing.
struct Pattern {
    source: &'static str,
    compiled: OnceLock<Option<regex::Regex>>,
}

impl Pattern {
    fn new(source: &'static str) -> Pattern {
        Pattern {
            source,
            compiled: OnceLock::new(),
        }
    }

    fn regex(&self) -> Option<&regex::Regex> {
        self.compiled
            .get_or_init(|| regex::Regex::new(self.source).ok())
            .as_ref()
    }
}

/// Every rule reachable from the specification's root; the root is rule 0.
struct Compiled {
    rules: Vec<Rule>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut builder = Builder::default();
        builder.rule(spec());
        Compiled {
            rules: builder.rules.into_iter().map(Option::unwrap).collect(),
        }
    })
}

/// Compiles schema objects once each (by address), so shared and recursive `$ref`s end up as one
/// rule.
#[derive(Default)]
struct Builder {
    rules: Vec<Option<Rule>>,
    index: HashMap<*const J, usize>,
}

impl Builder {
    fn rule(&mut self, schema: &'static J) -> usize {
        let schema = resolve(schema);
        if let Some(&i) = self.index.get(&(schema as *const J)) {
            return i;
        }
        let i = self.rules.len();
        self.index.insert(schema, i);
        self.rules.push(None);
        let rule = self.compile(schema);
        self.rules[i] = Some(rule);
        i
    }

    fn compile(&mut self, schema: &'static J) -> Rule {
        let strs = |v: Option<&'static J>| -> Vec<&'static str> {
            match v {
                Some(J::String(s)) => vec![s.as_str()],
                Some(J::Array(a)) => a.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            }
        };
        let objects = |key: &str| schema.get(key).and_then(J::as_object).into_iter().flatten();
        Rule {
            types: strs(schema.get("type")),
            one_of: (schema
                .get("oneOf")
                .and_then(J::as_array)
                .into_iter()
                .flatten())
            .map(|b| self.rule(b))
            .collect(),
            enum_values: schema.get("enum").and_then(J::as_array).map(Vec::as_slice),
            minimum: schema.get("minimum").and_then(J::as_f64),
            maximum: schema.get("maximum").and_then(J::as_f64),
            pattern: schema.get("pattern").and_then(J::as_str).map(Pattern::new),
            required: match schema.get("required") {
                Some(J::Array(a)) => a.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            },
            properties: objects("properties")
                .map(|(k, s)| (k.as_str(), self.rule(s)))
                .collect(),
            pattern_properties: objects("patternProperties")
                .map(|(k, s)| (Pattern::new(k), self.rule(s)))
                .collect(),
            additional: match schema.get("additionalProperties") {
                Some(J::Bool(false)) => Additional::Forbidden,
                Some(s @ J::Object(_)) => Additional::Schema(self.rule(s)),
                _ => Additional::Allowed,
            },
            items: schema.get("items").map(|s| self.rule(s)),
        }
    }
}

/// One violation: where (dotted model path with numeric indices, as compose-go prints it), what,
/// and whether it is a type error (those win ties).
#[derive(Debug, Clone)]
struct Violation {
    path: Vec<String>,
    message: String,
    is_type: bool,
    mark: super::yaml::Mark,
}

impl Violation {
    fn depth(&self) -> usize {
        self.path.len().max(1)
    }
}

/// Check `doc` (the merged raw model, after interpolation) against the specification.
pub fn validate(doc: &Node) -> Result<(), ComposeError> {
    let mut found = Vec::new();
    let mut path = Vec::new();
    check(doc, 0, &mut path, &mut found);
    match most_specific(found) {
        None => Ok(()),
        Some(v) => {
            let p = v.path.join(".");
            let message = if p.is_empty() {
                v.message
            } else {
                format!("{p} {}", v.message)
            };
            let at = if p.is_empty() {
                "(top level)".into()
            } else {
                p
            };
            let node = Node::new(Value::Null, v.mark);
            Err(ComposeError::invalid(&node, &at, message))
        }
    }
}

/// The semantic rules compose-go checks right after the schema (`validation/validate_node.go`),
/// with its messages: one source per config or secret, a valid `host_ip` on long-syntax ports,
/// no blank `develop.watch` path.
pub fn validate_semantics(doc: &Node) -> Result<(), ComposeError> {
    for (kind, sources) in [
        ("configs", &["file", "environment", "content"][..]),
        ("secrets", &["file", "environment"][..]),
    ] {
        for (key, def) in doc.get(kind).and_then(Node::as_map).into_iter().flatten() {
            let Some(m) = def.as_map() else { continue };
            let path = format!("{kind}.{key}");
            let set = sources.iter().filter(|k| m.contains_key(**k)).count();
            let names = sources.join("|");
            if set > 1 {
                let msg = format!("{path}: {names} attributes are mutually exclusive; keep one");
                return Err(ComposeError::invalid(def, &path, msg));
            }
            if set == 0 && !m.contains_key("driver") && !m.contains_key("external") {
                let msg = format!("{path}: one of {names} must be set (or `external: true`)");
                return Err(ComposeError::invalid(def, &path, msg));
            }
        }
    }
    for (name, svc) in doc
        .get("services")
        .and_then(Node::as_map)
        .into_iter()
        .flatten()
    {
        let ports = svc.get("ports").and_then(Node::as_seq);
        for (i, port) in ports.into_iter().flatten().enumerate() {
            let Some(ip) = port.get("host_ip") else {
                continue;
            };
            let text = ip.scalar_text().unwrap_or_default();
            if text.parse::<std::net::IpAddr>().is_err() {
                let path = format!("services.{name}.ports[{i}]");
                let msg = format!("{path}: invalid ip address: {text}");
                return Err(ComposeError::invalid(ip, &path, msg));
            }
        }
        // `count` and `device_ids` exclude each other in `gpus` as in deploy device requests.
        let gpus = svc.get("gpus").and_then(Node::as_seq);
        for (i, g) in gpus.into_iter().flatten().enumerate() {
            if g.get("count").is_some() && g.get("device_ids").is_some() {
                let path = format!("services.{name}.gpus[{i}]");
                let msg = format!("{path}: \"count\" and \"device_ids\" attributes are exclusive");
                return Err(ComposeError::invalid(g, &path, msg));
            }
        }
        let watch = svc
            .get("develop")
            .and_then(|d| d.get("watch"))
            .and_then(Node::as_seq);
        for (i, w) in watch.into_iter().flatten().enumerate() {
            if let Some(p) = w.get("path") {
                if p.as_str().is_none_or(str::is_empty) {
                    let path = format!("services.{name}.develop.watch[{i}].path");
                    let msg = format!("{path}: value can't be blank");
                    return Err(ComposeError::invalid(p, &path, msg));
                }
            }
        }
    }
    Ok(())
}

/// compose-go's choice among violations: deepest first, a type error over another kind.
fn most_specific(found: Vec<Violation>) -> Option<Violation> {
    let mut best: Option<Violation> = None;
    for v in found {
        best = match best {
            None => Some(v),
            Some(b)
                if v.depth() > b.depth() || (v.depth() == b.depth() && v.is_type && !b.is_type) =>
            {
                Some(v)
            }
            keep => keep,
        };
    }
    best
}

fn resolve(schema: &'static J) -> &'static J {
    let mut s = schema;
    // `$ref`s in this schema are local (`#/$defs/name`); a few levels at most.
    for _ in 0..8 {
        let Some(r) = s.get("$ref").and_then(J::as_str) else {
            break;
        };
        let Some(target) = r
            .strip_prefix("#/")
            .and_then(|p| p.split('/').try_fold(spec(), |cur, k| cur.get(k)))
        else {
            break;
        };
        s = target;
    }
    s
}

fn type_names(node: &Node) -> &'static [&'static str] {
    match &node.value {
        Value::Null => &["null"],
        Value::Bool(_) => &["boolean"],
        Value::Int(_) => &["integer", "number"],
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => &["integer", "number"],
        Value::Float(_) => &["number"],
        Value::String(_) => &["string"],
        Value::Seq(_) => &["array"],
        Value::Map(_) => &["object"],
    }
}

/// Interpolation leaves text where a number or boolean may stand (`required: ${FLAG}`);
/// compose-go casts such values before validating (`interpolateTypeCastMapping`).
fn casts_to(node: &Node, wanted: &[&str]) -> bool {
    let Value::String(t) = &node.value else {
        return false;
    };
    let t = t.trim();
    wanted.iter().any(|w| match *w {
        "boolean" => super::notation::cast_bool(t).is_some(),
        "integer" => t.parse::<i64>().is_ok(),
        "number" => t.parse::<f64>().is_ok(),
        _ => false,
    })
}

/// `must be a string`, `must be a boolean, null, number or string` (sorted, as compose-go).
fn type_message(types: &[&str]) -> String {
    let mut names: Vec<&str> = types
        .iter()
        .map(|t| match *t {
            "object" => "mapping",
            "array" => "list",
            other => other,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let text = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    };
    format!("must be a {text}")
}

fn push(found: &mut Vec<Violation>, node: &Node, path: &[String], msg: String, is_type: bool) {
    found.push(Violation {
        path: path.to_vec(),
        message: msg,
        is_type,
        mark: node.mark.clone(),
    });
}

fn check(node: &Node, rule: usize, path: &mut Vec<String>, found: &mut Vec<Violation>) {
    let rule = &compiled().rules[rule];
    let wanted = &rule.types;
    if !wanted.is_empty()
        && !type_names(node).iter().any(|n| wanted.contains(n))
        && !casts_to(node, wanted)
    {
        push(found, node, path, type_message(wanted), true);
        return;
    }
    if !rule.one_of.is_empty() {
        check_one_of(node, &rule.one_of, path, found);
    }
    if let Some(values) = rule.enum_values {
        let v = node.to_json();
        if !values.contains(&v) {
            let shown: Vec<String> = values.iter().map(J::to_string).collect();
            push(
                found,
                node,
                path,
                format!("must be one of the following: {}", shown.join(", ")),
                false,
            );
        }
    }
    check_scalar(node, rule, path, found);
    match &node.value {
        Value::Map(m) => check_map(node, m, rule, path, found),
        Value::Seq(items) => check_seq(items, rule, path, found),
        _ => {}
    }
}

/// A value is valid if some branch accepts it (compose files never rely on the "exactly one"
/// part, and being stricter than needed would refuse files docker compose loads).
fn check_one_of(
    node: &Node,
    branches: &[usize],
    path: &mut Vec<String>,
    found: &mut Vec<Violation>,
) {
    // Complaints from branches made for this kind of value (a mapping for a mapping) say more
    // than "must be a string" from the others: `volumes.0 additional properties 'foo' not
    // allowed`, as compose-go reports it.
    let (mut fitting, mut other) = (Vec::new(), Vec::new());
    for &b in branches {
        let mut errs = Vec::new();
        check(node, b, path, &mut errs);
        if errs.is_empty() {
            return;
        }
        let wrong_kind = errs.len() == 1 && errs[0].is_type && errs[0].path == *path;
        if wrong_kind {
            other.extend(errs);
        } else {
            fitting.extend(errs);
        }
    }
    let pick = if fitting.is_empty() { other } else { fitting };
    if let Some(v) = most_specific(pick) {
        found.push(v);
    }
}

fn check_scalar(node: &Node, rule: &Rule, path: &[String], found: &mut Vec<Violation>) {
    let num = match &node.value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let Some(n) = num {
        if let Some(min) = rule.minimum.filter(|min| n < *min) {
            let msg = format!("must be greater than or equal to {min}");
            push(found, node, path, msg, false);
        }
        if let Some(max) = rule.maximum.filter(|max| n > *max) {
            let msg = format!("must be less than or equal to {max}");
            push(found, node, path, msg, false);
        }
    }
    if let (Value::String(s), Some(p)) = (&node.value, &rule.pattern) {
        // An empty value (`${UNSET}`) counts as not set, as berth treats it everywhere.
        if !s.is_empty() && p.regex().is_some_and(|re| !re.is_match(s)) {
            push(
                found,
                node,
                path,
                format!("does not match pattern '{}'", p.source),
                false,
            );
        }
    }
}

fn check_map(
    node: &Node,
    m: &indexmap::IndexMap<String, Node>,
    rule: &Rule,
    path: &mut Vec<String>,
    found: &mut Vec<Violation>,
) {
    for r in &rule.required {
        if !m.contains_key(*r) {
            push(found, node, path, format!("missing property '{r}'"), false);
        }
    }
    for (k, v) in m {
        path.push(k.clone());
        let mut matched = false;
        if let Some(&s) = rule.properties.get(k.as_str()) {
            matched = true;
            check(v, s, path, found);
        }
        for (pat, s) in &rule.pattern_properties {
            if pat.regex().is_some_and(|re| re.is_match(k)) {
                matched = true;
                check(v, *s, path, found);
            }
        }
        if !matched {
            match rule.additional {
                Additional::Forbidden => {
                    path.pop();
                    push(
                        found,
                        v,
                        path,
                        format!("additional properties '{k}' not allowed"),
                        false,
                    );
                    continue;
                }
                Additional::Schema(s) => check(v, s, path, found),
                Additional::Allowed => {}
            }
        }
        path.pop();
    }
}

fn check_seq(items: &[Node], rule: &Rule, path: &mut Vec<String>, found: &mut Vec<Violation>) {
    if let Some(item_rule) = rule.items {
        for (i, it) in items.iter().enumerate() {
            path.push(i.to_string());
            check(it, item_rule, path, found);
            path.pop();
        }
    }
    // `uniqueItems` is not checked: compose-go removes duplicates (ports, volumes, environment,
    // …; `override/uncity.go`) before it validates, so no duplicate reaches its schema check.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_text(text: &str) -> Result<(), String> {
        let node = super::super::yaml::parse(text, "compose.yaml").map_err(|e| e.to_string())?;
        validate(&node).map_err(|e| e.to_string())
    }

    fn rejects(text: &str, want: &str) {
        let err = validate_text(text).expect_err(text);
        assert!(err.contains(want), "{text}\n want: {want}\n got:  {err}");
    }

    #[test]
    fn accepts_a_typical_file() {
        validate_text(
            "services:\n  web:\n    image: nginx\n    ports: ['80:80', 8080]\n    environment: {A: 1, B: null}\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 65535}\n    x-foo: {any: thing}\nnetworks:\n  n:\n    ipam: {config: [{subnet: 10.0.0.0/24}]}\n    driver_opts: {mtu: 1400}\nx-top: 1\n",
        )
        .unwrap();
    }

    // compose-go loader_test.go TestLoadUlimits / schema: an ulimit mapping needs soft and hard
    // and allows nothing else.
    #[test]
    fn ulimits_entries_are_strict() {
        rejects(
            "services:\n  web:\n    image: a\n    ulimits: {nofile: {soft: 1}}\n",
            "services.web.ulimits.nofile missing property 'hard'",
        );
        rejects(
            "services:\n  web:\n    image: a\n    ulimits: {nofile: {soft: 1, hard: 2, max: 3}}\n",
            "services.web.ulimits.nofile additional properties 'max' not allowed",
        );
    }

    // compose-go loader_test.go TestInvalidCommand-style: exec-form items are strings.
    #[test]
    fn command_items_must_be_strings() {
        rejects(
            "services:\n  web:\n    image: a\n    command: [echo, {a: b}]\n",
            "services.web.command.1 must be a string",
        );
    }

    // compose-go schema_test.go: ipam.config items are mappings; driver_opts values scalars.
    #[test]
    fn network_nested_rules() {
        rejects(
            "services: {}\nnetworks:\n  n:\n    ipam: {config: [10.0.0.0/24]}\n",
            "networks.n.ipam.config.0 must be a mapping",
        );
        rejects(
            "services: {}\nnetworks:\n  n:\n    driver_opts: {a: [1]}\n",
            "networks.n.driver_opts.a must be a number or string",
        );
    }

    // compose-go loader_test.go TestInvalidTopLevelObjectType / TestNonStringImage: type errors
    // name the path and the expected type, position included.
    #[test]
    fn type_errors_name_path_and_line() {
        let err = validate_text("services:\n  foo:\n    image: [a]\n").unwrap_err();
        assert_eq!(
            err,
            "compose.yaml:3:12: services.foo.image must be a string"
        );
        rejects(
            "services:\n  web:\n    image: a\n    environment: {FOO: [1]}\n",
            "services.web.environment.FOO must be a boolean, null, number or string",
        );
        rejects("name: [x]\n", "name must be a string");
        rejects(
            "helicopters: 1\n",
            "additional properties 'helicopters' not allowed",
        );
    }

    fn semantics(text: &str) -> Result<(), String> {
        let node = super::super::yaml::parse(text, "compose.yaml").map_err(|e| e.to_string())?;
        validate_semantics(&node).map_err(|e| e.to_string())
    }

    // compose-go validation_test.go TestValidateSecret / TestValidateConfig: one source each.
    #[test]
    fn file_objects_take_exactly_one_source() {
        let err = semantics("configs:\n  test:\n    environment: CONFIG\n    content: foo=bar\n")
            .unwrap_err();
        assert!(
            err.contains(
                "configs.test: file|environment|content attributes are mutually exclusive"
            ),
            "{err}"
        );
        let err = semantics("secrets:\n  test:\n    file: ./a\n    environment: A\n").unwrap_err();
        assert!(
            err.contains("secrets.test: file|environment attributes are mutually exclusive"),
            "{err}"
        );
        let err = semantics("configs:\n  test:\n    name: x\n").unwrap_err();
        assert!(
            err.contains("configs.test: one of file|environment|content must be set"),
            "{err}"
        );
        semantics("configs:\n  test:\n    external: true\nsecrets:\n  s:\n    driver: vault\n")
            .unwrap();
    }

    // compose-go validation_test.go TestIPAddress: long-syntax host_ip must be an address.
    #[test]
    fn port_host_ip_must_be_an_address() {
        let err = semantics(
            "services:\n  web:\n    ports:\n      - {host_ip: notavalidip, target: 1234, published: \"1234\"}\n",
        )
        .unwrap_err();
        assert!(
            err.contains("services.web.ports[0]: invalid ip address: notavalidip"),
            "{err}"
        );
        semantics("services:\n  web:\n    ports:\n      - {host_ip: 192.168.3.4, target: 1234}\n      - {host_ip: '::1', target: 1}\n").unwrap();
    }

    // compose-go validation_test.go TestValidateGPUs: count and device_ids exclude each other.
    #[test]
    fn gpus_count_and_device_ids_are_exclusive() {
        let err =
            semantics("services:\n  web:\n    gpus: [{count: 1, device_ids: [a]}]\n").unwrap_err();
        assert!(
            err.contains(
                "services.web.gpus[0]: \"count\" and \"device_ids\" attributes are exclusive"
            ),
            "{err}"
        );
        semantics("services:\n  web:\n    gpus: [{count: all}]\n").unwrap();
    }

    // compose-go validation_test.go TestValidateWatch: a blank watch path is refused.
    #[test]
    fn watch_path_cannot_be_blank() {
        let err = semantics("services:\n  web:\n    develop:\n      watch:\n        - {path: '', action: sync, target: /a}\n").unwrap_err();
        assert!(
            err.contains("services.web.develop.watch[0].path: value can't be blank"),
            "{err}"
        );
    }

    // compose-go loader_test.go TestLoadWithInterpolationCastFull: interpolated text in typed
    // fields is cast before the schema sees it.
    #[test]
    fn interpolated_text_in_typed_fields_is_accepted() {
        validate_text(
            "services:\n  web:\n    image: a\n    use_api_socket: 'true'\n    depends_on: {db: {condition: service_started, required: 'false'}}\n    ports: ['80']\n",
        )
        .unwrap();
        rejects(
            "services:\n  web:\n    image: a\n    use_api_socket: maybe\n",
            "services.web.use_api_socket must be a boolean",
        );
    }

    #[test]
    fn type_message_sorts_and_joins_like_compose_go() {
        assert_eq!(type_message(&["object"]), "must be a mapping");
        assert_eq!(
            type_message(&["string", "number", "boolean", "null"]),
            "must be a boolean, null, number or string"
        );
    }
}
