//! Service discovery: an embedded DNS server on every bridge's gateway address, port 53, UDP and
//! TCP (the aardvark-dns model, served from the engine process).
//!
//! A query is answered from the names of the networks the *asking* container is on (found by its
//! source address): container name, aliases (compose's service name), hostname and short ID.
//! Several containers with one alias all appear in the answer. A known name answers every query
//! type authoritatively (no AAAA → an empty NOERROR), so glibc's parallel A/AAAA lookup never
//! waits on the outside world for an internal name. Other names are forwarded to the host's name
//! servers, or get NXDOMAIN when there are none.
//!
//! The packet codec is hand-written: the server needs one question, A and PTR answers and
//! pass-through forwarding, which is less code than adapting a general DNS library to
//! source-scoped answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::AbortHandle;

use super::state::{AttachmentRecord, NetworkRecord};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
/// Pause after a failed accept/receive before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);

/// Names per network, and which networks each container address belongs to.
#[derive(Debug, Default, Clone)]
pub struct DnsTable {
    /// network id → (lower-case name, address)
    names: HashMap<String, Vec<(String, Ipv4Addr)>>,
    /// (network id, container address) → every network id of that container
    member_of: HashMap<(String, Ipv4Addr), Vec<String>>,
    /// address → primary name, for reverse lookups
    reverse: HashMap<(String, Ipv4Addr), String>,
}

