//! Stage 3a, include: each `include` entry is loaded as its own sub-project (its own directory
//! and `.env`), and its resources are copied into the including file; a name defined on both
//! sides merges (the including side wins), and an include cycle is an error naming the chain.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::error::ComposeError;
use super::files::{clean_path, parse_file, read_env_file, LoadContext, ParsedFile};
use super::yaml::{Mark, Node, Value};

const RESOURCE_KINDS: [&str; 5] = ["services", "networks", "volumes", "secrets", "configs"];

pub fn apply(
    file: &mut ParsedFile,
    ctx: &LoadContext,
    chain: &mut Vec<PathBuf>,
) -> Result<(), ComposeError> {
    let Some(inc) = file
        .node
        .as_map_mut()
        .and_then(|m| m.shift_remove("include"))
    else {
        return Ok(());
    };
    chain.push(file.path.clone());
    let dir = file.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let entries = match &inc.value {
        Value::Seq(items) => items.as_slice(),
        Value::Null => &[],
        _ => {
            return Err(ComposeError::invalid(
                &inc,
                "include",
                "include must be a list",
            ))
        }
    };
    for (i, entry) in entries.iter().enumerate() {
        let entry = IncludeEntry::read(entry, &format!("include[{i}]"))?;
        let Some(sub) = load_included(&entry, &dir, ctx, chain)? else {
            continue;
        };
        let Some(target) = file.node.as_map_mut() else {
            return Err(ComposeError::invalid(
                &inc,
                "include",
                "top-level object must be a mapping",
            ));
        };
        import_resources(target, &sub, &inc.mark)?;
    }
    chain.pop();
    Ok(())
}

/// One `include` entry: a path (or the long syntax with several paths, a project directory and
/// env files).
struct IncludeEntry {
    paths: Vec<String>,
    project_dir: Option<String>,
    env_files: Vec<String>,
}

impl IncludeEntry {
    fn read(entry: &Node, path: &str) -> Result<IncludeEntry, ComposeError> {
        match &entry.value {
            Value::String(s) => Ok(IncludeEntry {
                paths: vec![s.clone()],
                project_dir: None,
                env_files: vec![],
            }),
            Value::Map(m) => {
                let list = |k: &str| -> Vec<String> {
                    match m.get(k).map(|n| &n.value) {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Seq(items)) => {
                            items.iter().filter_map(Node::scalar_text).collect()
                        }
                        _ => vec![],
                    }
                };
                let paths = list("path");
                if paths.is_empty() {
                    return Err(ComposeError::invalid(
                        entry,
                        path,
                        format!("{path} missing property 'path'"),
                    ));
                }
                Ok(IncludeEntry {
                    paths,
                    project_dir: m.get("project_directory").and_then(Node::scalar_text),
                    env_files: list("env_file"),
                })
            }
            _ => Err(ComposeError::invalid(
                entry,
                path,
                format!("{path} must be a string or a mapping"),
            )),
        }
    }
}

