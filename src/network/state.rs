//! What the network manager keeps on disk: one JSON file per network in `networks/<id>.json`,
//! and one per attached container in `networks/attachments/<container id>.json`.
//!
//! Attachments are the single source of truth for addresses in use, endpoints of a network and
//! DNS names, so nothing has to be kept consistent between two files. Every write is atomic
//! (temporary name, rename); network records are fsynced, attachments are not (see
//! [`save_attachment`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::paths::{write_atomic, write_volatile};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub driver: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub ip_range: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub options: IndexMap<String, String>,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointRecord {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    /// Interface name inside the container (`eth0`, `eth1`, …).
    pub ifname: String,
    /// Host end of the veth pair, on the bridge.
    pub host_veth: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Aliases as requested (compose passes the service name here).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Every name that resolves to this endpoint on its network.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Static address as requested, echoed back in `IPAMConfig`.
    #[serde(default)]
    pub requested_address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortRecord {
    /// `tcp` (UDP is not proxied yet).
    pub protocol: String,
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttachmentRecord {
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub netns_path: PathBuf,
    #[serde(default)]
    pub endpoints: Vec<EndpointRecord>,
    #[serde(default)]
    pub ports: Vec<PortRecord>,
    #[serde(default)]
    pub hosts_file: String,
    #[serde(default)]
    pub resolv_conf: String,
}

impl AttachmentRecord {
    /// Address the published ports forward to: the first endpoint's.
    pub fn port_target(&self) -> Option<Ipv4Addr> {
        self.endpoints.first().map(|e| e.address)
    }
}

pub fn network_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Where a removed network's record waits while its bridge is deleted in the background.
pub fn retired_dir(dir: &Path) -> PathBuf {
    dir.join(".removed")
}

pub fn retired_network_path(dir: &Path, id: &str) -> PathBuf {
    network_path(&retired_dir(dir), id)
}

pub fn attachment_path(dir: &Path, container_id: &str) -> PathBuf {
    dir.join("attachments").join(format!("{container_id}.json"))
}

pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// An attachment: atomic but not synced. It describes kernel objects (the pinned namespace,
/// veths) that no reboot keeps, and `restore` drops every attachment whose namespace is not
/// pinned: after a power cut, a lost or torn record (torn ones are skipped when read) is what
/// restore would have removed anyway, while an engine killed with `kill -9` finds the record in
/// the page cache. Saves two fsyncs on every container start.
pub fn save_attachment<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_volatile(path, &bytes)
}

pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every `*.json` record in `dir` that parses; temporary files and foreign files are skipped
/// (returned as warnings so the caller can log them).
pub fn load_all<T: for<'de> Deserialize<'de>>(dir: &Path) -> (Vec<T>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (out, warnings);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push(v),
            Err(e) => warnings.push(format!("skipping {}: {e}", path.display())),
        }
    }
    (out, warnings)
}