impl DnsTable {
    pub fn build<'a>(
        networks: impl Iterator<Item = &'a NetworkRecord>,
        attachments: impl Iterator<Item = &'a AttachmentRecord>,
    ) -> Self {
        let mut t = DnsTable::default();
        // Docker's default bridge has no service discovery: its containers do not resolve each
        // other by name (only user-defined networks have names), so berth's does not either.
        let mut nameless = std::collections::HashSet::new();
        for n in networks {
            t.names.entry(n.id.clone()).or_default();
            if n.options
                .get(super::DEFAULT_BRIDGE_OPTION)
                .map(String::as_str)
                == Some("true")
            {
                nameless.insert(n.id.clone());
            }
        }
        for a in attachments {
            let nets: Vec<String> = a.endpoints.iter().map(|e| e.network_id.clone()).collect();
            for e in &a.endpoints {
                let names = t.names.entry(e.network_id.clone()).or_default();
                if !nameless.contains(&e.network_id) {
                    for name in &e.dns_names {
                        names.push((normalise(name), e.address));
                    }
                }
                t.member_of
                    .insert((e.network_id.clone(), e.address), nets.clone());
                t.reverse
                    .insert((e.network_id.clone(), e.address), a.container_name.clone());
            }
        }
        t
    }

    /// Addresses for `name` as seen by `source` asking on `network`: that network first, then
    /// the asker's other networks. `None` = not a name berth knows.
    pub fn lookup(&self, network: &str, source: Ipv4Addr, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = normalise(name);
        let key = (network.to_string(), source);
        let mut order = vec![network.to_string()];
        if let Some(others) = self.member_of.get(&key) {
            order.extend(others.iter().filter(|n| *n != network).cloned());
        }
        for net in order {
            let found: Vec<Ipv4Addr> = self
                .names
                .get(&net)
                .into_iter()
                .flatten()
                .filter(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .collect();
            if !found.is_empty() {
                let mut unique = Vec::new();
                for a in found {
                    if !unique.contains(&a) {
                        unique.push(a);
                    }
                }
                return Some(unique);
            }
        }
        None
    }

    fn reverse_lookup(&self, network: &str, source: Ipv4Addr, address: Ipv4Addr) -> Option<String> {
        let mut order = vec![network.to_string()];
        if let Some(others) = self.member_of.get(&(network.to_string(), source)) {
            order.extend(others.iter().cloned());
        }
        order
            .into_iter()
            .find_map(|net| self.reverse.get(&(net, address)).cloned())
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The running DNS listeners and the table they answer from.
pub struct DnsService {
    table: Arc<RwLock<DnsTable>>,
    listeners: Mutex<HashMap<String, Vec<AbortHandle>>>,
    upstream: Arc<Vec<SocketAddr>>,
}

impl DnsService {
    pub fn new(upstream: Vec<SocketAddr>) -> Self {
        Self {
            table: Arc::new(RwLock::new(DnsTable::default())),
            listeners: Mutex::new(HashMap::new()),
            upstream: Arc::new(upstream),
        }
    }

    pub fn replace_table(&self, table: DnsTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    pub fn is_listening(&self, network_id: &str) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(network_id)
    }

    /// Serve `network_id` on `gateway:53` (UDP and TCP) unless already serving it.
    pub async fn ensure_listener(
        &self,
        network_id: &str,
        gateway: Ipv4Addr,
    ) -> std::io::Result<()> {
        if self.is_listening(network_id) {
            return Ok(());
        }
        let addr = SocketAddr::new(IpAddr::V4(gateway), 53);
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let tcp = TcpListener::bind(addr).await?;
        let ctx = Arc::new(Ctx {
            network: network_id.to_string(),
            table: self.table.clone(),
            upstream: self.upstream.clone(),
        });
        let udp_task = tokio::spawn(serve_udp(udp, ctx.clone())).abort_handle();
        let tcp_task = tokio::spawn(serve_tcp(tcp, ctx)).abort_handle();
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(network_id.to_string(), vec![udp_task, tcp_task]);
        Ok(())
    }

    pub fn stop_listener(&self, network_id: &str) {
        let handles = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(network_id);
        for h in handles.into_iter().flatten() {
            h.abort();
        }
    }

    pub fn stop_all(&self) {
        let all: Vec<AbortHandle> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for h in all {
            h.abort();
        }
    }
}

struct Ctx {
    network: String,
    table: Arc<RwLock<DnsTable>>,
    upstream: Arc<Vec<SocketAddr>>,
}

async fn serve_udp(socket: Arc<UdpSocket>, ctx: Arc<Ctx>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            // Errors such as EMFILE repeat at once: pause instead of spinning.
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            continue;
        };
        let query = buf[..len].to_vec();
        let socket = socket.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Some(reply) = answer(&ctx, peer, &query).await {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            // Errors such as EMFILE repeat at once: pause instead of spinning.
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&ctx, peer, &query).await else {
                    return;
                };
                let Ok(reply_len) = u16::try_from(reply.len()) else {
                    return;
                };
                if stream.write_all(&reply_len.to_be_bytes()).await.is_err()
                    || stream.write_all(&reply).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The reply to one query, or `None` for garbage not worth an answer.
async fn answer(ctx: &Ctx, peer: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let q = match Question::parse(query) {
        Ok(q) => q,
        Err(Some(rcode)) => return Some(error_reply(query, rcode)),
        Err(None) => return None,
    };
    let source = match peer.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let known = {
        let table = ctx.table.read().unwrap_or_else(|e| e.into_inner());
        if q.qtype == TYPE_PTR {
            parse_reverse_name(&q.name)
                .and_then(|a| table.reverse_lookup(&ctx.network, source, a))
                .map(Known::Ptr)
        } else {
            table
                .lookup(&ctx.network, source, &q.name)
                .map(Known::Addresses)
        }
    };
    match known {
        Some(k) => Some(q.reply(query, 0, &k)),
        None => {
            if ctx.upstream.is_empty() {
                Some(q.reply(query, RCODE_NXDOMAIN, &Known::Addresses(vec![])))
            } else {
                Some(
                    forward(&ctx.upstream, query)
                        .await
                        .unwrap_or_else(|| error_reply(query, RCODE_SERVFAIL)),
                )
            }
        }
    }
}

enum Known {
    Addresses(Vec<Ipv4Addr>),
    Ptr(String),
}

/// Relay a query unchanged to the first upstream server that answers.
async fn forward(upstream: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(server).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(FORWARD_TIMEOUT, sock.recv(&mut buf)).await {
            if n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// The single question of a query.
struct Question {
    name: String,
    qtype: u16,
    /// End offset of the question section in the query.
    end: usize,
}

impl Question {
    /// `Err(Some(rcode))` for a query worth an error answer, `Err(None)` for garbage.
    fn parse(msg: &[u8]) -> Result<Self, Option<u8>> {
        if msg.len() < 12 {
            return Err(None);
        }
        let flags = u16::from_be_bytes([msg[2], msg[3]]);
        if flags & 0x8000 != 0 {
            return Err(None); // a response, not a query
        }
        if (flags >> 11) & 0xf != 0 {
            return Err(Some(RCODE_NOTIMP));
        }
        let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
        if qdcount != 1 {
            return Err(Some(RCODE_FORMERR));
        }
        let mut pos = 12;
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*msg.get(pos).ok_or(Some(RCODE_FORMERR))?);
            pos += 1;
            if len == 0 {
                break;
            }
            if len > 63 {
                return Err(Some(RCODE_FORMERR));
            }
            let label = msg.get(pos..pos + len).ok_or(Some(RCODE_FORMERR))?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            pos += len;
        }
        let fixed = msg.get(pos..pos + 4).ok_or(Some(RCODE_FORMERR))?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        if qclass != CLASS_IN {
            return Err(Some(RCODE_NOTIMP));
        }
        Ok(Question {
            name: labels.join("."),
            qtype,
            end: pos + 4,
        })
    }

    fn reply(&self, query: &[u8], rcode: u8, known: &Known) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.end + 64);
        out.extend_from_slice(&query[..2]);
        // QR, opcode 0, AA, RD copied; RA; rcode.
        let rd = query[2] & 0x01;
        out.push(0x80 | 0x04 | rd);
        out.push(0x80 | (rcode & 0x0f));
        out.extend_from_slice(&1u16.to_be_bytes());
        let answers: Vec<Vec<u8>> = match known {
            Known::Addresses(addrs) if self.qtype == TYPE_A => {
                addrs.iter().map(|a| record(TYPE_A, &a.octets())).collect()
            }
            Known::Ptr(name) if self.qtype == TYPE_PTR => {
                vec![record(TYPE_PTR, &encode_name(name))]
            }
            _ => vec![],
        };
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&query[12..self.end]);
        for a in answers {
            out.extend_from_slice(&a);
        }
        out
    }
}

