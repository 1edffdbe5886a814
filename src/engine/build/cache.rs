//! The build cache: a step's key → the image the step made, persisted under the data root
//! (`build-cache/<key>.json`) so it survives engine restarts.
//!
//! The key is sha256 over the parent image id, the instruction as written (after variable
//! substitution), the build args in scope and, for COPY/ADD, a digest of the selected sources
//! (names, types, modes, owners, sizes, link targets and contents) — so editing one file changes
//! the key of the COPY that takes it and of every step after it, and nothing before.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::context::{self, ContextError, Source};
use crate::engine::paths::write_atomic;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("build cache i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
}

type Result<T> = std::result::Result<T, CacheError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What identifies one step's result.
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    pub parent: &'a str,
    /// The instruction after substitution (`COPY --chown=app src/ /app/`).
    pub instruction: &'a str,
    /// Build args in scope, `name=value`, in declaration order.
    pub args: &'a [String],
    /// Digest of COPY/ADD inputs (context content or the `--from` image id).
    pub content: Option<&'a str>,
}

/// The cache key of a step (64 hex digits).
pub fn step_key(inputs: StepInputs<'_>) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different inputs concatenate to the same bytes.
    for field in [inputs.parent, inputs.instruction] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.update((inputs.args.len() as u64).to_le_bytes());
    for a in inputs.args {
        h.update((a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    match inputs.content {
        Some(c) => {
            h.update([1]);
            h.update(c.as_bytes());
        }
        None => h.update([0]),
    }
    hex::encode(h.finalize())
}

/// Digest of the sources a COPY/ADD selected in the context at `root`.
pub fn sources_digest(root: &Path, sources: &[(Source, String)]) -> Result<String> {
    let mut h = Sha256::new();
    for (src, pattern) in sources {
        h.update(src.rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        for entry in context::walk(root, src, pattern, context::Scope::Context)? {
            let path = context::entry_path(root, src, &entry);
            let link = if entry.meta.file_type().is_symlink() {
                Some(std::fs::read_link(&path).map_err(io_err(&path))?)
            } else {
                None
            };
            h.update(context::entry_identity(&entry, link.as_deref()).as_bytes());
            if entry.meta.is_file() {
                hash_file(&mut h, &path, entry.meta.size())?;
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn hash_file(h: &mut Sha256, path: &Path, size: u64) -> Result<()> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    // Bounded by the size seen in the walk: a file growing meanwhile cannot stall the build.
    let mut reader = file.take(size);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// One persisted cache entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    /// The image the step made (an intermediate image, or the final one).
    pub image: String,
    pub created: String,
}

/// The cache entries of an engine.
pub struct BuildCache {
    dir: PathBuf,
}

impl BuildCache {
    pub fn open(data_root: &Path) -> Result<Self> {
        let dir = data_root.join("build-cache");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(BuildCache { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The image a step with this key made earlier, if recorded.
    pub fn lookup(&self, key: &str) -> Option<String> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        (entry.key == key).then_some(entry.image)
    }

    pub fn store(&self, key: &str, image: &str) -> Result<()> {
        let entry = CacheEntry {
            key: key.to_string(),
            image: image.to_string(),
            created: chrono::Utc::now().to_rfc3339(),
        };
        let path = self.path(key);
        let bytes = serde_json::to_vec(&entry).unwrap_or_default();
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    pub fn entries(&self) -> Vec<CacheEntry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<CacheEntry> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parent: &str, instr: &str, args: &[&str], content: Option<&str>) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        step_key(StepInputs {
            parent,
            instruction: instr,
            args: &args,
            content,
        })
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = key("sha256:a", "RUN make", &["X=1"], None);
        assert_eq!(base, key("sha256:a", "RUN make", &["X=1"], None));
        assert_ne!(base, key("sha256:b", "RUN make", &["X=1"], None));
        assert_ne!(base, key("sha256:a", "RUN make ", &["X=1"], None));
        assert_ne!(base, key("sha256:a", "RUN make", &["X=2"], None));
        assert_ne!(base, key("sha256:a", "RUN make", &[], None));
        assert_ne!(base, key("sha256:a", "RUN make", &["X=1"], Some("")));
        // Field boundaries matter: "ab"+"c" is not "a"+"bc".
        assert_ne!(key("ab", "c", &[], None), key("a", "bc", &[], None));
    }

    #[test]
    fn a_changed_file_changes_the_sources_digest_and_nothing_else_does() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::create_dir(ctx.path().join("src")).unwrap();
        std::fs::write(ctx.path().join("src/a.c"), "int a;").unwrap();
        std::fs::write(ctx.path().join("other"), "x").unwrap();
        let sel = |p: &str| {
            context::select(ctx.path(), p, context::Scope::Context)
                .unwrap()
                .into_iter()
                .map(|s| (s, p.to_string()))
                .collect::<Vec<_>>()
        };
        let first = sources_digest(ctx.path(), &sel("src")).unwrap();
        std::fs::write(ctx.path().join("other"), "y").unwrap();
        assert_eq!(first, sources_digest(ctx.path(), &sel("src")).unwrap());
        std::fs::write(ctx.path().join("src/a.c"), "int b;").unwrap();
        assert_ne!(first, sources_digest(ctx.path(), &sel("src")).unwrap());
    }

    #[test]
    fn entries_persist_across_opens() {
        let root = tempfile::tempdir().unwrap();
        let k = key("sha256:a", "RUN x", &[], None);
        BuildCache::open(root.path())
            .unwrap()
            .store(&k, "sha256:img")
            .unwrap();
        let cache = BuildCache::open(root.path()).unwrap();
        assert_eq!(cache.lookup(&k).as_deref(), Some("sha256:img"));
        cache.remove(&k).unwrap();
        assert_eq!(cache.lookup(&k), None);
    }
}
