//! Stage 2, interpolate: `${VAR}`-style substitution in values (never keys), as docker compose
//! does it: `$V`, `${V}`, `${V:-d}`, `${V-d}`, `${V:?err}`, `${V?err}`, `${V:+alt}`, `${V+alt}`,
//! nesting inside the default/message/alternative, and `$$` for a literal `$`.

use indexmap::IndexMap;

use super::yaml::{Mark, Node, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpolateError {
    #[error("invalid interpolation format for {template:?}: write `${{NAME}}` with NAME made of letters, digits and `_`, or `$$` for a literal `$`")]
    InvalidFormat { template: String },
    #[error("required variable {name} is missing a value{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Required { name: String, message: String },
}

/// Where variables come from (the project environment, already merged by precedence).
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<String>;
}

impl Lookup for IndexMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Substitute every variable in `input`.
pub fn substitute(input: &str, env: &dyn Lookup) -> Result<String, InterpolateError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let end = matching_brace(&chars, i + 2).ok_or_else(|| invalid(input))?;
                let body: String = chars[i + 2..end].iter().collect();
                out.push_str(&braced(&body, env, input)?);
                i = end + 1;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&env.lookup(&name).unwrap_or_default());
                i = j;
            }
            // A `$` followed by anything else stays as written (e.g. `$1`, trailing `$`).
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn invalid(template: &str) -> InterpolateError {
    InterpolateError::InvalidFormat {
        template: template.to_string(),
    }
}

/// Index of the `}` closing a `${` whose body starts at `start`, counting nested `${ }`.
fn matching_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'$') => i += 1,
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            // Plain braces inside a default (`${X:-{"a":1}}`) nest too.
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(body: &str, env: &dyn Lookup, template: &str) -> Result<String, InterpolateError> {
    let name_len = body
        .char_indices()
        .find(|&(i, c)| {
            !(if i == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            })
        })
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    if name_len == 0 {
        return Err(invalid(template));
    }
    let name = &body[..name_len];
    let rest = &body[name_len..];
    let value = env.lookup(name);
    let (op, arg) = if rest.is_empty() {
        ("", "")
    } else if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix(":+") {
        (":+", a)
    } else if let Some(a) = rest.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = rest.strip_prefix('?') {
        ("?", a)
    } else if let Some(a) = rest.strip_prefix('+') {
        ("+", a)
    } else {
        return Err(invalid(template));
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    // The argument is interpolated only when it is used, so `${A:-${B:?}}` does not fail when A is set.
    Ok(match op {
        "" => value.unwrap_or_default(),
        ":-" if non_empty => value.unwrap_or_default(),
        ":-" => substitute(arg, env)?,
        "-" if set => value.unwrap_or_default(),
        "-" => substitute(arg, env)?,
        ":+" if non_empty => substitute(arg, env)?,
        "+" if set => substitute(arg, env)?,
        ":+" | "+" => String::new(),
        ":?" if non_empty => value.unwrap_or_default(),
        "?" if set => value.unwrap_or_default(),
        _ => {
            return Err(InterpolateError::Required {
                name: name.to_string(),
                message: substitute(arg, env)?,
            })
        }
    })
}

/// A value that could not be interpolated, with where it sits in the file and in the model.
#[derive(Debug, thiserror::Error)]
#[error("{mark}: {path}: {source}")]
pub struct LocatedInterpolateError {
    pub mark: Mark,
    pub path: String,
    #[source]
    pub source: InterpolateError,
}

/// Interpolate every string value in a parsed file (keys are left alone), reporting errors with
/// the value's position and model path.
pub fn interpolate_node(
    node: &mut Node,
    env: &dyn Lookup,
    path: &str,
) -> Result<(), LocatedInterpolateError> {
    let root = ModelPath {
        parent: None,
        segment: Segment::Root(path),
    };
    interpolate_at(node, env, &root)
}

/// Where a node sits in the model, built on the stack as the walk descends and only turned into
/// text (`services.web.ports[0]`) when an error needs it: interpolation visits every value.
struct ModelPath<'a> {
    parent: Option<&'a ModelPath<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Root(&'a str),
    Key(&'a str),
    Index(usize),
}

impl ModelPath<'_> {
    fn render(&self) -> String {
        let mut out = self.parent.map(ModelPath::render).unwrap_or_default();
        match self.segment {
            Segment::Root(p) => out.push_str(p),
            Segment::Key(k) if out.is_empty() => out.push_str(k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
        out
    }
}

fn interpolate_at(
    node: &mut Node,
    env: &dyn Lookup,
    path: &ModelPath<'_>,
) -> Result<(), LocatedInterpolateError> {
    match &mut node.value {
        Value::String(s) if s.contains('$') => {
            *s = substitute(s, env).map_err(|source| LocatedInterpolateError {
                mark: node.mark.clone(),
                path: path.render(),
                source,
            })?;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let here = ModelPath {
                    parent: Some(path),
                    segment: Segment::Index(i),
                };
                interpolate_at(item, env, &here)?;
            }
        }
        Value::Map(map) => {
            for (k, v) in map.iter_mut() {
                let here = ModelPath {
                    parent: Some(path),
                    segment: Segment::Key(k),
                };
                interpolate_at(v, env, &here)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> IndexMap<String, String> {
        [("SET", "value"), ("EMPTY", ""), ("N", "42")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    fn sub(s: &str) -> Result<String, InterpolateError> {
        substitute(s, &env())
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(sub("$SET-${SET}.$N").unwrap(), "value-value.42");
        assert_eq!(sub("${UNSET}x").unwrap(), "x");
        assert_eq!(sub("$$SET $$").unwrap(), "$SET $");
        assert_eq!(sub("cost: $5").unwrap(), "cost: $5");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(sub("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}").unwrap(), "d||d");
        assert_eq!(
            sub("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}").unwrap(),
            "alt||alt|"
        );
        assert_eq!(sub("${UNSET:-${ALSO_UNSET:-${SET}}}").unwrap(), "value");
        assert_eq!(sub("${UNSET:-{\"a\": 1}}").unwrap(), "{\"a\": 1}");
    }

    #[test]
    fn required_variables() {
        assert_eq!(sub("${SET:?boom}").unwrap(), "value");
        assert_eq!(sub("${EMPTY?boom}").unwrap(), "");
        let e = sub("${EMPTY:?must be set}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable EMPTY is missing a value: must be set"
        );
        let e = sub("${UNSET?}").unwrap_err();
        assert_eq!(e.to_string(), "required variable UNSET is missing a value");
        let e = sub("x ${UNSET?Mandatory ${SET}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "required variable UNSET is missing a value: Mandatory value"
        );
    }

    #[test]
    fn invalid_templates() {
        for t in ["${", "${}", "${ foo}", "${foo }", "${foo!}"] {
            let e = sub(t).unwrap_err().to_string();
            assert!(e.starts_with("invalid interpolation format"), "{t}: {e}");
        }
    }

    proptest::proptest! {
        /// `$$` is the escape for `$`: escaping any text and interpolating it gives the text back.
        #[test]
        fn escaped_text_survives_interpolation(text in "\\PC{0,64}") {
            let escaped = text.replace('$', "$$");
            proptest::prop_assert_eq!(substitute(&escaped, &env()).unwrap(), text);
        }

        /// Any input gives a value or an error, never a panic.
        #[test]
        fn never_panics(text in "[$a-zA-Z_{}:?+\\-0-9 ]{0,40}") {
            let _ = substitute(&text, &env());
        }
    }
}
