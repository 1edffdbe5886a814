//! The shapes instruction arguments come in: a JSON array or shell text, white-space separated
//! words, `name=value` lists (quotes kept for substitution to remove later), Go durations.

use std::time::Duration;

use super::ErrorKind;

/// Splits `KEYWORD rest`: the keyword as written and the rest with surrounding space trimmed.
pub fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    match line.find(is_separator) {
        Some(end) => (
            &line[..end],
            line[end..].trim_start_matches(is_separator).trim(),
        ),
        None => (line, ""),
    }
}

/// The white space Docker splits instruction arguments at (not newlines).
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// `rest` as a JSON array of strings: None when it is not valid JSON (then it is shell form, as
/// Docker decides); an error when it is a JSON array holding something other than strings.
pub fn json_array(rest: &str) -> Option<Result<Vec<String>, ErrorKind>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return None;
    }
    let values: Vec<serde_json::Value> = serde_json::from_str(rest).ok()?;
    let strings = values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ErrorKind::JsonNotStrings),
        })
        .collect();
    Some(strings)
}

/// White-space separated words, nothing else interpreted (non-JSON COPY, VOLUME, EXPOSE, FROM).
pub fn whitespace_words(rest: &str) -> Vec<String> {
    rest.split(is_separator)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Words separated by white space outside quotes; quotes and escapes are kept in the words
/// (substitution removes them later), as Docker's parser does for ENV, LABEL and ARG.
pub fn quoted_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    // An empty pair of quotes still makes a word.
    let mut has_word = false;
    let mut quote: Option<char> = None;
    let mut pos = 0;
    while pos < chars.len() {
        let c = chars[pos];
        pos += 1;
        if quote.is_none() && c.is_whitespace() {
            if has_word {
                words.push(std::mem::take(&mut word));
                has_word = false;
            }
            continue;
        }
        has_word = true;
        match quote {
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        if c == escape && quote != Some('\'') {
            // An escape at the very end is dropped; otherwise it stays with what it escapes.
            let Some(&escaped) = chars.get(pos) else {
                break;
            };
            word.push(c);
            word.push(escaped);
            pos += 1;
            continue;
        }
        word.push(c);
    }
    if has_word {
        words.push(word);
    }
    words
}

/// `ENV`/`LABEL` arguments: `k=v k2="v 2"`, or the legacy `k the rest is the value`.
pub fn name_values(
    rest: &str,
    escape: char,
    keyword: &'static str,
) -> Result<Vec<(String, String)>, ErrorKind> {
    let words = quoted_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(ErrorKind::AtLeastOneArgument(keyword));
    };
    if !first.contains('=') {
        let (name, value) = split_keyword(rest);
        if value.is_empty() {
            return Err(ErrorKind::MissingValue(keyword));
        }
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(ErrorKind::BlankName(keyword)),
            Some((name, value)) => Ok((name.to_string(), value.to_string())),
            None => Err(ErrorKind::MissingEquals(word)),
        })
        .collect()
}

/// A Go `time.ParseDuration` string (`30s`, `1m30s`, `1.5h`, `250ms`).
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        // Negative durations parse in Go, but no Docker duration may be negative.
        return Err(format!("{text:?} cannot be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_splits_at_the_first_space_run() {
        assert_eq!(split_keyword("  RUN   echo  a  "), ("RUN", "echo  a"));
        assert_eq!(split_keyword("RUN\techo"), ("RUN", "echo"));
        assert_eq!(split_keyword("CMD"), ("CMD", ""));
    }

    #[test]
    fn json_form_needs_a_valid_array_of_strings() {
        assert_eq!(
            json_array(r#" ["echo", "a b"]"#).unwrap().unwrap(),
            ["echo", "a b"]
        );
        assert_eq!(json_array("[]").unwrap().unwrap(), Vec::<String>::new());
        // Invalid JSON is shell form, not an error (single quotes, trailing text, not an array).
        for shell in [
            "['echo']",
            r#"["a"] && b"#,
            "echo [a]",
            r#"["unterminated"#,
            "{}",
        ] {
            assert!(json_array(shell).is_none(), "{shell}");
        }
        assert_eq!(
            json_array("[1, \"a\"]").unwrap().unwrap_err(),
            ErrorKind::JsonNotStrings
        );
    }

    #[test]
    fn quoted_words_keep_quotes_for_later() {
        assert_eq!(
            quoted_words(r#"a=1 b="x y" c='p q' d=e\ f"#, '\\'),
            ["a=1", "b=\"x y\"", "c='p q'", "d=e\\ f"]
        );
        assert_eq!(quoted_words(r#"a="" b"#, '\\'), ["a=\"\"", "b"]);
        assert_eq!(quoted_words(r#"a="x\"y" z\"#, '\\'), ["a=\"x\\\"y\"", "z"]);
        assert_eq!(quoted_words("a=`  b", '`'), ["a=` ", "b"]);
    }

    #[test]
    fn name_values_take_both_forms() {
        assert_eq!(
            name_values(r#"k=v k2="v 2""#, '\\', "ENV").unwrap(),
            [("k".into(), "v".into()), ("k2".into(), "\"v 2\"".into())]
        );
        assert_eq!(
            name_values("k the  rest is value", '\\', "ENV").unwrap(),
            [("k".into(), "the  rest is value".into())]
        );
        assert_eq!(
            name_values("k=", '\\', "ENV").unwrap(),
            [("k".into(), String::new())]
        );
        assert_eq!(
            name_values("k", '\\', "ENV").unwrap_err().to_string(),
            "ENV must have two arguments"
        );
        assert_eq!(
            name_values("a=1 b", '\\', "LABEL").unwrap_err().to_string(),
            "Syntax error - can't find = in \"b\". Must be of the form: name=value"
        );
        assert_eq!(
            name_values("=1", '\\', "LABEL").unwrap_err().to_string(),
            "LABEL names can not be blank"
        );
    }

    #[test]
    fn go_durations_parse_like_go() {
        assert_eq!(go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert!(go_duration("30").unwrap_err().contains("missing unit"));
        assert!(go_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(go_duration("").is_err());
        assert!(go_duration("-1s").unwrap_err().contains("negative"));
    }
}
