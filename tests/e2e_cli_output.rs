//! What a script sees from berth's CLI: `ps --format json` one object per line with docker
//! compose v2's field names (read by `jq` line by line), the status filters, templates, and the
//! flags scripts pass to `pull`, `down`, `start` and `up`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::project::TestProject;
use common::registry::TestRegistry;

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// `jq -r FILTER` over `input`.
fn jq(filter: &str, input: &str) -> String {
    let mut child = Command::new("jq")
        .args(["-r", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run jq");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed jq");
    let out = child.wait_with_output().expect("jq output");
    assert!(out.status.success(), "jq {filter} failed on {input}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ps_prints_what_scripts_parse() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("cliout/busybox", "1");
    let project = TestProject::new("cliout", "");
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {image}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    ports: ["127.0.0.1::80"]
  job:
    image: {image}
    command: ["sh", "-c", "exit 3"]
"#
    ));
    project.ok(&["up", "-d"]);
    let out = project.berth(&["wait", "job"]);
    assert_eq!(out.status.code(), Some(3));
    let web = format!("{}-web-1", project.name);
    let job = format!("{}-job-1", project.name);

    // Running containers only, one JSON object per line; jq reads it as it reads compose's.
    let running = project.ok(&["ps", "--format", "json"]);
    assert_eq!(jq(".Name", &running), format!("{web}\n"));
    let row = &json_lines(&running)[0];
    assert_eq!(row["Service"], "web");
    assert_eq!(row["Project"], project.name.as_str());
    assert_eq!(row["State"], "running");
    assert_eq!(row["Health"], "");
    assert_eq!(row["ExitCode"], 0);
    assert_eq!(
        row["ID"].as_str().expect("ID").len(),
        12,
        "truncated as compose"
    );
    let publisher = &row["Publishers"][0];
    assert_eq!(publisher["URL"], "127.0.0.1");
    assert_eq!(publisher["TargetPort"], 80);
    assert_eq!(publisher["Protocol"], "tcp");
    let published = publisher["PublishedPort"].as_u64().expect("a port");
    assert!(published > 0);
    let address = project.ok(&["port", "web", "80"]);
    assert_eq!(address.trim(), format!("127.0.0.1:{published}"));

    // -a shows the exited job with its exit code; --status / --filter status= select by state.
    let all = project.ok(&["ps", "-a", "--format", "json"]);
    assert_eq!(
        jq(".Name + \" \" + (.ExitCode|tostring)", &all),
        format!("{job} 3\n{web} 0\n")
    );
    let exited = project.ok(&[
        "ps",
        "--status",
        "exited",
        "--format",
        "{{.Name}}\\t{{.State}}",
    ]);
    assert_eq!(exited, format!("{job}\texited\n"));
    let both = project.ok(&[
        "ps",
        "--status",
        "exited",
        "--filter",
        "status=running",
        "--services",
    ]);
    assert_eq!(both, "job\nweb\n");
    let ids = project.ok(&["ps", "-q", "--status", "running"]);
    let full_id = ids.trim();
    assert_eq!(full_id.len(), 64, "-q prints the whole ID: {ids}");
    let untruncated = project.ok(&["ps", "--no-trunc", "--format", "{{.ID}} {{json .Command}}"]);
    assert_eq!(untruncated, format!("{full_id} \"\\\"sleep 300\\\"\"\n"));
    let table = project.ok(&[
        "ps",
        "-a",
        "--format",
        "table {{.Service}}\\t{{.RunningFor}}",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("SERVICE   CREATED"), "{table}");
    assert!(
        lines[1].starts_with("job       ") && lines[1].ends_with(" ago"),
        "{table}"
    );

    let err = project.fails(&["ps", "--filter", "name=web"]);
    assert!(err.contains("unknown filter name"), "{err}");
    let err = project.fails(&["ps", "--format", "{{range .}}"]);
    assert!(err.contains("unsupported action {{range .}}"), "{err}");
    project.ok(&["down", "-t", "1"]);
}

#[test]
fn pull_down_start_and_global_flags_touch_only_what_they_name() {
    let registry = TestRegistry::start();
    let web_image = registry.push_busybox("cliout/web", "1");
    let db_image = registry.push_busybox("cliout/db", "1");
    let project = TestProject::new("clisel", "");
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {web_image}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    networks: [default, front]
    volumes: ["cache:/cache"]
  db:
    image: {db_image}
    command: ["sleep", "300"]
    stop_grace_period: 1s
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
networks:
  front: {{}}
volumes:
  cache: {{}}
  data: {{}}
"#
    ));
    let images = |p: &TestProject| p.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);

    // `pull web` pulls web's image only; --progress json makes its lines JSON objects.
    let out = project.berth(&["--progress", "json", "pull", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = images(&project);
    assert!(pulled.contains(&web_image), "{pulled}");
    assert!(!pulled.contains(&db_image), "{pulled}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with('{') && l.contains("\"Pulled\"")),
        "{err}"
    );

    // up --dry-run: the converge plan with reasons; nothing made.
    let plan = project.ok(&["--dry-run", "up", "-d"]);
    assert!(
        plan.contains(&format!("would pull image {db_image} (service db)")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("would create network {}_front", project.name)),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("would create volume {}_data", project.name)),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("would {}-web-1: create", project.name)),
        "{plan}"
    );
    assert_eq!(project.ok(&["ps", "-a", "-q"]), "");
    let untouched = images(&project);
    assert!(!untouched.contains(&db_image), "{untouched}");
    let filter = format!("label=com.docker.compose.project={}", project.name);
    assert_eq!(
        project.docker(&["network", "ls", "-q", "--filter", &filter]),
        ""
    );

    project.ok(&["up", "-d"]);
    let again = project.ok(&["up", "-d", "--dry-run"]);
    assert!(
        !again.contains("would"),
        "everything is up to date: {again}"
    );
    let running = |p: &TestProject| {
        let mut names: Vec<String> = p
            .ok(&["ps", "--format", "{{.Service}}"])
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    };
    let resources = |p: &TestProject| {
        let filter = format!("label=com.docker.compose.project={}", p.name);
        let networks = p.docker(&["network", "ls", "-q", "--filter", &filter]);
        let volumes = p.docker(&["volume", "ls", "-q", "--filter", &filter]);
        (networks.lines().count(), volumes.lines().count())
    };
    assert_eq!(running(&project), ["db", "web"]);
    assert_eq!(resources(&project), (2, 2));

    // --dry-run reports the removals and changes nothing.
    let plan = project.ok(&["--dry-run", "down", "-v"]);
    assert!(
        plan.contains(&format!(
            "would stop and remove container {}-web-1",
            project.name
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("would remove volume {}_data", project.name)),
        "{plan}"
    );
    assert_eq!(running(&project), ["db", "web"]);
    assert_eq!(resources(&project), (2, 2));
    let err = project.fails(&["--dry-run", "stop"]);
    assert!(err.contains("--dry-run is not supported"), "{err}");
    assert_eq!(running(&project), ["db", "web"]);

    // `down web -v`: web's container, and the network and volume only web used.
    let out = project.berth(&["--ansi", "always", "down", "-v", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\x1b[32m✔\x1b[0m Container"),
        "--ansi always colours: {err}"
    );
    assert_eq!(running(&project), ["db"]);
    assert_eq!(resources(&project), (1, 1));
    let all = project.ok(&["ps", "-a", "--services"]);
    assert_eq!(all, "db\n");

    // start --wait returns once db is healthy again.
    project.ok(&["stop", "db"]);
    let out = project.berth(&["start", "--wait", "--wait-timeout", "30", "db"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Healthy"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "NO_COLOR, no terminal: plain marks: {err}"
    );
    let health = project.ok(&["ps", "--format", "{{.Health}}"]);
    assert_eq!(health, "healthy\n");
    project.ok(&["down", "-v", "-t", "1"]);
    assert_eq!(resources(&project), (0, 0));
}

#[test]
fn run_flags_reach_the_one_off_container() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("cliout/run", "1");
    let project = TestProject::new("clirun", "");
    project.write_compose(&format!(
        r#"
services:
  app:
    image: {image}
    command: ["sleep", "300"]
    ports: ["127.0.0.1::80"]
"#
    ));
    let dir = project.dir.path();
    std::fs::create_dir(dir.join("shared")).expect("mkdir");
    std::fs::write(dir.join("shared/greeting"), "hello from the host\n").expect("write");
    std::fs::write(dir.join("vars.env"), "FROM_FILE=file\nOVERRIDDEN=file\n").expect("write");

    let script = "echo $FROM_FILE $OVERRIDDEN; cat /mnt/greeting; \
                  touch /mnt/x 2>/dev/null && echo writable || echo read-only; \
                  chown 1 /tmp && echo chown-ok || echo chown-denied";
    let out = project.ok(&[
        "run",
        "--rm",
        "-T",
        "--quiet-pull",
        "-v",
        "./shared:/mnt:ro",
        "--env-from-file",
        "vars.env",
        "-e",
        "OVERRIDDEN=flag",
        "--cap-drop",
        "CHOWN",
        "app",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out, "file flag\nhello from the host\nread-only\nchown-denied\n",
        "env file then -e, read-only bind, dropped capability"
    );

    // -p publishes what it names, and only with -P the service's own ports.
    let name = project.ok(&["run", "-d", "-p", "127.0.0.1::90", "app"]);
    let name = name.trim();
    let ports = project.docker(&["port", name]);
    assert!(ports.starts_with("90/tcp -> 127.0.0.1:"), "{ports}");
    assert_eq!(
        ports.lines().count(),
        1,
        "the service's 80 is not published: {ports}"
    );
    let quiet = project.ok(&["run", "-d", "-q", "-P", "app"]);
    assert_eq!(quiet, "", "-q prints nothing");
    let with_service_ports = project.ok(&["ps", "-a", "--format", "{{.Name}} {{.Ports}}"]);
    assert!(
        with_service_ports
            .lines()
            .any(|l| l.contains("-run-") && l.contains("->80/tcp")),
        "{with_service_ports}"
    );
    project.ok(&["down", "-t", "1"]);
}
