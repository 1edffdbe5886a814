//! Container networking: bridges, veth pairs, IPAM, service DNS and published ports.
//!
//! One [`NetworkManager`] per engine. A network is a Linux bridge (`bridge.rs`) with a subnet
//! from Docker's pools (`ipam.rs`); attaching a container makes its network namespace
//! (`netns.rs`), a veth pair per network, its `/etc/hosts` and `/etc/resolv.conf`
//! (`etc_files.rs`), DNS names served on the gateway (`dns.rs`) and published-port proxies
//! (`ports.rs`). Kernel objects are made over netlink (`netlink.rs`); nothing shells out.
//! State lives in `networks/` under the data root (`state.rs`) so a restarted engine, and
//! `detach`, know everything that was made. Requests and results are this module's own types
//! (`spec.rs`); the engine translates Docker's API shapes to and from them.

pub mod bridge;
pub mod dns;
pub mod etc_files;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod ports;
pub mod spec;
pub mod state;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use rand::RngCore;
use thiserror::Error;
use tokio::task::AbortHandle;

use crate::paths::EngineRoots;
use firewall::{FirewallWatch, Generation};
use ipam::Subnet;
use netlink::{Netlink, NetlinkError};
pub use spec::{
    AddressPool, Created, Endpoint, HostPort, IpamSpec, Member, NetworkInfo, NetworkSpec, PortMap,
    RequestedAddress,
};
use state::{AttachmentRecord, EndpointRecord, NetworkRecord};

/// Host-wide lock around subnet choice and bridge creation: the kernel's addresses are shared
/// by every engine on the machine (other data roots, parallel tests), so two engines must not
/// both pick the same free subnet before either has put it on a bridge.
const HOST_LOCK: &str = "/run/berth-network.lock";

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{object}: {}", error_chain(.source))]
    Kernel {
        object: String,
        #[source]
        source: NetlinkError,
    },
    #[error("{}", error_chain(.0))]
    Netns(#[from] netns::NetnsError),
    #[error("cannot write network state {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// An error and its causes on one line: the API sends only the text, so the cause (an errno,
/// say) must be in it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

type Result<T> = std::result::Result<T, NetworkError>;

/// What a container asks of the network when it starts.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container_id: String,
    /// Without the leading `/`.
    pub container_name: String,
    pub hostname: String,
    /// Where the container's network namespace is bind-mounted (created by `attach`).
    pub netns_path: PathBuf,
    /// Network name or ID → requested settings (aliases, static IP). `none` (or no network at
    /// all) gives a namespace with only `lo`; `host` is not attached (the runtime stays in the
    /// host namespace and never calls `attach`).
    pub networks: IndexMap<String, Endpoint>,
    pub port_bindings: PortMap,
    pub extra_hosts: Vec<String>,
}

/// What the container gets back: its endpoints and the files to bind into it.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// Keyed by network name, as Docker's `NetworkSettings.Networks`.
    pub endpoints: IndexMap<String, Endpoint>,
    pub hosts_file: String,
    pub resolv_conf: String,
    /// The bound published ports, as Docker's `NetworkSettings.Ports` (actual host ports, also
    /// for requests that left `HostPort` empty).
    pub ports: PortMap,
}

/// Settings fixed when the manager is opened.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// Where names berth does not know are forwarded; `None` = the host's `/etc/resolv.conf`
    /// name servers. `Some(vec![])` answers NXDOMAIN instead of forwarding.
    pub upstream_dns: Option<Vec<SocketAddr>>,
    /// Give non-internal networks outbound access: a masquerade chain in the network's nftables
    /// table, and `net.ipv4.ip_forward=1` on the host (as Docker does). On for the engine
    /// (`open`). The rest of the packet filter (isolation, the host firewall's accepts) is
    /// always there.
    pub outbound_nat: bool,
}

#[derive(Default)]
struct State {
    networks: IndexMap<String, NetworkRecord>,
    attachments: IndexMap<String, AttachmentRecord>,
    /// Detached containers whose veths a background detach is still deleting: their addresses
    /// are not handed out again, and the same container is not attached again, until then.
    draining: IndexMap<String, AttachmentRecord>,
}

pub struct NetworkManager {
    dir: PathBuf,
    host_resolv: String,
    /// Serialises create/remove/attach/connect/disconnect/restore of this engine (address
    /// choice, names, kernel objects): they take it for writing. A detach only removes what
    /// belongs to one container (its veths, its namespace pin, its record) and takes it for
    /// reading, so the detaches of containers stopped together overlap their kernel work.
    /// Holding the read side across that work is what keeps a writer from seeing half-removed
    /// kernel objects. A background detach holds it only until the namespace pin is gone (a
    /// network remove then finds no mount of its containers left), and its veths under
    /// `detaching`.
    op: Arc<tokio::sync::RwLock<()>>,
    /// Held for reading by each background detach until its host veths are deleted (a veth
    /// delete waits ~30 ms for RCU); only `settle` waits for it. An attach or connect waits
    /// only for a detach of the same container (same veth names), and no address of a
    /// container still draining is handed out (see `State::draining`), so a `run --rm` right
    /// after another does not wait for the kernel to finish the first one's veths. A network
    /// remove does not wait either: the kernel deletes a bridge whose ports are still going
    /// just as well.
    detaching: Arc<tokio::sync::RwLock<()>>,
    /// Told when a background detach is done and its container left `State::draining`.
    drained: Arc<tokio::sync::Notify>,
    /// Held for reading by each removed network's background bridge delete (see `remove`); only
    /// `settle` waits for it: nothing else can collide with a retired bridge.
    teardowns: Arc<tokio::sync::RwLock<()>>,
    state: Arc<Mutex<State>>,
    dns: dns::DnsService,
    proxies: Mutex<HashMap<String, Vec<AbortHandle>>>,
    outbound_nat: bool,
    /// Which networks' firewall is known to be in place, so a container start skips the
    /// host-firewall survey when nothing changed (`firewall/generation.rs`).
    firewall_watch: Arc<Mutex<FirewallWatch>>,
}

/// How long `restore` waits for a port or DNS socket still held by a previous manager.
const RESTORE_BIND_RETRIES: usize = 20;
const RESTORE_BIND_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

const PREDEFINED: [&str; 2] = ["host", "none"];
/// Docker's default network, made on first use by a container that asks for `bridge`.
const DEFAULT_BRIDGE: &str = "bridge";
pub(crate) const DEFAULT_BRIDGE_OPTION: &str = "com.docker.network.bridge.default_bridge";

impl NetworkManager {
    pub fn open(roots: &EngineRoots) -> Result<Self> {
        Self::open_with(
            roots,
            NetworkOptions {
                upstream_dns: None,
                outbound_nat: true,
            },
        )
    }

