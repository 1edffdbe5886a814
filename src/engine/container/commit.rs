//! `docker commit` (`POST /commit`): a container's upper directory becomes a new layer on top of
//! its image's layers, and its config — the container's merged view, the request's overrides,
//! then the `--change` lines — the new image's, with a history entry naming the command.
//!
//! The upper directory is only read (the container keeps it; the builder's `commit_layer`
//! moves it instead). A running container is paused for the copy when `pause` (Docker's
//! default): with cgroup v2's freezer on its own cgroup, else with v1's freezer in a group made
//! for the pause; a host with neither commits it running, as Docker does with `pause=false`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::image::{Config, ConfigBuilder, HistoryBuilder, ImageConfiguration};

use super::state::{ContainerRecord, Status};
use super::{mounts, ContainerError, Result};
use crate::engine::image::{
    CommitRequest, DockerConfigExtensions, ImageError, ImageRecord, LayerRecord,
};
use crate::engine::reference::ImageReference;
use crate::engine::runtime::cgroup;
use crate::engine::wire::ContainerCreateRequest;
use crate::engine::Engine;

mod changes;
pub use changes::{apply_changes, CommitConfig};

/// How long a freeze or thaw may take before the commit gives up on it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a runtime mounts over the root filesystem: the stubs it leaves in the upper directory
/// are not the container's changes.
const RUNTIME_MOUNT_POINTS: &[&str] = &[
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

/// The query and body of `POST /commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's repository (`repo`) and `tag` (default `latest`); none: untagged.
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    /// Dockerfile lines (`CMD …`, `ENV …`) applied to the config.
    pub changes: Vec<String>,
    /// The request body: config fields that override the container's.
    pub config: Option<ContainerCreateRequest>,
}

impl CommitOptions {
    fn image_name(&self) -> Option<String> {
        let repo = self.repo.as_deref().filter(|r| !r.is_empty())?;
        let tag = self.tag.as_deref().filter(|t| !t.is_empty());
        Some(format!("{repo}:{}", tag.unwrap_or("latest")))
    }
}

