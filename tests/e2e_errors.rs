//! Bad inputs to `berth up`, each answered with a clear error that names the problem, and each
//! leaving nothing behind: no container, network, volume, process or mount.

mod common;

use common::project::TestProject;
use common::registry::{free_port, TarBuilder, TestRegistry};

/// Nothing of the project exists in the engine (asked through the real Docker CLI client), and no
/// process or mount of it remains on the host.
fn assert_nothing_left(project: &TestProject) {
    if project.socket().exists() {
        let label = format!("label=com.docker.compose.project={}", project.name);
        assert_eq!(
            project.docker(&["ps", "-aq", "--filter", &label]).trim(),
            "",
            "no container left"
        );
        assert_eq!(
            project
                .docker(&["network", "ls", "-q", "--filter", &label])
                .trim(),
            "",
            "no network left"
        );
        assert_eq!(
            project
                .docker(&["volume", "ls", "-q", "--filter", &label])
                .trim(),
            "",
            "no volume left"
        );
    }
    let procs: Vec<String> = project
        .leftover_processes()
        .into_iter()
        .filter(|p| !p.contains(" engine "))
        .collect();
    assert!(procs.is_empty(), "no container process left: {procs:?}");
    assert!(
        project.leftover_mounts().is_empty(),
        "no mount left: {:?}",
        project.leftover_mounts()
    );
}

#[test]
fn missing_compose_file_names_the_directory_and_the_file_names() {
    let project = TestProject::new("nofile", "");
    std::fs::remove_file(project.dir.path().join("compose.yaml")).expect("remove compose.yaml");
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains("compose.yaml"),
        "error names the expected file names: {err}"
    );
    assert!(
        err.contains(&project.dir.path().display().to_string())
            || err.to_lowercase().contains("no configuration file"),
        "error says where it looked: {err}"
    );
    assert_nothing_left(&project);
}

#[test]
fn yaml_syntax_error_names_file_line_and_column() {
    let project = TestProject::new(
        "badyaml",
        "services:\n  web:\n    image: busybox\n   bad: [\n",
    );
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains(
            "compose.yaml:4:7: yaml syntax error: while parsing a block mapping, did not find expected key"
        ),
        "error names file, line and column: {err}"
    );
    assert_nothing_left(&project);
}

#[test]
fn depends_on_cycle_names_the_services() {
    let project = TestProject::new(
        "cycle",
        "services:\n  a:\n    image: busybox\n    depends_on: [b]\n  b:\n    image: busybox\n    depends_on: [a]\n",
    );
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains(
            "dependency cycle detected: a -> b -> a; remove one of these depends_on entries"
        ),
        "error names the cycle: {err}"
    );
    assert_nothing_left(&project);
}

#[test]
fn unknown_image_is_named_and_nothing_is_created() {
    let registry = TestRegistry::start();
    let image = format!("{}/nosuch/image:1", registry.host());
    let project = TestProject::new(
        "noimage",
        &format!("services:\n  web:\n    image: {image}\n    command: [sleep, '60']\nvolumes:\n  data: {{}}\n"),
    );
    let err = project.fails(&["up", "-d"]);
    assert!(err.contains("nosuch/image"), "error names the image: {err}");
    assert_nothing_left(&project);
}

#[test]
fn unreachable_registry_is_named() {
    let port = free_port();
    let project = TestProject::new(
        "noregistry",
        &format!("services:\n  web:\n    image: 127.0.0.1:{port}/app:1\n"),
    );
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "error names the registry: {err}"
    );
    assert_nothing_left(&project);
}

#[test]
fn failing_start_rolls_back_what_up_made() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("rollback/busybox", "1");
    let project = TestProject::new(
        "rollback",
        &format!(
            "services:\n  web:\n    image: {image}\n    command: [/no/such/binary]\n    volumes: [data:/data]\n    environment:\n      BERTH_TEST_MARK: x\nvolumes:\n  data: {{}}\n"
        ),
    );
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains("/no/such/binary"),
        "error names the missing executable: {err}"
    );
    assert_nothing_left(&project);
}

#[test]
fn hostile_layer_fails_up_and_writes_nothing_outside_the_root() {
    let registry = TestRegistry::start();
    let project = TestProject::new("hostile", "");
    let outside = project.roots.path().join("outside");
    std::fs::create_dir(&outside).expect("sentinel dir");
    let mut layer = TarBuilder::new();
    layer
        .file("ok", 0o644, b"fine")
        .symlink("escape", &outside.display().to_string())
        .file("escape/pwned", 0o644, b"x")
        .file("../../../../../../outside-dotdot", 0o644, b"x");
    let image = registry.push_layers("hostile/layer", "1", &[layer.finish()]);
    std::fs::write(
        project.dir.path().join("compose.yaml"),
        format!("services:\n  web:\n    image: {image}\n"),
    )
    .expect("write compose");
    let err = project.fails(&["up", "-d"]);
    assert!(
        err.contains("hostile layer"),
        "error says the layer is hostile: {err}"
    );
    assert!(
        err.contains("hostile/layer"),
        "error names the image: {err}"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("read sentinel").count(),
        0,
        "nothing written through the symlink"
    );
    assert!(
        !std::path::Path::new("/outside-dotdot").exists(),
        "nothing written through ../"
    );
    assert_nothing_left(&project);
}
