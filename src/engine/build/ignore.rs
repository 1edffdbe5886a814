//! `.dockerignore`: which files of a build context are left out, with Docker's rules.
//!
//! Patterns are Go `filepath.Match` globs (`*` and `?` stop at `/`, `[a-z]`/`[^a-z]` classes, `\`
//! escapes) plus `**` for any number of directories; each is cleaned like a path (`./a/../b/` is
//! `b`, a leading `/` is dropped). A path is excluded when it or one of its parent directories
//! matches; `!pattern` re-includes, and the last pattern that matches decides. Pure: the caller
//! walks the file system and asks.

use regex::Regex;

/// A bad `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore:{line}: illegal exclusion pattern: \"!\"")]
    EmptyExclusion { line: usize },
    #[error(".dockerignore:{line}: syntax error in pattern {pattern:?}: {reason}")]
    BadPattern {
        line: usize,
        pattern: String,
        reason: String,
    },
}

/// The parsed patterns of a `.dockerignore` file, in order.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    /// `!pattern`: re-includes what it matches.
    exception: bool,
    regex: Regex,
    /// Each `/`-separated segment on its own, None where it holds `**` (any depth) or is no
    /// glob on its own: for telling whether the pattern could reach inside a directory.
    segments: Vec<Option<Regex>>,
    /// How many segments every path this pattern matches has, when that is fixed (no `**` and
    /// no class, which could match `/`): then only the path's ancestor of that depth can match,
    /// one regex run instead of one per ancestor.
    depth: Option<usize>,
}

impl Pattern {
    /// Whether the pattern matches `path` (cleaned) or one of its ancestors (`parents`, outermost
    /// first).
    fn matches_path_or_parent(&self, path: &str, parents: &[String]) -> bool {
        match self.depth {
            Some(depth) => match depth.checked_sub(1).map(|i| parents.get(i)) {
                Some(Some(ancestor)) => self.regex.is_match(ancestor),
                Some(None) if depth == parents.len() + 1 => self.regex.is_match(path),
                _ => false,
            },
            None => self.regex.is_match(path) || parents.iter().any(|p| self.regex.is_match(p)),
        }
    }
}

impl DockerIgnore {
    /// Parses `.dockerignore` text: one pattern a line, `#` comments at the start of a line,
    /// surrounding white space ignored.
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::EmptyExclusion { line });
                }
            }
            let text = clean_pattern(pattern);
            let regex = compile(&text).map_err(|reason| IgnoreError::BadPattern {
                line,
                pattern: raw.trim().to_string(),
                reason,
            })?;
            // A segment that is no glob on its own (a class spanning `/`) counts as "any",
            // which only means a directory is not skipped.
            let segments = text
                .split('/')
                .map(|segment| match segment.contains("**") {
                    true => None,
                    false => compile(segment).ok(),
                })
                .collect();
            let depth =
                (!text.contains("**") && !text.contains('[')).then(|| text.split('/').count());
            patterns.push(Pattern {
                text,
                exception,
                regex,
                segments,
                depth,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when nothing is excluded (no patterns).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context path `rel_path` (`/`-separated, relative to the context root) is
    /// excluded: the last pattern matching it or one of its parent directories decides.
    pub fn matches(&self, rel_path: &str) -> bool {
        let path = clean_path(rel_path);
        let parents = parent_dirs(&path);
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the answer needs evaluating.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches_path_or_parent(&path, &parents) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether a directory walker may skip `rel_dir` without looking inside: it is excluded and
    /// no `!` pattern that comes after the exclusion could re-include anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.matches(rel_dir) {
            return false;
        }
        let dir = clean_path(rel_dir);
        let mut lineage = parent_dirs(&dir);
        lineage.push(dir.clone());
        // The last exclusion matching the directory (or a parent) excludes everything below;
        // only exceptions after it can bring something back.
        let last_exclusion = self
            .patterns
            .iter()
            .rposition(|p| !p.exception && lineage.iter().any(|d| p.regex.is_match(d)));
        let later = last_exclusion.map_or(0, |i| i + 1);
        let dir_segments: Vec<&str> = dir.split('/').collect();
        !self.patterns[later..]
            .iter()
            .any(|p| p.exception && could_match_below(&p.segments, &dir_segments))
    }

    /// The cleaned patterns, `!` kept, in order (for messages and cache keys).
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exception {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }
}

