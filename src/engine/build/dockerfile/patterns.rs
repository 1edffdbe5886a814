//! Shell patterns (`*`, `?`, `[a-z]`/`[!a-z]`, `\` escapes) for the trimming and replacing
//! substitutions `${v#p}`, `${v%p}`, `${v/p/r}`: unlike `.dockerignore` globs, `*` crosses `/`.

use regex::{NoExpand, Regex};

use crate::engine::build::ignore::bracket_class;

/// Trimming tries the pattern at every cut of the value, so its cost grows with the square of
/// the length; longer values are refused rather than stalling a build.
const MAX_TRIMMED_LEN: usize = 64 * 1024;

/// `${v#p}` (shortest) / `${v##p}` (longest): `value` without the prefix the pattern matches.
pub fn trim_prefix(value: &str, pattern: &str, longest: bool) -> Result<String, String> {
    check_length(value)?;
    let whole = anchored(pattern)?;
    let cuts = boundaries(value);
    let mut candidates: Box<dyn Iterator<Item = usize>> = if longest {
        Box::new(cuts.into_iter().rev())
    } else {
        Box::new(cuts.into_iter())
    };
    Ok(candidates
        .find(|&end| whole.is_match(&value[..end]))
        .map_or_else(|| value.to_string(), |end| value[end..].to_string()))
}

/// `${v%p}` (shortest) / `${v%%p}` (longest): `value` without the suffix the pattern matches.
pub fn trim_suffix(value: &str, pattern: &str, longest: bool) -> Result<String, String> {
    check_length(value)?;
    let whole = anchored(pattern)?;
    let cuts = boundaries(value);
    let mut candidates: Box<dyn Iterator<Item = usize>> = if longest {
        Box::new(cuts.into_iter())
    } else {
        Box::new(cuts.into_iter().rev())
    };
    Ok(candidates
        .find(|&start| whole.is_match(&value[start..]))
        .map_or_else(|| value.to_string(), |start| value[..start].to_string()))
}

/// `${v/p/r}` (first match) / `${v//p/r}` (every match): the leftmost, longest matches
/// replaced; the replacement is literal.
pub fn replace(value: &str, pattern: &str, replacement: &str, all: bool) -> Result<String, String> {
    if pattern.is_empty() {
        return Ok(value.to_string());
    }
    let regex = Regex::new(&format!("(?s){}", to_regex(pattern)?)).map_err(|e| e.to_string())?;
    Ok(if all {
        regex.replace_all(value, NoExpand(replacement)).into_owned()
    } else {
        regex.replace(value, NoExpand(replacement)).into_owned()
    })
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("(?s)^(?:{})$", to_regex(pattern)?)).map_err(|e| e.to_string())
}

fn check_length(value: &str) -> Result<(), String> {
    if value.len() > MAX_TRIMMED_LEN {
        return Err(format!(
            "the value is {} bytes; trimming works on at most {MAX_TRIMMED_LEN}",
            value.len()
        ));
    }
    Ok(())
}

/// Every char boundary of `value`, 0 and the length included, ascending.
fn boundaries(value: &str) -> Vec<usize> {
    value
        .char_indices()
        .map(|(i, _)| i)
        .chain([value.len()])
        .collect()
}

/// The pattern as a regular expression (greedy `*`, which with anchoring or leftmost-first
/// search gives the shell's longest match).
fn to_regex(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut regex = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '[' => i = bracket_class(&chars, i, &mut regex, &['!', '^'])?,
            '\\' if i < chars.len() => {
                regex.push_str(&regex::escape(&chars[i].to_string()));
                i += 1;
            }
            c => regex.push_str(&regex::escape(&c.to_string())),
        }
    }
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_suffixes_trim_shortest_or_longest() {
        let path = "/usr/local/bin/tool.tar.gz";
        assert_eq!(
            trim_prefix(path, "*/", false).unwrap(),
            "usr/local/bin/tool.tar.gz"
        );
        assert_eq!(trim_prefix(path, "*/", true).unwrap(), "tool.tar.gz");
        assert_eq!(
            trim_suffix(path, ".*", false).unwrap(),
            "/usr/local/bin/tool.tar"
        );
        assert_eq!(
            trim_suffix(path, ".*", true).unwrap(),
            "/usr/local/bin/tool"
        );
        assert_eq!(trim_prefix("v1.2.3", "v", false).unwrap(), "1.2.3");
        assert_eq!(trim_prefix("1.2.3", "v", false).unwrap(), "1.2.3");
        assert_eq!(
            trim_suffix("file.TXT", "[A-Z][A-Z][A-Z]", false).unwrap(),
            "file."
        );
        assert_eq!(trim_prefix("*star", "\\*", false).unwrap(), "star");
        assert_eq!(trim_prefix("/home", "*", true).unwrap(), "");
        assert_eq!(trim_prefix("/home", "*", false).unwrap(), "/home");
        assert_eq!(trim_suffix("héllo", "?lo", false).unwrap(), "hé");
    }

    #[test]
    fn replacement_is_leftmost_longest_and_literal() {
        assert_eq!(replace("a-b-c", "-", "_", false).unwrap(), "a_b-c");
        assert_eq!(replace("a-b-c", "-", "_", true).unwrap(), "a_b_c");
        assert_eq!(replace("linux/arm64/v8", "/*", "", false).unwrap(), "linux");
        assert_eq!(replace("abc", "[!b]", "$0", true).unwrap(), "$0b$0");
        assert_eq!(replace("abc", "", "x", true).unwrap(), "abc");
        assert!(replace("abc", "[b", "x", true)
            .unwrap_err()
            .contains("unterminated"));
    }
}
