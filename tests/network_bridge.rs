//! Bridge networks against the real kernel: subnets, bridges, veths, namespaces, service DNS
//! checked with busybox's resolver, published ports checked with curl, and that nothing is left
//! behind. Needs root (as the whole suite does).

#[path = "common/precondition.rs"]
mod precondition;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth::network::{
    AddressPool, AttachRequest, Endpoint, HostPort, IpamSpec, NetworkError, NetworkManager,
    NetworkOptions, NetworkSpec, RequestedAddress,
};
use berth::paths::EngineRoots;
use indexmap::IndexMap;

/// Everything a test made, removed on drop even when the test fails half-way.
struct Made {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    roots: EngineRoots,
    bridges: Vec<String>,
    netns: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Made {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let roots = EngineRoots::new(root.join("data"), root.join("run"));
        Made {
            _tmp: tmp,
            root,
            roots,
            bridges: vec![],
            netns: vec![],
            children: vec![],
        }
    }

    fn manager(&self) -> NetworkManager {
        // No forwarding: tests never send DNS traffic off the machine.
        NetworkManager::open_with(
            &self.roots,
            NetworkOptions {
                upstream_dns: Some(vec![]),
                outbound_nat: false,
            },
        )
        .expect("open network manager")
    }

    fn netns_path(&mut self, name: &str) -> PathBuf {
        let p = self.roots.netns_dir().join(name);
        self.netns.push(p.clone());
        p
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.netns {
            if mounted(ns) {
                let _ = Command::new("umount").arg("-l").arg(ns).status();
            }
            let _ = std::fs::remove_file(ns);
        }
        for b in &self.bridges {
            // The default bridge cannot be removed through the manager: its filter goes here.
            let _ = berth::network::firewall::remove(b);
            if link_exists(b) {
                let _ = Command::new("ip").args(["link", "del", b]).status();
            }
        }
    }
}

/// The second octet of a 10.x.0.0/16 that no route or address of the host uses.
fn unused_10_slash16() -> u8 {
    let (_, routes) = sh(Command::new("ip").args(["-4", "route", "show", "table", "all"]));
    let (_, addrs) = sh(Command::new("ip").args(["-4", "-o", "addr"]));
    for _ in 0..200 {
        let b = 100 + (rand::random::<u8>() % 150);
        let prefix = format!("10.{b}.");
        if !routes.contains(&prefix) && !addrs.contains(&prefix) {
            return b;
        }
    }
    panic!("no unused 10.x.0.0/16 on this host");
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run command");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn links() -> String {
    sh(Command::new("ip").args(["-o", "link"])).1
}

fn link_exists(name: &str) -> bool {
    links().lines().any(|l| {
        l.split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next() == Some(name))
            == Some(true)
    })
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains(&path.display().to_string())
}

/// Run `script` with `sh` inside the namespace at `ns`, with the container's resolv.conf and
/// hosts bind-mounted over the host's in a private mount namespace (what the container sees).
fn in_container(ns: &Path, etc: &Path, script: &str) -> (bool, String) {
    let full = format!(
        "mount --bind {etc}/resolv.conf /etc/resolv.conf && mount --bind {etc}/hosts /etc/hosts && {script}",
        etc = etc.display()
    );
    sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "/bin/busybox",
            "sh",
            "-c",
        ])
        .arg(full))
}

fn write_etc(dir: &Path, a: &berth::network::Attachment) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("resolv.conf"), &a.resolv_conf).unwrap();
    std::fs::write(dir.join("hosts"), &a.hosts_file).unwrap();
}

fn net_req(name: &str) -> NetworkSpec {
    let mut labels = IndexMap::new();
    labels.insert(
        "com.docker.compose.project".to_string(),
        "nettest".to_string(),
    );
    NetworkSpec {
        name: name.into(),
        driver: "bridge".into(),
        labels,
        ..Default::default()
    }
}

