//! Create: merge the request with the image's defaults (Docker's rules), pick ID and name, and
//! persist `config.json` and `state.json`.

use indexmap::IndexMap;

use super::state::{AnonymousVolume, ContainerRecord, StateRecord};
use super::{
    mounts, now_rfc3339, parse_signal, resources, security, ContainerError, ContainerStore, Result,
};
use crate::engine::image::ImageRecord;
use crate::engine::runtime::json_log::{self, Rotation};
use crate::engine::runtime::{caps, sysctl};
use crate::engine::wire::{
    ContainerCreateRequest, ContainerCreateResponse, EventActor, EventMessage, HostConfig,
};
use crate::engine::Engine;
use crate::volume::VolumeSpec;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "calm",
    "clever",
    "eager",
    "elegant",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "quirky",
    "serene",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "hypatia", "kepler",
    "lamarr", "lovelace", "meitner", "newton", "noether", "pasteur", "ritchie", "shannon",
    "thompson", "turing", "wozniak",
];

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn random_name() -> String {
    use rand::seq::IndexedRandom;
    let mut rng = rand::rng();
    format!(
        "{}_{}",
        ADJECTIVES.choose(&mut rng).unwrap_or(&"brave"),
        NAMES.choose(&mut rng).unwrap_or(&"turing")
    )
}

/// Image env then request env; a later `KEY=` replaces an earlier one in place.
pub fn merge_env(image: &[String], request: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in image.iter().chain(request) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    out
}

