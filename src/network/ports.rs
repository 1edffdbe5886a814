//! Published ports: a userland proxy in the engine (the docker-proxy model) listening on
//! `HostIp:HostPort` and relaying to the container's address and port — every TCP connection,
//! and every UDP client (by source address, with its own upstream socket, dropped when idle).
//!
//! The listening socket is bound while the container is being attached, so a port that is taken
//! fails the attach at once with Docker's message, before anything else is made. A proxy is
//! what makes `127.0.0.1:PORT` work at all: DNAT does not apply to locally originated loopback
//! traffic without `route_localnet` games.

use std::collections::HashMap;
use std::net::{
    IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;

use super::spec::{HostPort, PortMap};
use super::state::PortRecord;
use super::NetworkError;

/// One requested publication before binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub protocol: String,
    pub container_port: u16,
    pub host_ip: IpAddr,
    /// Inclusive range; `(0, 0)` = any free port.
    pub host_ports: (u16, u16),
}

/// Parse Docker's `PortBindings` map (`"80/tcp" -> [{HostIp, HostPort}]`).
pub fn parse(bindings: &PortMap) -> Result<Vec<PortRequest>, NetworkError> {
    let mut keys: Vec<&String> = bindings.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let container_port: u16 = port.parse().map_err(|_| {
            NetworkError::BadRequest(format!(
                "invalid published port {key:?}: expected PORT/PROTOCOL such as 80/tcp"
            ))
        })?;
        if protocol != "tcp" && protocol != "udp" {
            return Err(NetworkError::BadRequest(format!(
                "published port {key}: protocol {protocol:?} cannot be published: use tcp or udp"
            )));
        }
        let list = bindings.get(key).cloned().flatten().unwrap_or_default();
        for b in list {
            let host_ip: IpAddr = if b.host_ip.is_empty() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                b.host_ip.parse().map_err(|_| {
                    NetworkError::BadRequest(format!(
                        "published port {key}: host IP {:?} is not an IP address",
                        b.host_ip
                    ))
                })?
            };
            let bad_port = || {
                NetworkError::BadRequest(format!(
                    "published port {key}: host port {:?} is not a port or a range like 8000-8010",
                    b.host_port
                ))
            };
            let host_ports = if b.host_port.is_empty() {
                (0, 0)
            } else if let Some((lo, hi)) = b.host_port.split_once('-') {
                let lo: u16 = lo.parse().map_err(|_| bad_port())?;
                let hi: u16 = hi.parse().map_err(|_| bad_port())?;
                if lo == 0 || hi < lo {
                    return Err(bad_port());
                }
                (lo, hi)
            } else {
                let p: u16 = b.host_port.parse().map_err(|_| bad_port())?;
                (p, p)
            };
            out.push(PortRequest {
                protocol: protocol.to_string(),
                container_port,
                host_ip,
                host_ports,
            });
        }
    }
    Ok(out)
}

/// Bind every requested port now; on the first failure the already bound ones are dropped
/// (closed) and the error names the port, in Docker's words.
/// A bound host socket waiting for its proxy.
#[derive(Debug)]
pub enum BoundPort {
    Tcp(StdTcpListener),
    Udp(StdUdpSocket),
}

impl BoundPort {
    fn bind(protocol: &str, addr: SocketAddr) -> std::io::Result<Self> {
        if protocol == "udp" {
            StdUdpSocket::bind(addr).map(BoundPort::Udp)
        } else {
            StdTcpListener::bind(addr).map(BoundPort::Tcp)
        }
    }
    fn local_port(&self) -> std::io::Result<u16> {
        match self {
            BoundPort::Tcp(l) => l.local_addr().map(|a| a.port()),
            BoundPort::Udp(u) => u.local_addr().map(|a| a.port()),
        }
    }
    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            BoundPort::Tcp(l) => l.set_nonblocking(true),
            BoundPort::Udp(u) => u.set_nonblocking(true),
        }
    }
}

pub fn bind_all(requests: &[PortRequest]) -> Result<Vec<(PortRecord, BoundPort)>, NetworkError> {
    let mut out = Vec::new();
    for r in requests {
        out.push(bind_one(r)?);
    }
    Ok(out)
}

fn bind_one(r: &PortRequest) -> Result<(PortRecord, BoundPort), NetworkError> {
    let (lo, hi) = r.host_ports;
    let mut last_err = None;
    for port in lo..=hi {
        match BoundPort::bind(&r.protocol, SocketAddr::new(r.host_ip, port)) {
            Ok(listener) => {
                let actual = listener
                    .local_port()
                    .map_err(|e| NetworkError::Other(format!("published port: {e}")))?;
                listener
                    .set_nonblocking()
                    .map_err(|e| NetworkError::Other(format!("published port: {e}")))?;
                let record = PortRecord {
                    protocol: r.protocol.clone(),
                    container_port: r.container_port,
                    host_ip: r.host_ip.to_string(),
                    host_port: actual,
                };
                return Ok((record, listener));
            }
            Err(e) => last_err = Some((port, e)),
        }
    }
    let (port, e) = last_err.unwrap_or((lo, std::io::Error::from(std::io::ErrorKind::AddrInUse)));
    if e.kind() == std::io::ErrorKind::AddrInUse {
        Err(NetworkError::Conflict(format!(
            "Bind for {}:{port} failed: port is already allocated",
            r.host_ip
        )))
    } else {
        Err(NetworkError::Other(format!(
            "cannot publish port {}:{port}: {e}",
            r.host_ip
        )))
    }
}