/// The container's runnable defaults as Docker's `container.Config` holds them: the merged view
/// (request over image), with the image's exposed ports and volumes kept.
fn container_defaults(record: &ContainerRecord) -> CommitConfig {
    let merged = super::inspect::merged_config(record);
    let set = |image: &Option<std::collections::HashMap<String, _>>,
               req: &Option<std::collections::HashMap<String, _>>| {
        let mut keys: Vec<String> = image
            .iter()
            .chain(req.iter())
            .flat_map(|m| m.keys().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    CommitConfig {
        user: merged.user,
        env: merged.env.unwrap_or_default(),
        cmd: merged.cmd,
        entrypoint: merged.entrypoint,
        working_dir: merged.working_dir,
        exposed_ports: set(
            &record.image_config.exposed_ports,
            &record.request.exposed_ports,
        ),
        volumes: set(&record.image_config.volumes, &record.request.volumes),
        labels: merged.labels.unwrap_or_default(),
        stop_signal: record
            .request
            .stop_signal
            .clone()
            .or_else(|| record.image_config.stop_signal.clone()),
        on_build: Vec::new(),
    }
}

/// Fields the request body sets win over the container's (Docker's `merge(userConf, imageConf)`).
fn apply_overrides(config: &mut CommitConfig, body: &ContainerCreateRequest) {
    if let Some(cmd) = &body.cmd {
        config.cmd = Some(cmd.clone());
    }
    if let Some(ep) = &body.entrypoint {
        config.entrypoint = Some(ep.clone());
    }
    for e in body.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or_default();
        config.env.retain(|x| x.split('=').next() != Some(key));
        config.env.push(e.clone());
    }
    if !body.user.is_empty() {
        config.user = body.user.clone();
    }
    if !body.working_dir.is_empty() {
        config.working_dir = body.working_dir.clone();
    }
    for (k, v) in body.labels.iter().flatten() {
        config.labels.insert(k.clone(), v.clone());
    }
    for p in body.exposed_ports.iter().flat_map(|m| m.keys()) {
        if !config.exposed_ports.contains(p) {
            config.exposed_ports.push(p.clone());
        }
    }
    for v in body.volumes.iter().flat_map(|m| m.keys()) {
        if !config.volumes.contains(v) {
            config.volumes.push(v.clone());
        }
    }
    if let Some(s) = &body.stop_signal {
        config.stop_signal = Some(s.clone());
    }
}

/// The OCI `config` of a commit.
fn oci_config(c: &CommitConfig) -> std::result::Result<Config, ContainerError> {
    let mut b = ConfigBuilder::default();
    if !c.user.is_empty() {
        b = b.user(c.user.clone());
    }
    if !c.env.is_empty() {
        b = b.env(c.env.clone());
    }
    if let Some(cmd) = &c.cmd {
        b = b.cmd(cmd.clone());
    }
    if let Some(ep) = &c.entrypoint {
        b = b.entrypoint(ep.clone());
    }
    if !c.working_dir.is_empty() {
        b = b.working_dir(c.working_dir.clone());
    }
    if !c.exposed_ports.is_empty() {
        b = b.exposed_ports(c.exposed_ports.clone());
    }
    if !c.volumes.is_empty() {
        b = b.volumes(c.volumes.clone());
    }
    if !c.labels.is_empty() {
        b = b.labels(
            c.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if let Some(s) = &c.stop_signal {
        b = b.stop_signal(s.clone());
    }
    b.build()
        .map_err(|e| ContainerError::Other(format!("cannot build the image config: {e}")))
}

/// The new image's config document: the base image's, with the new runnable defaults, author,
/// creation time and one more history entry (marked empty when the commit made no layer).
fn image_configuration(
    mut base: ImageConfiguration,
    config: Config,
    record: &ContainerRecord,
    opts: &CommitOptions,
    made_layer: bool,
) -> Result<ImageConfiguration> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut entry = HistoryBuilder::default()
        .created(now.clone())
        .created_by(record.args.join(" "));
    if !opts.author.is_empty() {
        entry = entry.author(opts.author.clone());
    }
    if !opts.comment.is_empty() {
        entry = entry.comment(opts.comment.clone());
    }
    if !made_layer {
        entry = entry.empty_layer(true);
    }
    let entry = entry
        .build()
        .map_err(|e| ContainerError::Other(format!("cannot build the history entry: {e}")))?;
    let mut history = base.history().clone().unwrap_or_default();
    history.push(entry);
    base.set_history(Some(history));
    base.set_created(Some(now));
    base.set_author((!opts.author.is_empty()).then(|| opts.author.clone()));
    base.set_config(Some(config));
    Ok(base)
}

/// The container error an image store error is for the client: a bad name is its mistake, a
/// missing image a 404, anything else the engine's failure.
fn image_err(e: ImageError) -> ContainerError {
    match e {
        ImageError::InvalidReference(_) => ContainerError::BadRequest(e.to_string()),
        ImageError::NotFound(_) => ContainerError::NoSuchImage(e.to_string()),
        e => ContainerError::Other(e.to_string()),
    }
}

/// Paths to leave out of the layer when the runtime left only an empty stub there.
pub(super) fn mount_point_stubs(record: &ContainerRecord) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = RUNTIME_MOUNT_POINTS.iter().map(PathBuf::from).collect();
    let planned = mounts::plan(
        record.request.host_config.as_ref(),
        &record.anonymous_volumes,
    );
    out.extend(
        planned
            .unwrap_or_default()
            .into_iter()
            .map(|m| PathBuf::from(m.destination)),
    );
    out
}

/// The new image's runnable defaults and Docker extensions: the container's, the body's
/// overrides, then the change lines (a bad one is the client's error).
fn commit_config(
    record: &ContainerRecord,
    base_ext: DockerConfigExtensions,
    opts: &CommitOptions,
) -> Result<(CommitConfig, DockerConfigExtensions)> {
    let mut config = container_defaults(record);
    config.on_build = base_ext.on_build.unwrap_or_default();
    if let Some(body) = &opts.config {
        apply_overrides(&mut config, body);
    }
    apply_changes(&mut config, &opts.changes).map_err(ContainerError::BadRequest)?;
    let ext = DockerConfigExtensions {
        healthcheck: super::health::merged(
            opts.config
                .as_ref()
                .and_then(|b| b.healthcheck.as_ref())
                .or(record.request.healthcheck.as_ref()),
            record.image_config.healthcheck.as_ref(),
        ),
        on_build: (!config.on_build.is_empty()).then(|| config.on_build.clone()),
        shell: base_ext.shell,
    };
    Ok((config, ext))
}

impl Engine {
    /// `docker commit`: the new image from container `id_or_name`. Bad input (a change line, a
    /// name) is refused before any work; a failure after the layer was made releases it.
    pub async fn commit_container(
        self: Arc<Self>,
        id_or_name: &str,
        opts: CommitOptions,
    ) -> Result<ImageRecord> {
        let id = self.containers.resolve_id(id_or_name)?;
        let _guard = self.containers.lock(&id).await;
        let record = self.containers.load_record(&id)?;
        let base = self
            .images
            .resolve(&record.image_id)
            .ok_or_else(|| ContainerError::NoSuchImage(record.image_id.clone()))?;
        let (base_config, base_ext) = self.images.image_config(&base).map_err(image_err)?;
        let (config, ext) = commit_config(&record, base_ext, &opts)?;
        let oci = oci_config(&config)?;
        if let Some(name) = opts.image_name() {
            ImageReference::parse(&name).map_err(|e| ContainerError::BadRequest(e.to_string()))?;
        }
        let layer = self
            .clone()
            .commit_upper(&id, &record, &base, opts.pause)
            .await?;
        let mut layers = base.layers.clone();
        layers.extend(layer.clone());
        let request =
            image_configuration(base_config, oci, &record, &opts, layer.is_some()).map(|config| {
                CommitRequest {
                    config,
                    extensions: ext,
                    layers,
                    tag: opts.image_name(),
                    intermediate: false,
                }
            });
        let engine = self.clone();
        let stored = match request {
            Ok(request) => tokio::task::spawn_blocking(move || engine.images.commit_image(request))
                .await
                .map_err(|e| ContainerError::Other(format!("commit task failed: {e}")))
                .and_then(|r| r.map_err(image_err)),
            Err(e) => Err(e),
        };
        if let (Err(_), Some(layer)) = (&stored, &layer) {
            self.images.release_layer(layer, &base.layers);
        }
        let image = stored?;
        self.container_event(
            "commit",
            &record,
            &[
                ("comment", opts.comment.clone()),
                ("imageID", image.id.clone()),
                ("imageRef", opts.image_name().unwrap_or_default()),
            ],
        );
        Ok(image)
    }

    /// The layer of the container's changes (none when it changed nothing), read while the
    /// container is frozen if it runs and `pause` asks for it.
    async fn commit_upper(
        self: Arc<Self>,
        id: &str,
        record: &ContainerRecord,
        base: &ImageRecord,
        pause: bool,
    ) -> Result<Option<LayerRecord>> {
        let upper = self.containers.dir(id).join("upper");
        if !upper.is_dir() {
            return Ok(None); // never started: nothing changed
        }
        // A container the user paused is frozen already, and must stay so after the commit.
        let state = self.containers.state(id);
        let running = state.status == Status::Running && !state.paused;
        let paths = self.containers.cgroup_paths(id);
        let exclude = mount_point_stubs(record);
        let parents = base.layers.clone();
        let engine = self.clone();
        let id = id.to_string();
        let task = tokio::task::spawn_blocking(move || {
            let paused = if running && pause {
                Pause::start(&id, &paths)?
            } else {
                Pause(None)
            };
            let layer = engine
                .images
                .commit_layer_copy(&upper, &parents, &exclude)
                .map_err(image_err);
            if let Err(thaw) = paused.end() {
                // The commit fails on the thaw: the layer it made is not going to an image.
                if let Ok(Some(made)) = &layer {
                    engine.images.release_layer(made, &parents);
                }
                return Err(thaw);
            }
            layer
        });
        task.await
            .map_err(|e| ContainerError::Other(format!("commit task failed: {e}")))?
    }
}

/// How a running container is held still while its upper directory is read.
enum Freezer {
    /// cgroup v2's freezer on the container's own cgroup.
    V2(Vec<PathBuf>),
    /// cgroup v1's freezer, in a group made for the pause.
    V1(cgroup::V1Freeze),
}

/// A pause in progress (none: not paused, e.g. a host without a freezer, committed running as
/// Docker's `pause=false`). Dropped without [`Pause::end`] — a panic mid-copy — it still thaws.
struct Pause(Option<Freezer>);

impl Pause {
    fn start(id: &str, paths: &[PathBuf]) -> Result<Pause> {
        let err = |e: cgroup::CgroupError| {
            ContainerError::Other(format!("cannot pause the container for the commit: {e}"))
        };
        if cgroup::set_frozen(paths, true, FREEZE_TIMEOUT).map_err(err)? {
            return Ok(Pause(Some(Freezer::V2(paths.to_vec()))));
        }
        match cgroup::v1_freezer_root() {
            Some(root) => cgroup::V1Freeze::freeze(&root, id, paths, FREEZE_TIMEOUT)
                .map(|f| Pause(Some(Freezer::V1(f))))
                .map_err(err),
            None => Ok(Pause(None)),
        }
    }

    fn end(mut self) -> Result<()> {
        self.thaw().map_err(|e| {
            ContainerError::Other(format!(
                "cannot unpause the container after the commit: {e}"
            ))
        })
    }

    fn thaw(&mut self) -> std::result::Result<(), cgroup::CgroupError> {
        match self.0.take() {
            Some(Freezer::V2(paths)) => cgroup::set_frozen(&paths, false, FREEZE_TIMEOUT).map(drop),
            Some(Freezer::V1(frozen)) => frozen.thaw(),
            None => Ok(()),
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        let _ = self.thaw();
    }
}
