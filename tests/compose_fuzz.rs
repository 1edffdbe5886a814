//! Property test over the compose loader: any input text (random bytes, and compose-shaped YAML
//! with anchors, aliases, merge keys, tags, interpolation and tabs) gives `Ok` or an error,
//! never a panic or a hang; alias bombs are cut off. Set PROPTEST_CASES for longer runs.

use std::time::{Duration, Instant};

use berth::compose::{load, LoadOptions};
use proptest::prelude::*;

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("services:\n".to_string()),
        Just("  web:\n    image: nginx\n".to_string()),
        Just("    ports: [\"${P:-80}:80\", 8080]\n".to_string()),
        Just("    volumes: ['./a:/a:ro', 'data:/d', ':/x']\n".to_string()),
        Just("    depends_on: [db]\n".to_string()),
        Just("    depends_on: {db: {condition: service_healthy}}\n".to_string()),
        Just("    environment: [A=1, B]\n".to_string()),
        Just("    command: sh -c 'echo \"$$HOME\"'\n".to_string()),
        Just("    extends: web\n".to_string()),
        Just("  db: &db\n    image: postgres\n".to_string()),
        Just("  db2:\n    <<: *db\n".to_string()),
        Just("    healthcheck: {test: true, interval: ${I}}\n".to_string()),
        Just("    networks: !reset []\n".to_string()),
        Just("    labels: !override {a: b}\n".to_string()),
        Just("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string()),
        Just("x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n".to_string()),
        Just("x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n".to_string()),
        Just("x-d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n".to_string()),
        Just("networks:\n  n: {external: true, driver: x}\n".to_string()),
        Just("volumes:\n  data:\n".to_string()),
        Just("\t".to_string()),
        Just("${".to_string()),
        Just("name: ${N:?}\n".to_string()),
        "[ -~]{0,20}\n",
    ]
}

fn run(text: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, text).expect("write");
    let started = Instant::now();
    let _ = load(&LoadOptions {
        files: vec![file],
        working_dir: dir.path().to_path_buf(),
        project_name: Some("fuzz".into()),
        ..Default::default()
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "load took {:?} on:\n{text}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_on_compose_shaped_input(parts in proptest::collection::vec(fragment(), 0..24)) {
        run(&parts.concat());
    }

    #[test]
    fn loader_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        run(&text);
    }
}

#[test]
fn billion_laughs_is_rejected_quickly() {
    let mut text = String::from(
        "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut prev = "a";
    for n in names {
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("x-{n}: &{n} [{refs}]\n"));
        prev = n;
    }
    text.push_str("services:\n  web:\n    image: nginx\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, &text).unwrap();
    let started = Instant::now();
    let err = load(&LoadOptions {
        files: vec![file],
        working_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("excessive aliasing"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
