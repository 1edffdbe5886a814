//! The engine's builder end to end: `POST /build` with a tar context (the stream and the image
//! it makes), the cache across builds, bad input with Dockerfile:line errors and nothing left
//! behind, and `docker build` (the classic builder's client, DOCKER_BUILDKIT=0) through berth's
//! socket.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::engine::{mounts_under, TestEngine};
use common::registry::TestRegistry;
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// A build context directory with the given files.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// `POST /build?<query>` with `dir` as a plain tar body; the NDJSON lines of the answer.
fn post_build(engine: &TestEngine, dir: &Path, query: &str) -> Vec<Value> {
    let tar = dir.with_extension("ctx.tar");
    ok(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .args(["-cf"])
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap(),
        "tar the context",
    );
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(engine.socket())
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-tar",
            "--data-binary",
        ])
        .arg(format!("@{}", tar.display()))
        .arg(format!("http://localhost/v1.41/build?{query}"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&tar);
    let body = ok(out, "POST /build");
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `stream` texts of a build, joined.
fn stream(lines: &[Value]) -> String {
    lines.iter().filter_map(|l| l["stream"].as_str()).collect()
}

fn error_of(lines: &[Value]) -> Option<String> {
    lines
        .iter()
        .find_map(|l| l["error"].as_str().map(str::to_string))
}

/// vertex name → last event, for the step vertices (`[…] INSTR`).
fn step_events(lines: &[Value]) -> Vec<(String, String)> {
    let mut names: std::collections::BTreeMap<u64, String> = Default::default();
    let mut last: std::collections::BTreeMap<u64, String> = Default::default();
    for l in lines {
        let b = &l["berth"];
        let Some(v) = b["vertex"].as_u64() else {
            continue;
        };
        if let Some(n) = b["name"].as_str() {
            names.insert(v, n.to_string());
        }
        let event = b["event"].as_str().unwrap_or("").to_string();
        if event != "log" {
            last.insert(v, event);
        }
    }
    names
        .into_iter()
        .filter(|(_, n)| !n.starts_with("[internal]"))
        .map(|(v, n)| (n, last.get(&v).cloned().unwrap_or_default()))
        .collect()
}

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS builder\n\
         WORKDIR /src\n\
         COPY src/ ./\n\
         RUN cat a.txt b.txt > joined.txt && echo built-it\n\
         FROM {base}\n\
         COPY --from=builder /src/joined.txt /out/joined.txt\n\
         CMD [\"cat\", \"/out/joined.txt\"]\n"
    )
}