    pub fn open_with(roots: &EngineRoots, options: NetworkOptions) -> Result<Self> {
        let dir = roots.networks_dir();
        std::fs::create_dir_all(dir.join("attachments")).map_err(|source| NetworkError::State {
            path: dir.clone(),
            source,
        })?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream = options.upstream_dns.unwrap_or_else(|| {
            etc_files::nameservers(&host_resolv)
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        });
        let (networks, mut warnings) = state::load_all::<NetworkRecord>(&dir);
        let (attachments, w2) = state::load_all::<AttachmentRecord>(&dir.join("attachments"));
        warnings.extend(w2);
        for w in warnings {
            eprintln!("berth network: {w}");
        }
        let state = State {
            networks: networks.into_iter().map(|n| (n.id.clone(), n)).collect(),
            attachments: attachments
                .into_iter()
                .map(|a| (a.container_id.clone(), a))
                .collect(),
            draining: IndexMap::new(),
        };
        let manager = Self {
            dir,
            host_resolv,
            op: Arc::new(tokio::sync::RwLock::new(())),
            teardowns: Arc::new(tokio::sync::RwLock::new(())),
            detaching: Arc::new(tokio::sync::RwLock::new(())),
            drained: Arc::new(tokio::sync::Notify::new()),
            state: Arc::new(Mutex::new(state)),
            dns: dns::DnsService::new(upstream),
            proxies: Mutex::new(HashMap::new()),
            outbound_nat: options.outbound_nat,
            firewall_watch: Arc::default(),
        };
        manager.refresh_dns();
        Ok(manager)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Until no background detach of `container_id` is left: its veths have the names a new
    /// attach of it would make.
    async fn until_drained(&self, container_id: &str) {
        loop {
            let drained = self.drained.notified();
            if !self.state().draining.contains_key(container_id) {
                return;
            }
            drained.await;
        }
    }

    fn refresh_dns(&self) {
        let st = self.state();
        self.dns.replace_table(dns::DnsTable::build(
            st.networks.values(),
            st.attachments.values(),
        ));
    }

    fn find(&self, id_or_name: &str) -> Result<NetworkRecord> {
        find_in(&self.state(), id_or_name)
    }

    pub async fn create(&self, req: NetworkSpec) -> Result<Created> {
        let _op = self.op.write().await;
        if req.name == DEFAULT_BRIDGE {
            return Err(NetworkError::Forbidden(format!(
                "{DEFAULT_BRIDGE} is a pre-defined network and cannot be created"
            )));
        }
        self.create_locked(req).await
    }

    async fn create_locked(&self, req: NetworkSpec) -> Result<Created> {
        let driver = if req.driver.is_empty() {
            "bridge"
        } else {
            req.driver.as_str()
        };
        if driver != "bridge" {
            return Err(NetworkError::BadRequest(format!(
                "network driver {driver:?} is not supported: berth creates bridge networks"
            )));
        }
        if req.name.is_empty() {
            return Err(NetworkError::BadRequest(
                "network name must not be empty".into(),
            ));
        }
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        if self.state().networks.values().any(|n| n.name == req.name) {
            return Err(NetworkError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        if req.enable_ipv6 {
            return Err(NetworkError::BadRequest(format!(
                "network {}: IPv6 networks are not supported yet",
                req.name
            )));
        }
        let requested = req
            .ipam
            .as_ref()
            .and_then(|i| i.config.first())
            .cloned()
            .unwrap_or_default();

        let id = random_hex(32);
        let bridge = bridge::bridge_name(&id);
        let nat = self.outbound_nat;
        let (record, warning) = tokio::task::spawn_blocking({
            let own: Vec<NetworkRecord> = self.state().networks.values().cloned().collect();
            let dir = self.dir.clone();
            let req = req.clone();
            let id = id.clone();
            let watch = self.firewall_watch.clone();
            move || -> Result<(NetworkRecord, String)> {
                let record = create_blocking(&dir, &own, &req, &requested, &id, &bridge)?;
                let alone = own.is_empty();
                let targets: Vec<FirewallTarget> = FirewallTarget::of(&record)
                    .map(|t| FirewallTarget { alone, ..t })
                    .into_iter()
                    .collect();
                let warnings = ensure_firewalls(&watch, &targets, nat, FirewallCheck::Survey);
                Ok((record, warnings.join("; ")))
            }
        })
        .await
        .map_err(|e| NetworkError::Other(format!("network create task failed: {e}")))??;

        if let Err(e) = self.dns.ensure_listener(&record.id, record.gateway).await {
            let _ = teardown_network(&self.dir, &record);
            return Err(NetworkError::Other(format!(
                "network {}: cannot serve DNS on {}:53: {e}",
                record.name, record.gateway
            )));
        }
        self.state()
            .networks
            .insert(record.id.clone(), record.clone());
        self.refresh_dns();
        Ok(Created {
            id: record.id,
            warning,
        })
    }

    pub fn list(&self) -> Vec<NetworkInfo> {
        let st = self.state();
        let mut out: Vec<NetworkInfo> = PREDEFINED.iter().map(|n| predefined(n)).collect();
        out.extend(st.networks.values().map(|n| resource(n, &st.attachments)));
        out
    }

    pub fn inspect(&self, id_or_name: &str) -> Result<NetworkInfo> {
        if PREDEFINED.contains(&id_or_name) {
            return Ok(predefined(id_or_name));
        }
        let n = self.find(id_or_name)?;
        Ok(resource(&n, &self.state().attachments))
    }

    pub async fn remove(&self, id_or_name: &str) -> Result<()> {
        let _op = self.op.write().await;
        if PREDEFINED.contains(&id_or_name) {
            return Err(NetworkError::Forbidden(format!(
                "{id_or_name} is a pre-defined network and cannot be removed"
            )));
        }
        let n = self.find(id_or_name)?;
        if n.options.get(DEFAULT_BRIDGE_OPTION).map(String::as_str) == Some("true") {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let in_use = self
            .state()
            .attachments
            .values()
            .any(|a| a.endpoints.iter().any(|e| e.network_id == n.id));
        if in_use {
            return Err(NetworkError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.dns.stop_listener(&n.id);
        let dir = self.dir.clone();
        let rec = n.clone();
        let last = self.state().networks.len() == 1;
        let retired = tokio::task::spawn_blocking(move || retire_network(&dir, &rec, last))
            .await
            .map_err(|e| NetworkError::Other(format!("network remove task failed: {e}")))??;
        lock_watch(&self.firewall_watch).forget(&n.bridge);
        self.state().networks.shift_remove(&n.id);
        self.refresh_dns();
        // The bridge itself goes in the background: unregistering a net device waits for RCU
        // grace periods (~40 ms) in the kernel. Nothing can use it any more (no address, no
        // accepts, no record), its name is the removed network's own, and a crash before the
        // delete leaves the retired record for `restore` to finish.
        let pending = self.teardowns.clone().read_owned().await;
        let bridge = n.bridge.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = delete_retired(&retired, &bridge) {
                eprintln!("berth network: network {}: {e}", n.name);
            }
            drop(pending);
        });
        Ok(())
    }

    /// Create the container's netns, veths, addresses, DNS names and port proxies.
    pub async fn attach(&self, req: AttachRequest) -> Result<Attachment> {
        self.until_drained(&req.container_id).await;
        let _op = self.op.write().await;
        check_attach_request(&req)?;
        // A record left by a crash or a container restart: clear it before making a new one.
        if self.state().attachments.contains_key(&req.container_id) {
            self.detach_locked(&req.container_id).await?;
        }
        if req.networks.contains_key(DEFAULT_BRIDGE) {
            self.ensure_default_bridge().await?;
        }
        let (record, bound) = self.plan_with_ports(&req)?;
        self.serve_dns(&record.endpoints).await?;

        // Persist first so that a crash half-way leaves a record `detach`/`restore` can undo.
        let path = state::attachment_path(&self.dir, &record.container_id);
        state::save_attachment(&path, &record).map_err(|source| NetworkError::State {
            path: path.clone(),
            source,
        })?;
        let handles = match self.plumb_with_firewall(&record).await {
            Ok(()) => start_proxies(&record, bound),
            Err(e) => Err(e),
        };
        let handles = match handles {
            Ok(handles) => handles,
            Err(e) => {
                let r = record.clone();
                let _ = tokio::task::spawn_blocking(move || unplumb(&r)).await;
                let _ = state::remove(&path);
                return Err(e);
            }
        };
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.container_id.clone(), handles);
        self.state()
            .attachments
            .insert(record.container_id.clone(), record.clone());
        self.refresh_dns();
        Ok(attachment_view(&record))
    }

    /// The attachment's endpoints and files, with its published ports already bound: a taken
    /// port fails here, before anything is made, and leaves nothing behind.
    fn plan_with_ports(
        &self,
        req: &AttachRequest,
    ) -> Result<(AttachmentRecord, Vec<(state::PortRecord, ports::BoundPort)>)> {
        let mut record = self.plan_attachment(req)?;
        let ports_requested = ports::parse(&req.port_bindings)?;
        if !ports_requested.is_empty() && record.endpoints.is_empty() {
            return Err(NetworkError::BadRequest(format!(
                "container {} publishes ports but is on no bridge network",
                req.container_name
            )));
        }
        let bound = ports::bind_all(&ports_requested)?;
        record.ports = bound.iter().map(|(r, _)| r.clone()).collect();
        Ok((record, bound))
    }

    /// The DNS server of each network the container joins, on its gateway.
    async fn serve_dns(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        for e in endpoints {
            let gw = e.gateway;
            if let Err(err) = self.dns.ensure_listener(&e.network_id, gw).await {
                return Err(NetworkError::Other(format!(
                    "network {}: cannot serve DNS on {gw}:53: {err}",
                    e.network_name
                )));
            }
        }
        Ok(())
    }

    /// The namespace and veths of an attachment, after repairing the filter of its networks: a
    /// firewall reload since the network was made may have taken berth's accepts away, and
    /// this is the moment a user would notice.
    async fn plumb_with_firewall(&self, record: &AttachmentRecord) -> Result<()> {
        let targets = firewall_targets(&self.state(), record);
        let nat = self.outbound_nat;
        let r = record.clone();
        let watch = self.firewall_watch.clone();
        tokio::task::spawn_blocking(move || {
            for warning in ensure_firewalls(&watch, &targets, nat, FirewallCheck::IfChanged) {
                eprintln!("berth network: {warning}");
            }
            plumb(&r)
        })
        .await
        .map_err(|e| NetworkError::Other(format!("network attach task failed: {e}")))?
    }

    async fn ensure_default_bridge(&self) -> Result<()> {
        if self
            .state()
            .networks
            .values()
            .any(|n| n.name == DEFAULT_BRIDGE)
        {
            return Ok(());
        }
        let mut options = IndexMap::new();
        options.insert(DEFAULT_BRIDGE_OPTION.to_string(), "true".to_string());
        self.create_locked(NetworkSpec {
            name: DEFAULT_BRIDGE.into(),
            driver: "bridge".into(),
            options,
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    /// Connect a running (attached) container to one more network, as
    /// `POST /networks/{id}/connect` does: a new `eth<n>` in its namespace and its names on
    /// that network. Returns the new endpoint.
    pub async fn connect(
        &self,
        container_id: &str,
        network: &str,
        settings: Endpoint,
    ) -> Result<Endpoint> {
        self.until_drained(container_id).await;
        let _op = self.op.write().await;
        if network == DEFAULT_BRIDGE {
            self.ensure_default_bridge().await?;
        }
        let (mut record, endpoint) = self.plan_connect(container_id, network, &settings)?;
        self.dns
            .ensure_listener(&endpoint.network_id, endpoint.gateway)
            .await
            .map_err(|e| {
                NetworkError::Other(format!(
                    "network {}: cannot serve DNS on {}:53: {e}",
                    endpoint.network_name, endpoint.gateway
                ))
            })?;
        let previous = record.clone();
        let first = record.endpoints.is_empty();
        record.endpoints.push(endpoint.clone());
        let path = state::attachment_path(&self.dir, container_id);
        state::save_attachment(&path, &record).map_err(|source| NetworkError::State {
            path: path.clone(),
            source,
        })?;
        let plugged = {
            let (r, ep) = (record.clone(), endpoint.clone());
            tokio::task::spawn_blocking(move || plug_endpoint(&r, &ep, first))
                .await
                .map_err(|e| NetworkError::Other(format!("network connect task failed: {e}")))
                .and_then(|r| r)
        };
        if let Err(e) = plugged {
            let _ = state::save_attachment(&path, &previous);
            return Err(e);
        }
        self.state()
            .attachments
            .insert(container_id.to_string(), record.clone());
        self.refresh_dns();
        let view = attachment_view(&record);
        Ok(view
            .endpoints
            .get(&endpoint.network_name)
            .cloned()
            .unwrap_or_default())
    }

    /// The running container's attachment and its new endpoint on `network`; makes nothing.
    fn plan_connect(
        &self,
        container_id: &str,
        network: &str,
        settings: &Endpoint,
    ) -> Result<(AttachmentRecord, EndpointRecord)> {
        let st = self.state();
        let record = st.attachments.get(container_id).cloned().ok_or_else(|| {
            NetworkError::Conflict(format!(
                "container {container_id} is not running: its networks are set up when it starts"
            ))
        })?;
        let net = find_in(&st, network)?;
        if record.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(NetworkError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                record.container_name, net.name
            )));
        }
        let req = AttachRequest {
            container_id: record.container_id.clone(),
            container_name: record.container_name.clone(),
            hostname: record.hostname.clone(),
            ..Default::default()
        };
        let ep = plan_endpoint(&st, &net, settings, &req, &record.endpoints)?;
        Ok((record, ep))
    }

    /// Take a running container off one network (`POST /networks/{id}/disconnect`).
    pub async fn disconnect(&self, container_id: &str, network: &str) -> Result<()> {
        let _op = self.op.write().await;
        let (mut record, net) = {
            let st = self.state();
            let net = find_in(&st, network)?;
            let Some(record) = st.attachments.get(container_id).cloned() else {
                return Ok(());
            };
            (record, net)
        };
        let Some(pos) = record.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(NetworkError::Conflict(format!(
                "container {} is not connected to network {}",
                record.container_name, net.name
            )));
        };
        let ep = record.endpoints.remove(pos);
        let veth = ep.host_veth.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut host = host_netlink()?;
            host.delete_link(&veth)
                .map(|_| ())
                .map_err(|source| NetworkError::Kernel {
                    object: veth.clone(),
                    source,
                })
        })
        .await
        .map_err(|e| NetworkError::Other(format!("network disconnect task failed: {e}")))??;
        let path = state::attachment_path(&self.dir, container_id);
        state::save_attachment(&path, &record)
            .map_err(|source| NetworkError::State { path, source })?;
        self.state()
            .attachments
            .insert(container_id.to_string(), record);
        self.refresh_dns();
        Ok(())
    }

