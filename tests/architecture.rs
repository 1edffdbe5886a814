//! Architecture checks over the source text: sibling modules must not reach each other (an
//! import cycle), and functions stay short. Both checks are strict for the whole library crate
//! (test code excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest function the style allows, counted from the `fn` line to the closing brace.
const MAX_FUNCTION_LINES: usize = 80;

/// One source file of the library crate: its module path and its text with comments, string
/// and char literals and `#[cfg(test)]` items blanked out (newlines kept, so lines still count).
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    code: String,
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/compose/load.rs` → `[compose, load]`; `src/engine/api/mod.rs` → `[engine, api]`;
/// `src/lib.rs` → `[]`. `main.rs` is the binary crate, not part of the library's module tree.
fn module_of(root: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(root).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("main") if parts.len() == 1 => return None,
        Some("lib") if parts.len() == 1 => parts.clear(),
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

fn load_sources() -> Vec<SourceFile> {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let module = module_of(&root, &path)?;
            let text = std::fs::read_to_string(&path).unwrap();
            let code = blank_test_items(&blank_comments_and_literals(&text));
            Some(SourceFile { path, module, code })
        })
        .collect()
}

// ---- lexical blanking -------------------------------------------------------------------------

/// Replace comments, string literals and char literals by spaces (newlines survive), so that
/// paths and braces are only found in code.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let end = literal_or_comment_end(&chars, i);
        if end == i {
            out.push(chars[i]);
            i += 1;
        } else {
            out.extend(
                chars[i..end]
                    .iter()
                    .map(|&c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        }
    }
    out
}

/// Where the comment or literal starting at `i` ends (exclusive); `i` itself when none starts.
fn literal_or_comment_end(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    match (at(i), at(i + 1)) {
        ('/', '/') => (i..chars.len())
            .find(|&k| chars[k] == '\n')
            .unwrap_or(chars.len()),
        ('/', '*') => block_comment_end(chars, i),
        ('"', _) => quoted_end(chars, i + 1, '"'),
        ('r', '"' | '#') if !prev_is_ident => raw_string_end(chars, i).unwrap_or(i),
        ('b', '"') if !prev_is_ident => quoted_end(chars, i + 2, '"'),
        ('\'', '\\') => quoted_end(chars, i + 1, '\''),
        ('\'', _) if at(i + 2) == '\'' => i + 3,
        _ => i,
    }
}

fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut k = start;
    while k + 1 < chars.len() {
        match (chars[k], chars[k + 1]) {
            ('/', '*') => {
                depth += 1;
                k += 2;
            }
            ('*', '/') => {
                depth -= 1;
                k += 2;
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    chars.len()
}

/// The end of a literal whose body starts at `k`, honouring backslash escapes.
fn quoted_end(chars: &[char], mut k: usize, quote: char) -> usize {
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            c if c == quote => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// `r"…"`, `r#"…"#` & co.; `None` when the `r` is not a raw string's prefix.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start + 1..].iter().take_while(|&&c| c == '#').count();
    let open = start + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    (open + 1..chars.len())
        .find(|&k| chars[k..].starts_with(&closing))
        .map(|k| k + closing.len())
        .or(Some(chars.len()))
}

/// Attributes that compile an item for tests only: `#[cfg(test)]` and `#[cfg(all(test, …))]`.
const TEST_MARKERS: [&str; 2] = ["#[cfg(test)]", "#[cfg(all(test,"];