/// Docker's rule: a request Entrypoint replaces the image's and resets the image's Cmd.
pub fn merge_command(req: &ContainerCreateRequest, image: &ImageRecord) -> Vec<String> {
    let (entrypoint, cmd) = match &req.entrypoint {
        Some(ep) => (ep.clone(), req.cmd.clone().unwrap_or_default()),
        None => (
            image.config.entrypoint.clone().unwrap_or_default(),
            req.cmd
                .clone()
                .or_else(|| image.config.cmd.clone())
                .unwrap_or_default(),
        ),
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// Refuse at create, with Docker's messages, what `berth init` could only fail on at start:
/// unknown capabilities, bad ulimits, sysctls outside the container's namespaces. Capability
/// names are stored in Docker's spelling (`CAP_NET_ADMIN`), as the daemon does.
fn check_host_options(host: Option<&mut HostConfig>) -> Result<()> {
    let Some(host) = host else { return Ok(()) };
    let bad = |e: &dyn std::fmt::Display| ContainerError::BadRequest(e.to_string());
    for list in [&mut host.cap_add, &mut host.cap_drop]
        .into_iter()
        .flatten()
    {
        *list = caps::normalize_all(list).map_err(|e| bad(&e))?;
    }
    caps::container_mask(
        host.cap_add.as_deref().unwrap_or_default(),
        host.cap_drop.as_deref().unwrap_or_default(),
        host.privileged,
    )
    .map_err(|e| bad(&e))?;
    resources::rlimits_of(host.ulimits.as_deref().unwrap_or_default()).map_err(|e| bad(&e))?;
    security::parse(host.security_opt.as_deref().unwrap_or_default()).map_err(|e| bad(&e))?;
    if let Some(sysctls) = &host.sysctls {
        sysctl::validate(sysctls, host.network_mode == "host").map_err(|e| bad(&e))?;
    }
    host.log_config = Some(log_config(host.log_config.take())?);
    Ok(())
}

/// The shim writes Docker's `json-file` log; another driver is refused rather than ignored.
/// The recorded type is `json-file`, as Docker records its default (docker-compose 1.29 shows
/// logs only of containers whose driver it knows). Its options (rotation) are checked here,
/// so a bad one fails the create, not the start.
fn log_config(
    asked: Option<crate::engine::wire::LogConfig>,
) -> Result<crate::engine::wire::LogConfig> {
    let mut config = asked.unwrap_or_default();
    match config.r#type.as_str() {
        "" | "json-file" => {
            config.r#type = "json-file".into();
            Rotation::from_options(&config.config).map_err(ContainerError::BadRequest)?;
            Ok(config)
        }
        other => Err(ContainerError::BadRequest(format!(
            "log driver {other:?} is not supported by berth: it writes json-file logs only"
        ))),
    }
}

/// The anonymous volumes a new container gets: `volume` mounts without a source, then the
/// image's and the request's declared volumes that no explicit mount covers (sorted, as Docker
/// does), each destination once.
fn anonymous_volumes(
    req: &ContainerCreateRequest,
    image: &ImageRecord,
) -> Result<Vec<AnonymousVolume>> {
    let mut anonymous_volumes = Vec::new();
    let explicit: Vec<String> = mounts::plan(req.host_config.as_ref(), &[])?
        .into_iter()
        .map(|m| m.destination)
        .collect();
    let mut wanted: Vec<String> = req
        .host_config
        .iter()
        .flat_map(|h| h.mounts.iter().flatten())
        .filter(|m| m.kind == "volume" && m.source.is_empty())
        .map(|m| m.target.clone())
        .collect();
    let mut declared: Vec<String> = image
        .config
        .volumes
        .iter()
        .chain(req.volumes.iter())
        .flat_map(|v| v.keys().cloned())
        .filter(|d| !explicit.contains(d))
        .collect();
    declared.sort();
    wanted.extend(declared);
    for destination in wanted {
        if anonymous_volumes
            .iter()
            .any(|a: &AnonymousVolume| a.destination == destination)
        {
            continue;
        }
        anonymous_volumes.push(AnonymousVolume {
            name: random_id(),
            destination,
        });
    }
    Ok(anonymous_volumes)
}

impl ContainerStore {
    /// Create the container's record from the request and its (already resolved) image.
    pub async fn create(
        &self,
        name: Option<&str>,
        req: ContainerCreateRequest,
        image: &ImageRecord,
    ) -> Result<ContainerRecord> {
        let mut req = req;
        let (args, stop_signal) = self.checked_request(name, &mut req, image)?;
        let name = name.map(|n| n.strip_prefix('/').unwrap_or(n));

        let _guard = self.inner.create_lock.lock().await;
        let (name, id) = self.unique_name_and_id(name)?;

        let mut labels: IndexMap<String, String> = image.config.labels.clone().unwrap_or_default();
        labels.extend(req.labels.clone().unwrap_or_default());
        let anonymous_volumes = anonymous_volumes(&req, image)?;
        // Validate the whole mount list once more, anonymous volumes included.
        mounts::plan(req.host_config.as_ref(), &anonymous_volumes)?;

        let record = ContainerRecord {
            id: id.clone(),
            name,
            created: now_rfc3339(),
            image_id: image.id.clone(),
            image_config: image.config.clone(),
            env: merge_env(
                image.config.env.as_deref().unwrap_or_default(),
                req.env.as_deref().unwrap_or_default(),
            ),
            hostname: if req.hostname.is_empty() {
                id[..12].to_string()
            } else {
                req.hostname.clone()
            },
            working_dir: if !req.working_dir.is_empty() {
                req.working_dir.clone()
            } else if !image.config.working_dir.is_empty() {
                image.config.working_dir.clone()
            } else {
                "/".into()
            },
            user: if req.user.is_empty() {
                image.config.user.clone()
            } else {
                req.user.clone()
            },
            stop_signal,
            stop_timeout: req.stop_timeout,
            labels,
            args,
            anonymous_volumes,
            request: req,
        };
        let dir = self.dir(&id);
        std::fs::create_dir_all(&dir)
            .map_err(ContainerError::io(format!("create {}", dir.display())))?;
        // state.json first: a crash before config.json leaves a directory that `ids()` ignores.
        // Not synced: a missing or torn state.json reads as the default state written here,
        // and the directory fsync of config.json below makes its name durable anyway.
        let state_path = dir.join("state.json");
        let initial = serde_json::to_vec_pretty(&StateRecord::default())
            .map_err(|e| ContainerError::Other(format!("encode container state: {e}")))?;
        crate::paths::write_volatile(&state_path, &initial).map_err(ContainerError::io(
            format!("write {}", state_path.display()),
        ))?;
        // The log exists from now on, empty: an attach made before the start watches it from
        // its first line instead of polling for it, and a rotation cannot outrun it.
        let log_path = self.log_path(&id);
        json_log::create_empty(&log_path)
            .map_err(ContainerError::io(format!("create {}", log_path.display())))?;
        self.save_record(&record)?;
        Ok(record)
    }

    /// Docker's checks of a create request that need no lock: resource limits within
    /// this host, a valid name, a command, a known stop signal, the service options. Returns the
    /// command and the stop signal.
    fn checked_request(
        &self,
        name: Option<&str>,
        req: &mut ContainerCreateRequest,
        image: &ImageRecord,
    ) -> Result<(Vec<String>, String)> {
        if let Some(host) = req.host_config.as_mut() {
            let cpus = resources::HostCpus::detect(self.inner.cgroups.cpuset_root().as_deref());
            resources::validate(host, &cpus)
                .map_err(|e| ContainerError::BadRequest(e.to_string()))?;
            resources::adapt(host);
        }
        let name = name.map(|n| n.strip_prefix('/').unwrap_or(n));
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if !valid_name(n) {
                return Err(ContainerError::BadRequest(format!(
                    "invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        let args = merge_command(req, image);
        if args.is_empty() || args[0].is_empty() {
            return Err(ContainerError::BadRequest(
                "no command specified: the image has no Cmd or Entrypoint and the request gives none"
                    .into(),
            ));
        }
        let stop_signal = req
            .stop_signal
            .clone()
            .or_else(|| image.config.stop_signal.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "SIGTERM".into());
        parse_signal(&stop_signal)?;
        check_host_options(Some(req.host_config.get_or_insert_with(Default::default)))?;
        Ok((args, stop_signal))
    }

    /// The requested name if free (else Docker's conflict), or a random free one; and a new ID.
    /// Called under the create lock, so two creates cannot take the same name.
    fn unique_name_and_id(&self, name: Option<&str>) -> Result<(String, String)> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if let Some(owner) = self.id_by_name(n) {
                    return Err(ContainerError::Conflict(format!(
                        "container name \"/{n}\" is already in use by container \"{owner}\": remove or rename that container to reuse the name"
                    )));
                }
                n.to_string()
            }
            None => loop {
                let candidate = random_name();
                if self.id_by_name(&candidate).is_none() {
                    break candidate;
                }
            },
        };
        let id = loop {
            let id = random_id();
            if !self.dir(&id).exists() {
                break id;
            }
        };

        Ok((name, id))
    }

    pub(super) fn id_by_name(&self, name: &str) -> Option<String> {
        self.ids()
            .into_iter()
            .find(|id| self.load_record(id).is_ok_and(|r| r.name == name))
    }
}

impl Engine {
    /// Send a container event (`create`, `start`, `die`, `stop`, `kill`, `destroy`) to `/events`.
    pub(crate) fn container_event(
        &self,
        action: &str,
        record: &ContainerRecord,
        extra: &[(&str, String)],
    ) {
        let now = chrono::Utc::now();
        let mut attributes: IndexMap<String, String> = record.labels.clone();
        attributes.insert("image".into(), record.request.image.clone());
        attributes.insert("name".into(), record.name.clone());
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.clone());
        }
        self.events.send(EventMessage {
            kind: "container".into(),
            action: action.into(),
            actor: EventActor {
                id: record.id.clone(),
                attributes,
            },
            time: now.timestamp(),
            time_nano: now.timestamp_nanos_opt().unwrap_or_default(),
        });
    }

    pub async fn create_container(
        &self,
        name: Option<&str>,
        req: ContainerCreateRequest,
    ) -> std::result::Result<ContainerCreateResponse, ContainerError> {
        let image = self
            .images
            .resolve(&req.image)
            .ok_or_else(|| ContainerError::NoSuchImage(req.image.clone()))?;
        let record = self.containers.create(name, req, &image).await?;
        // Named volumes that do not exist yet are created, as Docker does.
        let planned = mounts::plan(
            record.request.host_config.as_ref(),
            &record.anonymous_volumes,
        )?;
        for m in planned {
            if let mounts::MountSource::Volume(vol) = &m.source {
                let anonymous = record.anonymous_volumes.iter().any(|a| &a.name == vol);
                let mut labels = IndexMap::new();
                if anonymous {
                    labels.insert("com.docker.volume.anonymous".to_string(), String::new());
                }
                if let Err(e) = self.volumes.create(VolumeSpec {
                    name: vol.clone(),
                    driver: "local".into(),
                    labels,
                    ..Default::default()
                }) {
                    let _ = self.containers.remove_files(&record.id);
                    return Err(ContainerError::Other(format!(
                        "cannot create volume {vol} for container {}: {e}",
                        record.name
                    )));
                }
            }
        }
        self.container_event("create", &record, &[]);
        Ok(ContainerCreateResponse {
            id: record.id,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_json_file_and_other_drivers_are_refused() {
        assert_eq!(log_config(None).unwrap().r#type, "json-file");
        let syslog = crate::engine::wire::LogConfig {
            r#type: "syslog".into(),
            ..Default::default()
        };
        let err = log_config(Some(syslog)).unwrap_err().to_string();
        assert!(
            err.contains("log driver \"syslog\" is not supported"),
            "{err}"
        );
        let unknown = crate::engine::wire::LogConfig {
            r#type: "json-file".into(),
            config: [("max-buffer".to_string(), "1".to_string())].into(),
        };
        let err = log_config(Some(unknown)).unwrap_err().to_string();
        assert!(err.contains("unknown log opt 'max-buffer'"), "{err}");
    }

    #[test]
    fn env_merge_keeps_order_and_lets_the_request_win() {
        assert_eq!(
            merge_env(
                &["PATH=/bin".into(), "A=1".into()],
                &["A=2".into(), "B=3".into()]
            ),
            vec!["PATH=/bin", "A=2", "B=3"]
        );
        assert_eq!(
            merge_env(&[], &["X=1".into()])[1],
            format!("PATH={DEFAULT_PATH}")
        );
    }

    #[test]
    fn request_entrypoint_resets_image_cmd() {
        let image = ImageRecord {
            id: "sha256:x".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            config: crate::engine::wire::ImageContainerConfig {
                entrypoint: Some(vec!["/entry".into()]),
                cmd: Some(vec!["default".into()]),
                ..Default::default()
            },
            created: String::new(),
            architecture: String::new(),
            os: String::new(),
            size: 0,
            diff_ids: vec![],
            manifest_digest: String::new(),
            layers: vec![],
            last_tag_time: None,
            intermediate: false,
        };
        let req = |ep: Option<Vec<&str>>, cmd: Option<Vec<&str>>| ContainerCreateRequest {
            entrypoint: ep.map(|v| v.into_iter().map(String::from).collect()),
            cmd: cmd.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        assert_eq!(
            merge_command(&req(None, None), &image),
            ["/entry", "default"]
        );
        assert_eq!(
            merge_command(&req(None, Some(vec!["x"])), &image),
            ["/entry", "x"]
        );
        assert_eq!(merge_command(&req(Some(vec!["sh"]), None), &image), ["sh"]);
        assert_eq!(
            merge_command(&req(Some(vec!["sh"]), Some(vec!["-c", "true"])), &image),
            ["sh", "-c", "true"]
        );
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1.x_y"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("a"));
        assert!(!valid_name("we b"));
    }
}
