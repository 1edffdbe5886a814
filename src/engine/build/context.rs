//! The build context: the request's tar received into a fresh directory under the data root
//! (`build/<id>/context`), and COPY/ADD sources resolved inside it.
//!
//! The tar goes through berth's hardened layer extractor (never follows a symlink, never writes
//! outside the directory, bounded in entries and bytes). Sources are resolved component by
//! component: `..` that climbs out of the context, or a symlink whose target leads out of it, is
//! an error — never something silently clamped — because the user meant a file berth will not
//! read. Globs match one path segment at a time, as Go's `filepath.Match` (what Docker uses).

use std::collections::HashSet;
use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::ignore::DockerIgnore;
use crate::engine::unpack::{unpack_layer, UnpackError, UnpackLimits};

/// Symlinks followed while resolving one source, as the kernel's own limit.
const MAX_SYMLINK_HOPS: usize = 40;
/// A context with more entries than this is refused (a `node_modules` has ~100k).
const MAX_CONTEXT_ENTRIES: u64 = 1_000_000;
/// Bytes of file content a context may unpack to.
const MAX_CONTEXT_BYTES: u64 = 32 << 30;
/// Directory depth walked when copying or hashing sources.
const MAX_WALK_DEPTH: usize = 256;

#[derive(Debug, Error)]
pub enum ContextError {
    #[error("reading the build context: {0}")]
    Receive(#[source] UnpackError),
    #[error("{source_path}: source is outside the build context")]
    Outside { source_path: String },
    #[error("{source_path}: {what} points outside the build context")]
    SymlinkOut { source_path: String, what: String },
    #[error("{source_path}: no such file or directory in the build context")]
    NotFound { source_path: String },
    #[error("{source_path}: too many levels of symbolic links")]
    SymlinkLoop { source_path: String },
    #[error("{source_path}: directory tree deeper than {MAX_WALK_DEPTH} levels")]
    TooDeep { source_path: String },
    #[error("build context i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ContextError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacks the context tar (plain, gzip or zstd, sniffed) into `dest`, an empty directory.
pub fn receive(tar: impl Read, dest: &Path) -> Result<u64> {
    let limits = UnpackLimits {
        max_entries: MAX_CONTEXT_ENTRIES,
        max_total_bytes: MAX_CONTEXT_BYTES,
        ..UnpackLimits::default()
    };
    let stats = unpack_layer(tar, dest, &limits).map_err(ContextError::Receive)?;
    Ok(stats.entries)
}

/// Where sources are resolved: the build context (links leading out are errors) or an image's
/// root filesystem for `COPY --from` (links resolve as in a container: `/` is the root, `..`
/// stops there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Context,
    Image,
}

/// Removes what `ignore` excludes from the received context (dockerd honours a `.dockerignore`
/// in the context too: clients other than the CLIs send it unfiltered). `keep` names files
/// Docker always keeps (the Dockerfile, `.dockerignore`). Returns how many entries went.
pub fn apply_ignore(root: &Path, ignore: &DockerIgnore, keep: &[&str]) -> Result<usize> {
    if ignore.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    prune_dir(root, "", ignore, keep, 0, &mut removed)?;
    Ok(removed)
}

fn prune_dir(
    root: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    keep: &[&str],
    depth: usize,
    removed: &mut usize,
) -> Result<()> {
    if depth > MAX_WALK_DEPTH {
        return Err(ContextError::TooDeep {
            source_path: rel.to_string(),
        });
    }
    let dir = root.join(rel);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok())
        .collect();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        // Not followed: a symlink is an entry of its own, whatever it points at.
        let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
        if keep.contains(&child.as_str()) {
            continue;
        }
        if is_dir && !ignore.can_skip_dir(&child) {
            prune_dir(root, &child, ignore, keep, depth + 1, removed)?;
        } else if ignore.matches(&child) {
            let gone = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone.map_err(io_err(&path))?;
            *removed += 1;
        }
    }
    Ok(())
}

/// A source selected by a COPY/ADD pattern: its path relative to the context root (after
/// following symlinks inside the context), and the name it is copied under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub rel: PathBuf,
    pub is_dir: bool,
}

/// The path components of `pattern`, cleaned as Go's `filepath.Clean`; `None` when a relative
/// pattern climbs above the context (a leading `/` is the context root, where `..` stops).
pub fn clean_components(pattern: &str) -> Option<Vec<String>> {
    let rooted = pattern.starts_with('/');
    let mut out: Vec<String> = Vec::new();
    for comp in pattern.split('/') {
        match comp {
            "" | "." => {}
            ".." if out.is_empty() && rooted => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_string()),
        }
    }
    Some(out)
}