    /// `docker rename`: the container answers to its new name instead of the old one on every
    /// network it is attached to (its aliases stay). Best effort: a record that cannot be saved
    /// keeps the new name in memory until the next restore.
    pub fn rename_container(&self, container_id: &str, old: &str, new: &str) {
        let record = {
            let mut st = self.state();
            let Some(record) = st.attachments.get_mut(container_id) else {
                return;
            };
            record.container_name = new.to_string();
            for ep in &mut record.endpoints {
                for name in ep.dns_names.iter_mut().filter(|n| *n == old) {
                    *name = new.to_string();
                }
            }
            record.clone()
        };
        let path = state::attachment_path(&self.dir, container_id);
        if let Err(e) = state::save(&path, &record) {
            eprintln!("berth network: cannot save {}: {e}", path.display());
        }
        self.refresh_dns();
    }

    /// Allocate endpoints (addresses, names, interface names) and the files; makes nothing.
    fn plan_attachment(&self, req: &AttachRequest) -> Result<AttachmentRecord> {
        let st = self.state();
        let mut endpoints: Vec<EndpointRecord> = Vec::new();
        for (key, wanted) in &req.networks {
            match key.as_str() {
                "none" => continue,
                "host" => {
                    return Err(NetworkError::BadRequest(format!(
                        "container {}: host networking is not attached: run the container in the host's network namespace",
                        req.container_name
                    )))
                }
                _ => {}
            }
            let net = find_in(&st, key)?;
            if endpoints.iter().any(|e| e.network_id == net.id) {
                continue;
            }
            let ep = plan_endpoint(&st, &net, wanted, req, &endpoints)?;
            endpoints.push(ep);
        }
        drop(st);

        let gateway = endpoints.first().map(|e| e.gateway);
        let extra: Vec<(String, String)> = req
            .extra_hosts
            .iter()
            .map(|h| etc_files::parse_extra_host(h, gateway))
            .collect::<std::result::Result<_, _>>()
            .map_err(NetworkError::BadRequest)?;
        let hosts_file =
            etc_files::hosts_file(&req.hostname, endpoints.first().map(|e| e.address), &extra);
        let resolv_conf = match gateway {
            Some(gw) => etc_files::resolv_conf(gw, &self.host_resolv),
            None => etc_files::resolv_conf_without_network(&self.host_resolv),
        };
        Ok(AttachmentRecord {
            container_id: req.container_id.clone(),
            container_name: req.container_name.clone(),
            hostname: req.hostname.clone(),
            netns_path: req.netns_path.clone(),
            endpoints,
            ports: Vec::new(),
            hosts_file,
            resolv_conf,
        })
    }

