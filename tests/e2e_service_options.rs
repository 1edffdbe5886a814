//! Service runtime options end to end through the `berth` CLI, checked from inside the
//! containers as a user would: `read_only` with tmpfs mounts, `extra_hosts` (with
//! `host-gateway`), `shm_size`, `domainname`, `init`, `cap_add`/`cap_drop`, `privileged`,
//! `ulimits`, namespaced `sysctls`, `dns_search`/`dns_opt`, `expose`, `security_opt`; what is refused (a host
//! sysctl, a hard ulimit above the engine's) and `devices`; and a
//! change to an option recreating the container.

mod common;

use std::time::Duration;

use common::project::TestProject;
use common::registry::TestRegistry;

/// The engine's own hard `nofile` limit (it inherits ours): a hard limit above it needs
/// CAP_SYS_RESOURCE, which this host's root lacks.
fn our_hard_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_max
}

/// `CapBnd` of this process: everything a privileged container can get from the engine.
fn our_bounding_set() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string()
}

fn compose(image: &str, mark: &str, nofile_hard: u64, too_high: u64) -> String {
    format!(
        r#"
x-common: &common
  image: {image}
  environment:
    BERTH_TEST_MARK: {mark}
services:
  readonly:
    <<: *common
    read_only: true
    tmpfs:
      - /scratch:size=1m,exec
    volumes:
      - type: tmpfs
        target: /cache
        tmpfs:
          size: 2097152
          mode: 0o1770
    command: ["sh", "-c", "touch /rootfile 2>/dev/null && echo root-writable || echo root-readonly; touch /scratch/f && echo scratch-writable; df -k /scratch | tail -n1; df -k /cache | tail -n1; stat -c 'cache-mode %a' /cache; for d in /scratch /cache; do printf '#!/bin/sh\\necho exec-ok' > $$d/x.sh; chmod +x $$d/x.sh; echo $$d $$($$d/x.sh 2>/dev/null || echo exec-denied); done"]
  hosts:
    <<: *common
    extra_hosts:
      db.example: 10.1.2.3
      gw.example: host-gateway
    shm_size: 32m
    domainname: example.org
    init: true
    dns_search: [svc.example]
    dns_opt: ["timeout:2"]
    expose: ["3000", "4000-4001/udp"]
    command: ["sh", "-c", "cat /etc/hosts; df -k /dev/shm | tail -n1; echo domain $$(cat /proc/sys/kernel/domainname); echo pid $$$$; echo init-cmdline $$(tr '\\0' ' ' < /proc/1/cmdline); cat /etc/resolv.conf"]
  plain:
    <<: *common
    devices:
      - /dev/fuse:/dev/fuse
    command: ["sh", "-c", "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; test -c /dev/fuse && (exec 3</dev/fuse) && echo fuse-usable; mknod /dev/lc c 10 237 && ! (exec 3</dev/lc) 2>/dev/null && echo loop-control-denied; ip link set lo mtu 1400 && echo netadmin-ok || echo netadmin-denied; echo timer_list $$(head -c 20 /proc/timer_list | wc -c); echo pid $$$$"]
  caps:
    <<: *common
    cap_add: [NET_ADMIN]
    cap_drop: [chown]
    security_opt: ["no-new-privileges:true"]
    command: ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; ip link set lo mtu 1400 && echo netadmin-ok || echo netadmin-denied; touch /tmp/f; chown nobody /tmp/f && echo chown-ok || echo chown-denied"]
  privileged:
    <<: *common
    privileged: true
    command: ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; echo timer_list $$(head -c 20 /proc/timer_list | wc -c)"]
  limits:
    <<: *common
    ulimits:
      nofile:
        soft: 1024
        hard: {nofile_hard}
      nproc: 512
    sysctls:
      net.core.somaxconn: 1234
      kernel.shmmax: 65536
    command: ["sh", "-c", "echo nofile $$(ulimit -n) $$(ulimit -Hn); echo nproc $$(ulimit -u); echo somaxconn $$(cat /proc/sys/net/core/somaxconn); echo shmmax $$(cat /proc/sys/kernel/shmmax)"]
  initstop:
    <<: *common
    init: true
    command: ["sleep", "600"]
  sysresource:
    <<: *common
    cap_add: [SYS_RESOURCE]
    command: ["true"]
  hostsysctl:
    <<: *common
    sysctls:
      vm.swappiness: 10
    command: ["true"]
  toohigh:
    <<: *common
    ulimits:
      nofile:
        soft: 1024
        hard: {too_high}
    command: ["true"]
"#
    )
}

