//! Issue 7's firewall acceptance, on a host firewall as `dockerd` leaves it: `FORWARD` policy
//! `DROP` in both iptables backends (nf_tables and legacy), Docker's chains, `br_netfilter`
//! sending bridged frames through them. All of it in a network namespace of the test's own (the
//! engine runs there), so the host's firewall is never touched. A second namespace behind a
//! veth plays "the outside", reachable only through masquerading.
//!
//! Proves: service-to-service by name, outbound (masqueraded) and replies, published port on
//! 127.0.0.1, no access to another berth network; `kill -9` of the engine and a restart keep
//! the rules without duplicating them; a container start with nothing changed rewrites
//! nothing; a firewall reload that took berth's jump away is repaired by the next container
//! start; after `down` nothing of berth's is left in `iptables-save`
//! (both backends) or `nft list ruleset`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::project::{unique_name, TestProject};
use common::registry::{free_port, TestRegistry};

const OUTSIDE_ADDR: &str = "198.18.0.2";
const GATEWAY_ADDR: &str = "198.18.0.1";

fn sh(command: &mut Command) -> (bool, String) {
    let out = command.output().expect("run command");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Namespaces (and the processes in them) made by the test; removed on drop.
struct Namespaces {
    host: String,
    outside: String,
    web: Option<Child>,
    _www: tempfile::TempDir,
}

impl Namespaces {
    fn new() -> Self {
        let host = unique_name("bfwh");
        let outside = unique_name("bfwo");
        let ns = Namespaces {
            host,
            outside,
            web: None,
            _www: tempfile::tempdir().expect("temp dir"),
        };
        for name in [&ns.host, &ns.outside] {
            let (ok, out) = sh(Command::new("ip").args(["netns", "add", name]));
            assert!(ok, "ip netns add {name}: {out}");
        }
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.host)
    }

    /// Run a shell script in the engine's namespace.
    fn run(&self, script: &str) -> (bool, String) {
        sh(Command::new("ip").args(["netns", "exec", &self.host, "sh", "-c", script]))
    }

    fn must(&self, script: &str) -> String {
        let (ok, out) = self.run(script);
        assert!(ok, "{script}: {out}");
        out
    }

    /// Loopback, br_netfilter on, a veth to "the outside" with a web server there, and the
    /// filter `dockerd` leaves behind in both iptables backends.
    fn set_up(&mut self) {
        let veth = format!("v{}", std::process::id() % 100_000);
        self.must(&format!(
            "set -e
             ip link set lo up
             sysctl -qw net.bridge.bridge-nf-call-iptables=1
             ip link add {veth}a type veth peer name {veth}b
             ip link set {veth}b netns {outside}
             ip addr add {GATEWAY_ADDR}/30 dev {veth}a
             ip link set {veth}a up
             ip netns exec {outside} ip link set lo up
             ip netns exec {outside} ip addr add {OUTSIDE_ADDR}/30 dev {veth}b
             ip netns exec {outside} ip link set {veth}b up",
            outside = self.outside
        ));
        assert_eq!(
            self.must("cat /proc/sys/net/bridge/bridge-nf-call-iptables")
                .trim(),
            "1"
        );
        for ipt in ["iptables-nft", "iptables-legacy"] {
            self.must(&format!(
                "set -e
                 {ipt} -P FORWARD DROP
                 for c in DOCKER-USER DOCKER-FORWARD DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2; do {ipt} -N $c; done
                 {ipt} -A FORWARD -j DOCKER-USER
                 {ipt} -A FORWARD -j DOCKER-FORWARD
                 {ipt} -A DOCKER-USER -j RETURN
                 {ipt} -A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
                 {ipt} -A DOCKER-FORWARD -o docker0 -j DOCKER
                 {ipt} -A DOCKER-FORWARD -i docker0 -j ACCEPT
                 {ipt} -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
                 {ipt} -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
                 {ipt} -A DOCKER ! -i docker0 -o docker0 -j DROP"
            ));
        }
        std::fs::write(self._www.path().join("index.html"), "from the outside\n").unwrap();
        let web = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.outside,
                "busybox",
                "httpd",
                "-f",
                "-p",
            ])
            .arg(format!("{OUTSIDE_ADDR}:8080"))
            .arg("-h")
            .arg(self._www.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the outside web server");
        self.web = Some(web);
    }

    /// Every line of both backends' `iptables-save` and of `nft list ruleset` that mentions
    /// berth (its chain, its tags, its tables), without packet counters, sorted (a re-made table
    /// moves to the end of the ruleset).
    fn berth_rules(&self) -> Vec<String> {
        let dump = self.must("iptables-nft-save; iptables-legacy-save; nft list ruleset");
        let mut lines: Vec<String> = dump
            .lines()
            .filter(|l| l.to_lowercase().contains("berth"))
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                match words.iter().position(|w| *w == "counter") {
                    Some(i) if words.len() > i + 4 => {
                        [&words[..i], &words[i + 5..]].concat().join(" ")
                    }
                    _ => words.join(" "),
                }
            })
            .collect();
        lines.sort();
        lines
    }

    /// berth's nftables tables with their kernel handles (`table ip berth-br-… { # handle N`):
    /// a table made again gets a new handle, so equal lists mean nothing was rewritten.
    fn berth_table_handles(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .must("nft -a list ruleset")
            .lines()
            .filter(|l| l.starts_with("table ip berth-"))
            .map(str::to_string)
            .collect();
        tables.sort();
        tables
    }

    fn count(&self, save: &str, needle: &str) -> usize {
        self.must(save)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut web) = self.web.take() {
            let _ = web.kill();
            let _ = web.wait();
        }
        for name in [&self.host, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn compose(image: &str, mark: &str, port: u16) -> String {
    let service = |command: &str, network: &str, extra: &str| {
        format!(
            "    image: {image}\n    environment:\n      BERTH_TEST_MARK: {mark}\n    stop_grace_period: 1s\n    command: [\"sh\", \"-c\", \"{command}\"]\n    networks: [{network}]\n{extra}"
        )
    };
    let web = "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w";
    format!(
        "services:\n  server:\n{}  client:\n{}  other:\n{}  probe:\n{}networks:\n  front: {{}}\n  back: {{}}\n",
        service(web, "front", &format!("    ports:\n      - \"127.0.0.1:{port}:80\"\n")),
        service("exec sleep 3600", "front", ""),
        service(web, "back", ""),
        service("exec sleep 3600", "back", ""),
    )
}

/// `wget` from a service's container: Ok(body) or Err(output).
fn fetch(project: &TestProject, service: &str, url: &str) -> Result<String, String> {
    // `timeout`, not wget's `-T`: this busybox's wget crashes (SIGSEGV) with `-T`.
    let out = project.berth(&["exec", "-T", service, "timeout", "3", "wget", "-qO-", url]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn fetch_eventually(project: &TestProject, service: &str, url: &str) -> String {
    let mut last = String::new();
    for _ in 0..20 {
        match fetch(project, service, url) {
            Ok(body) => return body,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{service} could not fetch {url}: {last}");
}

/// Start the project's engine inside the namespace: the CLI starts it on first use, and it
/// inherits the CLI's network namespace; later CLI calls reach it over its socket.
fn start_engine_in(ns: &Namespaces, project: &TestProject) {
    let (ok, out) = sh(Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["-p", &project.name, "ps"])
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .stdin(Stdio::null()));
    assert!(ok, "berth ps in the namespace: {out}");
    let pid = project.engine_pid().expect("engine started");
    let engine_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(engine_ns, ours, "the engine runs in the test's namespace");
}

fn kill_engine(project: &TestProject) {
    let pid = project.engine_pid().expect("engine runs");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    project
        .eventually(Duration::from_secs(10), || {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        })
        .expect("engine gone after SIGKILL");
}

#[test]
fn forwarding_works_under_dockers_firewall_and_leaves_nothing() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("fw/busybox", "1");
    let mut ns = Namespaces::new();
    ns.set_up();
    let port = free_port();
    let project = TestProject::new("fw", "");
    project.write_compose(&compose(&image, &project.name, port));

    // Pull with an engine in the host namespace (the registry listens on its loopback), then
    // move the engine into the test's namespace.
    project.ok(&["pull"]);
    project.stop_engine();
    start_engine_in(&ns, &project);
    project.ok(&["up", "-d"]);

    // Inside a network, by service name, through br_netfilter and FORWARD DROP.
    let server = fetch_eventually(&project, "client", "http://server/");
    assert!(
        !server.trim().is_empty(),
        "server answered with its hostname"
    );
    // Out through the masquerade: the outside has no route back to the container subnet.
    assert_eq!(
        fetch_eventually(&project, "client", &format!("http://{OUTSIDE_ADDR}:8080/")),
        "from the outside\n"
    );
    // The published port on the namespace's loopback.
    let (ok, body) = ns.run(&format!(
        "timeout 3 busybox wget -qO- http://127.0.0.1:{port}/"
    ));
    assert!(ok && body == server, "published port: {body}");
    // Another berth network is out of reach, though its server answers on its own network.
    let other_ip = project.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &format!("{}-other-1", project.name),
    ]);
    let other_url = format!("http://{}/", other_ip.trim());
    fetch_eventually(&project, "probe", &other_url);
    let crossed = fetch(&project, "client", &other_url);
    assert!(crossed.is_err(), "front reached back: {crossed:?}");

    // Three accepts per network (inside, out, replies) in each backend, one jump each.
    let rules = ns.berth_rules();
    for save in ["iptables-nft-save", "iptables-legacy-save"] {
        assert_eq!(ns.count(save, "--comment \"berth:br-"), 6, "{rules:#?}");
        assert_eq!(ns.count(save, "-A FORWARD -j BERTH-FORWARD"), 1);
    }

    // kill -9 and restart: the restore finds the rules and adds none.
    kill_engine(&project);
    start_engine_in(&ns, &project);
    assert_eq!(ns.berth_rules(), rules, "rules after a crash and restart");
    fetch_eventually(&project, "client", "http://server/");

    // A container start while nothing changed in the host's filter rewrites nothing (no
    // survey, no table rewrite): the tables keep their handles and the rules stay as they were.
    let tables = ns.berth_table_handles();
    assert!(tables.len() >= 2, "one table per network: {tables:?}");
    project.ok(&["restart", "-t", "1", "client"]);
    fetch_eventually(&project, "client", "http://server/");
    assert_eq!(
        ns.berth_table_handles(),
        tables,
        "tables after a container start"
    );
    assert_eq!(ns.berth_rules(), rules, "rules after a container start");

    // A firewall reload that drops berth's jump breaks forwarding; the next container start
    // puts it back.
    ns.must("iptables-nft -D FORWARD -j BERTH-FORWARD");
    assert!(fetch(&project, "client", "http://server/").is_err());
    project.ok(&["restart", "-t", "1", "server"]);
    fetch_eventually(&project, "client", "http://server/");
    assert_eq!(ns.berth_rules(), rules, "rules after the repair");

    project.ok(&["down", "-t", "1"]);
    assert_eq!(
        ns.berth_rules(),
        Vec::<String>::new(),
        "nothing of berth's left"
    );
    // The host's own policy is as it was.
    assert_eq!(ns.count("iptables-nft-save", ":FORWARD DROP"), 1);
    assert_eq!(ns.count("iptables-legacy-save", ":FORWARD DROP"), 1);
}

/// A hand-written nftables firewall (another table's `forward` chain with policy drop) is not
/// edited, but named in the network's warning with the rules that let the network through.
#[test]
fn another_tables_drop_policy_is_named_with_the_rules_to_add() {
    let ns = Namespaces::new();
    ns.must(
        "ip link set lo up
         nft add table inet hostfw
         nft add chain inet hostfw forward '{ type filter hook forward priority 0; policy drop; }'",
    );
    let roots = tempfile::tempdir().expect("temp dir");
    let run_root = roots.path().join("run");
    let mut engine = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("engine")
        .arg("--data-root")
        .arg(roots.path().join("data"))
        .arg("--run-root")
        .arg(&run_root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the engine in the namespace");
    let socket = run_root.join("berth.sock");
    let api = |method: &str, path: &str, body: &str| {
        sh(Command::new("curl").args([
            "-sS",
            "--unix-socket",
            &socket.to_string_lossy(),
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &format!("http://berth{path}"),
        ]))
        .1
    };
    let mut up = false;
    for _ in 0..100 {
        if api("GET", "/_ping", "") == "OK" {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = up.then(|| api("POST", "/networks/create", r#"{"Name":"fwwarn"}"#));
    let ruleset = ns.must("nft list table inet hostfw");
    if up {
        api("DELETE", "/networks/fwwarn", "");
    }
    let _ = engine.kill();
    let _ = engine.wait();

    let created: serde_json::Value =
        serde_json::from_str(&created.expect("engine answered")).expect("JSON answer");
    let id = created["Id"].as_str().expect("network id");
    let bridge = format!("br-{}", &id[..12]);
    let warning = created["Warning"].as_str().unwrap_or_default();
    let add_in = format!("nft insert rule inet hostfw forward iifname \"{bridge}\" accept");
    assert!(warning.contains(&add_in), "{warning}");
    assert!(
        warning.contains(&format!(
            "oifname \"{bridge}\" ct state established,related accept"
        )),
        "{warning}"
    );
    assert!(!ruleset.contains(&bridge), "hostfw left alone: {ruleset}");
    assert!(ns.berth_rules().is_empty(), "{:#?}", ns.berth_rules());
}
