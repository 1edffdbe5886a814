//! Stage 1, parse: YAML text to a tree of [`Node`]s that keep their file, line and column.
//!
//! Anchors and aliases are expanded here (with a budget, so an alias bomb is an error rather than
//! an out-of-memory kill), merge keys `<<` are applied, duplicate keys and non-string keys are
//! reported, and the compose tags `!reset` / `!override` are kept on the node for the merge stage.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// At most this many nodes may be produced by one document, aliases expanded: a few thousand
/// services fit easily, a "billion laughs" does not.
pub const MAX_NODES: usize = 250_000;
/// An alias may be expanded at most this many times more than the nodes written in the file
/// (yaml.v3's "excessive aliasing" rule, in spirit).
const ALIAS_RATIO: usize = 50;

/// Where a node was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mark {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// The compose merge tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    /// `!reset`: drop the value inherited from earlier files / extended services.
    Reset,
    /// `!override`: replace the inherited value instead of merging with it.
    Override,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(IndexMap<String, Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    pub tag: Option<MergeTag>,
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{mark}: yaml syntax error: {message}")]
    Syntax { mark: Mark, message: String },
    #[error("{mark}: tab character used for indentation; indent with spaces")]
    Tab { mark: Mark },
    #[error(
        "{mark}: mapping key {key:?} already defined at line {first_line}; remove one of them"
    )]
    DuplicateKey {
        mark: Mark,
        key: String,
        first_line: usize,
    },
    #[error("{mark}: non-string key {where_}: {key}; quote the key")]
    NonStringKey {
        mark: Mark,
        where_: String,
        key: String,
    },
    #[error(
        "{mark}: excessive aliasing: the document expands to more than {limit} nodes (alias bomb?)"
    )]
    AliasBomb { mark: Mark, limit: usize },
    #[error("{mark}: cycle detected: node at path {path} references a node that contains it")]
    SelfReference { mark: Mark, path: String },
    #[error("{mark}: unknown anchor in alias")]
    UnknownAnchor { mark: Mark },
    #[error("{mark}: map merge requires map or sequence of maps as the value of '<<'")]
    BadMerge { mark: Mark },
    #[error("{mark}: the document is empty; a compose file must be a mapping with at least a `services` key")]
    Empty { mark: Mark },
    #[error("{mark}: top-level object must be a mapping")]
    NotMapping { mark: Mark },
    #[error("{mark}: a compose file holds one YAML document; remove the `---` separated extra documents")]
    MultipleDocuments { mark: Mark },
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Node {
        Node {
            value,
            mark,
            tag: None,
        }
    }
    pub fn as_map(&self) -> Option<&IndexMap<String, Node>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_map_mut(&mut self) -> Option<&mut IndexMap<String, Node>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
    /// The scalar as text (numbers and booleans as YAML writes them), `None` for collections/null.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
    /// Short name of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "mapping",
        }
    }
    /// Count of nodes in this subtree.
    pub fn size(&self) -> usize {
        match &self.value {
            Value::Seq(s) => 1 + s.iter().map(Node::size).sum::<usize>(),
            Value::Map(m) => 1 + m.values().map(|n| 1 + n.size()).sum::<usize>(),
            _ => 1,
        }
    }
    /// Plain conversion to JSON (tags dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(s) => J::Array(s.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }
    /// Build a node tree from JSON, every node carrying `mark`.
    pub fn from_json(v: &serde_json::Value, mark: &Mark) -> Node {
        use serde_json::Value as J;
        let value = match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::Seq(a.iter().map(|x| Node::from_json(x, mark)).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, x)| (k.clone(), Node::from_json(x, mark)))
                    .collect(),
            ),
        };
        Node::new(value, mark.clone())
    }
}

pub fn format_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// Parse one compose file's text. The result is a mapping (or an error naming the position).
pub fn parse(text: &str, file: &str) -> Result<Node, YamlError> {
    let file: Arc<str> = Arc::from(file);
    let mark_at = |m: &Marker| Mark {
        file: file.clone(),
        line: m.line(),
        col: m.col() + 1,
    };
    check_tabs(text, &file)?;
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder {
        anchors: HashMap::new(),
        stack: Vec::new(),
        produced: 0,
        written: 0,
        root: None,
        documents: 0,
    };
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError::Syntax {
            mark: mark_at(e.marker()),
            message: e.info().to_string(),
        })?;
        let mark = mark_at(&marker);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                builder.documents += 1;
                if builder.documents > 1 {
                    return Err(YamlError::MultipleDocuments { mark });
                }
            }
            other => builder.event(other, mark)?,
        }
    }
    let end = Mark {
        file: file.clone(),
        line: 1,
        col: 1,
    };
    match builder.root {
        None => Err(YamlError::Empty { mark: end }),
        Some(n) if n.is_null() => Err(YamlError::Empty { mark: n.mark }),
        Some(n) if n.as_map().is_none() => Err(YamlError::NotMapping { mark: n.mark }),
        Some(n) => Ok(n),
    }
}

