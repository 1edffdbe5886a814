//! Reading the files a project is made of: compose files (parsed and interpolated), env files,
//! and the lexical path arithmetic used to name them.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::dotenv;
use super::error::ComposeError;
use super::interpolate;
use super::yaml::{self, Node};

/// One parsed and interpolated compose file.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub node: Node,
}

/// What the per-file stages (include, extends) need to load further files.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub env: IndexMap<String, String>,
    pub interpolate: bool,
    pub project_dir: PathBuf,
    /// The user's directory, to name files in messages.
    pub working_dir: PathBuf,
}

pub fn read_text(path: &Path) -> Result<String, ComposeError> {
    std::fs::read_to_string(path).map_err(|source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// How a file is named in messages: relative to the user's directory when it is below it.
pub fn display_name(path: &Path, working_dir: &Path) -> String {
    path.strip_prefix(working_dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

/// Parse one file and interpolate it (per file, before merging, as docker compose does).
pub fn parse_file(path: &Path, ctx: &LoadContext) -> Result<ParsedFile, ComposeError> {
    let (env, interpolate_values) = (&ctx.env, ctx.interpolate);
    let text = read_text(path)?;
    let display = display_name(path, &ctx.working_dir);
    let mut node = yaml::parse(&text, &display)?;
    if interpolate_values {
        interpolate::interpolate_node(&mut node, env, "")?;
    }
    Ok(ParsedFile {
        path: path.to_path_buf(),
        node,
    })
}

/// Read a dotenv file into `vars` without overriding what is already there.
pub fn read_env_file(
    path: &Path,
    lookup: &IndexMap<String, String>,
) -> Result<IndexMap<String, Option<String>>, ComposeError> {
    let text = read_text(path)?;
    dotenv::parse(&text, lookup).map_err(|source| ComposeError::Dotenv {
        path: path.to_path_buf(),
        source,
    })
}

pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    clean_path(&joined)
}

/// Lexical path cleaning (`a/./b/../c` → `a/c`), without touching the file system.
pub fn clean_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}
