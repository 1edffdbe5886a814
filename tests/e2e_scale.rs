//! Replicas end to end through the `berth` CLI and a real engine: `up --scale web=3` adds
//! `<project>-web-2` and `-3` next to the kept `-1`, every replica answers under the service's DNS
//! name, `exec --index` reaches one replica, and scaling back to 1 keeps the lowest number.
//! A `container_name` with more than one replica is refused with docker compose's words.

mod common;

use common::project::TestProject;
use common::registry::TestRegistry;

fn compose(image: &str, mark: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    environment:\n      BERTH_TEST_MARK: {mark}\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n  \
         probe:\n    image: {image}\n    environment:\n      BERTH_TEST_MARK: {mark}\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 0.2; done\"]\n"
    )
}

/// The names of the project's running containers, sorted.
fn running(project: &TestProject) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={}", project.name);
    let mut names: Vec<String> = project
        .docker(&["ps", "--filter", &filter, "--format", "{{.Names}}"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names
}

/// The addresses `web` resolves to inside `probe` (busybox nslookup: the answer follows `Name:`).
fn web_addresses(project: &TestProject) -> Vec<String> {
    let out = project.ok(&["exec", "-T", "probe", "nslookup", "web"]);
    let answer = out.split_once("Name:").map(|(_, a)| a).unwrap_or("");
    let mut addresses: Vec<String> = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The address of one container on the project's default network.
fn address_of(project: &TestProject, container: &str) -> String {
    project
        .docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ])
        .trim()
        .to_string()
}

#[test]
fn scaling_one_to_three_to_one_numbers_resolves_and_keeps_the_lowest() {
    let registry = TestRegistry::start();
    let image = registry.push_busybox("scale/busybox", "1");
    let project = TestProject::new("scale", "");
    project.write_compose(&compose(&image, &project.name));
    let name = |n: u32| format!("{}-web-{n}", project.name);
    let probe = format!("{}-probe-1", project.name);

    project.ok(&["up", "-d"]);
    assert_eq!(running(&project), [probe.clone(), name(1)]);
    let first_id = project.docker(&["inspect", "--format", "{{.Id}}", &name(1)]);

    project.ok(&["up", "-d", "--scale", "web=3"]);
    assert_eq!(
        running(&project),
        [probe.clone(), name(1), name(2), name(3)]
    );
    assert_eq!(
        project.docker(&["inspect", "--format", "{{.Id}}", &name(1)]),
        first_id,
        "scaling up keeps the first replica"
    );
    let number = project.docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"com.docker.compose.container-number\"}}",
        &name(3),
    ]);
    assert_eq!(number.trim(), "3");
    let mut expected: Vec<String> = (1..=3).map(|n| address_of(&project, &name(n))).collect();
    expected.sort();
    assert_eq!(
        web_addresses(&project),
        expected,
        "every replica answers as web"
    );
    // `exec --index` reaches the replica it names.
    let hostname = project.ok(&["exec", "-T", "--index", "2", "web", "hostname"]);
    let id2 = project.docker(&["inspect", "--format", "{{.Id}}", &name(2)]);
    assert!(id2.starts_with(hostname.trim()), "{hostname} vs {id2}");

    let out = project.berth(&["up", "-d", "--scale", "web=1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(running(&project), [probe.clone(), name(1)]);
    assert_eq!(
        project.docker(&["inspect", "--format", "{{.Id}}", &name(1)]),
        first_id,
        "scaling down keeps the lowest number"
    );
    assert_eq!(web_addresses(&project), [address_of(&project, &name(1))]);

    // Back to the file's count (1): nothing to do.
    let out = project.berth(&["up", "-d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Created") && !stderr.contains("Removed"),
        "{stderr}"
    );
    project.ok(&["down"]);
    assert!(running(&project).is_empty());
}

#[test]
fn a_fixed_container_name_cannot_be_scaled() {
    let project = TestProject::new("scalename", "");
    project.write_compose(
        "services:\n  web:\n    image: busybox\n    container_name: fixed\n    deploy:\n      replicas: 2\n",
    );
    let stderr = project.fails(&["up", "-d", "--pull", "never"]);
    assert!(
        stderr.contains("The \"web\" service is using the custom container name \"fixed\". Docker requires each container to have a unique name. Remove the custom name to scale the service"),
        "{stderr}"
    );
    assert!(!stderr.contains("Created"), "{stderr}");
}