/// YAML forbids tabs in indentation; the scanner's own message for them is cryptic, so check first.
fn check_tabs(text: &str, file: &Arc<str>) -> Result<(), YamlError> {
    let mut in_block_scalar = false;
    let mut block_indent = 0usize;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if in_block_scalar {
            if rest.is_empty() || indent > block_indent || rest.starts_with('\t') && indent > 0 {
                continue;
            }
            in_block_scalar = false;
        }
        if rest.starts_with('\t') {
            let after = rest.trim_start_matches([' ', '\t']);
            if !after.is_empty() && !after.starts_with('#') {
                return Err(YamlError::Tab {
                    mark: Mark {
                        file: file.clone(),
                        line: i + 1,
                        col: indent + 1,
                    },
                });
            }
        }
        let trimmed = rest.trim_end();
        let code = trimmed.split(" #").next().unwrap_or("");
        if code.ends_with('|')
            || code.ends_with('>')
            || code.ends_with("|-")
            || code.ends_with(">-")
            || code.ends_with("|+")
            || code.ends_with(">+")
        {
            in_block_scalar = true;
            block_indent = indent;
        }
    }
    Ok(())
}

// Frames live on a short stack while parsing; boxing the map variant would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Frame {
    Seq {
        path: String,
        anchor: usize,
        tag: Option<MergeTag>,
        mark: Mark,
        items: Vec<Node>,
    },
    Map {
        path: String,
        anchor: usize,
        tag: Option<MergeTag>,
        mark: Mark,
        entries: IndexMap<String, Node>,
        key_lines: HashMap<String, usize>,
        /// Values of `<<` keys, applied at the end so explicit keys win whatever their order.
        merges: Vec<Node>,
        pending_key: Option<(Node, bool)>,
    },
}

struct Builder {
    anchors: HashMap<usize, Node>,
    stack: Vec<Frame>,
    /// Nodes produced so far, aliases expanded.
    produced: usize,
    /// Nodes as written in the text.
    written: usize,
    root: Option<Node>,
    documents: usize,
}

fn merge_tag(tag: &Option<Tag>) -> Option<MergeTag> {
    match tag {
        Some(t) if t.handle == "!" && t.suffix == "reset" => Some(MergeTag::Reset),
        Some(t) if t.handle == "!" && t.suffix == "override" => Some(MergeTag::Override),
        _ => None,
    }
}

/// Resolve a plain scalar by the YAML 1.2 core schema (what docker compose's yaml.v3 uses).
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    // go-yaml (docker compose's reader) still reads a leading 0 as octal: `mode: 0440` is 288.
    if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        if let Ok(i) = i64::from_str_radix(digits, 8) {
            return Value::Int(if s.starts_with('-') { -i } else { i });
        }
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    let is_float_syntax = {
        let b = digits.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_digit() || b[0] == b'.')
            && b.iter()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
            && b.iter().any(|c| c.is_ascii_digit())
    };
    if is_float_syntax {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(s.to_string())
}