/// One answer record owned by the question's name (compression pointer to offset 12), TTL 0 so
/// a recreated container's new address is seen at once.
fn record(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = vec![0xc0, 0x0c];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&CLASS_IN.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out
}

fn error_reply(query: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = query[..12.min(query.len())].to_vec();
    out.resize(12, 0);
    out[2] = 0x80 | (query.get(2).copied().unwrap_or(0) & 0x01);
    out[3] = 0x80 | rcode;
    // No sections echoed: counts all zero.
    out[4..12].fill(0);
    out
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4
fn parse_reverse_name(name: &str) -> Option<Ipv4Addr> {
    let lower = normalise(name);
    let rest = lower.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u8>>>()?;
    if parts.len() != 4 {
        return None;
    }
    Some(Ipv4Addr::new(parts[3], parts[2], parts[1], parts[0]))
}

/// Encode a query (for tests and for callers that probe the server).
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&encode_name(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::state::EndpointRecord;

    fn attachment(name: &str, net: &str, ip: Ipv4Addr, aliases: &[&str]) -> AttachmentRecord {
        let mut dns_names = vec![name.to_string()];
        dns_names.extend(aliases.iter().map(|s| s.to_string()));
        AttachmentRecord {
            container_id: format!("{name}-id"),
            container_name: name.into(),
            hostname: name.into(),
            netns_path: "/nonexistent".into(),
            endpoints: vec![EndpointRecord {
                network_id: net.into(),
                network_name: net.into(),
                endpoint_id: "e".into(),
                ifname: "eth0".into(),
                host_veth: "vethx".into(),
                address: ip,
                prefix_len: 16,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                mac: String::new(),
                aliases: vec![],
                dns_names,
                requested_address: String::new(),
            }],
            ports: vec![],
            hosts_file: String::new(),
            resolv_conf: String::new(),
        }
    }

    #[test]
    fn lookup_is_scoped_to_the_askers_networks_and_round_robins_aliases() {
        let a = attachment("p-web-1", "n1", Ipv4Addr::new(10, 0, 0, 2), &["web"]);
        let b = attachment("p-web-2", "n1", Ipv4Addr::new(10, 0, 0, 3), &["web"]);
        let c = attachment("other", "n2", Ipv4Addr::new(10, 1, 0, 2), &[]);
        let t = DnsTable::build(std::iter::empty(), [&a, &b, &c].into_iter());
        let src = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(
            t.lookup("n1", src, "WEB."),
            Some(vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)])
        );
        assert_eq!(t.lookup("n1", src, "other"), None);
        assert_eq!(
            t.lookup("n2", Ipv4Addr::new(10, 1, 0, 2), "other")
                .map(|v| v.len()),
            Some(1)
        );
    }

    #[test]
    fn the_default_bridge_has_no_names() {
        let bridge = NetworkRecord {
            id: "b".into(),
            name: "bridge".into(),
            created: String::new(),
            driver: "bridge".into(),
            bridge: "br-b".into(),
            subnet: "172.17.0.0/16".into(),
            gateway: Ipv4Addr::new(172, 17, 0, 1),
            ip_range: String::new(),
            internal: false,
            attachable: false,
            options: [(
                super::super::DEFAULT_BRIDGE_OPTION.to_string(),
                "true".to_string(),
            )]
            .into_iter()
            .collect(),
            labels: Default::default(),
        };
        let a = attachment("web", "b", Ipv4Addr::new(172, 17, 0, 2), &[]);
        let t = DnsTable::build([&bridge].into_iter(), [&a].into_iter());
        assert_eq!(t.lookup("b", Ipv4Addr::new(172, 17, 0, 3), "web"), None);
    }

    #[test]
    fn codec_answers_a_and_empty_aaaa() {
        let q = encode_query(0x1234, "web", TYPE_A);
        let parsed = Question::parse(&q).map_err(|_| ()).unwrap();
        assert_eq!(parsed.name, "web");
        let r = parsed.reply(&q, 0, &Known::Addresses(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
        let q6 = encode_query(7, "web", 28);
        let p6 = Question::parse(&q6).map_err(|_| ()).unwrap();
        let r6 = p6.reply(&q6, 0, &Known::Addresses(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        assert_eq!(u16::from_be_bytes([r6[6], r6[7]]), 0);
        assert_eq!(
            parse_reverse_name("2.0.0.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        // Truncated question → FORMERR, a response → ignored.
        assert!(matches!(
            Question::parse(&q[..14]),
            Err(Some(RCODE_FORMERR))
        ));
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(matches!(Question::parse(&resp), Err(None)));
    }
}
