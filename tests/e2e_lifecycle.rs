//! The container-lifecycle commands end to end through the `berth` CLI: `stop` (dependents
//! first), `start` (the containers run again: a volume records every run), `restart`, `kill -s`
//! (a trap in the container records the signal), `rm` (stopped containers only, `-s`, `-v` takes
//! anonymous volumes but never named ones), `ls` (projects and their state from labels), and
//! docker compose's errors for unknown services and missing containers.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::project::TestProject;
use common::registry::TestRegistry;

/// `db` and `app` (which depends on `db`, with `restart: true`) each append their name to `/data/runs` when they start,
/// record SIGUSR1 in `/data/<name>-signals`, and exit on SIGTERM. Each time `app` starts it pings
/// `db` by name and records in `/data/net` whether it got through.
fn lifecycle_compose(image: &str, mark: &str) -> String {
    format!(
        r#"
services:
  db:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "trap 'echo got USR1 >> /data/db-signals' USR1; trap 'exit 0' TERM; echo db >> /data/runs; while true; do sleep 0.2; done"]
    volumes:
      - data:/data
  app:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    depends_on:
      db:
        condition: service_started
        restart: true
    command: ["sh", "-c", "trap 'echo got USR1 >> /data/app-signals; exit 3' USR1; trap 'exit 0' TERM; echo app >> /data/runs; if ping -c 1 -W 3 db > /dev/null 2>&1; then echo reached >> /data/net; else echo unreachable >> /data/net; fi; while true; do sleep 0.2; done"]
    volumes:
      - data:/data
      - /scratch
volumes:
  data: {{}}
"#
    )
}

/// A file in the project's named volume `data`, read on the host.
fn data_file(project: &TestProject, file: &str) -> PathBuf {
    project
        .data_root()
        .join("volumes")
        .join(format!("{}_data", project.name))
        .join("_data")
        .join(file)
}

fn read_data(project: &TestProject, file: &str) -> String {
    std::fs::read_to_string(data_file(project, file)).unwrap_or_default()
}

/// How often each service has started, from `/data/runs`.
fn runs(project: &TestProject) -> (usize, usize) {
    let text = read_data(project, "runs");
    let count = |s: &str| text.lines().filter(|l| *l == s).count();
    (count("db"), count("app"))
}

/// Wait until the services have started `db` and `app` times.
fn wait_runs(project: &TestProject, db: usize, app: usize) {
    let reached = project.eventually(Duration::from_secs(20), || {
        (runs(project) == (db, app)).then_some(())
    });
    assert!(
        reached.is_some(),
        "expected db to have run {db} and app {app} times, /data/runs has:\n{}",
        read_data(project, "runs")
    );
}

/// Wait until `app` has checked the network `times` times; every check reached `db`.
fn wait_reached_db(project: &TestProject, times: usize) {
    let lines = project.eventually(Duration::from_secs(20), || {
        let text = read_data(project, "net");
        (text.lines().count() >= times).then_some(text)
    });
    let text = lines.unwrap_or_else(|| {
        panic!(
            "app did not check the network {times} times: {:?}",
            read_data(project, "net")
        )
    });
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["reached"; times],
        "app reaches db by name after every start"
    );
}

/// Service → (State, Status) from `ps -a --format json`.
fn states(project: &TestProject) -> Vec<(String, String, String)> {
    let out = project.ok(&["ps", "-a", "--format", "json"]);
    // One JSON object per line, as docker compose v2 prints them.
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("ps json line"))
        .collect();
    let mut states: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["Service"].as_str().unwrap_or_default().to_string(),
                r["State"].as_str().unwrap_or_default().to_string(),
                r["Status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    states.sort();
    states
}

fn state_of(project: &TestProject, service: &str) -> Option<String> {
    states(project)
        .into_iter()
        .find(|(s, _, _)| s == service)
        .map(|(_, state, _)| state)
}

fn finished_at(project: &TestProject, container: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = project.docker(&["inspect", "-f", "{{.State.FinishedAt}}", container]);
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .unwrap_or_else(|e| panic!("FinishedAt of {container}: {text:?}: {e}"))
}

