//! Start: write the runtime spec and the network files, spawn the shim, wait for init to report,
//! record the running state and watch for the exit.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::process::{spawn_shim, ProcIdentity};
use super::state::{ContainerRecord, StateRecord, Status};
use super::{
    health, mounts, now_rfc3339, resources, security, ContainerError, ContainerStore, Result,
};
use crate::engine::network_wire;
use crate::engine::paths::write_volatile;
use crate::engine::runtime::devices::DeviceNode;
use crate::engine::runtime::shim::ShimReport;
use crate::engine::runtime::spec::{
    MountKind, MountSpec, RlimitSpec, RuntimeSpec, DEFAULT_SHM_SIZE,
};
use crate::engine::runtime::{caps, cgroup, devices, sysctl};
use crate::engine::wire::{EndpointSettings, HostConfig};
use crate::engine::Engine;
use crate::network::AttachRequest;

/// What a start needs from the image, volume and network modules, resolved to host paths.
#[derive(Debug, Clone, Default)]
pub struct StartPlan {
    /// Overlay lower dirs, topmost first.
    pub lower_dirs: Vec<PathBuf>,
    /// User mounts with their sources resolved (volumes to their `_data` dirs).
    pub mounts: Vec<MountSpec>,
    /// Network namespace to join; `None` = the host's.
    pub netns: Option<PathBuf>,
    pub endpoints: IndexMap<String, EndpointSettings>,
    /// Contents for `/etc/hosts` and `/etc/resolv.conf`; `None` leaves the image's file.
    pub hosts_file: Option<String>,
    pub resolv_conf: Option<String>,
    /// Overrides the recorded hostname (network mode `host` uses the host's).
    pub hostname: Option<String>,
    /// Set when the restart policy starts the container again: the delay it waited (ms).
    pub policy_restart_backoff_ms: Option<u64>,
}