const GOOD: [&str; 6] = ["readonly", "hosts", "plain", "caps", "privileged", "limits"];

/// Each good service's output once all of them have exited.
fn outputs(project: &TestProject) -> Vec<(String, String)> {
    project
        .eventually(Duration::from_secs(60), || {
            let ps = project.ok(&["ps", "-a", "--format", "json"]);
            // One JSON object per line, as docker compose v2 prints them.
            let rows: Vec<serde_json::Value> = ps
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .ok()?;
            let exited = rows.iter().filter(|r| r["State"] == "exited").count();
            (exited == GOOD.len()).then_some(())
        })
        .expect("every service exits within 60 s");
    GOOD.iter()
        .map(|s| (s.to_string(), project.ok(&["logs", "--no-log-prefix", s])))
        .collect()
}

fn output<'a>(all: &'a [(String, String)], service: &str) -> &'a str {
    &all.iter().find(|(s, _)| s == service).unwrap().1
}

/// The `df -k` line of a mount: its size in KiB.
fn df_size_kib(text: &str, mount: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_end().ends_with(mount))
        .unwrap_or_else(|| panic!("no df line for {mount} in:\n{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn cap_eff(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in:\n{text}"))
        .trim()
}

#[test]
fn service_options_take_effect_inside_containers() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("options/busybox", "1");
    let project = TestProject::new("svcopt", "");
    let mark = project.name.clone();
    let hard = our_hard_nofile();
    assert!(hard > 4096, "test needs a hard nofile limit above 4096");
    let compose_path = project.dir.path().join("compose.yaml");
    std::fs::write(&compose_path, compose(&image, &mark, 4096, hard + 1000)).unwrap();
    let host_somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();

    let mut up = vec!["up", "-d"];
    up.extend(GOOD);
    let out = project.berth(&up);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "up failed:\n{stderr}");
    // What privileged lacks is named, once, for its service.
    let partial = "WARN service \"privileged\": berth implements `privileged` only in part: ";
    assert_eq!(stderr.matches(partial).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("WARN").count(), 1, "{stderr}");

    let all = outputs(&project);

    // read_only: the root refuses writes, the tmpfs mounts take them, with their sizes and mode.
    let ro = output(&all, "readonly");
    assert!(ro.contains("root-readonly"), "{ro}");
    assert!(ro.contains("scratch-writable"), "{ro}");
    assert_eq!(df_size_kib(ro, "/scratch"), 1024, "{ro}");
    assert_eq!(df_size_kib(ro, "/cache"), 2048, "{ro}");
    assert!(ro.contains("cache-mode 1770"), "{ro}");
    // `exec` lifts Docker's default noexec on that tmpfs only.
    assert!(ro.contains("/scratch exec-ok"), "{ro}");
    assert!(ro.contains("/cache exec-denied"), "{ro}");

    // extra_hosts (host-gateway is the network's gateway), shm_size, domainname, init, DNS.
    let hosts = output(&all, "hosts");
    assert!(
        hosts.lines().any(|l| l == "10.1.2.3\tdb.example"),
        "{hosts}"
    );
    let gateway = project.docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &format!("{}_default", project.name),
    ]);
    assert!(
        hosts
            .lines()
            .any(|l| l == format!("{}\tgw.example", gateway.trim())),
        "gateway {gateway}: {hosts}"
    );
    assert_eq!(df_size_kib(hosts, "/dev/shm"), 32 * 1024, "{hosts}");
    assert!(hosts.contains("domain example.org"), "{hosts}");
    // Under init the workload is not PID 1; without it, it is.
    assert!(hosts.lines().any(|l| l == "pid 2"), "{hosts}");
    // Its command line does not show the engine's host paths.
    assert!(
        hosts
            .lines()
            .any(|l| l.trim_end() == "init-cmdline berth-init"),
        "{hosts}"
    );
    assert!(output(&all, "plain").lines().any(|l| l == "pid 1"));
    assert!(hosts.lines().any(|l| l == "search svc.example"), "{hosts}");
    assert!(
        hosts.lines().any(|l| l.starts_with("options timeout:2")),
        "{hosts}"
    );
    let exposed = project.docker(&[
        "inspect",
        "-f",
        "{{json .Config.ExposedPorts}}",
        &format!("{}-hosts-1", project.name),
    ]);
    for port in ["3000/tcp", "4000/udp", "4001/udp"] {
        assert!(exposed.contains(port), "{port} in {exposed}");
    }

    // Capabilities: Docker's default set, then NET_ADMIN added and CHOWN dropped.
    let plain = output(&all, "plain");
    assert_eq!(cap_eff(plain), "00000000a80425fb", "{plain}");
    assert!(plain.contains("netadmin-denied"), "{plain}");
    assert!(plain.contains("Seccomp:\t2"), "{plain}");
    assert!(plain.contains("NoNewPrivs:\t0"), "{plain}");
    assert!(plain.contains("timer_list 0"), "masked: {plain}");
    // `devices:` passes /dev/fuse in (past Docker's default deny of it); other devices stay
    // denied by the device cgroup.
    assert!(plain.contains("fuse-usable"), "{plain}");
    assert!(plain.contains("loop-control-denied"), "{plain}");
    let caps = output(&all, "caps");
    assert_eq!(
        cap_eff(caps),
        format!("{:016x}", (0xa804_25fbu64 | 1 << 12) & !1)
    );
    assert!(caps.contains("netadmin-ok"), "{caps}");
    assert!(caps.contains("chown-denied"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");

    // privileged: every capability the engine has, no seccomp filter, no masked paths.
    let privileged = output(&all, "privileged");
    assert_eq!(cap_eff(privileged), our_bounding_set(), "{privileged}");
    assert!(privileged.contains("Seccomp:\t0"), "{privileged}");
    assert!(privileged.contains("timer_list 20"), "{privileged}");

    // ulimits and namespaced sysctls, the host's value untouched.
    let limits = output(&all, "limits");
    assert!(limits.contains("nofile 1024 4096"), "{limits}");
    assert!(limits.contains("nproc 512"), "{limits}");
    assert!(limits.contains("somaxconn 1234"), "{limits}");
    assert!(limits.contains("shmmax 65536"), "{limits}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn
    );

    // A host-wide sysctl is refused at create, with nothing left of that service.
    let err = project.fails(&["up", "-d", "hostsysctl"]);
    assert!(
        err.contains("sysctl \"vm.swappiness\" is not allowed"),
        "{err}"
    );
    // A hard limit above the engine's own fails the start, naming the ulimit.
    let err = project.fails(&["up", "-d", "toohigh"]);
    assert!(err.contains("cannot set ulimit nofile"), "{err}");
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
    // A capability the engine does not hold itself cannot be given (this host's root lacks
    // CAP_SYS_RESOURCE; elsewhere the container simply gets it).
    let bounding = u64::from_str_radix(&our_bounding_set(), 16).unwrap();
    if bounding & (1 << 24) == 0 {
        let err = project.fails(&["up", "-d", "sysresource"]);
        assert!(
            err.contains(
                "cannot give the container CAP_SYS_RESOURCE: the berth engine itself does not have it"
            ),
            "{err}"
        );
    }
    let names = project.ok(&["ps", "-a", "--services"]);
    let mut services: Vec<&str> = names.lines().collect();
    services.sort();
    let mut expected = GOOD.to_vec();
    expected.sort();
    assert_eq!(services, expected, "failed services left nothing behind");

    // Under init, the stop signal reaches the workload (which is not PID 1, so it does not
    // ignore SIGTERM): it ends by SIGTERM (143), not by the SIGKILL after the grace period (137).
    project.ok(&["up", "-d", "initstop"]);
    let initstop = format!("{}-initstop-1", project.name);
    project.docker(&["stop", "-t", "60", &initstop]);
    let code = project.docker(&["inspect", "-f", "{{.State.ExitCode}}", &initstop]);
    assert_eq!(code.trim(), "143");

    // Changing an option recreates that service's container only.
    std::fs::write(&compose_path, compose(&image, &mark, 8192, hard + 1000)).unwrap();
    let out = project.berth(&up);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "second up failed:\n{stderr}");
    let recreated: Vec<&str> = stderr.lines().filter(|l| l.contains("Recreated")).collect();
    assert_eq!(recreated.len(), 1, "{stderr}");
    assert!(
        recreated[0].contains(&format!("{}-limits-1", project.name)),
        "{stderr}"
    );
    let limits = project
        .eventually(Duration::from_secs(30), || {
            let logs = project.ok(&["logs", "--no-log-prefix", "limits"]);
            logs.contains("nofile 1024 8192").then_some(logs)
        })
        .expect("the recreated container runs with the new limit");
    assert!(!limits.contains("nofile 1024 4096"), "{limits}");

    project.ok(&["down", "-t", "1"]);
    assert!(project.ok(&["ps", "-a", "-q"]).trim().is_empty());
    project.stop_engine();
    assert!(project.leftover_processes().is_empty());
    assert!(project.leftover_mounts().is_empty());
}