/// Load an included project's files (each with its own includes and extends), rebased to its
/// directory and merged; `None` when it names no file.
fn load_included(
    entry: &IncludeEntry,
    dir: &Path,
    ctx: &LoadContext,
    chain: &mut Vec<PathBuf>,
) -> Result<Option<Node>, ComposeError> {
    let files: Vec<PathBuf> = entry
        .paths
        .iter()
        .map(|p| clean_path(&dir.join(p)))
        .collect();
    let sub_dir = match &entry.project_dir {
        Some(d) => clean_path(&dir.join(d)),
        None => files[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    if let Some(pos) = chain.iter().position(|c| c == &files[0]) {
        let names: Vec<String> = chain[pos..]
            .iter()
            .chain(std::iter::once(&files[0]))
            .map(|p| p.display().to_string())
            .collect();
        return Err(ComposeError::Consistency(format!(
            "include cycle detected: {}",
            names.join(" -> ")
        )));
    }
    let sub_ctx = LoadContext {
        env: included_env(entry, dir, &sub_dir, ctx)?,
        interpolate: ctx.interpolate,
        project_dir: sub_dir.clone(),
        working_dir: ctx.working_dir.clone(),
    };
    let mut merged: Option<Node> = None;
    for f in &files {
        let mut parsed = parse_file(f, &sub_ctx)?;
        apply(&mut parsed, &sub_ctx, chain)?;
        super::extends::apply(&mut parsed, &sub_ctx)?;
        rebase_relative(&mut parsed.node, &sub_dir);
        merged = Some(match merged {
            None => super::merge::strip_tags(parsed.node),
            Some(b) => super::merge::merge_files(b, parsed.node)?,
        });
    }
    Ok(merged)
}

/// The included project's environment: its own `.env` (or env_file) under the parent's.
fn included_env(
    entry: &IncludeEntry,
    dir: &Path,
    sub_dir: &Path,
    ctx: &LoadContext,
) -> Result<IndexMap<String, String>, ComposeError> {
    let mut env = ctx.env.clone();
    let env_paths: Vec<PathBuf> = if entry.env_files.is_empty() {
        vec![sub_dir.join(".env")]
    } else {
        entry
            .env_files
            .iter()
            .map(|e| clean_path(&dir.join(e)))
            .collect()
    };
    for ep in env_paths {
        if ep.is_file() {
            for (k, v) in read_env_file(&ep, &env)? {
                if let Some(v) = v {
                    env.entry(k).or_insert(v);
                }
            }
        } else if !entry.env_files.is_empty() {
            return Err(ComposeError::EnvFileNotFound { path: ep });
        }
    }
    Ok(env)
}

/// Copy an included project's resources into the including file.
fn import_resources(
    target: &mut IndexMap<String, Node>,
    sub: &Node,
    mark: &Mark,
) -> Result<(), ComposeError> {
    for kind in RESOURCE_KINDS {
        let Some(src) = sub.get(kind).and_then(Node::as_map) else {
            continue;
        };
        let dst = target
            .entry(kind.to_string())
            .or_insert_with(|| Node::new(Value::Map(IndexMap::new()), mark.clone()));
        if dst.is_null() {
            dst.value = Value::Map(IndexMap::new());
        }
        let Some(dm) = dst.as_map_mut() else { continue };
        for (k, v) in src {
            // Defined here too (or by an earlier include): the definitions merge, the
            // including side overriding the included one (compose-go `importResource`,
            // late 2025), instead of failing as older versions did.
            let merged = match dm.get(k) {
                None => v.clone(),
                Some(existing) if kind == "services" => {
                    super::merge::merge_service(v.clone(), existing.clone())?
                }
                Some(existing) => super::merge::deep_merge(v.clone(), existing.clone()),
            };
            dm.insert(k.clone(), merged);
        }
    }
    Ok(())
}

/// Relative paths of an included project resolve against its own directory.
fn rebase_relative(doc: &mut Node, dir: &Path) {
    let abs = |s: &str| clean_path(&dir.join(s)).display().to_string();
    if let Some(services) = doc
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::as_map_mut)
    {
        for svc in services.values_mut() {
            let Some(m) = svc.as_map_mut() else { continue };
            rebase_build(m, &abs);
            rebase_env_files(m, &abs);
            rebase_volumes(m, &abs);
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(m) = doc
            .as_map_mut()
            .and_then(|m| m.get_mut(kind))
            .and_then(Node::as_map_mut)
        {
            for def in m.values_mut() {
                if let Some(Value::String(f)) = def
                    .as_map_mut()
                    .and_then(|d| d.get_mut("file"))
                    .map(|f| &mut f.value)
                {
                    if !Path::new(f.as_str()).is_absolute() {
                        *f = abs(f);
                    }
                }
            }
        }
    }
}

fn rebase_build(m: &mut IndexMap<String, Node>, abs: &dyn Fn(&str) -> String) {
    match m.get_mut("build").map(|b| &mut b.value) {
        Some(Value::String(s)) if !s.contains("://") => *s = abs(s),
        Some(Value::Map(bm)) => match bm.get_mut("context").map(|c| &mut c.value) {
            Some(Value::String(c)) if !c.contains("://") => *c = abs(c),
            _ => {
                bm.insert(
                    "context".into(),
                    Node::new(Value::String(abs(".")), Default::default()),
                );
            }
        },
        _ => {}
    }
}

fn rebase_env_files(m: &mut IndexMap<String, Node>, abs: &dyn Fn(&str) -> String) {
    match m.get_mut("env_file").map(|e| &mut e.value) {
        Some(Value::String(s)) => *s = abs(s),
        Some(Value::Seq(items)) => {
            for it in items {
                match &mut it.value {
                    Value::String(s) => *s = abs(s),
                    Value::Map(im) => {
                        if let Some(Value::String(s)) = im.get_mut("path").map(|p| &mut p.value) {
                            *s = abs(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Relative volume sources (short and long syntax); named volumes stay as they are.
fn rebase_volumes(m: &mut IndexMap<String, Node>, abs: &dyn Fn(&str) -> String) {
    let rel = |s: &str| s.starts_with("./") || s.starts_with("../") || s == "." || s == "..";
    let Some(Value::Seq(items)) = m.get_mut("volumes").map(|v| &mut v.value) else {
        return;
    };
    for it in items {
        if let Value::String(s) = &mut it.value {
            let parts = super::notation::split_volume_spec(s);
            if parts.len() >= 2 && rel(&parts[0]) {
                let mut np = parts.clone();
                np[0] = abs(&parts[0]);
                *s = np.join(":");
            }
        } else if let Value::Map(vm) = &mut it.value {
            if let Some(Value::String(src)) = vm.get_mut("source").map(|x| &mut x.value) {
                if rel(src) {
                    *src = abs(src);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::compose::test_support::{load_dir, write};

    #[test]
    fn included_project_uses_its_own_dir_and_env() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "db/.env", "DB_TAG=16\n");
        write(
            t.path(),
            "db/compose.yaml",
            "services:\n  db:\n    image: postgres:${DB_TAG}\n    volumes: ['./init:/init']\nvolumes:\n  pg: {}\n",
        );
        write(
            t.path(),
            "compose.yaml",
            "include: [db/compose.yaml]\nservices:\n  web:\n    image: nginx\n    depends_on: [db]\n",
        );
        let p = load_dir(t.path()).unwrap();
        assert_eq!(p.services["db"].image.as_deref(), Some("postgres:16"));
        let init = t.path().join("db/init");
        assert_eq!(
            p.services["db"].volumes[0].source.as_deref(),
            Some(init.to_str().unwrap())
        );
        assert_eq!(p.volumes["pg"].name, "t_pg");
    }

    // compose-go loader/include_test.go TestIncludeWithOverride-style (late 2025): a service
    // defined by an include and by the including file merges, the including side winning.
    #[test]
    fn a_service_defined_on_both_sides_merges_and_cycles_are_errors() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "other.yaml",
            "services:\n  web:\n    image: other\n    environment: {A: from-include, B: b}\n",
        );
        write(
            t.path(),
            "compose.yaml",
            "include: [other.yaml]\nservices:\n  web:\n    image: mine\n    environment: {A: mine}\n",
        );
        let p = load_dir(t.path()).unwrap();
        let web = &p.services["web"];
        assert_eq!(web.image.as_deref(), Some("mine"));
        assert_eq!(web.environment["A"].as_deref(), Some("mine"));
        assert_eq!(web.environment["B"].as_deref(), Some("b"));
        write(
            t.path(),
            "a.yaml",
            "include: [compose.yaml]\nservices: {}\n",
        );
        write(
            t.path(),
            "compose.yaml",
            "include: [a.yaml]\nservices: {}\n",
        );
        let e = load_dir(t.path()).unwrap_err().to_string();
        assert!(e.contains("include cycle detected"), "{e}");
    }
}
