//! Building images from compose files, end to end through the CLI and berth's own engine (issue 9):
//! a multi-stage Dockerfile compiling C with gcc on a Debian image made here from Debian packages
//! (no registry, no internet), copied into a `scratch` stage; `up --build` runs it; a second build
//! is all cache hits; editing one source file re-runs only the steps from its COPY; `up --build`
//! recreates only the service whose image changed. Bad input fails with the Dockerfile's
//! file:line and leaves no container, mount, snapshot or image behind.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::project::TestProject;

const DEBIAN: &str = "berth-test/debian-gcc:bookworm";
const BUSYBOX: &str = "berth-test/busybox:1";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `#N` of the progress line naming `step` (e.g. `COPY hello.c`), and whether `#N CACHED`
/// follows for it.
fn step_cached(output: &str, step: &str) -> Option<bool> {
    let start = output
        .lines()
        .find(|l| l.starts_with('#') && l.contains(step) && l.contains('['))?;
    let vertex = start.split_whitespace().next()?;
    Some(
        output
            .lines()
            .any(|l| l.trim() == format!("{vertex} CACHED")),
    )
}

/// The ids of `service`'s containers, running or not.
fn container_ids(project: &TestProject, service: &str) -> String {
    project.docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={}", project.name),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
}

const HELLO_C: &str = "#include <stdio.h>\n#include \"greeting.h\"\nint main(void) { printf(\"%s from gcc\\n\", GREETING); return 0; }\n";

fn hello_project() -> TestProject {
    let project = TestProject::new("bld", "services: {}\n");
    let mark = project.name.clone();
    project.write_compose(&format!(
        "services:\n  hello:\n    build: ./hello\n    environment:\n      BERTH_TEST_MARK: {mark}\n  idle:\n    build:\n      context: ./idle\n      args:\n        NOTE: steady\n    command: [sleep, '300']\n    environment:\n      BERTH_TEST_MARK: {mark}\n"
    ));
    let dir = project.dir.path();
    write(
        dir,
        "hello/Dockerfile",
        &format!(
            "FROM {DEBIAN} AS builder\nWORKDIR /src\nCOPY greeting.h ./\nCOPY hello.c ./\nRUN gcc -static -O2 -o /hello hello.c && echo compiled-$((40+2))\n\nFROM scratch\nCOPY --from=builder /hello /hello\nCMD [\"/hello\"]\n"
        ),
    );
    write(dir, "hello/greeting.h", "#define GREETING \"hello\"\n");
    write(dir, "hello/hello.c", HELLO_C);
    write(
        dir,
        "idle/Dockerfile",
        &format!("FROM {BUSYBOX}\nARG NOTE\nRUN echo \"$NOTE\" > /note\n"),
    );
    project
}

#[test]
fn multi_stage_gcc_build_runs_caches_and_rebuilds_only_what_changed() {
    let project = hello_project();
    if !common::debian::import_debian(&project, DEBIAN) {
        return;
    }
    project.import_busybox(BUSYBOX);

    // up --build: both images built, the program's output in the logs.
    let out = project.berth(&["up", "-d", "--build"]);
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("compiled-42"),
        "the RUN's output is shown:\n{text}"
    );
    assert!(
        text.contains("Service hello") && text.contains("Built"),
        "{text}"
    );
    let logs = project.eventually(Duration::from_secs(30), || {
        let logs = project.ok(&["logs", "hello"]);
        logs.contains("hello from gcc").then_some(logs)
    });
    assert!(
        logs.is_some(),
        "berth logs hello never showed the program's output"
    );
    let hello_before = container_ids(&project, "hello");
    let idle_before = container_ids(&project, "idle");
    assert!(!hello_before.trim().is_empty() && !idle_before.trim().is_empty());

    // No change: every step is a cache hit, nothing is compiled.
    let out = project.berth(&["build"]);
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    for step in [
        "WORKDIR /src",
        "COPY greeting.h",
        "COPY hello.c",
        "RUN gcc",
        "COPY --from=builder",
        "RUN echo",
    ] {
        assert_eq!(
            step_cached(&text, step),
            Some(true),
            "{step} not CACHED:\n{text}"
        );
    }
    assert!(!text.contains("compiled-42"), "{text}");

    // One file changed: the steps before its COPY stay cached, the ones from it re-run.
    write(
        project.dir.path(),
        "hello/hello.c",
        &HELLO_C.replace("from gcc", "again from gcc"),
    );
    let out = project.berth(&["up", "-d", "--build"]);
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(step_cached(&text, "COPY greeting.h"), Some(true), "{text}");
    assert_eq!(step_cached(&text, "COPY hello.c"), Some(false), "{text}");
    assert_eq!(step_cached(&text, "RUN gcc"), Some(false), "{text}");
    assert!(text.contains("compiled-42"), "{text}");
    assert_eq!(step_cached(&text, "RUN echo"), Some(true), "{text}");

    // Only the service whose image changed is recreated.
    assert_ne!(container_ids(&project, "hello"), hello_before);
    assert_eq!(container_ids(&project, "idle"), idle_before);
    let logs = project.eventually(Duration::from_secs(30), || {
        let logs = project.ok(&["logs", "hello"]);
        logs.contains("again from gcc").then_some(logs)
    });
    assert!(logs.is_some(), "the rebuilt program never ran");
}