/// The `ls` row of this project, if listed.
fn ls_row(project: &TestProject, all: bool) -> Option<serde_json::Value> {
    let mut args = vec!["ls", "--format", "json"];
    if all {
        args.push("-a");
    }
    let out = project.ok(&args);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("ls json");
    rows.as_array()
        .expect("ls rows")
        .iter()
        .find(|r| r["Name"] == project.name.as_str())
        .cloned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `berth -p NAME ARGS` on a pseudo-terminal (util-linux `script`), typing `input`: whether it
/// succeeded, and what the terminal showed.
fn berth_on_terminal(project: &TestProject, args: &str, input: &str) -> (bool, String) {
    use std::io::Write;
    let command = format!("{} -p {} {args}", env!("CARGO_BIN_EXE_berth"), project.name);
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(project.dir.path())
        .env("BERTH_DATA_ROOT", project.data_root())
        .env("BERTH_RUN_ROOT", project.run_root())
        .env("NO_COLOR", "1")
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("type the answer");
    let out = child.wait_with_output().expect("script output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn volumes(project: &TestProject) -> Vec<String> {
    project
        .docker(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn stop_start_restart_kill_rm_and_ls_act_on_the_projects_containers() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("lifecycle/busybox", "1");
    let project = TestProject::new("life", "");
    let mark = project.name.clone();
    project.write_compose(&lifecycle_compose(&image, &mark));
    let db = format!("{}-db-1", project.name);
    let app = format!("{}-app-1", project.name);

    project.ok(&["up", "-d"]);
    wait_runs(&project, 1, 1);
    wait_reached_db(&project, 1);

    // ls lists the running project with the compose file it came from.
    let row = ls_row(&project, false).expect("ls lists the running project");
    assert_eq!(row["Status"], "running(2)", "{row}");
    let config = project.dir.path().join("compose.yaml");
    assert!(
        row["ConfigFiles"]
            .as_str()
            .is_some_and(|f| f.contains(&config.display().to_string())),
        "{row}"
    );
    let table = project.ok(&["ls"]);
    assert!(
        table.starts_with("NAME") && table.contains("CONFIG FILES"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&project.name) && l.contains("running(2)")),
        "{table}"
    );
    assert_eq!(
        project
            .ok(&["ls", "-q"])
            .lines()
            .filter(|l| *l == project.name)
            .count(),
        1
    );

    // images: one row per container, with the reference it was created from.
    let images = project.ok(&["images"]);
    assert!(
        images.starts_with("CONTAINER") && images.contains("IMAGE ID"),
        "{images}"
    );
    let (repository, tag) = image.rsplit_once(':').expect("image has a tag");
    for container in [&db, &app] {
        let row = images
            .lines()
            .find(|l| l.starts_with(container.as_str()))
            .unwrap_or_else(|| panic!("no {container} row in:\n{images}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..3], [repository, tag], "{row}");
        assert!(cells[3].starts_with("linux/"), "{row}");
    }
    let ids = project.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "both use one image: {ids}");
    let app_images = project.ok(&["images", "--format", "json", "app"]);
    let list: serde_json::Value = serde_json::from_str(&app_images).expect("images json");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["ContainerName"], app.as_str());
    assert_eq!(
        list[0]["ID"]
            .as_str()
            .map(|id| id.trim_start_matches("sha256:")),
        Some(ids.trim())
    );

    // stop: both exited, the dependent first.
    let out = project.berth(&["stop"]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "stop failed:\n{stderr}");
    let line_at = |name: &str, word: &str| {
        stderr
            .lines()
            .position(|l| l.contains(name) && l.trim_end().ends_with(word))
            .unwrap_or_else(|| panic!("no \"{name} … {word}\" line in:\n{stderr}"))
    };
    assert!(
        line_at(&app, "Stopped") < line_at(&db, "Stopping"),
        "app is stopped before db is:\n{stderr}"
    );
    assert_eq!(
        states(&project)
            .iter()
            .map(|(s, state, _)| (s.as_str(), state.as_str()))
            .collect::<Vec<_>>(),
        [("app", "exited"), ("db", "exited")]
    );
    assert!(
        finished_at(&project, &app) < finished_at(&project, &db),
        "the engine saw app exit before db"
    );
    // Stopped projects are listed only with -a.
    assert!(ls_row(&project, false).is_none(), "ls without -a");
    assert_eq!(
        ls_row(&project, true).expect("ls -a lists it")["Status"],
        "exited(2)"
    );

    // start: both run again (each has written to the volume twice).
    let out = project.berth(&["start"]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "start failed:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&db) && l.ends_with("Started")),
        "{stderr}"
    );
    wait_runs(&project, 2, 2);
    wait_reached_db(&project, 2);
    assert_eq!(state_of(&project, "db").as_deref(), Some("running"));
    assert_eq!(state_of(&project, "app").as_deref(), Some("running"));
    assert_eq!(
        ls_row(&project, false).expect("listed")["Status"],
        "running(2)"
    );

    // restart one service, then all of them.
    project.ok(&["restart", "app"]);
    wait_runs(&project, 2, 3);
    let out = project.berth(&["restart", "-t", "5"]);
    assert!(out.status.success(), "restart failed:\n{}", stderr_of(&out));
    wait_runs(&project, 3, 4);
    wait_reached_db(&project, 4);
    // app declares `restart: true` on db: restarting db restarts app too, unless --no-deps.
    project.ok(&["restart", "db"]);
    wait_runs(&project, 4, 5);
    wait_reached_db(&project, 5);
    let out = project.berth(&["restart", "--no-deps", "db"]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "restart --no-deps failed:\n{stderr}");
    let restarted: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_end().ends_with("Restarting"))
        .collect();
    assert!(
        restarted.len() == 1 && restarted[0].contains(&db),
        "only db restarts:\n{stderr}"
    );
    wait_runs(&project, 5, 5);
    assert_eq!(state_of(&project, "app").as_deref(), Some("running"));

    // kill -s by name: db's trap records it and db keeps running; by number: app's trap exits 3.
    let bad = project.fails(&["kill", "-s", "NOPE"]);
    assert!(bad.contains("NOPE"), "{bad}");
    project.ok(&["kill", "-s", "SIGUSR1", "db"]);
    let got = project.eventually(Duration::from_secs(10), || {
        read_data(&project, "db-signals")
            .contains("got USR1")
            .then_some(())
    });
    assert!(got.is_some(), "db's trap saw SIGUSR1");
    assert_eq!(state_of(&project, "db").as_deref(), Some("running"));
    project.ok(&["kill", "-s", &libc::SIGUSR1.to_string(), "app"]);
    let exited = project.eventually(Duration::from_secs(10), || {
        states(&project)
            .into_iter()
            .find(|(s, state, _)| s == "app" && state == "exited")
    });
    let (_, _, status) = exited.expect("app exits after its trap");
    assert!(status.contains("Exited (3)"), "{status}");
    assert!(read_data(&project, "app-signals").contains("got USR1"));

    // rm: never without confirmation when stdin is no terminal; -f removes only the stopped app
    // (and with -v its anonymous volume), never the running db or the named volume.
    let anonymous: Vec<String> = project
        .docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{if eq .Destination \"/scratch\"}}{{.Name}}{{end}}{{end}}",
            &app,
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(anonymous.len(), 1, "app has one anonymous volume");
    assert!(volumes(&project).contains(&anonymous[0]));
    let refused = project.fails(&["rm"]);
    assert!(
        refused.contains(
            ": not confirmed, because stdin is not a terminal to ask on; run `berth rm -f` to remove without asking"
        ),
        "{refused}"
    );
    assert_eq!(state_of(&project, "app").as_deref(), Some("exited"));
    // On a terminal it asks; anything but yes keeps the container.
    let (ok, screen) = berth_on_terminal(&project, "rm", "n\n");
    assert!(ok, "answering no is no error:\n{screen}");
    assert!(
        screen.contains(&format!("Going to remove {app}"))
            && screen.contains("Are you sure? [y/N]"),
        "{screen}"
    );
    assert_eq!(state_of(&project, "app").as_deref(), Some("exited"));
    let out = project.berth(&["rm", "-f", "-v"]);
    assert!(out.status.success(), "rm failed:\n{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), format!("Going to remove {app}"));
    assert_eq!(
        states(&project)
            .iter()
            .map(|(s, state, _)| (s.as_str(), state.as_str()))
            .collect::<Vec<_>>(),
        [("db", "running")]
    );
    let left = volumes(&project);
    assert!(!left.contains(&anonymous[0]), "rm -v removed {anonymous:?}");
    let named = format!("{}_data", project.name);
    assert!(left.contains(&named), "named volume kept: {left:?}");
    let out = project.berth(&["rm", "-f"]);
    assert!(
        stderr_of(&out).contains("No stopped containers"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(state_of(&project, "db").as_deref(), Some("running"));
    // -s stops first, then asks, and yes removes.
    let (ok, screen) = berth_on_terminal(&project, "rm -s", "y\n");
    assert!(ok, "rm -s failed:\n{screen}");
    assert!(
        screen.contains("Stopped")
            && screen.contains(&format!("Going to remove {db}"))
            && screen.contains("Removed"),
        "{screen}"
    );
    assert!(states(&project).is_empty());
    assert!(volumes(&project).contains(&named), "named volume kept");
    assert!(
        ls_row(&project, true).is_none(),
        "no containers, no project"
    );

    // start with nothing to start fails like docker compose and creates nothing.
    let err = project.fails(&["start"]);
    assert!(
        err.contains("service \"db\" has no container to start"),
        "{err}"
    );
    assert!(states(&project).is_empty());

    // ls follows the project through up and down.
    project.ok(&["up", "-d"]);
    assert_eq!(
        ls_row(&project, false).expect("listed")["Status"],
        "running(2)"
    );
    project.ok(&["down"]);
    assert!(ls_row(&project, true).is_none(), "down takes it off ls -a");

    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(procs.is_empty(), "no container or shim remains: {procs:?}");
    assert!(project.leftover_mounts().is_empty());
}

#[test]
fn unknown_services_and_missing_containers_are_errors_like_docker_compose() {
    // The image is never pulled: none of these commands may create anything.
    let project = TestProject::new(
        "lifeerr",
        "services:\n  db:\n    image: berth-test/never-pulled:1\n  app:\n    image: berth-test/never-pulled:1\n    depends_on: [db]\n",
    );
    for command in ["stop", "start", "restart", "kill", "rm", "images"] {
        let err = project.fails(&[command, "db", "nope"]);
        assert!(err.contains("no such service: nope"), "{command}: {err}");
    }
    let err = project.fails(&["start", "app"]);
    assert!(
        err.contains("has no container to start"),
        "start app (and db, which it depends on): {err}"
    );
    // Without a compose file, by project name only.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = project.berth_in(elsewhere.path(), true, &["start"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no containers to start"),
        "{}",
        stderr_of(&out)
    );
    let out = project.berth(&["kill"]);
    assert!(out.status.success());
    assert!(stderr_of(&out).contains("no container to kill"));
    let out = project.berth(&["rm"]);
    assert!(out.status.success());
    assert!(stderr_of(&out).contains("No stopped containers"));
    project.ok(&["stop"]);
    assert!(ls_row(&project, true).is_none());
    assert_eq!(
        project.docker(&["ps", "-aq"]).trim(),
        "",
        "nothing was created"
    );
}

#[test]
fn stop_waits_for_stop_grace_period_unless_t_is_given() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("grace/busybox", "1");
    let project = TestProject::new("grace", "");
    let mark = project.name.clone();
    // Shutting down takes 12 s: longer than Docker's default grace of 10 s, well inside 60 s.
    project.write_compose(&format!(
            r#"
services:
  slow:
    image: {image}
    environment:
      BERTH_TEST_MARK: {mark}
    command: ["sh", "-c", "trap 'sleep 12; exit 0' TERM; echo trap set; while true; do sleep 0.2; done"]
    stop_grace_period: 60s
"#
        ),
    );
    let exit_status = |project: &TestProject| {
        states(project)
            .into_iter()
            .find(|(s, _, _)| s == "slow")
            .map(|(_, _, status)| status)
            .expect("slow has a container")
    };
    // The trap must be in place before the stop signal comes (PID 1 ignores an untrapped TERM).
    let trap_set = |project: &TestProject, times: usize| {
        let seen = project.eventually(Duration::from_secs(20), || {
            let logs = project.ok(&["logs", "--no-log-prefix", "slow"]);
            (logs.matches("trap set").count() >= times).then_some(())
        });
        assert!(seen.is_some(), "slow started and set its trap");
    };
    project.ok(&["up", "-d"]);
    trap_set(&project, 1);
    project.ok(&["stop"]);
    let status = exit_status(&project);
    assert!(
        status.starts_with("Exited (0)"),
        "the 60 s grace let it finish its 12 s shutdown: {status}"
    );
    project.ok(&["start"]);
    trap_set(&project, 2);
    project.ok(&["stop", "-t", "1"]);
    let status = exit_status(&project);
    assert!(
        status.starts_with("Exited (137)"),
        "-t 1 cut the shutdown short with SIGKILL: {status}"
    );
    project.ok(&["down"]);
    assert!(project.leftover_mounts().is_empty());
}