/// True when a segment holds glob syntax (`*`, `?`, `[`), as Docker decides to glob.
fn has_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

/// The longest segment pattern tried: a file name has at most 255 bytes, and the matcher's
/// recursion is as deep as the pattern is long.
const MAX_SEGMENT_PATTERN_CHARS: usize = 4096;

/// Go's `filepath.Match` for one path segment: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes. Failed
/// (pattern, name) positions are remembered, so `*a*a*a*…b` costs at most pattern × name² steps
/// instead of growing exponentially with the number of stars.
pub fn segment_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    if p.len() > MAX_SEGMENT_PATTERN_CHARS {
        return false;
    }
    let n: Vec<char> = name.chars().collect();
    match_at(&p, &n, 0, 0, &mut HashSet::new())
}

fn match_at(
    p: &[char],
    n: &[char],
    pi: usize,
    ni: usize,
    failed: &mut HashSet<(usize, usize)>,
) -> bool {
    if failed.contains(&(pi, ni)) {
        return false;
    }
    let matched = match p.get(pi) {
        None => ni == n.len(),
        Some('*') => (ni..=n.len()).any(|skip| match_at(p, n, pi + 1, skip, failed)),
        Some('?') => ni < n.len() && match_at(p, n, pi + 1, ni + 1, failed),
        Some('[') => match class_match(&p[pi + 1..], n.get(ni).copied()) {
            Some((true, rest)) => match_at(p, n, p.len() - rest.len(), ni + 1, failed),
            _ => false,
        },
        Some('\\') if pi + 1 < p.len() => {
            n.get(ni) == Some(&p[pi + 1]) && match_at(p, n, pi + 2, ni + 1, failed)
        }
        Some(c) => n.get(ni) == Some(c) && match_at(p, n, pi + 1, ni + 1, failed),
    };
    if !matched {
        failed.insert((pi, ni));
    }
    matched
}

/// Matches one character against a class body (after `[`); returns whether it matched and the
/// pattern after the closing `]`, or `None` for a malformed class (Go: no match).
fn class_match(p: &[char], c: Option<char>) -> Option<(bool, &[char])> {
    let c = c?;
    let (negate, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        let lo = if lo == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            lo
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|h| *h != ']') {
            i += 2;
            p[i - 1]
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

/// Resolves `comps` inside `root`, following symlinks as they would resolve if `root` were `/`
/// — except that a target leaving the context is an error. Missing components are kept as
/// written (the caller decides whether absence is an error).
fn resolve_in(root: &Path, comps: &[String], original: &str, scope: Scope) -> Result<Vec<String>> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(comp) = todo.pop_front() {
        let candidate = root.join(done.join("/")).join(&comp);
        let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
            done.push(comp);
            done.extend(todo.drain(..));
            break;
        };
        if !meta.file_type().is_symlink() {
            done.push(comp);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ContextError::SymlinkLoop {
                source_path: original.to_string(),
            });
        }
        let target = std::fs::read_link(&candidate).map_err(io_err(&candidate))?;
        let link_name = [&done[..], std::slice::from_ref(&comp)].concat().join("/");
        let what = format!("symlink {link_name} -> {}", target.display());
        let out = || ContextError::SymlinkOut {
            source_path: original.to_string(),
            what: what.clone(),
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with('/') {
            if scope == Scope::Context {
                return Err(out());
            }
            done.clear();
        }
        let mut prefix = Vec::new();
        for t in target.split('/') {
            match t {
                "" | "." => {}
                ".." => {
                    if prefix.pop().is_none() && done.pop().is_none() && scope == Scope::Context {
                        return Err(out());
                    }
                }
                t => prefix.push(t.to_string()),
            }
        }
        for t in prefix.into_iter().rev() {
            todo.push_front(t);
        }
    }
    Ok(done)
}

