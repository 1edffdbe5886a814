//! What one build shares between its stages: the request's options, the build's directory
//! under the data root (removed on drop), the cache, the progress stream, the build args and
//! which of them were consumed — and the build's error type.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use thiserror::Error;

use super::cache::BuildCache;
use super::context::ContextError;
use super::dockerfile::{Dockerfile, DockerfileError};
use super::progress::Progress;
use crate::engine::auth::AuthConfig;
use oci_spec::image::{Arch, ImageConfiguration, Os};

use crate::engine::image::{DockerConfigExtensions, ImageRecord, LayerRecord};
use crate::engine::SharedEngine;

/// Build args every build knows without an `ARG` (Docker's predefined proxy args).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The one platform berth runs.
pub const PLATFORM: &str = "linux/amd64";

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error("{file}:{line}: {detail}")]
    Step {
        file: String,
        line: usize,
        detail: String,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Engine(String),
}

/// `POST /build`'s query, decoded.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub tags: Vec<String>,
    pub dockerfile: String,
    /// `--build-arg K` without a value in the client's environment arrives as null.
    pub build_args: IndexMap<String, Option<String>>,
    pub target: Option<String>,
    pub nocache: bool,
    pub pull: bool,
    pub labels: IndexMap<String, String>,
    pub quiet: bool,
    pub network_mode: String,
    pub shm_size: Option<i64>,
    pub extra_hosts: Vec<String>,
    pub platform: Option<String>,
    /// `X-Registry-Config`: registry → credentials, for pulls of base images.
    pub registry_auth: HashMap<String, AuthConfig>,
}

/// `build/<id>/` under the data root: the context and each step's scratch space; removed on
/// drop, so an error or a panic leaves nothing behind.
pub struct BuildDir {
    root: PathBuf,
    steps: AtomicUsize,
}

/// The builds of this engine process in progress, by id: any other directory under `build/`
/// was left by an engine that died mid-build, and goes when the next build starts.
static ACTIVE_BUILDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl BuildDir {
    pub fn create(data_root: &Path, id: &str) -> Result<Self, BuildError> {
        let builds = data_root.join("build");
        let mut active = ACTIVE_BUILDS.lock().unwrap_or_else(|p| p.into_inner());
        sweep_stale(&builds, &active);
        active.push(id.to_string());
        drop(active);
        let root = builds.join(id);
        std::fs::create_dir_all(root.join("context"))
            .and_then(|()| {
                std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            })
            .map_err(|e| BuildError::Engine(format!("create {}: {e}", root.display())))?;
        Ok(BuildDir {
            root,
            steps: AtomicUsize::new(0),
        })
    }

    pub fn context(&self) -> PathBuf {
        self.root.join("context")
    }

    /// A fresh directory name for one COPY/ADD step.
    pub fn step_dir(&self) -> PathBuf {
        let n = self.steps.fetch_add(1, Ordering::Relaxed);
        self.root.join("steps").join(n.to_string())
    }
}

/// Removes build directories no build of this process owns.
fn sweep_stale(builds: &Path, active: &[String]) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !active.contains(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if let Some(id) = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        {
            ACTIVE_BUILDS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|a| a != &id);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("berth engine: removing {}: {e}", self.root.display());
            }
        }
    }
}

/// What every stage of one build shares.
pub struct BuildEnv {
    pub engine: SharedEngine,
    pub dockerfile: Arc<Dockerfile>,
    pub opts: BuildOptions,
    pub dirs: BuildDir,
    pub cache: BuildCache,
    pub progress: Progress,
    pub build_id: String,
    pub total_steps: usize,
    pub step: AtomicUsize,
    pub used_args: Mutex<HashSet<String>>,
    pub global_scope: Vec<(String, String)>,
}

impl BuildEnv {
    pub fn next_step(&self) -> usize {
        self.step.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A `--build-arg` value, noting that it was consumed.
    pub fn build_arg(&self, name: &str) -> Option<String> {
        let value = self.opts.build_args.get(name)?.clone()?;
        self.used_args
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        Some(value)
    }

    pub fn global_arg(&self, name: &str) -> Option<String> {
        self.global_scope
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The predefined proxy args the client set: RUN sees them without an `ARG`.
    pub fn proxy_args(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|k| Some((k.to_string(), self.build_arg(k)?)))
            .collect()
    }

    /// The image record with its stored config.
    pub fn load(&self, rec: ImageRecord) -> Result<StepImage, BuildError> {
        let (config, ext) = self
            .engine
            .images
            .image_config(&rec)
            .map_err(|e| BuildError::Engine(e.to_string()))?;
        Ok(StepImage {
            record: Some(rec),
            config,
            ext,
        })
    }

    /// The persistent directory of a `RUN --mount=type=cache` id, made on first use.
    pub fn cache_mount_dir(
        &self,
        id: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf, BuildError> {
        use sha2::Digest;
        let name = hex::encode(sha2::Sha256::digest(id.as_bytes()));
        let dir = self
            .engine
            .roots
            .data_root
            .join("build-cache-mounts")
            .join(name);
        if !dir.is_dir() {
            let made = std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(mode),
                    )
                })
                .and_then(|()| std::os::unix::fs::chown(&dir, Some(uid), Some(gid)));
            made.map_err(|e| BuildError::Engine(format!("create cache mount {id}: {e}")))?;
        }
        Ok(dir)
    }
}

/// The image a stage has built so far (`record` is None only for `FROM scratch` untouched).
#[derive(Clone)]
pub struct StepImage {
    pub record: Option<ImageRecord>,
    pub config: ImageConfiguration,
    pub ext: DockerConfigExtensions,
}

impl StepImage {
    pub fn scratch() -> Self {
        let mut config = ImageConfiguration::default();
        config.set_os(Os::Linux);
        config.set_architecture(Arch::Amd64);
        StepImage {
            record: None,
            config,
            ext: DockerConfigExtensions::default(),
        }
    }

    /// The cache's name for the parent of a step.
    pub fn id(&self) -> String {
        self.record
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_else(|| "scratch".into())
    }

    pub fn layers(&self) -> Vec<LayerRecord> {
        self.record
            .as_ref()
            .map(|r| r.layers.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dirs_go_on_drop_and_stale_ones_at_the_next_build() {
        let data = tempfile::tempdir().unwrap();
        let stale = data.path().join("build/dead-engine-build/context");
        std::fs::create_dir_all(&stale).unwrap();
        let dir = BuildDir::create(data.path(), "b1").unwrap();
        assert!(!stale.exists());
        assert!(dir.context().is_dir());
        let second = BuildDir::create(data.path(), "b2").unwrap();
        assert!(dir.context().is_dir(), "a running build's directory stays");
        drop(dir);
        drop(second);
        assert_eq!(
            std::fs::read_dir(data.path().join("build"))
                .unwrap()
                .count(),
            0
        );
    }
}
