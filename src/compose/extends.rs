//! Stage 3b, extends: a service built on another one, from the same file or another file,
//! through chains; relative paths of a base from another directory are rebased; cycles are
//! errors naming the chain.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::error::ComposeError;
use super::files::{clean_path, parse_file, LoadContext, ParsedFile};
use super::merge;
use super::yaml::{Node, Value};

/// Resolve every `extends` in the file's services.
pub fn apply(file: &mut ParsedFile, ctx: &LoadContext) -> Result<(), ComposeError> {
    let names: Vec<String> = match file.node.get("services").and_then(Node::as_map) {
        Some(m) => m.keys().cloned().collect(),
        None => return Ok(()),
    };
    let mut cache: IndexMap<PathBuf, Node> = IndexMap::new();
    cache.insert(file.path.clone(), file.node.clone());
    let mut resolved = IndexMap::new();
    for name in names {
        let has_extends = file
            .node
            .get("services")
            .and_then(|s| s.get(&name))
            .and_then(|s| s.get("extends"))
            .is_some();
        if has_extends {
            let node = resolve(&file.path, &name, ctx, &mut cache, &mut Vec::new())?;
            resolved.insert(name, node);
        }
    }
    if let Some(services) = file
        .node
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::as_map_mut)
    {
        for (name, node) in resolved {
            services.insert(name, node);
        }
    }
    Ok(())
}

fn load_cached<'a>(
    path: &Path,
    ctx: &LoadContext,
    cache: &'a mut IndexMap<PathBuf, Node>,
) -> Result<&'a Node, ComposeError> {
    if !cache.contains_key(path) {
        let parsed = parse_file(path, ctx)?;
        cache.insert(path.to_path_buf(), parsed.node);
    }
    Ok(&cache[path])
}

