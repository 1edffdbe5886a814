//! RUN: the command runs in a real berth container made through the Engine's own verbs
//! (create, start, wait, remove) — the same runtime and isolation as `docker run` — from the
//! step's image. Its output goes to the progress stream line by line; its upper directory is
//! handed to the caller's commit while the container still exists, and the container goes
//! whatever happened.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use thiserror::Error;

use super::progress::Vertex;
use crate::engine::container::ContainerError;
use crate::engine::wire::{ContainerCreateRequest, HostConfig};
use crate::engine::Engine;

/// Lines of output kept for the error of a failing RUN.
const LAST_LINES: usize = 10;
/// The label that marks a build container (no compose project label: `ps` never lists it).
pub const BUILD_LABEL: &str = "io.berth.build";

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot run the step's container: {0}")]
    Container(#[from] ContainerError),
    /// The command ran and exited non-zero.
    #[error("exit code {code}")]
    Failed { code: i64, last_lines: Vec<String> },
    #[error("{0}")]
    Commit(String),
}

/// How to run one RUN step.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The step's parent image id.
    pub image: String,
    /// The full command (`/bin/sh -c …` or the exec form).
    pub argv: Vec<String>,
    /// Build args in scope that ENV does not override (not persisted in the image).
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    /// `bridge` (default), `none` or `host`.
    pub network_mode: String,
    pub shm_size: Option<i64>,
    pub extra_hosts: Vec<String>,
    /// `--mount=type=cache`: host directory → target in the container.
    pub cache_mounts: Vec<(PathBuf, String)>,
    pub build_id: String,
}

/// The container request for a RUN: the command as the entrypoint (the image's is replaced,
/// as Docker's builder does), no TTY, the build label.
pub fn create_request(spec: &RunSpec) -> ContainerCreateRequest {
    let mut labels = IndexMap::new();
    labels.insert(BUILD_LABEL.to_string(), spec.build_id.clone());
    let binds: Vec<String> = spec
        .cache_mounts
        .iter()
        .map(|(host, target)| format!("{}:{target}", host.display()))
        .collect();
    ContainerCreateRequest {
        image: spec.image.clone(),
        entrypoint: Some(spec.argv.clone()),
        cmd: None,
        env: Some(spec.env.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        labels: Some(labels),
        attach_stdout: true,
        attach_stderr: true,
        host_config: Some(HostConfig {
            network_mode: if spec.network_mode.is_empty() {
                "bridge".into()
            } else {
                spec.network_mode.clone()
            },
            binds: (!binds.is_empty()).then_some(binds),
            shm_size: spec.shm_size,
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The longest output line kept whole: a RUN that prints without newlines has its output cut
/// into lines of this size, so the engine never holds more than one of them per build step.
const MAX_LINE_BYTES: usize = 64 << 10;

/// Splits output chunks into lines; a partial line waits for the next chunk (up to
/// `MAX_LINE_BYTES`). Each byte is looked at once.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(self.take());
                continue;
            }
            self.partial.push(b);
            if self.partial.len() >= MAX_LINE_BYTES {
                lines.push(self.take());
            }
        }
        lines
    }

    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.partial);
        String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string()
    }

    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(text)
    }
}

/// Runs `spec`; on exit 0 calls `commit` with the container's upper directory (blocking, on a
/// blocking thread) before the container is removed.
pub async fn run<T: Send + 'static>(
    engine: &Engine,
    spec: &RunSpec,
    vertex: &Vertex,
    commit: impl FnOnce(&Path) -> Result<T, String> + Send + 'static,
) -> Result<T, RunError> {
    let created = engine.create_container(None, create_request(spec)).await?;
    let id = created.id;
    let result = run_created(engine, &id, vertex, commit).await;
    // Anonymous volumes of the image's VOLUMEs go with it; a removal failure leaves a
    // container named by the build label, which `builder prune` can be pointed at later.
    if let Err(e) = engine.remove_container(&id, true, true).await {
        eprintln!("berth engine: removing build container {id}: {e}");
    }
    result
}

async fn run_created<T: Send + 'static>(
    engine: &Engine,
    id: &str,
    vertex: &Vertex,
    commit: impl FnOnce(&Path) -> Result<T, String> + Send + 'static,
) -> Result<T, RunError> {
    let mut output = engine.attach_container_output(id, true, true, true)?;
    engine.start_container(id).await?;
    let mut split = LineSplitter::default();
    let mut last: VecDeque<String> = VecDeque::new();
    let keep = |line: String, last: &mut VecDeque<String>| {
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(line);
    };
    while let Some(chunk) = output.recv().await {
        for line in split.push(&chunk.bytes) {
            vertex.log(&line).await;
            keep(line, &mut last);
        }
    }
    if let Some(line) = split.finish() {
        vertex.log(&line).await;
        keep(line, &mut last);
    }
    let code = engine.wait_container(id).await?;
    if code != 0 {
        return Err(RunError::Failed {
            code,
            last_lines: last.into_iter().collect(),
        });
    }
    let upper = engine.containers.dir(id).join("upper");
    tokio::task::spawn_blocking(move || commit(&upper))
        .await
        .map_err(|e| RunError::Commit(format!("commit task failed: {e}")))?
        .map_err(RunError::Commit)
}

/// Paths the runtime creates in a container's root when the image lacks them (mount points,
/// the files it bind-mounts): left out of the layer unless the lower layers had them.
pub fn mount_point_stubs(lowers: &[PathBuf], extra_targets: &[String]) -> Vec<PathBuf> {
    let fixed = [
        "/proc",
        "/sys",
        "/dev",
        "/dev/shm",
        "/dev/pts",
        "/dev/mqueue",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ];
    fixed
        .iter()
        .map(|s| s.to_string())
        .chain(extra_targets.iter().cloned())
        .filter(|p| {
            let rel = p.trim_start_matches('/');
            !lowers
                .iter()
                .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
        })
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), ["a"]);
        assert_eq!(s.push(b"c\r\nd\n"), ["bc", "d"]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn output_without_newlines_comes_out_in_bounded_lines() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'y'; MAX_LINE_BYTES * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE_BYTES));
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }

    #[test]
    fn the_request_replaces_the_entrypoint_and_marks_the_container() {
        let spec = RunSpec {
            image: "sha256:abc".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            cache_mounts: vec![(PathBuf::from("/data/cache/x"), "/root/.cache".into())],
            build_id: "b1".into(),
            ..Default::default()
        };
        let req = create_request(&spec);
        assert_eq!(req.entrypoint.as_deref(), Some(&spec.argv[..]));
        assert_eq!(req.cmd, None);
        assert_eq!(req.labels.unwrap()[BUILD_LABEL], "b1");
        let host = req.host_config.unwrap();
        assert_eq!(host.network_mode, "bridge");
        assert_eq!(host.binds.unwrap(), ["/data/cache/x:/root/.cache"]);
    }

    #[test]
    fn stubs_are_only_what_the_lower_layers_lack() {
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lower.path().join("proc")).unwrap();
        std::fs::create_dir_all(lower.path().join("etc")).unwrap();
        std::fs::write(lower.path().join("etc/hosts"), "").unwrap();
        let stubs = mount_point_stubs(&[lower.path().to_path_buf()], &["/cache".into()]);
        assert!(!stubs.contains(&PathBuf::from("/proc")));
        assert!(!stubs.contains(&PathBuf::from("/etc/hosts")));
        assert!(stubs.contains(&PathBuf::from("/sys")));
        assert!(stubs.contains(&PathBuf::from("/etc/resolv.conf")));
        assert!(stubs.contains(&PathBuf::from("/cache")));
    }
}
