//! dotenv files (`.env`, `--env-file`, `env_file:`) read as compose-go reads them: `KEY=VALUE`,
//! optional `export `, `#` comments (inline ones need a space before them when unquoted), single
//! quotes literal, double quotes with escapes and multi-line values, unquoted and double-quoted
//! values interpolated, a bare `KEY` meaning "take it from the environment, or leave it unset".

use indexmap::IndexMap;

use super::interpolate::{substitute, InterpolateError, Lookup};

#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    #[error("line {line}: key cannot contain a space")]
    KeyWithSpace { line: usize },
    /// compose-go's wording (`dotenv/parser.go`), with the offending line as `near`.
    #[error("line {line}: unexpected character {ch:?} in variable name {near:?}; names are letters, digits, `_`, `.` and `-`")]
    BadKey { line: usize, ch: char, near: String },
    #[error("line {line}: unterminated quoted value; close the {quote} quote")]
    Unterminated { line: usize, quote: char },
    #[error("line {line}: {source}")]
    Interpolation {
        line: usize,
        #[source]
        source: InterpolateError,
    },
}

/// Parse a dotenv text. Values are interpolated against the variables defined earlier in the
/// same file, then `env`. A bare `KEY` gives `None` unless `env` knows it.
pub fn parse(
    text: &str,
    env: &dyn Lookup,
) -> Result<IndexMap<String, Option<String>>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut cur = Cursor {
        chars: &chars,
        i: 0,
        line: 1,
    };
    let mut vars: IndexMap<String, Option<String>> = IndexMap::new();
    while cur.skip_blank_and_comments() {
        let start_line = cur.line;
        let key = read_key(&mut cur, start_line)?;
        if cur.at_line_end() {
            // Bare `KEY`: inherited from the environment when known.
            let v = vars
                .get(&key)
                .cloned()
                .flatten()
                .or_else(|| env.lookup(&key));
            vars.insert(key, v);
            continue;
        }
        cur.i += 1; // the `=`
        while cur.peek().is_some_and(|c| matches!(c, ' ' | '\t')) {
            cur.i += 1;
        }
        // The process environment wins over the file's own earlier definitions, as in compose-go.
        let lookup = |name: &str| -> Option<String> {
            env.lookup(name)
                .or_else(|| vars.get(name).cloned().flatten())
        };
        let interpolate = |raw: &str| {
            substitute(raw, &lookup).map_err(|source| DotenvError::Interpolation {
                line: start_line,
                source,
            })
        };
        let value = match cur.peek() {
            Some('\'') => quoted(&mut cur, '\'', start_line)?,
            Some('"') => interpolate(&quoted(&mut cur, '"', start_line)?)?,
            _ => interpolate(&unquoted(&mut cur))?,
        };
        vars.insert(key, Some(value));
    }
    Ok(vars)
}

/// A position in the text, with its line number for messages.
struct Cursor<'a> {
    chars: &'a [char],
    i: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn at_line_end(&self) -> bool {
        self.peek().is_none_or(|c| c == '\n')
    }

    fn skip_to_line_end(&mut self) {
        while !self.at_line_end() {
            self.i += 1;
        }
    }

    /// Skip blank space and comment lines; false at the end of the text.
    fn skip_blank_and_comments(&mut self) -> bool {
        while let Some(c) = self.peek() {
            match c {
                '\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                c if c.is_whitespace() => self.i += 1,
                '#' => self.skip_to_line_end(),
                _ => return true,
            }
        }
        false
    }
}

/// The key, up to `=` (or `:`, the YAML-ish form compose-go also reads) or the end of the line.
fn read_key(cur: &mut Cursor, start_line: usize) -> Result<String, DotenvError> {
    let key_start = cur.i;
    while cur.peek().is_some_and(|c| !matches!(c, '=' | ':' | '\n')) {
        cur.i += 1;
    }
    let mut key: String = cur.chars[key_start..cur.i].iter().collect::<String>();
    key = key.trim_end().to_string();
    if let Some(k) = key.strip_prefix("export ") {
        key = k.trim_start().to_string();
    }
    if key.contains(char::is_whitespace) {
        return Err(DotenvError::KeyWithSpace { line: start_line });
    }
    if let Some(ch) = key
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')))
    {
        let near: String = cur.chars[key_start..]
            .iter()
            .take_while(|c| **c != '\n')
            .collect();
        return Err(DotenvError::BadKey {
            line: start_line,
            ch,
            near,
        });
    }
    Ok(key)
}