impl ContainerStore {
    /// Start container `id` (a full ID). Returns the running state.
    pub async fn start(&self, id: &str, plan: StartPlan) -> Result<StateRecord> {
        let _guard = self.lock(id).await;
        let record = self.load_record(id)?;
        self.settle_and_notify(id)?;
        let mut state = self.load_raw_state(id);
        refuse_start(&record.name, &state)?;
        let exit_path = self.exit_path(id);
        match std::fs::remove_file(&exit_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ContainerError::io(format!(
                    "remove {}",
                    exit_path.display()
                ))(e))
            }
            _ => {}
        }
        let spec = self.runtime_spec(id, &record, &plan)?;
        let spec_path = RuntimeSpec::path_in(&spec.bundle_dir);
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| ContainerError::Other(format!("encode runtime spec: {e}")))?;
        // Made again at every start, before anything reads it: no fsync on the start path.
        write_volatile(&spec_path, &bytes)
            .map_err(ContainerError::io(format!("write {}", spec_path.display())))?;

        let failed = |reason: String, not_executable: bool| {
            // Whatever the shim left: processes in the cgroup, the cgroup itself.
            cgroup::kill_all(&spec.cgroups, std::time::Duration::from_secs(5));
            let _ = cgroup::remove(&spec.cgroups);
            let name = record.name.clone();
            if not_executable {
                ContainerError::NotExecutable { name, reason }
            } else {
                ContainerError::StartFailed { name, reason }
            }
        };
        let report = match spawn_shim(&spec_path, &spec.bundle_dir.join("shim.log")).await {
            Ok(r) if r.error.is_empty() && r.pid > 0 => r,
            Ok(r) => {
                state.error = r.error.clone();
                state.exit_code = 127;
                self.save_state(id, &state)?;
                return Err(failed(r.error, r.not_executable));
            }
            Err(e) => return Err(failed(e.to_string(), false)),
        };
        let state = running_state(&record, &plan, &state, &report);
        self.save_state(id, &state)?;
        self.spawn_monitor(id, state.shim);
        Ok(state)
    }

    /// The plain spec the runtime runs: the record and the plan resolved, the options checked
    /// again (a record written by an older engine was not checked at create), the cgroup files
    /// chosen for this host, and the container's own `/etc` files written.
    fn runtime_spec(
        &self,
        id: &str,
        record: &ContainerRecord,
        plan: &StartPlan,
    ) -> Result<RuntimeSpec> {
        let host_config = record.request.host_config.clone().unwrap_or_default();
        let start_refused = |reason: String| ContainerError::StartFailed {
            name: record.name.clone(),
            reason,
        };
        let options = StartOptions::check(&host_config, plan).map_err(start_refused)?;
        let hostname = plan
            .hostname
            .clone()
            .unwrap_or_else(|| record.hostname.clone());
        let dir = self.dir(id);
        let mut mounts = write_etc_files(&dir, &hostname, plan)?;
        mounts.extend(plan.mounts.iter().cloned());
        mounts.extend(self.copied_mounts(id));
        let limits = resources::limits_from_host_config(&host_config);
        let (mut cgroups, mut cgroup_resources) = self
            .inner
            .cgroups
            .plan(id, &limits)
            .map_err(|e| start_refused(e.to_string()))?;
        self.inner
            .cgroups
            .plan_devices(
                id,
                devices::container_rules(host_config.privileged, &options.devices),
                &mut cgroups,
                &mut cgroup_resources,
            )
            .map_err(|e| start_refused(e.to_string()))?;
        Ok(RuntimeSpec {
            id: id.to_string(),
            bundle_dir: dir,
            lower_dirs: plan.lower_dirs.clone(),
            args: record.args.clone(),
            env: runtime_env(&record.env, &hostname),
            cwd: record.working_dir.clone(),
            user: record.user.clone(),
            hostname,
            domainname: record.request.domainname.clone(),
            netns: plan.netns.clone(),
            mounts,
            cgroups,
            log_path: self.log_path(id),
            log_rotation: record.log_rotation(),
            exit_path: self.exit_path(id),
            stdin: self.stdin_spec(id)?,
            tty: self.tty_spec(id)?,
            shm_size: host_config
                .shm_size
                .filter(|s| *s > 0)
                .map_or(DEFAULT_SHM_SIZE, |s| s as u64),
            readonly_rootfs: host_config.readonly_rootfs,
            resources: cgroup_resources,
            capabilities: Some(options.capabilities),
            privileged: host_config.privileged,
            ulimits: options.ulimits,
            sysctls: options.sysctls,
            init: host_config.init.unwrap_or(false),
            no_new_privileges: options.security.no_new_privileges,
            seccomp_unconfined: options.security.seccomp_unconfined,
            unmasked_paths: options.security.unmasked_paths,
            devices: options.devices,
        })
    }

    /// Watch the shim; when it exits, settle the state and announce the exit.
    pub(crate) fn spawn_monitor(&self, id: &str, shim: ProcIdentity) {
        self.pending_exits().insert(id.to_string());
        let store = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            shim.exited().await;
            let _guard = store.lock(&id).await;
            let _ = store.settle_and_notify(&id);
        });
    }

    /// `settle_state`, announcing a running → exited change on the exit channel. The notice goes
    /// out before the save: what the exit handler and the waiters read is already the exited
    /// state (the exit record decides it), so the save's fsync (0.5 to 3.5 ms here) overlaps
    /// their work instead of delaying every `wait` and `run`. Whatever writes the state next
    /// takes the container's lock, which the caller holds until the save is done.
    pub(crate) fn settle_and_notify(&self, id: &str) -> Result<()> {
        let Some((settled, exited)) = self.settled_state(id) else {
            return Ok(());
        };
        if exited {
            self.notify_exit(id);
        }
        self.save_state(id, &settled)
    }
}

/// The service options of a start, checked: Docker's rules, and what this engine can give.
struct StartOptions {
    capabilities: u64,
    ulimits: Vec<RlimitSpec>,
    security: security::SecurityOptions,
    sysctls: Vec<(String, String)>,
    devices: Vec<DeviceNode>,
}