/// What the engine holds, to compare before and after a failed build.
fn engine_state(project: &TestProject) -> (String, String, usize, Vec<String>) {
    let containers = project.docker(&["ps", "-aq"]);
    let images = project.docker(&["images", "-aq", "--no-trunc"]);
    let snapshots = std::fs::read_dir(project.data_root().join("snapshots"))
        .map(|d| d.count())
        .unwrap_or(0);
    (containers, images, snapshots, project.leftover_mounts())
}

#[test]
fn bad_input_fails_with_file_and_line_and_leaves_nothing_behind() {
    let project = TestProject::new("bldbad", "services: {}\n");
    project.import_busybox(BUSYBOX);
    let dir = project.dir.path();
    write(dir, "ctx/file.txt", "inside\n");
    std::os::unix::fs::symlink("/etc", dir.join("ctx/escape")).unwrap();
    let before = engine_state(&project);

    let cases: &[(&str, &[&str])] = &[
        (
            &format!("FROM {BUSYBOX}\nRUNN echo hi\n"),
            &["Dockerfile:2", "unknown instruction", "RUNN"],
        ),
        (
            &format!("FROM {BUSYBOX}\nCOPY ../secret /x\n"),
            &["Dockerfile:2", "outside the build context"],
        ),
        (
            &format!("FROM {BUSYBOX}\nCOPY escape/passwd /p\n"),
            &["Dockerfile:2", "outside the build context"],
        ),
        (
            &format!("FROM {BUSYBOX}\nRUN echo first-words && echo last-words && exit 3\n"),
            &["Dockerfile:2", "exit code", "3", "last-words"],
        ),
    ];
    for (dockerfile, wanted) in cases {
        write(dir, "ctx/Dockerfile", dockerfile);
        project.write_compose("services:\n  app:\n    build: ./ctx\n");
        let err = project.fails(&["build"]);
        for w in *wanted {
            assert!(
                err.to_lowercase().contains(&w.to_lowercase()),
                "{dockerfile:?}: {w:?} missing from:\n{err}"
            );
        }
        assert_eq!(
            engine_state(&project),
            before,
            "{dockerfile:?} left something behind"
        );
    }

    // A target stage the Dockerfile does not have.
    write(
        dir,
        "ctx/Dockerfile",
        &format!("FROM {BUSYBOX} AS base\nRUN true\n"),
    );
    project.write_compose("services:\n  app:\n    build: {context: ./ctx, target: nosuch}\n");
    let err = project.fails(&["build"]);
    assert!(err.contains("nosuch"), "{err}");
    assert_eq!(engine_state(&project), before);

    // A context that does not exist: the service and the compose file are named.
    project.write_compose("services:\n  app:\n    build: ./nowhere\n");
    let err = project.fails(&["up", "-d"]);
    let compose = dir.join("compose.yaml");
    assert!(
        err.contains("service \"app\"")
            && err.contains(&compose.display().to_string())
            && err.contains("nowhere")
            && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(engine_state(&project), before);

    // What berth cannot do yet is refused by name before anything is sent.
    project.write_compose("services:\n  app:\n    build: {context: ./ctx, ssh: [default]}\n");
    let err = project.fails(&["build"]);
    assert!(err.contains("build.ssh is not supported yet"), "{err}");
}

#[test]
fn compose_build_options_reach_the_image() {
    let mut project = TestProject::new("bldopt", "services: {}\n");
    project.env.push(("FROM_ENV".into(), "from-env".into()));
    project.import_busybox(BUSYBOX);
    let dir = project.dir.path();
    write(dir, "ctx/kept.txt", "kept\n");
    write(dir, "ctx/secret.env", "TOKEN=1\n");
    write(dir, "ctx/.dockerignore", "*.env\n");
    project.write_compose(&format!(
        "services:\n  app:\n    build:\n      context: ./ctx\n      dockerfile_inline: |\n        FROM {BUSYBOX}\n        ARG GREETING\n        ARG FROM_ENV\n        COPY . /ctx/\n        RUN echo \"$$GREETING $$FROM_ENV\" > /greeting\n        CMD cat /greeting; ls /ctx\n      args:\n        GREETING: hi\n        FROM_ENV:\n      tags: [berth-test/app:extra]\n"
    ));
    let out = project.berth(&[
        "build",
        "--build-arg",
        "GREETING=hello",
        "--progress",
        "plain",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ran = project.ok(&["run", "--rm", "app"]);
    assert!(ran.contains("hello from-env"), "{ran}");
    assert!(ran.contains("kept.txt"), "{ran}");
    assert!(!ran.contains("secret.env"), ".dockerignore honoured: {ran}");
    let images = project.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let image = format!("{}-app:latest", project.name);
    assert!(
        images.contains(&image) && images.contains("berth-test/app:extra"),
        "{images}"
    );

    // -q prints nothing; the cache makes it quick.
    let out = project.berth(&["build", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).trim().is_empty() && out.stdout.is_empty(),
        "{}",
        stderr(&out)
    );

    let pruned = project.ok(&["builder", "prune", "-af"]);
    assert!(
        pruned.contains("Deleted build cache objects:")
            && pruned.contains("Total reclaimed space:"),
        "{pruned}"
    );
    // The cache is gone: the same build runs its RUN again.
    let out = project.berth(&[
        "build",
        "--build-arg",
        "GREETING=hello",
        "--progress",
        "plain",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        !text.lines().any(|l| l.ends_with(" CACHED")),
        "nothing cached after prune: {text}"
    );
}