/// File-based `secrets` and `configs` are bind-mounted read-only where docker compose puts them
/// (`/run/secrets/<name>`, `/<name>`, or their `target`); one with a `mode` and `uid` is copied
/// in with them instead.
#[test]
fn file_secrets_and_configs_are_mounted_read_only() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("secrets/busybox", "1");
    let project = TestProject::new("secrets", "");
    std::fs::write(project.dir.path().join("pw.txt"), "s3cret\n").unwrap();
    std::fs::create_dir_all(project.dir.path().join("conf")).unwrap();
    std::fs::write(project.dir.path().join("conf/app.conf"), "level=debug\n").unwrap();
    project.write_compose(&format!(
        r#"
services:
  app:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "stat -c '%a %u' /etc/app.conf; cat /run/secrets/pw /run/secrets/other/token /etc/app.conf /plain; (echo x > /run/secrets/pw) 2>/dev/null || echo read-only; sleep 300"]
    stop_grace_period: 1s
    secrets:
      - pw
      - source: pw
        target: other/token
      - from_env
    configs:
      - source: app
        target: /etc/app.conf
        mode: 0600
        uid: "1000"
      - plain
secrets:
  pw:
    file: ./pw.txt
  from_env:
    environment: HOME
configs:
  app:
    file: ./conf/app.conf
  plain:
    file: ./pw.txt
"#,
        mark = project.name
    ));
    let out = project.berth(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    // An environment-made secret is copied in now (see the test below), not warned about.
    assert!(!err.contains("from_env"), "{err}");
    let logs = project
        .eventually(Duration::from_secs(20), || {
            let l = project.ok(&["logs", "--no-log-prefix", "app"]);
            l.contains("read-only").then_some(l)
        })
        .expect("the container read its secrets");
    assert_eq!(
        logs, "600 1000\ns3cret\ns3cret\nlevel=debug\ns3cret\nread-only\n",
        "{logs}"
    );
    project.ok(&["down"]);
}