/// The sources a COPY/ADD pattern selects in the context at `root`, in sorted order. A pattern
/// that selects nothing is an error, as Docker's "no source files were specified".
pub fn select(root: &Path, pattern: &str, scope: Scope) -> Result<Vec<Source>> {
    let comps = clean_components(pattern).ok_or_else(|| ContextError::Outside {
        source_path: pattern.to_string(),
    })?;
    let mut candidates: Vec<Vec<String>> = vec![Vec::new()];
    for comp in &comps {
        let mut next = Vec::new();
        for base in candidates {
            if !has_glob(comp) {
                next.push([base, vec![comp.clone()]].concat());
                continue;
            }
            let dir = resolve_in(root, &base, pattern, scope)?;
            let Ok(entries) = std::fs::read_dir(root.join(dir.join("/"))) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| segment_match(comp, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| [base.clone(), vec![n]].concat()));
        }
        candidates = next;
    }
    let mut sources = Vec::new();
    for c in candidates {
        let resolved = resolve_in(root, &c, pattern, scope)?;
        let path = root.join(resolved.join("/"));
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        sources.push(Source {
            rel: PathBuf::from(resolved.join("/")),
            is_dir: meta.is_dir(),
        });
    }
    if sources.is_empty() {
        return Err(ContextError::NotFound {
            source_path: pattern.to_string(),
        });
    }
    Ok(sources)
}

/// One file, directory or symlink under a selected source, relative to the source.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Path relative to the source directory (empty for a file source itself).
    pub rel: PathBuf,
    pub meta: std::fs::Metadata,
}

/// The host path of a walked entry (a file source's own entry has an empty `rel`: joining it
/// would add a trailing `/`, which the kernel reads as "a directory").
pub fn entry_path(root: &Path, src: &Source, entry: &TreeEntry) -> PathBuf {
    let base = root.join(&src.rel);
    if entry.rel.as_os_str().is_empty() {
        base
    } else {
        base.join(&entry.rel)
    }
}

/// Every entry under the source `src` (a directory: its contents, sorted, depth first; a file:
/// itself). Symlinks are listed, not followed; one that points out of the context is an error.
pub fn walk(root: &Path, src: &Source, original: &str, scope: Scope) -> Result<Vec<TreeEntry>> {
    let path = root.join(&src.rel);
    if !src.is_dir {
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        return Ok(vec![TreeEntry {
            rel: PathBuf::new(),
            meta,
        }]);
    }
    let mut out = Vec::new();
    let walk = Walk {
        root,
        base: &src.rel,
        original,
        scope,
    };
    walk.dir(Path::new(""), 0, &mut out)?;
    Ok(out)
}

struct Walk<'a> {
    root: &'a Path,
    base: &'a Path,
    original: &'a str,
    scope: Scope,
}

impl Walk<'_> {
    fn dir(&self, rel: &Path, depth: usize, out: &mut Vec<TreeEntry>) -> Result<()> {
        if depth > MAX_WALK_DEPTH {
            return Err(ContextError::TooDeep {
                source_path: self.original.to_string(),
            });
        }
        let dir = self.root.join(self.base).join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.file_type().is_symlink() && self.scope == Scope::Context {
                check_link_stays_inside(self.root, &self.base.join(&child), self.original)?;
            }
            let is_dir = meta.is_dir();
            out.push(TreeEntry {
                rel: child.clone(),
                meta,
            });
            if is_dir {
                self.dir(&child, depth + 1, out)?;
            }
        }
        Ok(())
    }
}

/// A symlink copied as a symlink must still point inside the context: the image would
/// otherwise depend on files the build never saw (and BUILD.md names it bad input).
fn check_link_stays_inside(root: &Path, link: &Path, original: &str) -> Result<()> {
    let comps: Vec<String> = link
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    resolve_in(root, &comps, original, Scope::Context).map(|_| ())
}