    /// Undo `attach`; idempotent, works on a half-made attachment. Returns when the kernel
    /// objects are gone.
    pub async fn detach(&self, container_id: &str) -> Result<()> {
        // Two detaches of one container may overlap: every step below is idempotent (a missing
        // veth, namespace pin, record file or map entry is fine).
        let _op = self.op.read().await;
        self.detach_locked(container_id).await
    }

    /// Take a stopped container off the networks' books now (DNS names, inspect, its proxies)
    /// and remove its namespace pin and then its veths in the background. Whatever needs those
    /// gone waits for them (a network remove for the pin through `op`; an attach, a connect and
    /// `settle` for the veths through `detaching` too), so a `down` that stops services level by
    /// level does not wait ~30 ms per container for the kernel. A failure of the background
    /// removal is logged: the caller has nothing left to do about it.
    pub async fn detach_in_background(&self, container_id: &str) {
        let detaching = self.detaching.clone().read_owned().await;
        let op = self.op.clone().read_owned().await;
        self.stop_proxies(container_id);
        let record = {
            let mut st = self.state();
            let Some(record) = st.attachments.shift_remove(container_id) else {
                return;
            };
            st.draining.insert(container_id.to_string(), record.clone());
            record
        };
        self.refresh_dns();
        // The record file goes last, as in `detach_locked`: an engine that dies before the
        // kernel objects are gone finds it at restore and cleans up after it.
        let path = state::attachment_path(&self.dir, container_id);
        let (shared, drained) = (self.state.clone(), self.drained.clone());
        tokio::task::spawn_blocking(move || {
            // The pin first: the container's processes are gone, so the namespace goes with it.
            let unpinned = netns::remove(&record.netns_path).map_err(NetworkError::from);
            drop(op);
            let removed = delete_veths(&record).and(unpinned).and_then(|()| {
                state::remove(&path).map_err(|source| NetworkError::State { path, source })
            });
            if let Err(e) = removed {
                eprintln!("berth network: container {}: {e}", record.container_name);
            }
            lock_state(&shared)
                .draining
                .shift_remove(&record.container_id);
            drained.notify_waiters();
            drop(detaching);
        });
    }

    /// Wait for background detaches and bridge deletes to finish (before the engine exits, so
    /// none is cut short).
    pub async fn settle(&self) {
        drop(self.detaching.write().await);
        drop(self.op.write().await);
        drop(self.teardowns.write().await);
    }

    fn stop_proxies(&self, container_id: &str) {
        if let Some(handles) = self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(container_id)
        {
            for h in handles {
                h.abort();
            }
        }
    }

    async fn detach_locked(&self, container_id: &str) -> Result<()> {
        self.stop_proxies(container_id);
        let Some(record) = self.state().attachments.get(container_id).cloned() else {
            return Ok(());
        };
        tokio::task::spawn_blocking({
            let r = record.clone();
            move || unplumb(&r)
        })
        .await
        .map_err(|e| NetworkError::Other(format!("network detach task failed: {e}")))??;
        let path = state::attachment_path(&self.dir, container_id);
        state::remove(&path).map_err(|source| NetworkError::State { path, source })?;
        self.state().attachments.shift_remove(container_id);
        self.refresh_dns();
        Ok(())
    }