/// Blank every item marked for tests only (a `mod tests { … }`, a `mod test_support;`, a test
/// helper): test code may import freely.
fn blank_test_items(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let markers: Vec<Vec<char>> = TEST_MARKERS.iter().map(|m| m.chars().collect()).collect();
    let mut i = 0;
    while i < chars.len() {
        if let Some(marker) = markers.iter().find(|m| chars[i..].starts_with(m)) {
            let end = item_end(&chars, i + marker.len());
            for c in &mut chars[i..end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    chars.into_iter().collect()
}

/// The end of the item starting at `k`: its `;` or its balanced `{ … }`, whichever comes first.
fn item_end(chars: &[char], k: usize) -> usize {
    match (k..chars.len()).find(|&j| chars[j] == ';' || chars[j] == '{') {
        Some(j) if chars[j] == ';' => j + 1,
        Some(j) => matching_brace(chars, j),
        None => chars.len(),
    }
}

/// Index just past the `}` that closes the `{` at `open`.
fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    chars.len()
}

// ---- module references ------------------------------------------------------------------------

/// Every `crate::…` / `super::…` / `self::…` path in the code (use trees expanded), as the
/// absolute module path it names (items included: resolution trims them later).
fn referenced_paths(file: &SourceFile) -> Vec<Vec<String>> {
    let chars: Vec<char> = file.code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let head = ["crate", "super", "self"]
            .into_iter()
            .find(|h| starts_word && path_head_at(&chars, i, h));
        match head {
            Some(h) => {
                let mut base = file.module.clone();
                let mut k = i + h.len();
                if h == "crate" {
                    base.clear();
                } else if h == "super" {
                    base.pop();
                }
                k = parse_tree(&chars, k, &mut base, &file.module, &mut out);
                i = k.max(i + 1);
            }
            None => i += 1,
        }
    }
    out
}

/// Whether `head::` starts at `i` (so `pub(super)` and `self.x` are not paths).
fn path_head_at(chars: &[char], i: usize, head: &str) -> bool {
    let word: Vec<char> = head.chars().collect();
    chars[i..].starts_with(&word) && chars[i + word.len()..].starts_with(&[':', ':'])
}

/// Parse `::seg::seg`, `::{a, b::c}` after a path prefix in `base`, pushing every full path.
fn parse_tree(
    chars: &[char],
    mut k: usize,
    base: &mut Vec<String>,
    module: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        k = skip_space(chars, k);
        if !chars[k..].starts_with(&[':', ':']) {
            out.push(base.clone());
            return k;
        }
        k = skip_space(chars, k + 2);
        if chars.get(k) == Some(&'{') {
            return parse_group(chars, k + 1, base, module, out);
        }
        let word: String = chars[k..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        if word.is_empty() {
            out.push(base.clone());
            return k;
        }
        k += word.chars().count();
        if word == "super" {
            base.pop();
        } else {
            base.push(word);
        }
    }
}

/// The `{ a, b::{c, d}, self }` group of a use tree, each member relative to `base`.
fn parse_group(
    chars: &[char],
    mut k: usize,
    base: &[String],
    module: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        k = skip_space(chars, k);
        match chars.get(k) {
            None => return k,
            Some('}') => return k + 1,
            Some(',') => k += 1,
            Some('{') => k = parse_group(chars, k + 1, base, module, out),
            Some(_) => {
                let word: String = chars[k..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == '*')
                    .collect();
                if word.is_empty() {
                    k += 1;
                    continue;
                }
                k += word.chars().count();
                let mut sub = base.to_vec();
                if word != "self" && word != "*" {
                    sub.push(word);
                }
                k = parse_tree(chars, k, &mut sub, module, out);
                k = skip_alias(chars, k);
            }
        }
    }
}

fn skip_space(chars: &[char], mut k: usize) -> usize {
    while chars.get(k).is_some_and(|c| c.is_whitespace()) {
        k += 1;
    }
    k
}

/// Skip ` as name` after a use-tree member.
fn skip_alias(chars: &[char], k: usize) -> usize {
    let j = skip_space(chars, k);
    if chars[j..].starts_with(&['a', 's']) && chars.get(j + 2).is_some_and(|c| c.is_whitespace()) {
        let w = skip_space(chars, j + 2);
        w + chars[w..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .count()
    } else {
        k
    }
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

// ---- sibling cycles ---------------------------------------------------------------------------

/// Edges between sibling modules: `a → b` when code in `a` (or below it) names `b` (or below).
fn sibling_edges(files: &[SourceFile]) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in files {
        for path in referenced_paths(file) {
            let target = resolve(&path, &modules);
            let common = file
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // A parent (mod.rs) or a child is not a sibling; only two distinct children of the
            // common ancestor are.
            if common < file.module.len() && common < target.len() {
                edges
                    .entry(file.module[..common].to_vec())
                    .or_default()
                    .insert((file.module[common].clone(), target[common].clone()));
            }
        }
    }
    edges
}

/// One cycle per strongly connected group, as `a -> b -> a`.
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (start, _) in edges {
        if seen.contains(start) {
            continue;
        }
        if let Some(path) = path_between(edges, start, start) {
            seen.extend(path.iter().cloned());
            found.push(path.join(" -> "));
        }
    }
    found
}