/// The service `name` of `file`, with its extends chain merged in.
fn resolve(
    file: &Path,
    name: &str,
    ctx: &LoadContext,
    cache: &mut IndexMap<PathBuf, Node>,
    chain: &mut Vec<(PathBuf, String)>,
) -> Result<Node, ComposeError> {
    let key = (file.to_path_buf(), name.to_string());
    if chain.contains(&key) {
        let mut names: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
        names.push(name.to_string());
        return Err(ComposeError::Consistency(format!(
            "Circular reference with extends: {}; break the cycle",
            names.join(" -> ")
        )));
    }
    let doc = load_cached(file, ctx, cache)?.clone();
    let svc = doc
        .get("services")
        .and_then(|s| s.get(name))
        .cloned()
        .ok_or_else(|| {
            ComposeError::Consistency(format!(
                "cannot extend service {name:?} in {}: service {name:?} not found",
                file.display()
            ))
        })?;
    let Some(ext) = svc.get("extends").cloned() else {
        return Ok(svc);
    };
    let path = format!("services.{name}.extends");
    let (base_name, base_file) = match &ext.value {
        Value::String(s) => (s.clone(), None),
        Value::Map(m) => {
            let s = m.get("service").and_then(Node::as_str).ok_or_else(|| {
                ComposeError::invalid(&ext, &path, format!("{path} missing property 'service'"))
            })?;
            let f = m.get("file").and_then(Node::as_str).map(String::from);
            (s.to_string(), f)
        }
        _ => {
            return Err(ComposeError::invalid(
                &ext,
                &path,
                format!("{path} must be a string or a mapping"),
            ))
        }
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let base_path = match &base_file {
        Some(f) => clean_path(&dir.join(f)),
        None => file.to_path_buf(),
    };
    chain.push(key);
    let mut base = resolve(&base_path, &base_name, ctx, cache, chain)?;
    chain.pop();
    if base_path.parent() != file.parent() {
        if let Some(bdir) = base_path.parent() {
            rebase(&mut base, bdir);
        }
    }
    let mut local = svc;
    if let Some(m) = local.as_map_mut() {
        m.shift_remove("extends");
    }
    if let Some(m) = base.as_map_mut() {
        m.shift_remove("extends");
    }
    merge::merge_service(base, local)
}

fn is_relative_host_path(p: &str) -> bool {
    p.starts_with("./") || p.starts_with("../") || p == "." || p == ".."
}

/// Make the relative host paths of a service from another directory absolute.
fn rebase(svc: &mut Node, dir: &Path) {
    let abs = |s: &str| clean_path(&dir.join(s)).display().to_string();
    let Some(m) = svc.as_map_mut() else { return };
    if let Some(b) = m.get_mut("build") {
        match &mut b.value {
            Value::String(s) if !s.contains("://") => *s = abs(s),
            Value::Map(bm) => {
                if let Some(Value::String(c)) = bm.get_mut("context").map(|c| &mut c.value) {
                    if !c.contains("://") {
                        *c = abs(c);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(ef) = m.get_mut("env_file") {
        match &mut ef.value {
            Value::String(s) => *s = abs(s),
            Value::Seq(items) => {
                for it in items {
                    match &mut it.value {
                        Value::String(s) => *s = abs(s),
                        Value::Map(im) => {
                            if let Some(Value::String(s)) = im.get_mut("path").map(|p| &mut p.value)
                            {
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
    if let Some(Value::Seq(items)) = m.get_mut("volumes").map(|v| &mut v.value) {
        for it in items {
            match &mut it.value {
                Value::String(s) => {
                    let parts = super::notation::split_volume_spec(s);
                    if parts.len() >= 2 && is_relative_host_path(&parts[0]) {
                        let mut np = parts.clone();
                        np[0] = abs(&parts[0]);
                        *s = np.join(":");
                    }
                }
                Value::Map(vm) => {
                    if let Some(Value::String(src)) = vm.get_mut("source").map(|x| &mut x.value) {
                        if is_relative_host_path(src) {
                            *src = abs(src);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::compose::test_support::{load_dir, write};

    #[test]
    fn same_file_chain_merges_by_compose_rules() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "compose.yaml",
            "services:\n  base:\n    image: busybox\n    environment: {A: '1', B: '1'}\n    command: [sleep, '1']\n  mid:\n    extends: base\n    environment: {B: '2'}\n  top:\n    extends: {service: mid}\n    command: echo hi\n",
        );
        let p = load_dir(t.path()).unwrap();
        let top = &p.services["top"];
        assert_eq!(top.image.as_deref(), Some("busybox"));
        assert_eq!(top.environment["A"].as_deref(), Some("1"));
        assert_eq!(top.environment["B"].as_deref(), Some("2"));
        assert_eq!(
            top.command.as_deref(),
            Some(&["echo".to_string(), "hi".to_string()][..])
        );
        assert!(top.extra.get("extends").is_none());
    }

    #[test]
    fn other_file_paths_are_rebased_to_its_directory() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "common/base.yaml",
            "services:\n  app:\n    build: ./src\n    volumes: ['./conf:/conf']\n    env_file: ./app.env\n",
        );
        write(t.path(), "common/app.env", "FROM_FILE=yes\n");
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    extends: {file: common/base.yaml, service: app}\n",
        );
        let p = load_dir(t.path()).unwrap();
        let web = &p.services["web"];
        let common = t.path().join("common");
        assert_eq!(
            web.build.as_ref().unwrap().context,
            common.join("src").display().to_string()
        );
        assert_eq!(
            web.volumes[0].source.as_deref(),
            Some(common.join("conf").to_str().unwrap())
        );
        assert_eq!(web.environment["FROM_FILE"].as_deref(), Some("yes"));
    }

    #[test]
    fn cycles_and_missing_bases_are_errors() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "compose.yaml",
            "services:\n  a:\n    image: x\n    extends: b\n  b:\n    image: x\n    extends: a\n",
        );
        let e = load_dir(t.path()).unwrap_err().to_string();
        assert!(
            e.contains("Circular reference with extends: a -> b -> a"),
            "{e}"
        );
        write(
            t.path(),
            "compose.yaml",
            "services:\n  a:\n    extends: nope\n",
        );
        let e = load_dir(t.path()).unwrap_err().to_string();
        assert!(e.contains("cannot extend service \"nope\""), "{e}");
    }
}