    /// The attachment of a container, as `attach` returned it (for inspect after a restart).
    pub fn attachment(&self, container_id: &str) -> Option<Attachment> {
        self.state()
            .attachments
            .get(container_id)
            .map(attachment_view)
    }

    /// At engine start: bring back bridges and DNS listeners of every network, and the port
    /// proxies of containers whose namespace still exists; forget (and clean up) attachments
    /// whose namespace is gone. Returns one line per problem that did not stop the restore.
    pub async fn restore(&self) -> Vec<String> {
        let _op = self.op.write().await;
        let dir = self.dir.clone();
        let mut problems = tokio::task::spawn_blocking(move || finish_retired(&dir))
            .await
            .unwrap_or_else(|e| vec![format!("removed networks: {e}")]);
        let networks: Vec<NetworkRecord> = self.state().networks.values().cloned().collect();
        for n in &networks {
            problems.extend(self.restore_network(n).await);
        }
        let attachments: Vec<AttachmentRecord> =
            self.state().attachments.values().cloned().collect();
        for a in attachments {
            if !netns::is_pinned(&a.netns_path) {
                if let Err(e) = self.detach_locked(&a.container_id).await {
                    problems.push(format!("container {}: cleanup: {e}", a.container_name));
                }
                continue;
            }
            let running = self
                .proxies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&a.container_id);
            if !running {
                problems.extend(self.restore_proxies(&a).await);
            }
        }
        self.refresh_dns();
        problems
    }

    /// One network's bridge, firewall and DNS listener; the problems found.
    async fn restore_network(&self, n: &NetworkRecord) -> Vec<String> {
        let rec = n.clone();
        let nat = self.outbound_nat;
        let watch = self.firewall_watch.clone();
        let made = tokio::task::spawn_blocking(move || -> Result<String> {
            let lock = HostLock::take()?;
            let mut nl = host_netlink()?;
            let subnet: Subnet = rec
                .subnet
                .parse()
                .map_err(|e: ipam::IpamError| NetworkError::Other(e.to_string()))?;
            bridge::ensure(&mut nl, &rec.bridge, rec.gateway, subnet.prefix_len())?;
            drop(nl);
            drop(lock);
            let targets: Vec<FirewallTarget> = FirewallTarget::of(&rec).into_iter().collect();
            Ok(ensure_firewalls(&watch, &targets, nat, FirewallCheck::Survey).join("; "))
        })
        .await;
        let warning = match made {
            Ok(Ok(warning)) => warning,
            Ok(Err(e)) => return vec![format!("network {}: {e}", n.name)],
            Err(e) => return vec![format!("network {}: {e}", n.name)],
        };
        let mut problems = Vec::new();
        if !warning.is_empty() {
            problems.push(format!("network {}: {warning}", n.name));
        }
        // A previous manager in this process may still be closing its sockets.
        let mut bound = self.dns.ensure_listener(&n.id, n.gateway).await;
        for _ in 0..RESTORE_BIND_RETRIES {
            match &bound {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(RESTORE_BIND_PAUSE).await;
                    bound = self.dns.ensure_listener(&n.id, n.gateway).await;
                }
                _ => break,
            }
        }
        if let Err(e) = bound {
            problems.push(format!("network {}: DNS on {}:53: {e}", n.name, n.gateway));
        }
        problems
    }

    /// The port proxies of a container that runs on; the problems found.
    async fn restore_proxies(&self, a: &AttachmentRecord) -> Vec<String> {
        let mut problems = Vec::new();
        let mut handles = Vec::new();
        if let Some(ip) = a.port_target() {
            for p in &a.ports {
                let mut listener = ports::rebind(p);
                for _ in 0..RESTORE_BIND_RETRIES {
                    if matches!(listener, Err(NetworkError::Conflict(_))) {
                        tokio::time::sleep(RESTORE_BIND_PAUSE).await;
                        listener = ports::rebind(p);
                    } else {
                        break;
                    }
                }
                match listener.and_then(|l| {
                    ports::spawn_proxy(l, SocketAddr::new(IpAddr::V4(ip), p.container_port))
                        .map_err(|e| NetworkError::Other(e.to_string()))
                }) {
                    Ok(h) => handles.push(h),
                    Err(e) => problems.push(format!(
                        "container {}: port {}: {e}",
                        a.container_name, p.host_port
                    )),
                }
            }
        }
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(a.container_id.clone(), handles);
        problems
    }
}

impl Drop for NetworkManager {
    fn drop(&mut self) {
        self.dns.stop_all();
        for (_, handles) in self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            for h in handles {
                h.abort();
            }
        }
    }
}

fn check_attach_request(req: &AttachRequest) -> Result<()> {
    if req.container_id.is_empty() {
        return Err(NetworkError::BadRequest(
            "attach: container id is empty".into(),
        ));
    }
    if req.netns_path.as_os_str().is_empty() {
        return Err(NetworkError::BadRequest(format!(
            "attach {}: no network namespace path given",
            req.container_name
        )));
    }
    Ok(())
}

/// A proxy per bound port, to the container's first address; none started when one fails.
fn start_proxies(
    record: &AttachmentRecord,
    bound: Vec<(state::PortRecord, ports::BoundPort)>,
) -> Result<Vec<AbortHandle>> {
    let mut handles = Vec::new();
    let Some(ip) = record.port_target() else {
        return Ok(handles);
    };
    for (port, listener) in bound {
        let to = SocketAddr::new(IpAddr::V4(ip), port.container_port);
        match ports::spawn_proxy(listener, to) {
            Ok(h) => handles.push(h),
            Err(e) => {
                for h in handles {
                    h.abort();
                }
                return Err(NetworkError::Other(format!(
                    "cannot start proxy for port {}: {e}",
                    port.host_port
                )));
            }
        }
    }
    Ok(handles)
}

fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One endpoint on `net` for the container of `req`: the first free address (or the requested
/// static one), interface name `eth<n>` after those in `siblings`, Docker's MAC, DNS names.
fn plan_endpoint(
    st: &State,
    net: &NetworkRecord,
    wanted: &Endpoint,
    req: &AttachRequest,
    siblings: &[EndpointRecord],
) -> Result<EndpointRecord> {
    let subnet: Subnet = net
        .subnet
        .parse()
        .map_err(|e: ipam::IpamError| NetworkError::Other(e.to_string()))?;
    let range: Option<Subnet> = if net.ip_range.is_empty() {
        None
    } else {
        Some(
            net.ip_range
                .parse()
                .map_err(|e: ipam::IpamError| NetworkError::Other(e.to_string()))?,
        )
    };
    // A draining container's address stays taken until its veth is gone from the bridge.
    let mut used: Vec<Ipv4Addr> = st
        .attachments
        .values()
        .filter(|a| a.container_id != req.container_id)
        .chain(st.draining.values())
        .flat_map(|a| a.endpoints.iter())
        .filter(|e| e.network_id == net.id)
        .map(|e| e.address)
        .collect();
    used.extend(siblings.iter().map(|e| e.address));
    let requested = wanted
        .requested
        .as_ref()
        .map(|c| c.ipv4_address.clone())
        .unwrap_or_default();
    let address = if requested.is_empty() {
        subnet.first_free(range, net.gateway, &used)
    } else {
        ipam::parse_address(&requested)
            .and_then(|a| subnet.check_static(a, net.gateway, &used).map(|()| a))
    }
    .map_err(|e| match e {
        ipam::IpamError::AddressInUse(_) | ipam::IpamError::SubnetFull(_) => {
            NetworkError::Conflict(format!("network {}: {e}", net.name))
        }
        _ => NetworkError::BadRequest(format!("network {}: {e}", net.name)),
    })?;
    let aliases: Vec<String> = dedup(wanted.aliases.clone().unwrap_or_default());
    let mut dns_names = vec![req.container_name.clone()];
    dns_names.extend(aliases.iter().cloned());
    dns_names.push(req.container_id.chars().take(12).collect());
    dns_names.push(req.hostname.clone());
    let dns_names = dedup(dns_names.into_iter().filter(|n| !n.is_empty()).collect());
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| siblings.iter().all(|e| &e.ifname != n))
        .unwrap_or_else(|| "eth0".into());
    Ok(EndpointRecord {
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        endpoint_id: random_hex(32),
        ifname,
        host_veth: format!("veth{}", &random_hex(4)[..7]),
        address,
        prefix_len: subnet.prefix_len(),
        gateway: net.gateway,
        mac: ipam::format_mac(ipam::mac_for(address)),
        aliases,
        dns_names,
        requested_address: requested,
    })
}

/// Full ID, name, or unique ID prefix → record.
fn find_in(st: &State, id_or_name: &str) -> Result<NetworkRecord> {
    if let Some(n) = st.networks.get(id_or_name) {
        return Ok(n.clone());
    }
    if let Some(n) = st.networks.values().find(|n| n.name == id_or_name) {
        return Ok(n.clone());
    }
    let matches: Vec<&NetworkRecord> = st
        .networks
        .values()
        .filter(|n| !id_or_name.is_empty() && n.id.starts_with(id_or_name))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(NetworkError::NotFound(id_or_name.to_string())),
        _ => Err(NetworkError::BadRequest(format!(
            "network {id_or_name} is ambiguous ({} matches)",
            matches.len()
        ))),
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

fn host_netlink() -> Result<Netlink> {
    Netlink::open().map_err(|source| NetworkError::Kernel {
        object: "host network namespace".into(),
        source,
    })
}

/// Holds the lock until dropped (the file closes, the flock goes).
struct HostLock(#[allow(dead_code)] std::fs::File);

impl HostLock {
    fn take() -> Result<Self> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK)
            .map_err(|source| NetworkError::State {
                path: HOST_LOCK.into(),
                source,
            })?;
        // SAFETY: flock on a descriptor we own; released when the file closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(NetworkError::State {
                path: HOST_LOCK.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(HostLock(file))
    }
}

/// Pick the subnet, persist the record, make the bridge. Runs on a blocking thread.
fn create_blocking(
    dir: &Path,
    own: &[NetworkRecord],
    req: &NetworkSpec,
    requested: &AddressPool,
    id: &str,
    bridge_name: &str,
) -> Result<NetworkRecord> {
    let _lock = HostLock::take()?;
    let mut nl = host_netlink()?;
    let subnet = choose_subnet(&mut nl, own, req, requested)?;
    let gateway = choose_gateway(subnet, req, requested)?;
    let record = NetworkRecord {
        id: id.to_string(),
        name: req.name.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        driver: "bridge".into(),
        bridge: bridge_name.to_string(),
        subnet: subnet.to_string(),
        gateway,
        ip_range: requested.ip_range.clone(),
        internal: req.internal,
        attachable: req.attachable,
        options: req.options.clone(),
        labels: req.labels.clone(),
    };
    let path = state::network_path(dir, id);
    state::save(&path, &record).map_err(|source| NetworkError::State {
        path: path.clone(),
        source,
    })?;
    if let Err(e) = bridge::ensure(&mut nl, bridge_name, gateway, subnet.prefix_len()) {
        let _ = state::remove(&path);
        return Err(e);
    }
    Ok(record)
}

/// The requested subnet, checked against this engine's networks, or else the first pool
/// subnet that no host address or route (another engine's bridge, the LAN) overlaps.
fn choose_subnet(
    nl: &mut Netlink,
    own: &[NetworkRecord],
    req: &NetworkSpec,
    requested: &AddressPool,
) -> Result<Subnet> {
    let own_subnets: Vec<Subnet> = own.iter().filter_map(|n| n.subnet.parse().ok()).collect();
    if requested.subnet.is_empty() {
        let mut taken = own_subnets;
        let kernel = |source| NetworkError::Kernel {
            object: "host addresses".into(),
            source,
        };
        for a in nl.ipv4_addresses().map_err(kernel)? {
            taken.extend(Subnet::new(a.address, a.prefix_len));
        }
        for r in nl.ipv4_routes().map_err(kernel)? {
            // The default route covers everything; Docker ignores it too.
            if r.prefix_len > 0 {
                taken.extend(Subnet::new(r.destination, r.prefix_len));
            }
        }
        return ipam::pick_subnet(&taken).map_err(|e| NetworkError::Other(e.to_string()));
    }
    let s: Subnet = requested.subnet.parse().map_err(|e| bad_ipam(req, e))?;
    if let Some(other) = own
        .iter()
        .find(|n| n.subnet.parse::<Subnet>().is_ok_and(|o| o.overlaps(&s)))
    {
        return Err(NetworkError::Forbidden(format!(
            "invalid pool request: Pool overlaps with other one on this address space (network {} uses {})",
            other.name, other.subnet
        )));
    }
    Ok(s)
}

/// The requested gateway (inside the subnet) or the subnet's first address; the requested IP
/// range must lie inside the subnet.
fn choose_gateway(subnet: Subnet, req: &NetworkSpec, requested: &AddressPool) -> Result<Ipv4Addr> {
    let gateway = if requested.gateway.is_empty() {
        subnet.default_gateway()
    } else {
        let gw = ipam::parse_address(&requested.gateway).map_err(|e| bad_ipam(req, e))?;
        if !subnet.contains(gw) {
            return Err(bad_ipam(
                req,
                ipam::IpamError::OutsideSubnet {
                    address: gw,
                    subnet,
                },
            ));
        }
        gw
    };
    if !requested.ip_range.is_empty() {
        let range: Subnet = requested.ip_range.parse().map_err(|e| bad_ipam(req, e))?;
        if !subnet.contains(range.network()) || range.prefix_len() < subnet.prefix_len() {
            return Err(NetworkError::BadRequest(format!(
                "network {}: IP range {range} is not inside subnet {subnet}",
                req.name
            )));
        }
    }
    Ok(gateway)
}

