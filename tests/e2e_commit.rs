//! `berth commit SERVICE [REPOSITORY[:TAG]]` end to end: a file written in a running service
//! is in the committed image (a second project started from it reads it), `-c` changes and
//! `-a`/`-m` land in the image's config, no repository gives an untagged image, and a service
//! that has no container or does not exist is a clear error naming it.

mod common;

use common::project::{unique_name, TestProject};

const IMAGE: &str = "commit/busybox:1";

/// A project with two long-running busybox services; only `web` is up (`idle` has no container).
fn project_up() -> TestProject {
    let project = TestProject::new("commit", "");
    project.import_busybox(IMAGE);
    project.write_compose(&format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: ["sleep", "300"]
    stop_grace_period: 1s
  idle:
    image: {IMAGE}
    command: ["sleep", "300"]
"#
    ));
    project.ok(&["up", "-d", "web"]);
    project
}

fn inspect(project: &TestProject, image: &str) -> serde_json::Value {
    let out = project.ok(&["image", "inspect", image]);
    let all: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    all[0].clone()
}

#[test]
fn commit_makes_an_image_a_second_project_runs_with_the_changes() {
    let project = project_up();
    project.ok(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "echo committed > /marker.txt",
    ]);
    let repo = format!("test-commit-{}", project.name);
    let reference = format!("{repo}:v1");
    let id = project.ok(&[
        "commit",
        "-a",
        "Berth Tester",
        "-m",
        "with a marker",
        "-c",
        "ENV X=1",
        "web",
        &reference,
    ]);
    let id = id.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "prints the image ID: {id:?}"
    );

    let image = inspect(&project, &reference);
    assert_eq!(image["Id"], id);
    let env: Vec<&str> = image["Config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"X=1"), "{env:?}");
    // The message is the new layer's history comment (`docker history`'s COMMENT column).
    let history = project.ok(&["image", "history", "--no-trunc", &reference]);
    let newest = history.lines().nth(1).expect("a history row");
    assert!(
        newest.starts_with(id) && newest.ends_with("with a marker"),
        "{history}"
    );
    // Paused for the commit by default, and running again afterwards.
    assert!(project.ok(&["ps"]).contains("Up"), "web keeps running");

    // A second project on the same engine, from the committed image, sees the file and the ENV.
    let second = project.dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(
        second.join("compose.yaml"),
        format!("services:\n  app:\n    image: {reference}\n    command: [\"sleep\", \"300\"]\n    stop_grace_period: 1s\n"),
    )
    .unwrap();
    let second_name = unique_name("commit2");
    let in_second = |args: &[&str]| {
        let mut all = vec!["-p", second_name.as_str()];
        all.extend_from_slice(args);
        let out = project.berth_in(&second, false, &all);
        assert!(
            out.status.success(),
            "berth {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    in_second(&["up", "-d"]);
    let seen = in_second(&["exec", "-T", "app", "sh", "-c", "cat /marker.txt; echo $X"]);
    assert_eq!(seen, "committed\n1\n");
    in_second(&["down"]);

    project.ok(&["image", "rm", &reference]);
    let gone = project.berth(&["image", "inspect", &reference]);
    assert!(!gone.status.success(), "the committed image was removed");
}

#[test]
fn commit_without_a_repository_is_untagged_and_bad_services_are_named() {
    let project = project_up();
    let id = project.ok(&["commit", "--pause=false", "web"]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:"), "{id:?}");
    let image = inspect(&project, &id);
    assert_eq!(
        image["RepoTags"],
        serde_json::json!([]),
        "untagged: {image}"
    );

    let err = project.fails(&["commit", "nosuch"]);
    assert!(err.contains("no such service: nosuch"), "{err}");
    let err = project.fails(&["commit", "idle"]);
    assert!(
        err.contains("service \"idle\" has no container to commit"),
        "{err}"
    );
    let err = project.fails(&["commit", "--index", "2", "web"]);
    assert!(err.contains("service \"web\" has no container #2"), "{err}");

    project.ok(&["image", "rm", &id]);
}