/// Whether a pattern (by segments) could match some path strictly inside the directory `dir`.
fn could_match_below(segments: &[Option<Regex>], dir: &[&str]) -> bool {
    for (i, name) in dir.iter().enumerate() {
        match segments.get(i) {
            // The pattern ends at or above the directory: it cannot reach inside.
            None => return false,
            Some(None) => return true,
            Some(Some(segment)) if !segment.is_match(name) => return false,
            Some(Some(_)) => {}
        }
    }
    segments.len() > dir.len()
}

/// Docker's cleaning of a pattern: `filepath.Clean`, then no leading `/`.
fn clean_pattern(pattern: &str) -> String {
    let cleaned = clean(pattern);
    match cleaned.strip_prefix('/') {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => cleaned,
    }
}

/// A context path as patterns see it: cleaned, relative.
fn clean_path(path: &str) -> String {
    let cleaned = clean(path);
    cleaned
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
        .map_or(cleaned.clone(), str::to_string)
}

/// Go's `filepath.Clean` for `/`-separated paths: no empty or `.` elements, `..` resolved
/// lexically, `.` for nothing.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `a/b/c` → `["a", "a/b"]`.
fn parent_dirs(path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.split('/').collect();
    (1..segments.len())
        .map(|n| segments[..n].join("/"))
        .collect()
}

/// Translates a cleaned pattern to an anchored regular expression, as Docker's pattern matcher
/// does: `*` → `[^/]*`, `?` → `[^/]`, `**/` → `(.*/)?`, a trailing `**` → `.*`.
fn compile(pattern: &str) -> Result<Regex, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut regex = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                regex.push_str(if i == chars.len() { ".*" } else { "(.*/)?" });
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '[' => i = bracket_class(&chars, i, &mut regex, &['^'])?,
            '\\' => match chars.get(i) {
                Some(&escaped) => {
                    i += 1;
                    regex.push_str(&regex::escape(&escaped.to_string()));
                }
                None => return Err("trailing backslash".into()),
            },
            c => regex.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex.push('$');
    Regex::new(&regex).map_err(|e| e.to_string())
}

/// A `[...]` character class starting after `[` at `start`, appended to `regex` as a regex
/// class; returns the index after `]`. A first character in `negators` negates (Go's
/// `filepath.Match` takes `^`; the shell patterns of `${v#p}` also `!`), a `]` right after the
/// opening is literal, `\` escapes. Shared by `.dockerignore` and the Dockerfile's patterns.
pub(in crate::engine::build) fn bracket_class(
    chars: &[char],
    start: usize,
    regex: &mut String,
    negators: &[char],
) -> Result<usize, String> {
    let mut i = start;
    regex.push('[');
    if chars.get(i).is_some_and(|c| negators.contains(c)) {
        regex.push('^');
        i += 1;
    }
    let first = i;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated character class".into());
        };
        i += 1;
        match c {
            ']' if i - 1 > first => {
                regex.push(']');
                return Ok(i);
            }
            '-' if i - 1 > first && chars.get(i) != Some(&']') => regex.push('-'),
            '\\' => {
                let Some(&escaped) = chars.get(i) else {
                    return Err("unterminated character class".into());
                };
                i += 1;
                push_class_char(regex, escaped);
            }
            c => push_class_char(regex, c),
        }
    }
}