fn bad_ipam(req: &NetworkSpec, e: ipam::IpamError) -> NetworkError {
    NetworkError::BadRequest(format!("network {}: {e}", req.name))
}

/// What the firewall setup needs of one network.
#[derive(Debug, Clone)]
struct FirewallTarget {
    bridge: String,
    subnet: Subnet,
    internal: bool,
    /// A network just made by an engine with no other (see `firewall::ensure`).
    alone: bool,
}

impl FirewallTarget {
    fn of(n: &NetworkRecord) -> Option<Self> {
        Some(FirewallTarget {
            bridge: n.bridge.clone(),
            subnet: n.subnet.parse().ok()?,
            internal: n.internal,
            alone: false,
        })
    }
}

/// When a network's firewall is ensured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirewallCheck {
    /// Network create and engine start: always, with warnings about other programs' chains
    /// that would drop the network's traffic.
    Survey,
    /// Container start: only when the host's filter changed since the network's last ensure
    /// (a reload, a flush, a `dockerd` restart), or it was never ensured by this engine.
    IfChanged,
}

fn lock_watch(watch: &Mutex<FirewallWatch>) -> std::sync::MutexGuard<'_, FirewallWatch> {
    watch.lock().unwrap_or_else(|e| e.into_inner())
}

/// The networks' packet filter (isolation, masquerade, the host firewall's accepts; see
/// `firewall.rs`), idempotent. Failures are warnings, returned as text for the API's `Warning`:
/// the network exists and the next container start or engine start tries again. Runs on a
/// blocking thread.
fn ensure_firewalls(
    watch: &Mutex<FirewallWatch>,
    targets: &[FirewallTarget],
    nat: bool,
    check: FirewallCheck,
) -> Vec<String> {
    let before = Generation::read();
    let bridges: Vec<String> = targets.iter().map(|t| t.bridge.clone()).collect();
    let due: Vec<String> = match check {
        FirewallCheck::Survey => bridges,
        FirewallCheck::IfChanged => lock_watch(watch)
            .stale(before, &bridges)
            .into_iter()
            .cloned()
            .collect(),
    };
    if due.is_empty() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    let mut ensured = Vec::new();
    let mut after = before;
    for t in targets.iter().filter(|t| due.contains(&t.bridge)) {
        match firewall::ensure(&t.bridge, t.subnet, t.internal, nat && !t.internal, t.alone) {
            Ok(generation) => {
                after = generation;
                ensured.push(t.bridge.as_str());
                if check == FirewallCheck::Survey {
                    warnings.extend(firewall::foreign_warnings(&t.bridge));
                }
            }
            Err(e) => warnings.push(format!(
                "firewall of {} incomplete, containers may not reach each other or the outside: {}",
                t.bridge,
                error_chain(&e)
            )),
        }
    }
    lock_watch(watch).ensured(before, after, ensured);
    warnings
}

/// What the firewall setup needs of each network a container joins.
fn firewall_targets(st: &State, r: &AttachmentRecord) -> Vec<FirewallTarget> {
    r.endpoints
        .iter()
        .filter_map(|e| st.networks.get(&e.network_id))
        .filter_map(FirewallTarget::of)
        .collect()
}

/// Undoes a network whose creation failed part way: rules before the bridge, as netavark orders
/// it.
fn teardown_network(dir: &Path, n: &NetworkRecord) -> Result<()> {
    firewall::remove(&n.bridge).map_err(|e| firewall_removal_error(n, &e))?;
    let mut nl = host_netlink()?;
    nl.delete_link(&n.bridge)
        .map_err(|source| NetworkError::Kernel {
            object: n.bridge.clone(),
            source,
        })?;
    let path = state::network_path(dir, &n.id);
    state::remove(&path).map_err(|source| NetworkError::State { path, source })
}

fn firewall_removal_error(n: &NetworkRecord, e: &firewall::FirewallError) -> NetworkError {
    NetworkError::Other(format!(
        "network {}: cannot remove its firewall rules: {}",
        n.name,
        error_chain(e)
    ))
}

/// What a network's removal must finish before `remove` returns, on a blocking thread: the host
/// filter's accepts and the network's own nftables table (together: they are independent), the
/// gateway address (so the subnet is free for the next network at once, with no route left),
/// and the record, moved to `networks/.removed/`. Returns where the record went; the bridge is
/// left for [`delete_retired`]. `last`: no other network of this engine is left (its firewall
/// removal may then skip reading the table, see `firewall::remove_accepts`).
fn retire_network(dir: &Path, n: &NetworkRecord, last: bool) -> Result<PathBuf> {
    let removed = std::thread::scope(|scope| {
        let table = scope.spawn(|| firewall::remove_own_table(&n.bridge));
        let accepts = firewall::remove_accepts(&n.bridge, last.then_some(n.internal));
        let table = table
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        accepts.and(table)
    });
    removed.map_err(|e| firewall_removal_error(n, &e))?;
    let subnet: Subnet = n
        .subnet
        .parse()
        .map_err(|e: ipam::IpamError| NetworkError::Other(e.to_string()))?;
    host_netlink()?
        .delete_address(&n.bridge, n.gateway, subnet.prefix_len())
        .map_err(|source| NetworkError::Kernel {
            object: n.bridge.clone(),
            source,
        })?;
    let from = state::network_path(dir, &n.id);
    let to = state::retired_network_path(dir, &n.id);
    let moved = to
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::rename(&from, &to));
    moved.map_err(|source| NetworkError::State { path: from, source })?;
    Ok(to)
}

/// The rest of a network's removal, in the background: delete its bridge, then the retired
/// record (last, so that a crash before leaves it for [`finish_retired`]).
fn delete_retired(record: &Path, bridge: &str) -> Result<()> {
    host_netlink()?
        .delete_link(bridge)
        .map_err(|source| NetworkError::Kernel {
            object: bridge.to_string(),
            source,
        })?;
    state::remove(record).map_err(|source| NetworkError::State {
        path: record.to_path_buf(),
        source,
    })
}

/// At engine start: delete the bridges of networks removed just before a crash (their records
/// are in `networks/.removed/`). Returns one line per problem.
fn finish_retired(dir: &Path) -> Vec<String> {
    let retired_dir = state::retired_dir(dir);
    let (records, mut problems) = state::load_all::<NetworkRecord>(&retired_dir);
    for n in records {
        let path = state::retired_network_path(dir, &n.id);
        if let Err(e) = delete_retired(&path, &n.bridge) {
            problems.push(format!("removed network {}: {e}", n.name));
        }
    }
    problems
}