impl StartOptions {
    fn check(host_config: &HostConfig, plan: &StartPlan) -> std::result::Result<Self, String> {
        let capabilities = available_capabilities(host_config)?;
        let ulimits = resources::rlimits_of(host_config.ulimits.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let security = security::parse(host_config.security_opt.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let sysctls = host_config.sysctls.clone().unwrap_or_default();
        sysctl::validate(&sysctls, plan.netns.is_none()).map_err(|e| e.to_string())?;
        let devices = host_config
            .devices
            .iter()
            .flatten()
            .map(|d| {
                devices::resolve_host_device(
                    &d.path_on_host,
                    &d.path_in_container,
                    &d.cgroup_permissions,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            capabilities,
            ulimits,
            security,
            sysctls: sysctls.into_iter().collect(),
            devices,
        })
    }
}

/// The container's capability set, within what the engine itself has: `--privileged` and
/// `cap_add: ALL` get what there is; a named capability the engine lacks is refused.
fn available_capabilities(host_config: &HostConfig) -> std::result::Result<u64, String> {
    let cap_add = host_config.cap_add.as_deref().unwrap_or_default();
    let capabilities = caps::container_mask(
        cap_add,
        host_config.cap_drop.as_deref().unwrap_or_default(),
        host_config.privileged,
    )
    .map_err(|e| e.to_string())?;
    let available = caps::bounding_set();
    if caps::wants_all(cap_add, host_config.privileged) {
        return Ok(capabilities & available);
    }
    let missing = capabilities & !available;
    if missing != 0 {
        return Err(format!(
            "cannot give the container {}: the berth engine itself does not have {}; \
             remove it from cap_add",
            caps::names(missing).join(", "),
            if missing.count_ones() == 1 {
                "it"
            } else {
                "them"
            }
        ));
    }
    Ok(capabilities)
}

/// Write the container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (those the plan
/// has) into its directory, and the binds for them. A user mount on the same path wins, as in
/// Docker.
fn write_etc_files(dir: &Path, hostname: &str, plan: &StartPlan) -> Result<Vec<MountSpec>> {
    let mut mounts = Vec::new();
    let files = [
        ("hostname", "/etc/hostname", Some(format!("{hostname}\n"))),
        ("hosts", "/etc/hosts", plan.hosts_file.clone()),
        ("resolv.conf", "/etc/resolv.conf", plan.resolv_conf.clone()),
    ];
    for (file, target, contents) in files {
        let Some(contents) = contents else { continue };
        let path = dir.join(file);
        // Made again at every start, as the runtime spec is: no fsync.
        write_volatile(&path, contents.as_bytes())
            .map_err(ContainerError::io(format!("write {}", path.display())))?;
        if !plan.mounts.iter().any(|m| m.destination == target) {
            mounts.push(MountSpec {
                kind: MountKind::Bind,
                source: path,
                destination: target.to_string(),
                read_only: false,
                data: String::new(),
            });
        }
    }
    Ok(mounts)
}

/// The state of a container whose shim reported its init running.
fn running_state(
    record: &ContainerRecord,
    plan: &StartPlan,
    before: &StateRecord,
    report: &ShimReport,
) -> StateRecord {
    // A process that is gone already keeps its PID with an unknown start time.
    let identity = |pid| ProcIdentity::of(pid).unwrap_or(ProcIdentity { pid, start_time: 0 });
    StateRecord {
        status: Status::Running,
        init: identity(report.pid),
        shim: identity(report.shim_pid),
        started_at: now_rfc3339(),
        finished_at: String::new(),
        exit_code: 0,
        error: String::new(),
        endpoints: plan.endpoints.clone(),
        sandbox_key: plan
            .netns
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        stopped_by_user: false,
        restart_count: if plan.policy_restart_backoff_ms.is_some() {
            before.restart_count + 1
        } else {
            0
        },
        restart_backoff_ms: plan.policy_restart_backoff_ms.unwrap_or(0),
        health: health::initial(record),
        oom_killed: false,
        paused: false,
    }
}

/// Docker adds `HOSTNAME` to every container's environment (the container's own env wins).
/// Docker's answers to a start of a container that runs already: a paused one is a conflict
/// (the user meant `unpause`), a running one is not modified (304).
fn refuse_start(name: &str, state: &StateRecord) -> Result<()> {
    if state.is_paused() {
        return Err(ContainerError::Conflict(
            "cannot start a paused container, try unpause instead".to_string(),
        ));
    }
    if state.status == Status::Running {
        return Err(ContainerError::NotModified(name.to_string()));
    }
    Ok(())
}

fn runtime_env(env: &[String], hostname: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(env.len() + 1);
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        out.push(format!("HOSTNAME={hostname}"));
    }
    out.extend(env.iter().cloned());
    out
}

/// Network name → requested endpoint, from `NetworkingConfig` or the network mode.
pub(crate) fn requested_networks(
    record: &super::state::ContainerRecord,
) -> Result<IndexMap<String, EndpointSettings>> {
    let mode = record
        .request
        .host_config
        .as_ref()
        .map(|h| h.network_mode.as_str())
        .unwrap_or("");
    if mode.starts_with("container:") {
        return Err(ContainerError::BadRequest(format!(
            "network mode {mode:?} is not supported yet"
        )));
    }
    let endpoints = record
        .request
        .networking_config
        .as_ref()
        .map(|n| n.endpoints_config.clone())
        .unwrap_or_default();
    if !endpoints.is_empty() {
        // The Docker CLI names its endpoint after the mode it sends: `default`, which is Docker's
        // default bridge network, `bridge`.
        return Ok(endpoints
            .into_iter()
            .map(|(name, settings)| match name.as_str() {
                "default" => ("bridge".to_string(), settings),
                _ => (name, settings),
            })
            .collect());
    }
    Ok(match mode {
        "none" => IndexMap::new(),
        "" | "default" => [("bridge".to_string(), EndpointSettings::default())].into(),
        other => [(other.to_string(), EndpointSettings::default())].into(),
    })
}

impl Engine {
    /// Docker's copy-up: an empty volume gets the image's content at its mount point, taken from
    /// the topmost layer that has something there. The path is resolved inside each layer (never
    /// on the host: CVE-2022-23648) and the copy never follows what a container controls.
    fn copy_image_content(
        &self,
        volume: &str,
        lower_dirs: &[PathBuf],
        destination: &str,
    ) -> std::result::Result<(), String> {
        self.volumes
            .copy_up_from_top_layer(volume, lower_dirs, std::path::Path::new(destination))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub async fn start_container(&self, id_or_name: &str) -> Result<()> {
        let result = self.start_container_with(id_or_name, None).await;
        if result.is_err()
            && !matches!(
                result,
                Err(ContainerError::NotModified(_) | ContainerError::NotFound(_))
            )
        {
            // As Docker does: `docker run --rm` of a container that cannot start leaves nothing
            // (its CLI waits for the removal before it reports the error). One that runs (a
            // start refused because it is paused) is not a failed start: it stays.
            if let Ok(id) = self.containers.resolve_id(id_or_name) {
                if self.containers.state(&id).status != Status::Running {
                    self.auto_remove(&id).await;
                }
            }
        }
        result
    }

    /// Start; `policy_restart_backoff_ms` is set when the restart policy does it.
    pub(crate) async fn start_container_with(
        &self,
        id_or_name: &str,
        policy_restart_backoff_ms: Option<u64>,
    ) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        refuse_start(&record.name, &self.containers.state(&id))?;
        let start_err = |reason: String| ContainerError::StartFailed {
            name: record.name.clone(),
            reason,
        };
        let image = self
            .images
            .resolve(&record.image_id)
            .ok_or_else(|| ContainerError::NoSuchImage(record.request.image.clone()))?;
        let lower_dirs = self
            .images
            .lower_dirs(&image)
            .map_err(|e| start_err(e.to_string()))?;
        let user_mounts = self.user_mounts(&record, &lower_dirs, &start_err)?;

        let host_config = record.request.host_config.clone().unwrap_or_default();
        let mut plan = StartPlan {
            lower_dirs,
            mounts: user_mounts,
            policy_restart_backoff_ms,
            ..Default::default()
        };
        let host_network = host_config.network_mode == "host";
        if host_network {
            host_network_files(&record, &host_config, &mut plan).map_err(&start_err)?;
        } else {
            self.attach_networks(&id, &record, &host_config, &mut plan)
                .await?;
        }
        match self.containers.start(&id, plan).await {
            Ok(_) => {
                self.container_event("start", &record, &[]);
                self.forget_execs(&id);
                self.containers.arm_health(&id, self.events.clone());
                Ok(())
            }
            Err(e @ ContainerError::NotModified(_)) => Err(e),
            Err(e) => {
                if !host_network {
                    let _ = self.networks.detach(&id).await;
                }
                Err(e)
            }
        }
    }

    /// The request's mounts with their sources resolved: bind sources created when asked,
    /// volumes filled from the image on first use and resolved to their mountpoints.
    fn user_mounts(
        &self,
        record: &ContainerRecord,
        lower_dirs: &[PathBuf],
        start_err: &dyn Fn(String) -> ContainerError,
    ) -> Result<Vec<MountSpec>> {
        let mut user_mounts = Vec::new();
        for m in mounts::plan(
            record.request.host_config.as_ref(),
            &record.anonymous_volumes,
        )? {
            let (kind, source, data) = match &m.source {
                mounts::MountSource::HostPath(p) => {
                    if m.create_host_path && !p.exists() {
                        std::fs::create_dir_all(p).map_err(|e| {
                            start_err(format!("create bind source {}: {e}", p.display()))
                        })?;
                    }
                    (MountKind::Bind, p.clone(), String::new())
                }
                mounts::MountSource::Volume(name) => {
                    if !m.no_copy {
                        self.copy_image_content(name, lower_dirs, &m.destination)
                            .map_err(start_err)?;
                    }
                    let mountpoint = self
                        .volumes
                        .mountpoint(name)
                        .map_err(|e| start_err(e.to_string()))?;
                    (MountKind::Bind, mountpoint, String::new())
                }
                mounts::MountSource::Tmpfs(data) => {
                    (MountKind::Tmpfs, PathBuf::new(), data.clone())
                }
            };
            user_mounts.push(MountSpec {
                kind,
                source,
                destination: m.destination.clone(),
                read_only: m.read_only,
                data,
            });
        }
        Ok(user_mounts)
    }

    /// Attach the container to its networks in a new network namespace, and take its
    /// `/etc/hosts` and `/etc/resolv.conf` from the attachment.
    async fn attach_networks(
        &self,
        id: &str,
        record: &ContainerRecord,
        host_config: &HostConfig,
        plan: &mut StartPlan,
    ) -> Result<()> {
        let networks = requested_networks(record)?;
        // A crash may have left a half-made attachment; detach is idempotent.
        let _ = self.networks.detach(id).await;
        let netns_path = self.roots.netns_dir().join(id);
        let attachment = self
            .networks
            .attach(AttachRequest {
                container_id: id.to_string(),
                container_name: record.name.clone(),
                hostname: record.hostname.clone(),
                netns_path: netns_path.clone(),
                networks: network_wire::endpoints(networks),
                port_bindings: network_wire::port_map(
                    host_config.port_bindings.clone().unwrap_or_default(),
                ),
                extra_hosts: host_config.extra_hosts.clone().unwrap_or_default(),
            })
            .await
            .map_err(|e| ContainerError::StartFailed {
                name: record.name.clone(),
                reason: e.to_string(),
            })?;
        plan.netns = Some(netns_path);
        plan.endpoints = network_wire::endpoints(attachment.endpoints);
        plan.hosts_file = Some(attachment.hosts_file);
        plan.resolv_conf = Some(crate::network::etc_files::with_dns_settings(
            &attachment.resolv_conf,
            host_config.dns_search.as_deref(),
            host_config.dns_options.as_deref(),
        ));
        Ok(())
    }
}

/// Network mode `host`: the host's `/etc/hosts` (with the extra hosts) and `/etc/resolv.conf`
/// (with the DNS options), and the host's name unless the request sets one.
fn host_network_files(
    record: &ContainerRecord,
    host_config: &HostConfig,
    plan: &mut StartPlan,
) -> std::result::Result<(), String> {
    // Docker copies the host's file and adds the extra hosts; there is no network gateway
    // here, so `host-gateway` is refused by the parser with its reason.
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    for entry in host_config.extra_hosts.iter().flatten() {
        let (name, ip) = crate::network::etc_files::parse_extra_host(entry, None)?;
        if !hosts.is_empty() && !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    plan.hosts_file = Some(hosts);
    plan.resolv_conf = std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .map(|host| {
            crate::network::etc_files::with_dns_settings(
                &host,
                host_config.dns_search.as_deref(),
                host_config.dns_options.as_deref(),
            )
        });
    if record.request.hostname.is_empty() {
        plan.hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok());
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::{HostConfig, NetworkingConfig};

    fn record(mode: &str, endpoints: &[&str]) -> super::super::state::ContainerRecord {
        let mut r = super::super::state::ContainerRecord::default();
        r.request.host_config = Some(HostConfig {
            network_mode: mode.into(),
            ..Default::default()
        });
        r.request.networking_config = Some(NetworkingConfig {
            endpoints_config: endpoints
                .iter()
                .map(|n| (n.to_string(), EndpointSettings::default()))
                .collect(),
        });
        r
    }

    #[test]
    fn the_docker_clis_default_network_is_the_bridge() {
        let names = |r| {
            requested_networks(&r)
                .unwrap()
                .into_keys()
                .collect::<Vec<_>>()
        };
        assert_eq!(names(record("default", &["default"])), ["bridge"]);
        assert_eq!(names(record("default", &[])), ["bridge"]);
        assert_eq!(names(record("app_net", &["app_net"])), ["app_net"]);
        assert!(names(record("none", &[])).is_empty());
    }

    #[test]
    fn a_paused_container_is_a_conflict_a_running_one_not_modified() {
        let mut state = StateRecord::default();
        assert!(refuse_start("web", &state).is_ok());
        state.status = Status::Exited;
        assert!(refuse_start("web", &state).is_ok());
        state.status = Status::Running;
        assert!(matches!(
            refuse_start("web", &state),
            Err(ContainerError::NotModified(name)) if name == "web"
        ));
        state.paused = true;
        assert!(matches!(
            refuse_start("web", &state),
            Err(ContainerError::Conflict(m)) if m.contains("try unpause instead")
        ));
    }
}
