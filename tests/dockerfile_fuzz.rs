//! Property test over the Dockerfile parser and the `.dockerignore` matcher, which the engine runs
//! on whatever a `POST /build` client sends: any text (random, and Dockerfile-shaped with flags,
//! heredocs, continuations, substitutions and stage references) gives `Ok` or an error — never a
//! panic or a hang — and every step of a parsed file expands and plans without panicking.
//! Set PROPTEST_CASES for longer runs.

use std::time::{Duration, Instant};

use berth::engine::build::dockerfile::{parse, Instruction};
use berth::engine::build::ignore::DockerIgnore;
use proptest::prelude::*;

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("# syntax=docker/dockerfile:1\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("ARG BASE=debian:${V:-12}\n".to_string()),
        Just("FROM $BASE AS build\n".to_string()),
        Just("FROM --platform=$BUILDPLATFORM scratch\n".to_string()),
        Just("FROM build AS final\n".to_string()),
        Just("RUN --mount=type=cache,target=/c,id=${ID} make \\\n".to_string()),
        Just("  && make install\n".to_string()),
        Just("RUN <<EOF\n".to_string()),
        Just("RUN <<-'EOT' cat\n\tbody $X\n\tEOT\n".to_string()),
        Just("EOF\n".to_string()),
        Just("COPY --from=0 --chown=$U a b /dst/\n".to_string()),
        Just("COPY <<A /a\nhello ${NAME:?x}\nA\n".to_string()),
        Just("ADD --checksum=sha256:x https://h/f /f\n".to_string()),
        Just("ENV A=1 B=\"two words\" C\n".to_string()),
        Just("LABEL a=\"b\nc\"\n".to_string()),
        Just("EXPOSE $PORTS 80/tcp\n".to_string()),
        Just("VOLUME [\"/data\", 1]\n".to_string()),
        Just("CMD [\"a\", \"b\"\n".to_string()),
        Just("HEALTHCHECK --interval=1.5s --retries=x CMD true\n".to_string()),
        Just("ONBUILD ONBUILD RUN x\n".to_string()),
        Just("ONBUILD COPY <<E /e\nE\n".to_string()),
        Just("SHELL [\"/bin/bash\", \"-c\"]\n".to_string()),
        Just("WORKDIR ${A:+${B:-${C}}}\n".to_string()),
        Just("USER '$U'\\\n".to_string()),
        Just("\\\n".to_string()),
        Just("\n".to_string()),
        Just("${".to_string()),
        Just("\"".to_string()),
        "[ -~]{0,30}\n",
    ]
}

fn run(text: &str) {
    let started = Instant::now();
    if let Ok(dockerfile) = parse("Dockerfile", text) {
        let lookup = |name: &str| name.len().is_multiple_of(2).then(|| format!("v {name}"));
        let _ = dockerfile.stage_order(None, &lookup);
        for (index, stage) in dockerfile.stages.iter().enumerate() {
            let _ = dockerfile.stage_base(index, &lookup);
            let _ = dockerfile.stage_dependencies(index, &lookup);
            for step in &stage.instructions {
                let _ = dockerfile.expand(step, &lookup);
                if let Instruction::Run(run) = &step.value {
                    let _ = run.program(&["/bin/sh".to_string(), "-c".to_string()]);
                }
            }
        }
    }
    if let Ok(ignore) = DockerIgnore::parse(text) {
        for path in ["a", "a/b/c.txt", ".git/HEAD", "", "./x/../y"] {
            let _ = ignore.matches(path);
            let _ = ignore.can_skip_dir(path);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} on:\n{text}",
        started.elapsed()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_dockerfile_shaped_input(parts in proptest::collection::vec(fragment(), 0..24)) {
        run(&parts.concat());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        run(&text);
    }
}

#[test]
fn a_huge_hostile_file_is_handled_quickly() {
    let nested = format!("{}x{}", "${A:-".repeat(50_000), "}".repeat(50_000));
    let text = format!(
        "FROM scratch\nWORKDIR {nested}\nRUN {}true\n",
        "\\\n".repeat(50_000)
    );
    let started = Instant::now();
    let dockerfile = parse("Dockerfile", &text).unwrap();
    let none = |_: &str| None;
    let error = dockerfile
        .expand(&dockerfile.stages[0].instructions[0], &none)
        .unwrap_err()
        .to_string();
    assert!(error.contains("nested too deeply"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