/// Make the namespace and plug every endpoint. Runs on a blocking thread.
fn plumb(r: &AttachmentRecord) -> Result<()> {
    // The path is this container's; whatever is there is a leftover of an attachment whose
    // record was lost (attach has already detached any recorded one).
    netns::remove(&r.netns_path)?;
    netns::create(&r.netns_path)?;
    if r.endpoints.is_empty() {
        return Ok(());
    }
    let mut host = host_netlink()?;
    let mut inside = netns::netlink_in(&r.netns_path)?;
    for (i, e) in r.endpoints.iter().enumerate() {
        let bridge = bridge::bridge_name(&e.network_id);
        let mac = ipam::mac_for(e.address);
        bridge::plug(
            &mut host,
            &r.netns_path,
            &mut inside,
            &bridge,
            &e.host_veth,
            &e.ifname,
            mac,
            e.address,
            e.prefix_len,
            (i == 0).then_some(e.gateway),
        )?;
    }
    Ok(())
}

/// One more endpoint in a running container's namespace (its default route when it is the
/// first). Runs on a blocking thread.
fn plug_endpoint(r: &AttachmentRecord, ep: &EndpointRecord, first: bool) -> Result<()> {
    let mut host = host_netlink()?;
    let mut inside = netns::netlink_in(&r.netns_path)?;
    bridge::plug(
        &mut host,
        &r.netns_path,
        &mut inside,
        &bridge::bridge_name(&ep.network_id),
        &ep.host_veth,
        &ep.ifname,
        ipam::mac_for(ep.address),
        ep.address,
        ep.prefix_len,
        first.then_some(ep.gateway),
    )
}

/// Remove whatever of an attachment exists: host veths, then the namespace.
fn unplumb(r: &AttachmentRecord) -> Result<()> {
    let veths = delete_veths(r);
    let unpinned = netns::remove(&r.netns_path).map_err(NetworkError::from);
    veths.and(unpinned)
}

/// Delete the host ends of an attachment's veths (each takes its peer along); tries them all
/// and reports the first failure.
fn delete_veths(r: &AttachmentRecord) -> Result<()> {
    let mut host = host_netlink()?;
    let mut first_err = None;
    for e in &r.endpoints {
        if let Err(source) = host.delete_link(&e.host_veth) {
            first_err.get_or_insert(NetworkError::Kernel {
                object: e.host_veth.clone(),
                source,
            });
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn attachment_view(r: &AttachmentRecord) -> Attachment {
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| {
            (
                e.network_name.clone(),
                Endpoint {
                    aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
                    requested: (!e.requested_address.is_empty()).then(|| RequestedAddress {
                        ipv4_address: e.requested_address.clone(),
                    }),
                    network_id: e.network_id.clone(),
                    endpoint_id: e.endpoint_id.clone(),
                    gateway: e.gateway.to_string(),
                    ip_address: e.address.to_string(),
                    ip_prefix_len: e.prefix_len,
                    mac_address: e.mac.clone(),
                    dns_names: Some(e.dns_names.clone()),
                },
            )
        })
        .collect();
    Attachment {
        endpoints,
        hosts_file: r.hosts_file.clone(),
        resolv_conf: r.resolv_conf.clone(),
        ports: ports::to_docker(&r.ports),
    }
}

fn resource(n: &NetworkRecord, attachments: &IndexMap<String, AttachmentRecord>) -> NetworkInfo {
    let containers = attachments
        .values()
        .filter_map(|a| {
            a.endpoints.iter().find(|e| e.network_id == n.id).map(|e| {
                (
                    a.container_id.clone(),
                    Member {
                        name: a.container_name.clone(),
                        endpoint_id: e.endpoint_id.clone(),
                        mac_address: e.mac.clone(),
                        ipv4_address: format!("{}/{}", e.address, e.prefix_len),
                    },
                )
            })
        })
        .collect();
    NetworkInfo {
        name: n.name.clone(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: "local".into(),
        driver: n.driver.clone(),
        enable_ipv6: false,
        ipam: IpamSpec {
            driver: "default".into(),
            config: vec![AddressPool {
                subnet: n.subnet.clone(),
                gateway: n.gateway.to_string(),
                ip_range: n.ip_range.clone(),
            }],
        },
        internal: n.internal,
        attachable: n.attachable,
        containers,
        options: n.options.clone(),
        labels: n.labels.clone(),
    }
}

/// Docker's built-in `host` and `none` networks, with stable IDs derived from their names.
fn predefined(name: &str) -> NetworkInfo {
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(format!("berth-predefined-{name}")));
    NetworkInfo {
        name: name.to_string(),
        id,
        // Built in, never created: Go's zero time, which Docker clients parse and show as such.
        created: "0001-01-01T00:00:00Z".into(),
        scope: "local".into(),
        driver: if name == "host" { "host" } else { "null" }.into(),
        ipam: IpamSpec {
            driver: "default".into(),
            config: vec![],
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> NetworkRecord {
        NetworkRecord {
            id: "n1".into(),
            name: "proj_default".into(),
            created: String::new(),
            driver: "bridge".into(),
            bridge: "br-n1".into(),
            subnet: "10.9.0.0/24".into(),
            gateway: Ipv4Addr::new(10, 9, 0, 1),
            ip_range: String::new(),
            internal: false,
            attachable: false,
            options: IndexMap::new(),
            labels: IndexMap::new(),
        }
    }

    fn attached(container_id: &str, last_octet: u8) -> AttachmentRecord {
        let address = Ipv4Addr::new(10, 9, 0, last_octet);
        AttachmentRecord {
            container_id: container_id.into(),
            container_name: container_id.into(),
            hostname: container_id.into(),
            netns_path: PathBuf::new(),
            endpoints: vec![EndpointRecord {
                network_id: "n1".into(),
                network_name: "proj_default".into(),
                endpoint_id: String::new(),
                ifname: "eth0".into(),
                host_veth: format!("veth{container_id}"),
                address,
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 9, 0, 1),
                mac: String::new(),
                aliases: Vec::new(),
                dns_names: Vec::new(),
                requested_address: String::new(),
            }],
            ports: Vec::new(),
            hosts_file: String::new(),
            resolv_conf: String::new(),
        }
    }

    fn address_for(st: &State, container_id: &str) -> Ipv4Addr {
        let req = AttachRequest {
            container_id: container_id.into(),
            container_name: container_id.into(),
            ..AttachRequest::default()
        };
        plan_endpoint(st, &network(), &Endpoint::default(), &req, &[])
            .expect("an address")
            .address
    }

    #[test]
    fn a_draining_containers_address_is_not_handed_out_until_its_veth_is_gone() {
        let mut st = State::default();
        st.attachments.insert("web".into(), attached("web", 2));
        st.draining.insert("old".into(), attached("old", 3));
        assert_eq!(address_for(&st, "new"), Ipv4Addr::new(10, 9, 0, 4));

        st.draining.shift_remove("old");
        assert_eq!(address_for(&st, "new"), Ipv4Addr::new(10, 9, 0, 3));
    }

    #[test]
    fn a_container_attached_again_may_keep_its_own_address() {
        let mut st = State::default();
        st.attachments.insert("web".into(), attached("web", 2));
        assert_eq!(address_for(&st, "web"), Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(address_for(&st, "db"), Ipv4Addr::new(10, 9, 0, 3));
    }
}