/// A quoted value (the cursor on its opening quote), escapes applied for double quotes; the
/// rest of its last line is a comment or blank.
fn quoted(cur: &mut Cursor, q: char, start_line: usize) -> Result<String, DotenvError> {
    let chars = cur.chars;
    let mut raw = String::new();
    let mut j = cur.i + 1;
    let mut closed = false;
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' && q == '"' && j + 1 < chars.len() {
            push_escape(&mut raw, chars[j + 1]);
            j += 2;
            continue;
        }
        if c == '\\' && q == '\'' && chars.get(j + 1) == Some(&'\'') {
            raw.push('\'');
            j += 2;
            continue;
        }
        if c == q {
            closed = true;
            break;
        }
        if c == '\n' {
            cur.line += 1;
        }
        raw.push(c);
        j += 1;
    }
    if !closed {
        return Err(DotenvError::Unterminated {
            line: start_line,
            quote: q,
        });
    }
    cur.i = j + 1;
    cur.skip_to_line_end();
    Ok(raw)
}

/// A backslash escape inside double quotes; `\$` stays a literal dollar through interpolation.
fn push_escape(raw: &mut String, n: char) {
    match n {
        'n' => raw.push('\n'),
        'r' => raw.push('\r'),
        't' => raw.push('\t'),
        '\\' => raw.push('\\'),
        '"' => raw.push('"'),
        '$' => raw.push_str("$$"),
        _ => {
            raw.push('\\');
            raw.push(n);
        }
    }
}

/// An unquoted value: the rest of the line, without an inline comment, trimmed.
fn unquoted(cur: &mut Cursor) -> String {
    let s = cur.i;
    cur.skip_to_line_end();
    let mut raw: String = cur.chars[s..cur.i].iter().collect();
    if let Some(pos) = find_inline_comment(&raw) {
        raw.truncate(pos);
    }
    raw.trim().to_string()
}

fn find_inline_comment(s: &str) -> Option<usize> {
    if s.starts_with('#') {
        return Some(0);
    }
    s.find(" #").or_else(|| s.find("\t#"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn reads_compose_dotenv_syntax() {
        let text = "\u{feff}# comment\nA=1\nexport B = two words # note\nC='lit $A'\nD=\"x\\ny ${A}\"\nE=\nF\nG=\"multi\nline\"\nH=a#b\n";
        let v = parse(text, &no_env).unwrap();
        assert_eq!(v["A"].as_deref(), Some("1"));
        assert_eq!(v["B"].as_deref(), Some("two words"));
        assert_eq!(v["C"].as_deref(), Some("lit $A"));
        assert_eq!(v["D"].as_deref(), Some("x\ny 1"));
        assert_eq!(v["E"].as_deref(), Some(""));
        assert_eq!(v["F"], None);
        assert_eq!(v["G"].as_deref(), Some("multi\nline"));
        assert_eq!(v["H"].as_deref(), Some("a#b"));
    }

    #[test]
    fn bare_key_inherits_from_environment() {
        let env = |n: &str| (n == "HOME").then(|| "/root".to_string());
        let v = parse("HOME\n", &env).unwrap();
        assert_eq!(v["HOME"].as_deref(), Some("/root"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\nINVALID LINE\n", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "line 2: key cannot contain a space");
        let e = parse("A=\"open\nB=2\n", &no_env).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("line 1: unterminated quoted value"));
    }

    proptest::proptest! {
        /// Any text gives variables or a line-numbered error, never a panic.
        #[test]
        fn never_panics(text in "[A-Za-z_=#'\"\\\\$ {}\n\t.-]{0,80}") {
            let _ = parse(&text, &no_env);
        }

        /// Single-quoted values come back verbatim.
        #[test]
        fn single_quoted_values_are_literal(value in "[^'\\\\\n]{0,30}") {
            let vars = parse(&format!("K='{value}'\n"), &no_env).unwrap();
            proptest::prop_assert_eq!(vars["K"].as_deref(), Some(value.as_str()));
        }
    }
}