fn attach_req(id: &str, name: &str, ns: &Path, networks: &[(&str, &[&str])]) -> AttachRequest {
    let mut nets = IndexMap::new();
    for (net, aliases) in networks {
        nets.insert(
            net.to_string(),
            Endpoint {
                aliases: Some(aliases.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
        );
    }
    AttachRequest {
        container_id: format!("{id:0<64}"),
        container_name: name.into(),
        hostname: name.into(),
        netns_path: ns.to_path_buf(),
        networks: nets,
        port_bindings: HashMap::new(),
        extra_hosts: vec![],
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_detach_remove_leaves_nothing() {
    let mut made = Made::new();
    let mgr = made.manager();
    let (na, nb) = (unique("neta"), unique("netb"));
    let a = mgr.create(net_req(&na)).await.expect("create a");
    let b = mgr.create(net_req(&nb)).await.expect("create b");
    assert_eq!(a.id.len(), 64);
    let (ra, rb) = (mgr.inspect(&na).unwrap(), mgr.inspect(&a.id[..10]).unwrap());
    assert_eq!(rb.name, na, "an ID prefix finds the network");
    let rb = mgr.inspect(&b.id).unwrap();
    let bra = format!("br-{}", &a.id[..12]);
    let brb = format!("br-{}", &b.id[..12]);
    made.bridges.extend([bra.clone(), brb.clone()]);
    assert!(
        link_exists(&bra) && link_exists(&brb),
        "bridges exist:\n{}",
        links()
    );
    let (sa, sb) = (&ra.ipam.config[0].subnet, &rb.ipam.config[0].subnet);
    assert_ne!(sa, sb);
    let addrs = sh(Command::new("ip").args(["-o", "-4", "addr", "show", "dev", &bra])).1;
    assert!(
        addrs.contains(&format!("{}/", ra.ipam.config[0].gateway)),
        "gateway on bridge: {addrs}"
    );
    assert_eq!(ra.labels["com.docker.compose.project"], "nettest");

    // Name clash, Docker's words.
    let dup = mgr.create(net_req(&na)).await.unwrap_err();
    assert!(matches!(dup, NetworkError::Conflict(_)), "{dup}");
    assert_eq!(
        dup.to_string(),
        format!("network with name {na} already exists")
    );

    // Two containers; the second also on network b with a static address.
    let ns1 = made.netns_path("c1");
    let ns2 = made.netns_path("c2");
    let at1 = mgr
        .attach(attach_req("c1", "proj-web-1", &ns1, &[(&na, &["web"])]))
        .await
        .expect("attach c1");
    let mut r2 = attach_req("c2", "proj-client-1", &ns2, &[(&na, &[]), (&nb, &[])]);
    let gw_b = rb.ipam.config[0].gateway.clone();
    let static_b = format!("{}.77", gw_b.rsplit_once('.').unwrap().0);
    r2.networks[1].requested = Some(RequestedAddress {
        ipv4_address: static_b.clone(),
    });
    r2.extra_hosts = vec!["db.example:10.9.9.9".into()];
    let at2 = mgr.attach(r2).await.expect("attach c2");

    let e1 = &at1.endpoints[&na];
    assert!(e1.ip_address.ends_with(".2"), "first free address: {e1:?}");
    assert_eq!(e1.gateway, ra.ipam.config[0].gateway);
    assert!(e1.mac_address.starts_with("02:42:"));
    assert_eq!(e1.aliases.as_deref(), Some(&["web".to_string()][..]));
    assert!(e1
        .dns_names
        .as_ref()
        .unwrap()
        .contains(&"proj-web-1".to_string()));
    assert!(at2.endpoints[&na].ip_address.ends_with(".3"));
    assert_eq!(at2.endpoints[&nb].ip_address, static_b);
    assert!(at2.hosts_file.contains("10.9.9.9\tdb.example"));
    assert!(at2
        .hosts_file
        .contains(&format!("{}\tproj-client-1", at2.endpoints[&na].ip_address)));
    assert!(at2
        .resolv_conf
        .starts_with(&format!("nameserver {}\n", e1.gateway)));

    // Inside the namespace: eth0 with the address and MAC, eth1 on b, default route, lo up.
    let (_, inside) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns2.display()))
        .args(["ip", "-o", "addr"]));
    assert!(
        inside.contains(&format!("eth0    inet {}/", at2.endpoints[&na].ip_address)),
        "{inside}"
    );
    assert!(
        inside.contains(&format!("eth1    inet {static_b}/")),
        "{inside}"
    );
    assert!(inside.contains("lo    inet 127.0.0.1/8"), "{inside}");
    let (_, route) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns2.display()))
        .args(["ip", "route", "show", "default"]));
    assert!(
        route.contains(&format!("default via {}", e1.gateway)),
        "{route}"
    );
    // The two containers reach each other over the bridge.
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns2.display()))
        .args(["/bin/busybox", "ping", "-c", "1", "-W", "2", &e1.ip_address]));
    assert!(ok, "ping over the bridge: {out}");

    // The network lists its endpoints; removing it while in use is refused.
    let listed = mgr.inspect(&na).unwrap();
    assert_eq!(listed.containers.len(), 2);
    let busy = mgr.remove(&na).await.unwrap_err();
    assert!(matches!(busy, NetworkError::Conflict(_)), "{busy}");
    assert!(busy
        .to_string()
        .starts_with(&format!("error while removing network: network {na} id")));
    assert!(busy.to_string().ends_with("has active endpoints"));

    // A second manager on the same roots (engine restart) sees everything.
    drop(mgr);
    let mgr = made.manager();
    assert_eq!(mgr.inspect(&na).unwrap().containers.len(), 2);
    let problems = mgr.restore().await;
    assert!(problems.is_empty(), "{problems:?}");

    let veths: Vec<String> = links()
        .lines()
        .filter(|l| l.contains(&format!("master {bra}")) || l.contains(&format!("master {brb}")))
        .map(str::to_string)
        .collect();
    assert_eq!(veths.len(), 3, "three host veth ends: {veths:?}");

    mgr.detach(&format!("{:0<64}", "c1"))
        .await
        .expect("detach c1");
    mgr.detach(&format!("{:0<64}", "c1"))
        .await
        .expect("detach is idempotent");
    mgr.detach(&format!("{:0<64}", "c2"))
        .await
        .expect("detach c2");
    for ns in [&ns1, &ns2] {
        assert!(!ns.exists(), "netns file {} removed", ns.display());
        assert!(!mounted(ns), "netns {} unmounted", ns.display());
    }
    let after = links();
    assert!(!after.contains(&format!("master {bra}")) && !after.contains(&format!("master {brb}")));
    mgr.remove(&na).await.expect("remove a");
    mgr.remove(&b.id).await.expect("remove b");
    // The bridges themselves are deleted in the background; `settle` waits for that.
    mgr.settle().await;
    assert!(
        !link_exists(&bra) && !link_exists(&brb),
        "bridges gone:\n{}",
        links()
    );
    let state_files: Vec<_> = std::fs::read_dir(made.roots.networks_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(state_files.is_empty());
    assert!(mgr
        .inspect(&na)
        .unwrap_err()
        .to_string()
        .contains("not found"));
    let _ = &made.root;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_named_and_leave_nothing() {
    let mut made = Made::new();
    let mgr = made.manager();
    let name = unique("netbad");
    let mut req = net_req(&name);
    req.ipam = Some(IpamSpec {
        driver: String::new(),
        config: vec![AddressPool {
            subnet: "10.250.0.0".into(),
            ..Default::default()
        }],
    });
    let err = mgr.create(req).await.unwrap_err();
    assert!(matches!(err, NetworkError::BadRequest(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("network {name}: invalid subnet \"10.250.0.0\": expected an IPv4 CIDR such as 172.30.0.0/16")
    );
    let mut req = net_req(&name);
    req.driver = "overlay".into();
    assert!(mgr
        .create(req)
        .await
        .unwrap_err()
        .to_string()
        .contains("\"overlay\""));
    assert!(mgr.list().iter().all(|n| n.name != name));

    // Attach to an unknown network: error, and no namespace file made.
    let ns = made.netns_path("bad1");
    let err = mgr
        .attach(attach_req("bad1", "x", &ns, &[("no-such-net", &[])]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "network no-such-net not found");
    assert!(!ns.exists());

    // `none`: a namespace with only lo, no endpoints.
    let ns = made.netns_path("none1");
    let at = mgr
        .attach(attach_req("none1", "lonely", &ns, &[("none", &[])]))
        .await
        .expect("attach none");
    assert!(at.endpoints.is_empty());
    let (_, inside) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "link"]));
    assert_eq!(inside.lines().count(), 1, "only lo: {inside}");
    mgr.detach(&format!("{:0<64}", "none1")).await.unwrap();
    assert!(!ns.exists() && !mounted(&ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_with_busybox_and_http_flows_by_name() {
    let mut made = Made::new();
    let mgr = made.manager();
    let net = unique("netdns");
    let created = mgr.create(net_req(&net)).await.expect("create");
    made.bridges.push(format!("br-{}", &created.id[..12]));
    let gw = mgr.inspect(&net).unwrap().ipam.config[0].gateway.clone();

    let ns_srv = made.netns_path("srv");
    let ns_cli = made.netns_path("cli");
    let srv = mgr
        .attach(attach_req(
            "srv",
            "proj-server-1",
            &ns_srv,
            &[(&net, &["server"])],
        ))
        .await
        .expect("attach server");
    let cli = mgr
        .attach(attach_req(
            "cli",
            "proj-client-1",
            &ns_cli,
            &[(&net, &["client"])],
        ))
        .await
        .expect("attach client");
    let srv_ip = srv.endpoints[&net].ip_address.clone();
    let cli_ip = cli.endpoints[&net].ip_address.clone();

    // busybox nslookup straight at the server: alias, container name, and the reverse.
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns_cli.display()))
        .args(["/bin/busybox", "nslookup", "server", &gw]));
    assert!(ok && out.contains(&srv_ip), "nslookup server: {out}");
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns_srv.display()))
        .args(["/bin/busybox", "nslookup", "proj-client-1", &gw]));
    assert!(
        ok && out.contains(&cli_ip),
        "nslookup container name: {out}"
    );
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns_srv.display()))
        .args(["/bin/busybox", "nslookup", "nosuchname", &gw]));
    assert!(!ok && out.contains("NXDOMAIN"), "unknown name fails: {out}");

    // A busybox httpd in the server namespace, fetched by service name from the client.
    let www = made.root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from server\n").unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns_srv.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start httpd");
    made.children.push(child);
    let etc_cli = made.root.join("etc-cli");
    write_etc(&etc_cli, &cli);
    let mut fetched = (false, String::new());
    for _ in 0..30 {
        fetched = in_container(
            &ns_cli,
            &etc_cli,
            "timeout 3 /bin/busybox wget -qO- http://server/",
        );
        if fetched.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fetched.1, "hello from server\n", "wget by name");

    // The same from a root with nothing but busybox and the two files, as in a container built
    // from busybox-static: glibc's built-in resolver talks to the embedded DNS by itself.
    let rootfs = made.root.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::fs::write(rootfs.join("etc/resolv.conf"), &cli.resolv_conf).unwrap();
    std::fs::write(rootfs.join("etc/hosts"), &cli.hosts_file).unwrap();
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns_cli.display()))
        .arg("chroot")
        .arg(&rootfs)
        .args([
            "/bin/busybox",
            "timeout",
            "3",
            "/bin/busybox",
            "wget",
            "-qO-",
            "http://proj-server-1/",
        ]));
    assert!(
        ok && out == "hello from server\n",
        "wget by container name in a bare root: {out}"
    );

    // A container that starts later is found too, by its hostname and alias.
    let ns_late = made.netns_path("late");
    let late = mgr
        .attach(attach_req(
            "late",
            "proj-worker-1",
            &ns_late,
            &[(&net, &["worker"])],
        ))
        .await
        .expect("attach late");
    let (ok, out) = in_container(&ns_cli, &etc_cli, "/bin/busybox nslookup worker");
    assert!(
        ok && out.contains(&late.endpoints[&net].ip_address),
        "late container: {out}"
    );

    // After detach its name is gone.
    mgr.detach(&format!("{:0<64}", "late")).await.unwrap();
    let (_, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns_cli.display()))
        .args(["/bin/busybox", "nslookup", "worker", &gw]));
    assert!(
        out.contains("NXDOMAIN") && !out.contains(&late.endpoints[&net].ip_address),
        "detached name gone: {out}"
    );

    for c in &mut made.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    made.children.clear();
    for c in ["srv", "cli"] {
        mgr.detach(&format!("{c:0<64}")).await.unwrap();
    }
    mgr.remove(&net).await.unwrap();
    mgr.settle().await;
    assert!(!link_exists(&format!("br-{}", &created.id[..12])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_forwarded_to_the_upstream_server() {
    // A fake upstream on loopback that answers every query with 192.0.2.99 (never leaves the
    // machine).
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up_addr: SocketAddr = upstream.local_addr().unwrap();
    upstream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut served = 0;
        while let Ok((n, peer)) = upstream.recv_from(&mut buf) {
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80;
            r[3] = 0x80;
            r[6..8].copy_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
            let _ = upstream.send_to(&r, peer);
            served += 1;
            if served >= 2 {
                break;
            }
        }
        served
    });
    let mut made = Made::new();
    let mgr = NetworkManager::open_with(
        &made.roots,
        NetworkOptions {
            upstream_dns: Some(vec![up_addr]),
            outbound_nat: false,
        },
    )
    .unwrap();
    let net = unique("netfwd");
    let created = mgr.create(net_req(&net)).await.expect("create");
    made.bridges.push(format!("br-{}", &created.id[..12]));
    let gw = mgr.inspect(&net).unwrap().ipam.config[0].gateway.clone();
    let ns = made.netns_path("fwd");
    mgr.attach(attach_req("fwd", "asker", &ns, &[(&net, &[])]))
        .await
        .unwrap();
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args([
            "/bin/busybox",
            "nslookup",
            "-type=a",
            "elsewhere.example",
            &gw,
        ]));
    assert!(ok && out.contains("192.0.2.99"), "forwarded answer: {out}");
    mgr.detach(&format!("{:0<64}", "fwd")).await.unwrap();
    mgr.remove(&net).await.unwrap();
    drop(mgr);
    assert!(fake.join().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_answers_on_loopback_and_conflicts_leave_nothing() {
    let mut made = Made::new();
    let mgr = made.manager();
    let net = unique("netport");
    let created = mgr.create(net_req(&net)).await.expect("create");
    let br = format!("br-{}", &created.id[..12]);
    made.bridges.push(br.clone());

    let ns = made.netns_path("web");
    let mut req = attach_req("web", "proj-web-1", &ns, &[(&net, &["web"])]);
    req.port_bindings.insert(
        "80/tcp".into(),
        Some(vec![HostPort {
            host_ip: "127.0.0.1".into(),
            host_port: String::new(),
        }]),
    );
    req.port_bindings.insert(
        "7777/udp".into(),
        Some(vec![HostPort {
            host_ip: "127.0.0.1".into(),
            host_port: String::new(),
        }]),
    );
    let at = mgr.attach(req).await.expect("attach with port");
    let bound = at.ports["80/tcp"].as_ref().unwrap()[0].clone();

    // UDP: an echo server inside the namespace (a thread of this test that entered it).
    let ns_file = std::fs::File::open(&ns).unwrap();
    let echo = std::thread::spawn(move || {
        nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:7777").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&reply, peer);
        }
    });
    let udp_port: u16 = at.ports["7777/udp"].as_ref().unwrap()[0]
        .host_port
        .parse()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut reply = [0u8; 64];
    let mut got_udp = String::new();
    for _ in 0..10 {
        client.send_to(b"ping", ("127.0.0.1", udp_port)).unwrap();
        if let Ok(n) = client.recv(&mut reply) {
            got_udp = String::from_utf8_lossy(&reply[..n]).into_owned();
            break;
        }
    }
    assert_eq!(got_udp, "echo:ping", "udp through the published port");
    echo.join().unwrap();
    assert_eq!(bound.host_ip, "127.0.0.1");
    let port: u16 = bound.host_port.parse().unwrap();
    assert!(port > 0);

    let www = made.root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "published\n").unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(&www)
        .spawn()
        .expect("httpd");
    made.children.push(child);
    let url = format!("http://127.0.0.1:{port}/");
    let mut got = (false, String::new());
    for _ in 0..30 {
        got = sh(Command::new("curl").args(["-s", "--max-time", "3", &url]));
        if got.0 && !got.1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.1, "published\n", "curl {url}");

    // Another container asking for the same port: Docker's error, nothing made.
    let ns2 = made.netns_path("web2");
    let mut req2 = attach_req("web2", "proj-web-2", &ns2, &[(&net, &[])]);
    req2.port_bindings.insert(
        "80/tcp".into(),
        Some(vec![HostPort {
            host_ip: "127.0.0.1".into(),
            host_port: port.to_string(),
        }]),
    );
    // Count only the links on this test's bridge: other tests running in parallel make and
    // remove links of their own, so a host-wide count would race with them.
    let ports_on_bridge = || {
        sh(Command::new("ip").args(["-o", "link", "show", "master", &br]))
            .1
            .lines()
            .count()
    };
    let links_before = ports_on_bridge();
    let err = mgr.attach(req2).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
    );
    assert!(!ns2.exists());
    assert_eq!(ports_on_bridge(), links_before);
    assert_eq!(mgr.inspect(&net).unwrap().containers.len(), 1);
    assert!(mgr.attachment(&format!("{:0<64}", "web2")).is_none());

    // Detach closes the port.
    for c in &mut made.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    made.children.clear();
    mgr.detach(&format!("{:0<64}", "web")).await.unwrap();
    // What a user notices: nothing answers on the port any more. (Binding the port again is not
    // the check: after the release, a client socket of another test or process may get the same
    // number as its ephemeral source port and keep it in TIME_WAIT for a minute.)
    let refused = || {
        matches!(
            std::net::TcpStream::connect(("127.0.0.1", port)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !refused() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused(), "port {port} still answers after detach");
    mgr.remove(&net).await.unwrap();
    mgr.settle().await;
    assert!(!link_exists(&br));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_ip_range_and_default_bridge() {
    let mut made = Made::new();
    let mgr = made.manager();

    // `bridge` is made on first use, like Docker's default network, and cannot be removed.
    let ns = made.netns_path("dflt");
    let at = mgr
        .attach(attach_req("dflt", "plain", &ns, &[("bridge", &[])]))
        .await
        .expect("attach to default bridge");
    let dflt = mgr.inspect("bridge").expect("default bridge exists");
    made.bridges.push(format!("br-{}", &dflt.id[..12]));
    assert_eq!(at.endpoints["bridge"].network_id, dflt.id);
    let refused = mgr.remove("bridge").await.unwrap_err();
    assert!(matches!(refused, NetworkError::Forbidden(_)), "{refused}");

    // A network with an IP range hands out addresses from the range.
    let net = unique("netrange");
    // A /16 no route of the host uses, picked now (parallel runs and host networks differ).
    let b = unused_10_slash16();
    let (subnet, range, gateway) = (
        format!("10.{b}.0.0/16"),
        format!("10.{b}.5.0/24"),
        format!("10.{b}.0.254"),
    );
    let mut req = net_req(&net);
    req.ipam = Some(IpamSpec {
        driver: String::new(),
        config: vec![AddressPool {
            subnet: subnet.clone(),
            ip_range: range,
            gateway: gateway.clone(),
        }],
    });
    let created = mgr.create(req).await.expect("create with range");
    made.bridges.push(format!("br-{}", &created.id[..12]));
    let ep = mgr
        .connect(
            &format!("{:0<64}", "dflt"),
            &net,
            Endpoint {
                aliases: Some(vec!["ranged".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("connect");
    // Docker reserves only the subnet's network and broadcast addresses, not the range's.
    assert_eq!(ep.ip_address, format!("10.{b}.5.0"));
    assert_eq!(ep.gateway, gateway);
    let (_, inside) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "-4", "addr"]));
    assert!(
        inside.contains(&format!("eth1    inet 10.{b}.5.0/16")),
        "{inside}"
    );
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["/bin/busybox", "nslookup", "ranged", &gateway]));
    assert!(
        ok && out.contains(&format!("10.{b}.5.0")),
        "connected name resolves: {out}"
    );
    assert_eq!(mgr.inspect(&net).unwrap().containers.len(), 1);
    let again = mgr
        .connect(&format!("{:0<64}", "dflt"), &net, Endpoint::default())
        .await
        .unwrap_err();
    assert!(matches!(again, NetworkError::Forbidden(_)), "{again}");

    mgr.disconnect(&format!("{:0<64}", "dflt"), &net)
        .await
        .expect("disconnect");
    let (_, inside) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "link"]));
    assert!(!inside.contains("eth1"), "{inside}");
    assert!(mgr.inspect(&net).unwrap().containers.is_empty());
    mgr.remove(&net).await.expect("remove ranged network");

    mgr.detach(&format!("{:0<64}", "dflt")).await.unwrap();
    assert!(!ns.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_ports_and_cleans_dead_namespaces() {
    let mut made = Made::new();
    let mgr = made.manager();
    let net = unique("netrest");
    let created = mgr.create(net_req(&net)).await.expect("create");
    let br = format!("br-{}", &created.id[..12]);
    made.bridges.push(br.clone());
    let ns_live = made.netns_path("live");
    let ns_dead = made.netns_path("dead");
    let mut req = attach_req("live", "proj-live-1", &ns_live, &[(&net, &[])]);
    req.port_bindings.insert(
        "80/tcp".into(),
        Some(vec![HostPort {
            host_ip: "127.0.0.1".into(),
            host_port: String::new(),
        }]),
    );
    let at = mgr.attach(req).await.expect("attach live");
    let port = at.ports["80/tcp"].as_ref().unwrap()[0].host_port.clone();
    let dead = mgr
        .attach(attach_req("dead", "proj-dead-1", &ns_dead, &[(&net, &[])]))
        .await
        .expect("attach dead");
    let dead_ip = dead.endpoints[&net].ip_address.clone();

    // Engine goes away; one container's namespace disappears meanwhile (reboot, crash).
    drop(mgr);
    assert!(sh(Command::new("umount").arg(&ns_dead)).0);
    std::fs::remove_file(&ns_dead).unwrap();

    let www = made.root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "still here\n").unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns_live.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(&www)
        .spawn()
        .expect("httpd");
    made.children.push(child);

    let mgr = made.manager();
    let problems = mgr.restore().await;
    assert!(problems.is_empty(), "{problems:?}");
    let url = format!("http://127.0.0.1:{port}/");
    let mut got = (false, String::new());
    for _ in 0..30 {
        got = sh(Command::new("curl").args(["-s", "--max-time", "3", &url]));
        if got.0 && !got.1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.1, "still here\n", "published port after restore");
    let inspected = mgr.inspect(&net).unwrap();
    assert_eq!(inspected.containers.len(), 1, "dead endpoint forgotten");
    assert!(mgr.attachment(&format!("{:0<64}", "dead")).is_none());
    assert_eq!(
        links()
            .lines()
            .filter(|l| l.contains(&format!("master {br}")))
            .count(),
        1,
        "dead container's veth removed"
    );
    // Its address is free again.
    let ns_new = made.netns_path("new");
    let again = mgr
        .attach(attach_req("new", "proj-new-1", &ns_new, &[(&net, &[])]))
        .await
        .unwrap();
    assert_eq!(again.endpoints[&net].ip_address, dead_ip);

    for c in &mut made.children {
        let _ = c.kill();
        let _ = c.wait();
    }
    made.children.clear();
    for c in ["live", "new"] {
        mgr.detach(&format!("{c:0<64}")).await.unwrap();
    }
    mgr.remove(&net).await.unwrap();
    mgr.settle().await;
    assert!(!link_exists(&br));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_nat_is_one_table_per_network_and_goes_with_it() {
    let mut made = Made::new();
    // The engine's settings: masquerade on (this sets net.ipv4.ip_forward=1, as Docker does).
    let mgr = NetworkManager::open_with(
        &made.roots,
        NetworkOptions {
            upstream_dns: Some(vec![]),
            outbound_nat: true,
        },
    )
    .unwrap();
    let net = unique("netnat");
    let created = mgr.create(net_req(&net)).await.expect("create");
    assert_eq!(created.warning, "", "NAT set up without warnings");
    let br = format!("br-{}", &created.id[..12]);
    made.bridges.push(br.clone());
    let table = format!("berth-{br}");
    let subnet = mgr.inspect(&net).unwrap().ipam.config[0].subnet.clone();
    let (ok, rules) =
        sh(Command::new(precondition::tool("nft")).args(["list", "table", "ip", &table]));
    let guard = NftTable(table.clone());
    assert!(ok, "table exists: {rules}");
    assert!(
        rules.contains("type nat hook postrouting priority srcnat"),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("ip saddr {subnet} oifname != \"{br}\" masquerade")),
        "{rules}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    // The isolation chain: nothing enters the network unless it answers the network's own
    // connection.
    assert!(
        rules.contains("type filter hook forward priority filter; policy accept;"),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("oifname \"{br}\" iifname != \"{br}\"")) && rules.contains("drop"),
        "{rules}"
    );

    // An internal network gets no NAT, and its table drops whatever would leave it.
    let internal = unique("netint");
    let mut req = net_req(&internal);
    req.internal = true;
    let created_int = mgr.create(req).await.unwrap();
    let br_int = format!("br-{}", &created_int.id[..12]);
    made.bridges.push(br_int.clone());
    let table_int = format!("berth-{br_int}");
    let guard_int = NftTable(table_int.clone());
    let (ok, rules_int) = sh(Command::new("nft").args(["list", "table", "ip", &table_int]));
    assert!(ok, "{rules_int}");
    assert!(!rules_int.contains("masquerade"), "{rules_int}");
    assert!(
        rules_int.contains(&format!(
            "iifname \"{br_int}\" oifname != \"{br_int}\" drop"
        )),
        "{rules_int}"
    );

    mgr.remove(&net).await.unwrap();
    mgr.remove(&internal).await.unwrap();
    assert!(
        !sh(Command::new(precondition::tool("nft")).args(["list", "table", "ip", &table])).0,
        "table removed with the network"
    );
    assert!(!sh(Command::new("nft").args(["list", "table", "ip", &table_int])).0);
    drop(guard);
    drop(guard_int);
}