impl Builder {
    /// Model path of the collection about to start (for non-string key errors).
    fn child_path(&self) -> String {
        let join = |parent: &str, key: String| {
            if parent.is_empty() {
                key
            } else {
                format!("{parent}.{key}")
            }
        };
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => join(path, items.len().to_string()),
            Some(Frame::Map {
                path, pending_key, ..
            }) => join(
                path,
                pending_key
                    .as_ref()
                    .and_then(|(k, _)| k.scalar_text())
                    .unwrap_or_default(),
            ),
        }
    }

    fn count(&mut self, n: usize, mark: &Mark) -> Result<(), YamlError> {
        self.produced += n;
        if self.produced > MAX_NODES || self.produced > (self.written + 1000) * ALIAS_RATIO {
            return Err(YamlError::AliasBomb {
                mark: mark.clone(),
                limit: MAX_NODES.min((self.written + 1000) * ALIAS_RATIO),
            });
        }
        Ok(())
    }

    fn event(&mut self, event: Event, mark: Mark) -> Result<(), YamlError> {
        match event {
            Event::Alias(id) => self.alias(id, mark),
            Event::Scalar(text, style, anchor, tag) => self.scalar(text, style, anchor, tag, mark),
            Event::SequenceStart(anchor, tag) => {
                self.written += 1;
                self.count(1, &mark)?;
                let path = self.child_path();
                self.stack.push(Frame::Seq {
                    path,
                    anchor,
                    tag: merge_tag(&tag),
                    mark,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.written += 1;
                self.count(1, &mark)?;
                let path = self.child_path();
                self.stack.push(Frame::Map {
                    path,
                    anchor,
                    tag: merge_tag(&tag),
                    mark,
                    entries: IndexMap::new(),
                    key_lines: HashMap::new(),
                    merges: Vec::new(),
                    pending_key: None,
                });
                Ok(())
            }
            Event::SequenceEnd => self.end_sequence(mark),
            Event::MappingEnd => self.end_mapping(mark),
            _ => Ok(()),
        }
    }

    fn alias(&mut self, id: usize, mark: Mark) -> Result<(), YamlError> {
        let open = self.stack.iter().any(|f| match f {
            Frame::Seq { anchor, .. } | Frame::Map { anchor, .. } => *anchor == id,
        });
        if open {
            return Err(YamlError::SelfReference {
                mark,
                path: self.child_path(),
            });
        }
        let node = self
            .anchors
            .get(&id)
            .cloned()
            .ok_or(YamlError::UnknownAnchor { mark: mark.clone() })?;
        self.count(node.size(), &mark)?;
        self.push_value(node, true)
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        mark: Mark,
    ) -> Result<(), YamlError> {
        self.written += 1;
        self.count(1, &mark)?;
        let mtag = merge_tag(&tag);
        let value = match (style, &tag) {
            (TScalarStyle::Plain, None) => resolve_plain(&text),
            (TScalarStyle::Plain, Some(t)) if t.handle == "tag:yaml.org,2002:" => {
                match t.suffix.as_str() {
                    "str" => Value::String(text),
                    _ => resolve_plain(&text),
                }
            }
            (TScalarStyle::Plain, Some(_)) if text.is_empty() => Value::Null,
            (TScalarStyle::Plain, Some(_)) => resolve_plain(&text),
            _ => Value::String(text),
        };
        let node = Node {
            value,
            mark,
            tag: mtag,
        };
        self.finish(node, anchor)
    }

    /// A complete node: remembered under its anchor, then placed in its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push_value(node, false)
    }

    fn end_sequence(&mut self, mark: Mark) -> Result<(), YamlError> {
        match self.stack.pop() {
            Some(Frame::Seq {
                anchor,
                tag,
                mark,
                items,
                ..
            }) => {
                let node = Node {
                    value: Value::Seq(items),
                    mark,
                    tag,
                };
                self.finish(node, anchor)
            }
            _ => Err(YamlError::Syntax {
                mark,
                message: "unbalanced sequence end".into(),
            }),
        }
    }

    fn end_mapping(&mut self, mark: Mark) -> Result<(), YamlError> {
        match self.stack.pop() {
            Some(Frame::Map {
                anchor,
                tag,
                mark,
                mut entries,
                merges,
                ..
            }) => {
                for merge in merges {
                    apply_merge(&mut entries, merge)?;
                }
                let node = Node {
                    value: Value::Map(entries),
                    mark,
                    tag,
                };
                self.finish(node, anchor)
            }
            _ => Err(YamlError::Syntax {
                mark,
                message: "unbalanced mapping end".into(),
            }),
        }
    }

    fn push_value(&mut self, node: Node, from_alias: bool) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                key_lines,
                merges,
                pending_key,
                path,
                ..
            }) => match pending_key.take() {
                None => {
                    *pending_key = Some((node, from_alias));
                    Ok(())
                }
                Some((key, _)) => {
                    let is_merge =
                        matches!(&key.value, Value::String(s) if s == "<<") && key.mark.line > 0;
                    if is_merge {
                        merges.push(node);
                        return Ok(());
                    }
                    let name = match &key.value {
                        Value::String(s) => s.clone(),
                        Value::Seq(_) | Value::Map(_) | Value::Null => {
                            return Err(YamlError::NonStringKey {
                                mark: key.mark.clone(),
                                where_: describe_path(path),
                                key: key.kind().to_string(),
                            })
                        }
                        _ => {
                            return Err(YamlError::NonStringKey {
                                mark: key.mark.clone(),
                                where_: describe_path(path),
                                key: key.scalar_text().unwrap_or_default(),
                            })
                        }
                    };
                    if let Some(first) = key_lines.get(&name) {
                        return Err(YamlError::DuplicateKey {
                            mark: key.mark,
                            key: name,
                            first_line: *first,
                        });
                    }
                    key_lines.insert(name.clone(), key.mark.line);
                    entries.insert(name, node);
                    Ok(())
                }
            },
        }
    }
}