/// Bind a port recorded earlier again (engine restart).
pub fn rebind(record: &PortRecord) -> Result<BoundPort, NetworkError> {
    let host_ip: IpAddr = record.host_ip.parse().map_err(|_| {
        NetworkError::Other(format!("recorded host IP {:?} is invalid", record.host_ip))
    })?;
    bind_one(&PortRequest {
        protocol: record.protocol.clone(),
        container_port: record.container_port,
        host_ip,
        host_ports: (record.host_port, record.host_port),
    })
    .map(|(_, l)| l)
}

/// Start relaying `bound` to `target`. Must run inside a tokio runtime.
pub fn spawn_proxy(bound: BoundPort, target: SocketAddr) -> std::io::Result<AbortHandle> {
    match bound {
        BoundPort::Tcp(l) => spawn_tcp_proxy(l, target),
        BoundPort::Udp(u) => spawn_udp_proxy(u, target),
    }
}

fn spawn_tcp_proxy(listener: StdTcpListener, target: SocketAddr) -> std::io::Result<AbortHandle> {
    let listener = TcpListener::from_std(listener)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                // Errors such as EMFILE repeat at once: pause instead of spinning.
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Ok(task.abort_handle())
}

/// Pause after a failed accept/receive before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// docker-proxy's UDP timeout: a client silent this long loses its upstream socket.
const UDP_IDLE: Duration = Duration::from_secs(90);

/// Aborts the per-client reply relays when the proxy itself is aborted.
struct UdpClients(ClientTable);

/// Client address → its upstream socket and the task relaying replies to it.
type ClientTable = Arc<Mutex<HashMap<SocketAddr, (Arc<UdpSocket>, AbortHandle)>>>;

impl Drop for UdpClients {
    fn drop(&mut self) {
        for (_, (_, relay)) in self.0.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            relay.abort();
        }
    }
}

fn spawn_udp_proxy(socket: StdUdpSocket, target: SocketAddr) -> std::io::Result<AbortHandle> {
    let front = Arc::new(UdpSocket::from_std(socket)?);
    let task = tokio::spawn(async move {
        let clients = UdpClients(Arc::new(Mutex::new(HashMap::new())));
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                // Errors such as EMFILE repeat at once: pause instead of spinning.
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            };
            let existing = clients
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&client)
                .map(|(s, _)| s.clone());
            let upstream = match existing {
                Some(s) => s,
                None => {
                    let bind: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
                    let Ok(s) = UdpSocket::bind(bind).await else {
                        continue;
                    };
                    if s.connect(target).await.is_err() {
                        continue;
                    }
                    let s = Arc::new(s);
                    let relay = tokio::spawn(relay_replies(
                        s.clone(),
                        front.clone(),
                        client,
                        clients.0.clone(),
                    ))
                    .abort_handle();
                    clients
                        .0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(client, (s.clone(), relay));
                    s
                }
            };
            let _ = upstream.send(&buf[..n]).await;
        }
    });
    Ok(task.abort_handle())
}

/// Replies from the container back to one client, until the client has been idle too long.
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    clients: ClientTable,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let _ = front.send_to(&buf[..n], client).await;
            }
            Ok(Err(_)) => continue,
            Err(_) => break,
        }
    }
    clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&client);
}

/// Docker's `NetworkSettings.Ports` view of the bound ports.
pub fn to_docker(records: &[PortRecord]) -> PortMap {
    let mut out: PortMap = HashMap::new();
    for r in records {
        out.entry(format!("{}/{}", r.container_port, r.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(HostPort {
                host_ip: r.host_ip.clone(),
                host_port: r.host_port.to_string(),
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_docker_shapes_and_rejects_bad_ones() {
        let mut m = HashMap::new();
        m.insert(
            "80/tcp".to_string(),
            Some(vec![
                HostPort {
                    host_ip: "127.0.0.1".into(),
                    host_port: "8080".into(),
                },
                HostPort {
                    host_ip: "".into(),
                    host_port: "".into(),
                },
            ]),
        );
        let r = parse(&m).unwrap();
        assert_eq!(r[0].host_ports, (8080, 8080));
        assert_eq!(r[1].host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(r[1].host_ports, (0, 0));
        let mut bad = HashMap::new();
        bad.insert("http/tcp".to_string(), None);
        assert_eq!(
            parse(&bad).unwrap_err().to_string(),
            "invalid published port \"http/tcp\": expected PORT/PROTOCOL such as 80/tcp"
        );
    }

    #[test]
    fn taken_port_fails_with_dockers_message() {
        let holder = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let req = PortRequest {
            protocol: "tcp".into(),
            container_port: 80,
            host_ip: "127.0.0.1".parse().unwrap(),
            host_ports: (port, port),
        };
        let err = bind_all(&[req]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        assert!(matches!(err, NetworkError::Conflict(_)), "{err}");
    }
}