/// Deletes an nftables table on drop if a failed test left it.
struct NftTable(String);

impl Drop for NftTable {
    fn drop(&mut self) {
        if sh(Command::new(precondition::tool("nft")).args(["list", "table", "ip", &self.0])).0 {
            let _ = Command::new(precondition::tool("nft"))
                .args(["delete", "table", "ip", &self.0])
                .status();
        }
    }
}

/// A stop takes the container off the books at once and removes its veths in the background;
/// the next attach does not wait for that, but never gets the address of a veth still on the
/// bridge; removing the network leaves no namespace behind, and after `settle` no veth or bridge
/// is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_detach_is_finished_before_an_attach_or_a_network_remove() {
    let mut made = Made::new();
    let mgr = made.manager();
    let net = unique("netbg");
    let created = mgr.create(net_req(&net)).await.expect("create");
    let br = format!("br-{}", &created.id[..12]);
    made.bridges.push(br.clone());
    let on_bridge = || -> usize {
        links()
            .lines()
            .filter(|l| l.contains(&format!("master {br}")))
            .count()
    };
    let (ns1, ns2) = (made.netns_path("bg1"), made.netns_path("bg2"));
    let first = mgr
        .attach(attach_req("bg1", "proj-bg-1", &ns1, &[(&net, &[])]))
        .await
        .expect("attach bg1");
    assert_eq!(on_bridge(), 1);
    let first_port = bridge_ports(&br).pop().expect("the first veth");

    mgr.detach_in_background(&format!("{:0<64}", "bg1")).await;
    assert!(mgr.attachment(&format!("{:0<64}", "bg1")).is_none());
    assert!(mgr.inspect(&net).unwrap().containers.is_empty());

    let second = mgr
        .attach(attach_req("bg2", "proj-bg-2", &ns2, &[(&net, &[])]))
        .await
        .expect("attach bg2");
    let (first_ip, second_ip) = (
        &first.endpoints[&net].ip_address,
        &second.endpoints[&net].ip_address,
    );
    assert!(
        second_ip != first_ip || !link_exists(&first_port),
        "{second_ip} handed out while the veth that had it is on the bridge:\n{}",
        links()
    );
    assert!(!ns1.exists() && !mounted(&ns1), "old namespace removed");
    mgr.settle().await;
    assert_eq!(on_bridge(), 1, "only the new veth:\n{}", links());

    let ports = bridge_ports(&br);
    assert_eq!(ports.len(), 1, "{ports:?}");
    mgr.detach_in_background(&format!("{:0<64}", "bg2")).await;
    mgr.remove(&net).await.expect("remove");
    assert!(!ns2.exists() && !mounted(&ns2), "namespace removed");
    mgr.settle().await;
    assert!(!link_exists(&br), "bridge gone:\n{}", links());
    assert!(
        ports.iter().all(|p| !link_exists(p)),
        "veth {ports:?} gone:\n{}",
        links()
    );
    let attachments: Vec<_> = std::fs::read_dir(made.roots.networks_dir().join("attachments"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(attachments.is_empty(), "{attachments:?}");
}

fn bridge_ports(bridge: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn ipv4_of(link: &str) -> String {
    sh(Command::new("ip").args(["-4", "-o", "addr", "show", "dev", link])).1
}

/// `remove` returns once nothing can use the network (no record, no address, no accepts, no
/// table), so the same subnet can be taken at once; the bridge is deleted in the background, and
/// an engine that died before that deletes it at its next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_network_frees_its_subnet_at_once_and_its_bridge_even_after_a_crash() {
    let mut made = Made::new();
    let b = unused_10_slash16();
    let subnet = format!("10.{b}.0.0/24");
    let with_subnet = |name: &str| {
        let mut req = net_req(name);
        req.ipam = Some(IpamSpec {
            driver: String::new(),
            config: vec![AddressPool {
                subnet: subnet.clone(),
                ..Default::default()
            }],
        });
        req
    };
    let mgr = made.manager();
    let first = mgr
        .create(with_subnet(&unique("netretire")))
        .await
        .expect("create");
    let br1 = format!("br-{}", &first.id[..12]);
    made.bridges.push(br1.clone());
    mgr.remove(&first.id).await.expect("remove");
    assert!(
        !ipv4_of(&br1).contains(&format!("10.{b}.")),
        "{}",
        ipv4_of(&br1)
    );
    let table = sh(Command::new(precondition::tool("nft")).args(["list", "tables"])).1;
    assert!(!table.contains(&format!("berth-{br1}")), "{table}");

    let second = mgr
        .create(with_subnet(&unique("netretire")))
        .await
        .expect("same subnet again");
    let br2 = format!("br-{}", &second.id[..12]);
    made.bridges.push(br2.clone());
    assert!(
        ipv4_of(&br2).contains(&format!("10.{b}.0.1/24")),
        "{}",
        ipv4_of(&br2)
    );
    mgr.settle().await;
    assert!(!link_exists(&br1), "bridge gone:\n{}", links());

    // A crash between the record's retirement and the bridge delete: the record is in
    // `.removed/`, the bridge still there. The next engine start finishes the job.
    let networks = made.roots.networks_dir();
    std::fs::create_dir_all(networks.join(".removed")).unwrap();
    std::fs::rename(
        networks.join(format!("{}.json", second.id)),
        networks
            .join(".removed")
            .join(format!("{}.json", second.id)),
    )
    .unwrap();
    drop(mgr);
    let mgr = made.manager();
    assert!(
        mgr.inspect(&second.id).is_err(),
        "a retired network is not listed"
    );
    let problems = mgr.restore().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        !link_exists(&br2),
        "orphan bridge deleted at start:\n{}",
        links()
    );
    let left: Vec<_> = std::fs::read_dir(networks.join(".removed"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = berth::network::firewall::remove(&br2);
}
