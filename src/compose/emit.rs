//! YAML output of a JSON-shaped model, in the style `docker compose config` prints (go-yaml v3
//! with two-space indents): sequences indented under their key, strings that would read back as
//! something else (numbers, booleans, null, dates) in double quotes, strings that cannot be
//! plain in single quotes, multi-line strings as literal blocks.
//!
//! Written here rather than taken from serde_yaml because that emitter quotes `"8080"` as
//! `'8080'` and does not indent sequences, so its output diffs badly against docker compose's,
//! and because it is a large part of `berth config`'s run time.

use serde_json::Value;

/// `value` as a YAML document (ends with a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::with_capacity(4096);
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        scalar => {
            write_inline(&mut out, scalar, 2);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping whose first key starts at the current position (already indented to `level`).
fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        write_key(out, k);
        out.push(':');
        write_value_after_key(out, v, level);
    }
}

/// A sequence whose first dash starts at the current position (already indented to `level`).
fn write_seq(out: &mut String, a: &[Value], level: usize) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            indent(out, level);
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_map(out, m, level + 2),
            Value::Array(inner) if !inner.is_empty() => write_seq(out, inner, level + 2),
            scalar => {
                write_inline(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

fn write_value_after_key(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, level + 2);
            write_map(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            indent(out, level + 2);
            write_seq(out, a, level + 2);
        }
        scalar => {
            out.push(' ');
            write_inline(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

/// A scalar or an empty collection, on the current line; a literal block continues on the
/// following lines, indented to `block_indent`.
fn write_inline(out: &mut String, v: &Value, block_indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, block_indent),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Keys never use blocks, and `<<` would read back as a merge key.
fn write_key(out: &mut String, k: &str) {
    match style_of(k) {
        Style::Literal => write_double_quoted(out, k),
        _ if k == "<<" => write_double_quoted(out, k),
        _ => write_string(out, k, 0),
    }
}

fn write_string(out: &mut String, s: &str, block_indent: usize) {
    match style_of(s) {
        Style::Plain => out.push_str(s),
        Style::Single => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Style::Double => write_double_quoted(out, s),
        Style::Literal => write_literal(out, s, block_indent),
    }
}

#[derive(Debug, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn style_of(s: &str) -> Style {
    // Most strings are printable ASCII on one line: decided by a byte scan, without the
    // per-character checks below (every key and value of the project comes through here).
    let printable_line = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable_line
        && s.chars().any(|c| {
            (c != '\n' && c != '\t' && c.is_control())
                || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
        })
    {
        return Style::Double;
    }
    if !printable_line && s.contains('\n') {
        // A block needs its first text line not to start with blanks (its indentation is
        // detected from that line; go-yaml avoids explicit indicators too), no blanks ending a
        // line, and some text (a block of only line breaks reads back as "").
        let first_text = s.trim_start_matches('\n');
        let first_line_indented = first_text.starts_with([' ', '\t']);
        let trailing_space = s.split('\n').any(|l| l.ends_with(' ') || l.ends_with('\t'));
        return if first_text.is_empty() || first_line_indented || trailing_space {
            Style::Double
        } else {
            Style::Literal
        };
    }
    if reads_as_non_string(s) {
        return Style::Double;
    }
    if plain_allowed(s) {
        Style::Plain
    } else {
        Style::Single
    }
}

/// Whether a plain scalar `s` would be read back as a null, boolean, number or date by a YAML
/// 1.1 or 1.2 reader (go-yaml, libyaml-based and yaml-rust readers differ; quote for all).
fn reads_as_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".inf", "-.inf",
        "+.inf", ".nan",
    ];
    if WORDS.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        return true;
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let Some(first) = body.chars().next() else {
        return false;
    };
    if !(first.is_ascii_digit() || first == '.') {
        return false;
    }
    // Numbers in any base or notation, YAML 1.1's `1_000` and sexagesimal `1:30`, and dates all
    // start with a digit (or a dot) and use only these characters: quoting every such string
    // costs nothing and is never wrong.
    body.chars().all(|c| {
        c.is_ascii_hexdigit() || matches!(c, '.' | '_' | ':' | 'x' | 'X' | 'o' | 'O' | '+' | '-')
    }) || looks_like_timestamp(body)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && s[5..]
            .chars()
            .all(|c| c.is_ascii_digit() || " -:.TtZz+".contains(c))
}

/// libyaml's rule for plain scalars in block context, simplified to be stricter, never looser.
fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    if "-?:".contains(first) {
        // `-c` is plain; `- x`, `-` alone and `:x` are not.
        if first == ':' || second.is_none_or(|c| c == ' ' || c == '\t') {
            return false;
        }
    } else if ",[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with('\t') || s.ends_with('\t') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    // A tab acts as a blank before `#` and after `:`; no plain scalar needs one.
    !(s.contains(": ") || s.contains(" #") || s.contains('\t') || s.ends_with(':'))
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{feff}' => out.push_str("\\uFEFF"),
            // YAML readers take U+2028/U+2029 as line breaks even inside quotes.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else {
                    out.push_str(&format!("\\u{n:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `|-`, `|` or `|+` by how many newlines end the text, then its lines indented.
fn write_literal(out: &mut String, s: &str, block_indent: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, block_indent);
            out.push_str(line);
        }
    }
    // The block's own line break; `|+` keeps the extra ones as empty lines.
    for _ in 1..trailing {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn prints_like_docker_compose() {
        let v = json!({
            "name": "demo",
            "services": {
                "web": {
                    "command": ["sh", "-c", "echo hi: there"],
                    "environment": {"EMPTY": "", "PORT": "8080", "FLAG": "yes", "URL": "http://x/#a"},
                    "networks": {"default": null},
                    "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                    "labels": {},
                    "healthcheck": {"test": ["CMD", "true"]},
                    "script": "line 1\nline 2\n"
                }
            }
        });
        let text = to_yaml(&v);
        let want = "name: demo
services:
  web:
    command:
      - sh
      - -c
      - 'echo hi: there'
    environment:
      EMPTY: \"\"
      PORT: \"8080\"
      FLAG: \"yes\"
      URL: http://x/#a
    networks:
      default: null
    ports:
      - mode: ingress
        target: 80
        published: \"8080\"
        protocol: tcp
    labels: {}
    healthcheck:
      test:
        - CMD
        - \"true\"
    script: |
      line 1
      line 2
";
        assert_eq!(text, want);
    }

    #[test]
    fn quotes_what_would_read_back_as_another_type() {
        for s in [
            "1",
            "-1",
            "+1",
            "1.5",
            "1e3",
            "0x1F",
            "0o17",
            "1_000",
            "1:30",
            ".5",
            ".inf",
            "NULL",
            "~",
            "True",
            "off",
            "Y",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
        ] {
            assert_eq!(style_of(s), Style::Double, "{s:?}");
        }
        for s in [
            "latest",
            "v1.2",
            "a-b",
            "-c",
            "x:y",
            "busybox:1.36",
            "/bin/sh",
            "C:\\x",
        ] {
            assert_eq!(style_of(s), Style::Plain, "{s:?}");
        }
        for s in [
            "- x", ": a", "a: b", "a #b", "*x", "&x", "!x", "'q'", "\"q\"", " x", "x ", "{a}", "-",
        ] {
            assert_eq!(style_of(s), Style::Single, "{s:?}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
            "[ -~\n\t]{0,16}".prop_map(Value::String),
            prop::sample::select(vec![
                "",
                "8080",
                "yes",
                "- a",
                "a: b",
                " x",
                "x\n",
                "\n",
                "a\n\n",
                " a\nb",
                "#",
                "'",
                "\"",
                "\\",
                "a\r\nb",
                "\u{1}",
                "2020-01-01",
                "null",
                "-",
                "?",
                ":",
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        scalar.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,8}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the model holds, an independent YAML reader reads the output back to it.
        #[test]
        fn output_reads_back_to_the_same_value(v in arb_json()) {
            let text = to_yaml(&v);
            let back: Value = serde_yaml::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(back, v, "{}", text);
        }
    }
}