/// Inline `configs: content:` and a secret from `environment:` (copied into the created
/// container with the archive API): busybox `httpd` serves its inline configuration and page on
/// a published loopback port, and the secret is at `/run/secrets/<name>` with its mode and
/// owner, read-only.
#[test]
fn inline_configs_and_environment_secrets_are_in_place_with_their_mode() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("inline/busybox", "1");
    let mut project = TestProject::new("inline", "");
    project
        .env
        .push(("BERTH_TEST_TOKEN".into(), "token-from-env".into()));
    let port = common::registry::free_port();
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {image}
    ports: ["127.0.0.1:{port}:8080"]
    stop_grace_period: 1s
    command: ["sh", "-c", "stat -c '%a %u:%g' /run/secrets/token; cat /run/secrets/token; echo; (echo x > /run/secrets/token) 2>/dev/null || echo read-only; exec httpd -f -c /etc/httpd.conf -p 8080 -h /srv/www"]
    configs:
      - source: httpd
        target: /etc/httpd.conf
      - source: page
        target: /srv/www/site/index.html
    secrets:
      - source: token
        mode: 0440
        uid: "1000"
        gid: "1000"
configs:
  httpd:
    content: |
      A:127.0.0.1
      A:*
      /site:admin:{{pw}}
  page:
    content: "served from an inline config\n"
secrets:
  token:
    environment: BERTH_TEST_TOKEN
"#
    ).replace("{pw}", "s3cret"));
    let out = project.berth(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("configs:") && !err.contains("secrets:"),
        "{err}"
    );
    let url = format!("http://127.0.0.1:{port}/site/index.html");
    let curl = |auth: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(auth) = auth {
            cmd.args(["-u", auth]);
        }
        let out = cmd.arg(&url).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The inline httpd.conf protects /site: without it, the page would be served to anyone.
    let code = project
        .eventually(Duration::from_secs(20), || {
            let c = curl(None);
            (c != "000").then_some(c)
        })
        .expect("httpd answered on the published port");
    assert_eq!(code, "401", "the inline httpd.conf was not used");
    let page = std::process::Command::new("curl")
        .args(["-s", "-f", "-m", "3", "-u", "admin:s3cret", &url])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&page.stdout),
        "served from an inline config\n"
    );
    let logs = project
        .eventually(Duration::from_secs(10), || {
            let l = project.ok(&["logs", "--no-log-prefix", "web"]);
            l.contains("read-only").then_some(l)
        })
        .expect("the container read its secret");
    assert_eq!(logs, "440 1000:1000\ntoken-from-env\nread-only\n", "{logs}");
    project.ok(&["down"]);
}