/// Bytes of a walked entry's identity that the cache key covers: name, type, mode, owner, size
/// and link target (file contents are hashed by the caller).
pub fn entry_identity(entry: &TreeEntry, link_target: Option<&Path>) -> String {
    let m = &entry.meta;
    format!(
        "{}\0{:o}\0{}:{}\0{}\0{}\n",
        entry.rel.display(),
        m.mode(),
        m.uid(),
        m.gid(),
        m.len(),
        link_target
            .map(|t| t.display().to_string())
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn go_filepath_match_per_segment() {
        assert!(segment_match("*.c", "hello.c"));
        assert!(!segment_match("*.c", "hello.h"));
        assert!(segment_match("h?llo", "hallo"));
        assert!(segment_match("[a-c]x", "bx"));
        assert!(!segment_match("[^a-c]x", "bx"));
        assert!(segment_match("[!a-c]x", "dx"));
        assert!(segment_match("\\*", "*"));
        assert!(!segment_match("\\*", "a"));
        assert!(segment_match("*", ""));
        assert!(!segment_match("[", "["));
        // Many stars against a long name that does not match: answered at once, not after an
        // exponential search (this test would not finish with the naive matcher).
        let name = "a".repeat(255);
        assert!(!segment_match(&("*a".repeat(40) + "b"), &name));
        assert!(segment_match(&"*a".repeat(40), &name));
    }

    #[test]
    fn dotdot_that_climbs_out_is_refused_and_rooted_paths_clamp() {
        assert_eq!(clean_components("../x"), None);
        assert_eq!(clean_components("a/../../x"), None);
        assert_eq!(clean_components("/../x"), Some(vec!["x".to_string()]));
        assert_eq!(
            clean_components("./a//b/."),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/sub")).unwrap();
        std::fs::write(dir.path().join("src/a.c"), "a").unwrap();
        std::fs::write(dir.path().join("src/b.c"), "b").unwrap();
        std::fs::write(dir.path().join("src/sub/c.h"), "c").unwrap();
        std::fs::write(dir.path().join("top.txt"), "t").unwrap();
        dir
    }

    #[test]
    fn globs_select_sorted_matches_and_missing_sources_are_errors() {
        let ctx = context();
        let got = select(ctx.path(), "src/*.c", Scope::Context).unwrap();
        let rels: Vec<_> = got.iter().map(|s| s.rel.display().to_string()).collect();
        assert_eq!(rels, ["src/a.c", "src/b.c"]);
        assert!(select(ctx.path(), "src", Scope::Context).unwrap()[0].is_dir);
        let err = select(ctx.path(), "nope/*.c", Scope::Context)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        let err = select(ctx.path(), "../x", Scope::Context)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "../x: source is outside the build context");
    }

    #[test]
    fn symlinks_inside_are_followed_and_links_out_refused() {
        let ctx = context();
        symlink("src/a.c", ctx.path().join("alias")).unwrap();
        symlink("../../etc/passwd", ctx.path().join("src/out")).unwrap();
        symlink("/etc", ctx.path().join("abs")).unwrap();
        assert_eq!(
            select(ctx.path(), "alias", Scope::Context).unwrap()[0].rel,
            PathBuf::from("src/a.c")
        );
        let err = select(ctx.path(), "src/out", Scope::Context)
            .unwrap_err()
            .to_string();
        assert!(err.contains("points outside the build context"), "{err}");
        assert!(select(ctx.path(), "abs/passwd", Scope::Context).is_err());
        // In an image, the same links resolve inside its root.
        std::fs::create_dir(ctx.path().join("etc")).unwrap();
        std::fs::write(ctx.path().join("etc/passwd"), "root").unwrap();
        let got = select(ctx.path(), "abs/passwd", Scope::Image).unwrap();
        assert_eq!(got[0].rel, PathBuf::from("etc/passwd"));
        // Copying the directory that holds the link is refused too.
        let src = select(ctx.path(), "src", Scope::Context).unwrap().remove(0);
        let err = walk(ctx.path(), &src, "src", Scope::Context)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symlink src/out -> ../../etc/passwd"), "{err}");
    }

    #[test]
    fn a_dockerignore_in_the_context_removes_what_it_excludes() {
        let ctx = context();
        std::fs::write(ctx.path().join("Dockerfile"), "FROM x").unwrap();
        let ignore = DockerIgnore::parse("src/*.c\n!src/b.c\nDockerfile\ntop.txt\n").unwrap();
        let removed = apply_ignore(ctx.path(), &ignore, &["Dockerfile", ".dockerignore"]).unwrap();
        assert_eq!(removed, 2);
        assert!(!ctx.path().join("src/a.c").exists());
        assert!(ctx.path().join("src/b.c").exists());
        assert!(ctx.path().join("src/sub/c.h").exists());
        assert!(ctx.path().join("Dockerfile").exists());
        assert!(!ctx.path().join("top.txt").exists());
    }

    #[test]
    fn walks_are_sorted_and_relative_to_the_source() {
        let ctx = context();
        let src = select(ctx.path(), "src", Scope::Context).unwrap().remove(0);
        let names: Vec<_> = walk(ctx.path(), &src, "src", Scope::Context)
            .unwrap()
            .iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        assert_eq!(names, ["a.c", "b.c", "sub", "sub/c.h"]);
    }
}