fn push_class_char(regex: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || c == '/' || c == '.' {
        regex.push(c);
    } else {
        regex.push('\\');
        regex.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    /// Docker's documented `.dockerignore` example.
    #[test]
    fn the_documented_example_excludes_temp_files_at_their_depths() {
        let rules = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(rules.matches("somedir/temporary.txt"));
        assert!(rules.matches("somedir/temp"));
        assert!(rules.matches("somedir/subdir/temporary.txt"));
        assert!(rules.matches("tempa"));
        assert!(rules.matches("tempb"));
        assert!(!rules.matches("temp"));
        assert!(!rules.matches("temporary.txt"));
        assert!(!rules.matches("a/b/c/temp.txt"));
        assert!(!rules.matches("# comment"));
    }

    #[test]
    fn double_star_matches_any_number_of_directories() {
        let rules = ignore("**/*.go\n");
        assert!(rules.matches("main.go"));
        assert!(rules.matches("cmd/app/main.go"));
        assert!(!rules.matches("main.rs"));
        for (pattern, path, expected) in [
            ("**", "file", true),
            ("**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def/ghi", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**file", "dir/dir/file", true),
        ] {
            assert_eq!(
                ignore(pattern).matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn globs_follow_go_filepath_match() {
        for (pattern, path, expected) in [
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("a/*.txt", "a/dir/file.txt", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abc/def", false),
            ("abc.def", "abcZdef", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            ("[]a]x", "]x", true),
            (".*", ".env", true),
            ("a(b)c/def", "a(b)c/def", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("a\\\\", "a\\", true),
        ] {
            assert_eq!(
                ignore(pattern).matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn a_matching_directory_excludes_everything_inside() {
        let rules = ignore("node_modules\n.git/\n");
        assert!(rules.matches("node_modules"));
        assert!(rules.matches("node_modules/left-pad/index.js"));
        assert!(rules.matches(".git/HEAD"));
        assert!(!rules.matches("src/node_modules_backup"));
    }

    /// Docker's documented exception examples: the last matching line wins.
    #[test]
    fn exceptions_reinclude_and_the_last_match_wins() {
        let readme = ignore("*.md\n!README.md\n");
        assert!(readme.matches("CHANGES.md"));
        assert!(!readme.matches("README.md"));

        let secret = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(secret.matches("CHANGES.md"));
        assert!(!secret.matches("README-public.md"));
        assert!(secret.matches("README-secret.md"));

        let no_effect = ignore("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!no_effect.matches("README-secret.md"));
        assert!(no_effect.matches("CHANGES.md"));

        let nested = ignore("docs\n!docs/keep\n");
        assert!(nested.matches("docs/drop.txt"));
        assert!(!nested.matches("docs/keep"));
        assert!(!nested.matches("docs/keep/inner.txt"));
    }

    #[test]
    fn patterns_and_paths_are_cleaned_like_docker() {
        let rules =
            ignore("/build\n./out/../dist/\n  spaced  \n\t# not a comment after white space\n");
        assert_eq!(
            rules.patterns().collect::<Vec<_>>(),
            [
                "build",
                "dist",
                "spaced",
                "# not a comment after white space"
            ]
        );
        assert!(rules.matches("build/x.o"));
        assert!(rules.matches("./dist/app"));
        assert!(rules.matches("/dist"));
        assert!(!rules.matches("src/build"));
        assert_eq!(ignore("! /tmp\n").patterns().collect::<Vec<_>>(), ["!tmp"]);
    }

    #[test]
    fn bad_patterns_are_errors_with_their_line() {
        assert_eq!(
            DockerIgnore::parse("a\n!\n").unwrap_err().to_string(),
            ".dockerignore:2: illegal exclusion pattern: \"!\""
        );
        let error = DockerIgnore::parse("ok\n[abc\n").unwrap_err().to_string();
        assert!(
            error.starts_with(".dockerignore:2: syntax error in pattern \"[abc\""),
            "{error}"
        );
        assert!(DockerIgnore::parse("").unwrap().is_empty());
    }

    #[test]
    fn the_fixed_depth_shortcut_agrees_with_trying_every_ancestor() {
        let patterns = [
            "a", "a/b", "*/b", "a/*/c", "*", "?/b", "a/b/c/d", "**/c", "a/**", "[ab]/b", "b*",
        ];
        let paths = [
            "a",
            "b",
            "a/b",
            "a/x/c",
            "b/b",
            "a/b/c",
            "a/b/c/d/e",
            "x/y",
            "ab/b/c",
        ];
        for pattern in patterns {
            let rules = ignore(pattern);
            let p = &rules.patterns[0];
            for path in paths {
                let parents = parent_dirs(path);
                let every = p.regex.is_match(path) || parents.iter().any(|q| p.regex.is_match(q));
                assert_eq!(
                    p.matches_path_or_parent(path, &parents),
                    every,
                    "{pattern} {path}"
                );
            }
        }
    }

    #[test]
    fn directories_are_skipped_only_when_no_exception_reaches_inside() {
        let plain = ignore("node_modules\n*.log\n");
        assert!(plain.can_skip_dir("node_modules"));
        assert!(!plain.can_skip_dir("src"));

        let keep = ignore("docs\n!docs/keep.md\n");
        assert!(!keep.can_skip_dir("docs"));

        let wildcard = ignore("vendor\n!vendor/*/LICENSE\n");
        assert!(!wildcard.can_skip_dir("vendor"));
        assert!(!wildcard.can_skip_dir("vendor/lib"));

        let anywhere = ignore("target\n!**/keep\n");
        assert!(!anywhere.can_skip_dir("target"));

        let elsewhere = ignore("target\n!src/keep\n");
        assert!(elsewhere.can_skip_dir("target"));

        // An exception before a later exclusion of the directory cannot bring anything back.
        let overridden = ignore("*\n!docs/keep\ndocs\n");
        assert!(overridden.can_skip_dir("docs"));
        assert!(overridden.matches("docs/keep"));
    }
}