/// A shortest path `from → … → to` of length ≥ 1 (breadth first).
fn path_between(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_string()]);
    while let Some(node) = queue.pop_front() {
        for (_, next) in edges.iter().filter(|(a, _)| *a == node) {
            if next == to {
                let mut path = vec![to.to_string(), node.clone()];
                let mut at = node.clone();
                while let Some(p) = parent.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(next) && next != from {
                parent.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// Every sibling cycle of the crate, as `crate::parent: a -> b -> a`.
fn all_cycles(files: &[SourceFile]) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, edges) in sibling_edges(files) {
        let name = if parent.is_empty() {
            "crate".to_string()
        } else {
            format!("crate::{}", parent.join("::"))
        };
        found.extend(cycles(&edges).into_iter().map(|c| format!("{name}: {c}")));
    }
    found
}

#[test]
fn sibling_modules_do_not_import_each_other() {
    let found = all_cycles(&load_sources());
    assert!(
        found.is_empty(),
        "sibling modules import each other:\n{}",
        found.join("\n")
    );
}

// ---- function length --------------------------------------------------------------------------

/// `(name, first line, line count)` of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let line_at = |k: usize| chars[..k].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if starts_word && chars[i..].starts_with(&['f', 'n', ' ']) {
            let name: String = chars[skip_space(&chars, i + 2)..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect();
            let body = (i..chars.len()).find(|&j| chars[j] == ';' || chars[j] == '{');
            if let Some(open) = body.filter(|&j| chars[j] == '{' && !name.is_empty()) {
                let close = matching_brace(&chars, open);
                out.push((name, line_at(i), line_at(close) - line_at(i) + 1));
            }
        }
        i += 1;
    }
    out
}

#[test]
fn functions_are_at_most_80_lines() {
    let mut too_long = Vec::new();
    for file in load_sources() {
        for (name, line, len) in functions(&file.code) {
            if len <= MAX_FUNCTION_LINES {
                continue;
            }
            too_long.push(format!(
                "{}:{line}: fn {name} is {len} lines",
                file.path.display()
            ));
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        too_long.join("\n")
    );
}

// ---- self-checks of the scanner ---------------------------------------------------------------

fn file(module: &[&str], text: &str) -> SourceFile {
    SourceFile {
        path: PathBuf::from("x.rs"),
        module: module.iter().map(|s| s.to_string()).collect(),
        code: blank_test_items(&blank_comments_and_literals(text)),
    }
}

#[test]
fn scanner_expands_use_trees_and_ignores_comments_strings_and_tests() {
    let f = file(
        &["compose", "load"],
        "use super::{merge, yaml::{self, Node}};\n\
         // use super::plan;\n\
         let s = \"super::graph\"; let c = '\"'; let d = super::super::cli::run();\n\
         pub(super) fn f() {}\n\
         #[cfg(test)]\nmod tests { use super::super::emit; }\n\
         #[cfg(all(test, target_arch = \"x86_64\"))]\nmod arch_tests { use super::super::emit; }\n",
    );
    let paths: Vec<String> = referenced_paths(&f).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "compose::merge",
            "compose::yaml",
            "compose::yaml::Node",
            "cli::run"
        ]
    );
}

#[test]
fn a_two_module_cycle_is_named() {
    let files = [
        file(&["m", "a"], "use super::b::X;"),
        file(&["m", "b"], "fn f() { crate::m::a::g() }"),
        file(&["m", "c"], "use super::a;"),
    ];
    let edges = sibling_edges(&files);
    assert_eq!(cycles(&edges[&vec!["m".to_string()]]), ["a -> b -> a"]);
}

#[test]
fn long_functions_are_measured_from_fn_to_closing_brace() {
    let body = "    x();\n".repeat(80);
    let code = format!("fn short() {{}}\ntrait T {{ fn decl(&self); }}\nfn long() {{\n{body}}}\n");
    let found = functions(&code);
    assert_eq!(
        found,
        [("short".to_string(), 1, 1), ("long".to_string(), 3, 82)]
    );
}