/// What a failed build must not leave: containers, mounts under the data root, build dirs.
fn assert_nothing_left(engine: &TestEngine) {
    let containers = engine.data_root().join("containers");
    let entries = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    // A removed container's directory is renamed into `.removed/` and deleted in the background.
    let trash = containers.join(".removed");
    let left: Vec<_> = entries(&containers)
        .into_iter()
        .filter(|p| *p != trash)
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !entries(&trash).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        entries(&trash).is_empty(),
        "removed containers not deleted: {:?}",
        entries(&trash)
    );
    assert!(mounts_under(engine.data_root()).is_empty());
    let builds: Vec<PathBuf> = std::fs::read_dir(engine.data_root().join("build"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(builds.is_empty(), "build dirs left: {builds:?}");
}

fn snapshot_count(engine: &TestEngine) -> usize {
    std::fs::read_dir(engine.data_root().join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn multi_stage_build_streams_steps_caches_and_reruns_only_after_a_changed_copy() {
    let registry = TestRegistry::start();
    let base = registry.push_busybox("build/busybox", "1");
    let mut engine = TestEngine::start();
    let ctx = context(&[
        ("Dockerfile", &dockerfile(&base)),
        ("src/a.txt", "alpha\n"),
        ("src/b.txt", "beta\n"),
    ]);
    let first = post_build(&engine, ctx.path(), "t=built%2Fmulti%3A1");
    let out = stream(&first);
    assert_eq!(error_of(&first), None, "{out}");
    assert!(out.contains("Step 1/7 : FROM"), "{out}");
    assert!(out.contains("built-it\n"), "{out}");
    assert!(out.contains("Successfully tagged built/multi:1"), "{out}");
    assert!(first.iter().any(|l| l["aux"]["ID"].as_str().is_some()));
    let run = ok(
        engine.docker(&["run", "--rm", "built/multi:1"]),
        "docker run",
    );
    assert_eq!(run, "alpha\nbeta\n");

    // No change: every step after FROM is a cache hit.
    let second = post_build(&engine, ctx.path(), "t=built%2Fmulti%3A1");
    let events = step_events(&second);
    for (name, event) in &events {
        if !name.contains("FROM") {
            assert_eq!(event, "cached", "{name}: {}", stream(&second));
        }
    }
    let logs = second
        .iter()
        .filter(|l| l["berth"]["event"] == "log")
        .count();
    assert_eq!(logs, 0, "nothing ran: {}", stream(&second));

    // One file changed: the steps before its COPY stay cached, the COPY and what follows run.
    std::fs::write(ctx.path().join("src/b.txt"), "gamma\n").unwrap();
    let third = post_build(&engine, ctx.path(), "t=built%2Fmulti%3A1");
    let events = step_events(&third);
    let event = |prefix: &str| {
        events
            .iter()
            .find(|(n, _)| n.contains(prefix))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("no step {prefix} in {events:?}"))
    };
    assert_eq!(event("WORKDIR /src"), "cached");
    assert_eq!(event("COPY src/"), "done");
    assert_eq!(event("RUN cat"), "done");
    assert_eq!(event("COPY --from"), "done");
    let run = ok(
        engine.docker(&["run", "--rm", "built/multi:1"]),
        "docker run",
    );
    assert_eq!(run, "alpha\ngamma\n");
    assert_nothing_left(&engine);

    // The cache survives an engine restart.
    engine.restart();
    let again = post_build(&engine, ctx.path(), "t=built%2Fmulti%3A1");
    assert!(
        step_events(&again)
            .iter()
            .all(|(n, e)| n.contains("FROM") || e == "cached"),
        "{}",
        stream(&again)
    );
    // `builder prune` empties it; the tagged image stays runnable, and the next build runs.
    let pruned = curl_post(&engine, "/v1.41/build/prune");
    assert!(
        !pruned["CachesDeleted"].as_array().unwrap().is_empty(),
        "{pruned}"
    );
    let run = ok(
        engine.docker(&["run", "--rm", "built/multi:1"]),
        "docker run",
    );
    assert_eq!(run, "alpha\ngamma\n");
    let rebuilt = post_build(&engine, ctx.path(), "t=built%2Fmulti%3A1");
    assert!(
        stream(&rebuilt).contains("built-it\n"),
        "{}",
        stream(&rebuilt)
    );
}

fn curl_post(engine: &TestEngine, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(engine.socket())
        .args(["-X", "POST"])
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    serde_json::from_str(&ok(out, path)).unwrap()
}

#[test]
fn a_failing_run_reports_line_exit_code_and_output_and_leaves_nothing() {
    let registry = TestRegistry::start();
    let base = registry.push_busybox("build/busybox", "1");
    let engine = TestEngine::start();
    let df = format!("FROM {base}\nRUN echo preparing\nRUN echo oops-output && exit 3\n");
    let ctx = context(&[("Dockerfile", &df)]);
    // The base image and the first RUN's layer are what may stay (the cache keeps them).
    let lines = post_build(&engine, ctx.path(), "");
    let err = error_of(&lines).expect("the build fails");
    assert!(
        err.starts_with("Dockerfile:3: RUN echo oops-output && exit 3: exit code 3"),
        "{err}"
    );
    assert!(err.contains("oops-output"), "{err}");
    let snapshots = snapshot_count(&engine);
    assert_nothing_left(&engine);
    // Again: the same failure, and no snapshot more than the first time.
    let lines = post_build(&engine, ctx.path(), "");
    assert!(error_of(&lines).is_some());
    assert_eq!(snapshot_count(&engine), snapshots);
    assert_nothing_left(&engine);
}

#[test]
fn sources_outside_the_context_are_refused_with_the_line() {
    let registry = TestRegistry::start();
    let base = registry.push_busybox("build/busybox", "1");
    let engine = TestEngine::start();
    let ctx = context(&[("Dockerfile", &format!("FROM {base}\nCOPY ../x /x\n"))]);
    let err = error_of(&post_build(&engine, ctx.path(), "")).expect("refused");
    assert_eq!(
        err,
        "Dockerfile:2: COPY ../x: source is outside the build context"
    );
    let ctx = context(&[("Dockerfile", &format!("FROM {base}\nCOPY . /app/\n"))]);
    std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("leak")).unwrap();
    let err = error_of(&post_build(&engine, ctx.path(), "")).expect("refused");
    assert!(
        err.starts_with(
            "Dockerfile:2: COPY .: symlink leak -> /etc/passwd points outside the build context"
        ),
        "{err}"
    );
    // A `.dockerignore` in the context is honoured by the engine too (curl sends it unfiltered).
    let ctx = context(&[
        ("Dockerfile", &format!("FROM {base}\nCOPY secret.txt /\n")),
        (".dockerignore", "secret.txt\n"),
        ("secret.txt", "hidden"),
    ]);
    let err = error_of(&post_build(&engine, ctx.path(), "")).expect("refused");
    assert_eq!(
        err,
        "Dockerfile:2: COPY secret.txt: no such file or directory in the build context"
    );
    let ctx = context(&[("Dockerfile", &format!("FROM {base}\nRUNN x\n"))]);
    let err = error_of(&post_build(&engine, ctx.path(), "")).expect("refused");
    assert_eq!(err, "Dockerfile:2: unknown instruction: RUNN");
    assert_nothing_left(&engine);
}

#[test]
fn docker_build_through_berths_socket_makes_a_runnable_image() {
    let registry = TestRegistry::start();
    let base = registry.push_busybox("build/busybox", "1");
    let engine = TestEngine::start();
    let ctx = context(&[
        ("Dockerfile", &format!("FROM {base}\nARG GREETING=hi\nENV G=$GREETING\nCOPY msg.txt /msg.txt\nCMD [\"sh\", \"-c\", \"echo $G; cat /msg.txt\"]\n")),
        ("msg.txt", "from docker build\n"),
        (".dockerignore", "secret.txt\n"),
        ("secret.txt", "never sent\n"),
    ]);
    let out = engine
        .docker_command()
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "build",
            "--build-arg",
            "GREETING=hello",
            "--build-arg",
            "UNUSED=1",
            "-t",
            "built/docker:1",
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    let printed = ok(out, "docker build");
    assert!(
        printed.contains("Step 4/5 : COPY msg.txt /msg.txt"),
        "{printed}"
    );
    assert!(
        printed.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{printed}"
    );
    assert!(
        printed.contains("Successfully tagged built/docker:1"),
        "{printed}"
    );
    let run = ok(
        engine.docker(&["run", "--rm", "built/docker:1"]),
        "docker run",
    );
    assert_eq!(run, "hello\nfrom docker build\n");
    assert_nothing_left(&engine);
}

#[test]
fn independent_stages_build_at_the_same_time() {
    let registry = TestRegistry::start();
    let base = registry.push_busybox("build/busybox", "1");
    let engine = TestEngine::start();
    let df = format!(
        "FROM {base} AS one\nRUN sleep 1 && echo one > /one\n\
         FROM {base} AS two\nRUN sleep 1 && echo two > /two\n\
         FROM {base}\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n"
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let lines = post_build(&engine, ctx.path(), "t=built%2Fpar%3A1");
    assert_eq!(error_of(&lines), None, "{}", stream(&lines));
    // Stage two's RUN starts before stage one's RUN is done.
    let position = |name: &str, event: &str| {
        let vertex = lines
            .iter()
            .find(|l| {
                l["berth"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains(name))
            })
            .and_then(|l| l["berth"]["vertex"].as_u64())
            .unwrap_or_else(|| panic!("no vertex {name}"));
        lines
            .iter()
            .position(|l| {
                l["berth"]["vertex"].as_u64() == Some(vertex) && l["berth"]["event"] == event
            })
            .unwrap_or_else(|| panic!("no {event} for {name}"))
    };
    assert!(
        position("[two 2/2] RUN", "start") < position("[one 2/2] RUN", "done"),
        "{}",
        stream(&lines)
    );
    let run = ok(
        engine.docker(&["run", "--rm", "built/par:1", "cat", "/one", "/two"]),
        "docker run",
    );
    assert_eq!(run, "one\ntwo\n");
    assert_nothing_left(&engine);
}