fn describe_path(path: &str) -> String {
    if path.is_empty() {
        "at top level".to_string()
    } else {
        format!("in {path}")
    }
}

fn apply_merge(entries: &mut IndexMap<String, Node>, merge: Node) -> Result<(), YamlError> {
    let sources: Vec<Node> = match merge.value {
        Value::Map(_) => vec![merge],
        Value::Seq(items) => {
            if items.iter().any(|i| i.as_map().is_none()) {
                return Err(YamlError::BadMerge { mark: merge.mark });
            }
            items
        }
        _ => return Err(YamlError::BadMerge { mark: merge.mark }),
    };
    // Earlier sources win over later ones, explicit keys over all.
    for source in sources {
        if let Value::Map(m) = source.value {
            for (k, v) in m {
                entries.entry(k).or_insert(v);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Node, YamlError> {
        parse(s, "compose.yaml")
    }

    #[test]
    fn positions_are_one_based() {
        let n = p("services:\n  web:\n    image: nginx\n").unwrap();
        let img = n.get("services").unwrap().get("web").unwrap().get("image");
        let img = img.unwrap();
        assert_eq!((img.mark.line, img.mark.col), (3, 12));
        assert_eq!(img.as_str(), Some("nginx"));
    }

    #[test]
    fn scalars_resolve_by_core_schema() {
        let n = p("a: 1\nb: '1'\nc: true\nd: 80:80\ne: 1.5\nf:\ng: yes\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("b").unwrap().value, Value::String("1".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("d").unwrap().value, Value::String("80:80".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Float(1.5));
        assert!(n.get("f").unwrap().is_null());
        assert_eq!(n.get("g").unwrap().value, Value::String("yes".into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = p("x: &base\n  a: 1\n  b: 2\ny:\n  <<: *base\n  b: 3\nz: *base\n").unwrap();
        let y = n.get("y").unwrap();
        assert_eq!(y.get("a").unwrap().value, Value::Int(1));
        assert_eq!(y.get("b").unwrap().value, Value::Int(3));
        assert_eq!(n.get("z").unwrap().get("b").unwrap().value, Value::Int(2));
    }

    #[test]
    fn duplicate_key_is_an_error_with_position() {
        let e = p("services:\n  a: {}\n  a: {}\n").unwrap_err().to_string();
        assert!(e.starts_with("compose.yaml:3:3:"), "{e}");
        assert!(e.contains("\"a\" already defined at line 2"), "{e}");
    }

    #[test]
    fn tab_indentation_is_an_error() {
        let e = p("services:\n\tweb:\n").unwrap_err().to_string();
        assert!(e.contains("compose.yaml:2:1: tab character"), "{e}");
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            s.push_str(&format!(
                "{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = n;
        }
        let e = p(&s).unwrap_err().to_string();
        assert!(e.contains("excessive aliasing"), "{e}");
    }

    #[test]
    fn tags_are_kept() {
        let n = p("a: !reset []\nb: !override {x: 1}\n").unwrap();
        assert_eq!(n.get("a").unwrap().tag, Some(MergeTag::Reset));
        assert_eq!(n.get("b").unwrap().tag, Some(MergeTag::Override));
    }

    #[test]
    fn non_mapping_and_syntax_errors() {
        assert!(p("123\n")
            .unwrap_err()
            .to_string()
            .contains("top-level object must be a mapping"));
        let e = p("services:\n  web: [\n").unwrap_err().to_string();
        assert!(e.starts_with("compose.yaml:"), "{e}");
        let e = p("123: x\n").unwrap_err().to_string();
        assert!(e.contains("non-string key at top level: 123"), "{e}");
    }
}
