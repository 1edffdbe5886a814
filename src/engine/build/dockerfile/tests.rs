//! Whole-file tests: what `parse` makes of a Dockerfile, as the executor and a user see it.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn parsed(text: &str) -> Dockerfile {
    match parse("Dockerfile", text) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn error(text: &str) -> String {
    parse("Dockerfile", text).unwrap_err().to_string()
}

/// The instructions of the only (or last) stage.
fn steps(text: &str) -> Vec<Instruction> {
    let dockerfile = parsed(text);
    let stage = dockerfile.stages.last().unwrap();
    stage.instructions.iter().map(|s| s.value.clone()).collect()
}

fn step(text: &str) -> Instruction {
    steps(&format!("FROM scratch\n{text}")).remove(0)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_simple_file_has_one_stage_with_lines_and_texts() {
    let d = parsed("# syntax=docker/dockerfile:1\nFROM debian:bookworm\n\nRUN apt-get update && \\\n    apt-get install -y gcc\nCOPY . /src\nCMD [\"/src/app\"]\n");
    assert_eq!(d.file_name, "Dockerfile");
    assert_eq!(d.escape, '\\');
    assert_eq!(d.syntax_note.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.stages.len(), 1);
    let stage = &d.stages[0];
    assert_eq!(
        (stage.base.as_str(), stage.line, stage.name.as_ref()),
        ("debian:bookworm", 2, None)
    );
    assert_eq!(stage.text, "FROM debian:bookworm");
    let lines: Vec<_> = stage
        .instructions
        .iter()
        .map(|s| (s.line, s.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (4, "RUN apt-get update &&     apt-get install -y gcc"),
            (6, "COPY . /src"),
            (7, "CMD [\"/src/app\"]"),
        ]
    );
}

#[test]
fn empty_continuation_lines_are_accepted_with_a_warning() {
    let d = parsed("FROM x\nRUN a \\\n\n  b\n");
    assert_eq!(
        d.warnings,
        ["Dockerfile:2: empty continuation line found in: RUN a   b (empty continuation lines will become errors in a future release)"]
    );
    assert!(parsed("FROM x\n").warnings.is_empty());
}

#[test]
fn instruction_names_are_case_insensitive() {
    let d = parsed("from alpine as Builder\nrun echo hi\nWorkDir /app\n");
    assert_eq!(d.stages[0].name.as_deref(), Some("builder"));
    assert_eq!(
        d.stages[0].instructions[0].value,
        Instruction::Run(Run {
            command: ShellOrExec::Shell("echo hi".into()),
            mounts: vec![],
            heredocs: vec![],
        })
    );
    assert_eq!(
        d.stages[0].instructions[1].value,
        Instruction::Workdir("/app".into())
    );
}

#[test]
fn json_form_is_exec_and_anything_else_is_shell_form() {
    assert_eq!(
        step("CMD [\"echo\", \"a b\"]"),
        Instruction::Cmd(ShellOrExec::Exec(strings(&["echo", "a b"])))
    );
    // Not valid JSON (single quotes): shell form with the text as written.
    assert_eq!(
        step("ENTRYPOINT ['echo', 'x']"),
        Instruction::Entrypoint(ShellOrExec::Shell("['echo', 'x']".into()))
    );
    assert_eq!(
        step("ENTRYPOINT"),
        Instruction::Entrypoint(ShellOrExec::Exec(vec![]))
    );
    assert_eq!(
        error("FROM x\nCMD [\"a\", 1]"),
        "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(
        step("SHELL [\"/bin/bash\", \"-c\"]"),
        Instruction::Shell(strings(&["/bin/bash", "-c"]))
    );
    assert_eq!(
        error("FROM x\nSHELL /bin/bash -c"),
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn env_and_label_take_both_forms_with_quotes_kept_until_expansion() {
    assert_eq!(
        step("ENV A=1 B=\"two words\" C=x\\ y"),
        Instruction::Env(pairs(&[("A", "1"), ("B", "\"two words\""), ("C", "x\\ y")]))
    );
    assert_eq!(
        step("ENV PATH /usr/local/bin:$PATH"),
        Instruction::Env(pairs(&[("PATH", "/usr/local/bin:$PATH")]))
    );
    assert_eq!(
        step("LABEL org.opencontainers.image.title=\"My app\" version=1"),
        Instruction::Label(pairs(&[
            ("org.opencontainers.image.title", "\"My app\""),
            ("version", "1")
        ]))
    );
    assert_eq!(
        error("FROM x\nENV"),
        "Dockerfile:2: ENV requires at least one argument"
    );
    assert_eq!(
        error("FROM x\nENV ONLY"),
        "Dockerfile:2: ENV must have two arguments"
    );
}

#[test]
fn arg_declares_names_with_optional_defaults() {
    assert_eq!(
        step("ARG A B=2 C=\"x y\""),
        Instruction::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("\"x y\"".into())
            },
        ])
    );
    assert_eq!(
        error("FROM x\nARG =1"),
        "Dockerfile:2: ARG names can not be blank"
    );
}

#[test]
fn copy_and_add_take_their_flags_and_reject_others() {
    let Instruction::Copy(copy) =
        step("COPY --from=build --chown=app:app --chmod=0755 --link a b /dst/")
    else {
        panic!()
    };
    assert_eq!(copy.sources, ["a", "b"]);
    assert_eq!(copy.dest, "/dst/");
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("app:app"));
    assert_eq!(copy.chmod.as_deref(), Some("0755"));
    assert!(copy.link);
    let Instruction::Add(add) = step("ADD --keep-git-dir --checksum=sha256:abc https://x/y.tgz /y")
    else {
        panic!()
    };
    assert!(add.keep_git_dir);
    assert_eq!(add.checksum.as_deref(), Some("sha256:abc"));
    let Instruction::Copy(json) = step("COPY [\"a b\", \"/d st/\"]") else {
        panic!()
    };
    assert_eq!(
        (json.sources, json.dest),
        (strings(&["a b"]), "/d st/".to_string())
    );
    assert_eq!(
        error("FROM x\nCOPY --frm=a b c"),
        "Dockerfile:2: unknown flag: frm"
    );
    assert_eq!(
        error("FROM x\nADD --from=a b c"),
        "Dockerfile:2: unknown flag: from"
    );
    assert_eq!(
        error("FROM x\nCOPY onlyone"),
        "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
}

#[test]
fn run_takes_cache_mounts_and_refuses_what_berth_cannot_do() {
    let Instruction::Run(run) =
        step("RUN --mount=type=cache,target=/root/.cache,id=pip pip install x")
    else {
        panic!()
    };
    assert_eq!(run.command, ShellOrExec::Shell("pip install x".into()));
    let [RunMount::Cache(cache)] = run.mounts.as_slice() else {
        panic!()
    };
    assert_eq!(
        (cache.target.as_str(), cache.id.as_str()),
        ("/root/.cache", "pip")
    );
    assert_eq!(
        error("FROM x\n\nRUN --mount=type=secret,id=a cat /run/secrets/a"),
        "Dockerfile:3: RUN --mount=type=secret is not supported yet"
    );
    assert_eq!(
        error("FROM x\nRUN --network=none true"),
        "Dockerfile:2: RUN --network=none is not supported yet"
    );
    assert_eq!(
        error("FROM x\nRUN --security=insecure true"),
        "Dockerfile:2: RUN --security=insecure is not supported yet"
    );
    // The values that change nothing are fine.
    assert!(matches!(
        step("RUN --network=default --security=sandbox true"),
        Instruction::Run(_)
    ));
    assert_eq!(
        error("FROM x\nRUN --privileged true"),
        "Dockerfile:2: unknown flag: privileged"
    );
}

#[test]
fn run_heredocs_carry_their_bodies() {
    let Instruction::Run(run) = step("RUN <<EOF\n\techo $HOME\nEOF") else {
        panic!()
    };
    assert_eq!(run.command, ShellOrExec::Shell("<<EOF".into()));
    assert_eq!(run.heredocs[0].content, "\techo $HOME\n");
    let Instruction::Run(run) = step("RUN <<-EOF bash\n\techo a\n\t\tEOF") else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "echo a\n");
    let Instruction::Run(run) = step("RUN python3 <<'PY' > out\nprint(\"$x\")\nPY") else {
        panic!()
    };
    assert_eq!(
        run.command,
        ShellOrExec::Shell("python3 <<'PY' > out".into())
    );
    assert!(!run.heredocs[0].expand);
}

#[test]
fn copy_heredocs_become_inline_files() {
    let d = parsed("FROM x\nCOPY <<EOF /etc/motd\nhello $NAME\nEOF\nRUN true\n");
    let steps = &d.stages[0].instructions;
    let Instruction::Copy(copy) = &steps[0].value else {
        panic!()
    };
    assert!(copy.sources.is_empty());
    assert_eq!(copy.heredocs[0].name, "EOF");
    assert_eq!(copy.heredocs[0].content, "hello $NAME\n");
    assert_eq!(copy.dest, "/etc/motd");
    assert_eq!(steps[1].line, 5);
    assert_eq!(
        error("FROM x\nCOPY a <<EOF\nb\nEOF\n"),
        "Dockerfile:2: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn expose_volume_and_single_value_instructions() {
    assert_eq!(
        step("EXPOSE 80 443/tcp"),
        Instruction::Expose(strings(&["80", "443/tcp"]))
    );
    assert_eq!(
        step("VOLUME /a /b"),
        Instruction::Volume(strings(&["/a", "/b"]))
    );
    assert_eq!(
        step("VOLUME [\"/a b\"]"),
        Instruction::Volume(strings(&["/a b"]))
    );
    assert_eq!(step("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(
        step("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
    assert_eq!(
        step("MAINTAINER Jane <j@x>"),
        Instruction::Maintainer("Jane <j@x>".into())
    );
    assert_eq!(
        error("FROM x\nWORKDIR"),
        "Dockerfile:2: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        error("FROM x\nEXPOSE"),
        "Dockerfile:2: EXPOSE requires at least one argument"
    );
    assert_eq!(
        error("FROM x\nVOLUME [\"\"]"),
        "Dockerfile:2: VOLUME specified can not be an empty string"
    );
}

#[test]
fn healthcheck_options_and_errors() {
    assert_eq!(
        step("HEALTHCHECK --interval=5s --timeout=3s --start-period=1m --start-interval=1s --retries=4 CMD curl -f http://localhost/"),
        Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
            test: ShellOrExec::Shell("curl -f http://localhost/".into()),
            interval: Some(Duration::from_secs(5)),
            timeout: Some(Duration::from_secs(3)),
            start_period: Some(Duration::from_secs(60)),
            start_interval: Some(Duration::from_secs(1)),
            retries: Some(4),
        }))
    );
    assert_eq!(
        step("healthcheck none"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    let Instruction::Healthcheck(Healthcheck::Cmd(exec)) = step("HEALTHCHECK CMD [\"true\"]")
    else {
        panic!()
    };
    assert_eq!(exec.test, ShellOrExec::Exec(strings(&["true"])));
    assert_eq!(exec.interval, None);
    // Zero durations and retries inherit, as unset ones do.
    let Instruction::Healthcheck(Healthcheck::Cmd(zero)) =
        step("HEALTHCHECK --start-period=0s --interval=5s --timeout=0s --retries=0 CMD [\"foo\"]")
    else {
        panic!()
    };
    assert_eq!(
        (zero.start_period, zero.interval, zero.timeout, zero.retries),
        (None, Some(Duration::from_secs(5)), None, None)
    );
    for (text, message) in [
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK RUN x",
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --interval=10 CMD x",
            "time: missing unit in duration \"10\"",
        ),
        (
            "HEALTHCHECK --interval=-1s CMD x",
            "Interval \"interval\" cannot be negative",
        ),
        (
            "HEALTHCHECK --timeout=1us CMD x",
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        ("HEALTHCHECK --color=red CMD x", "unknown flag: color"),
    ] {
        assert_eq!(
            error(&format!("FROM x\n{text}")),
            format!("Dockerfile:2: {message}"),
            "{text}"
        );
    }
}

#[test]
fn onbuild_wraps_a_trigger_but_not_onbuild_from_or_maintainer() {
    let Instruction::Onbuild(onbuild) = step("ONBUILD COPY --from=x a /b") else {
        panic!()
    };
    assert_eq!(onbuild.text, "COPY --from=x a /b");
    assert!(matches!(&onbuild.instruction, Instruction::Copy(c) if c.from.as_deref() == Some("x")));
    let Instruction::Onbuild(heredoc) = step("ONBUILD RUN <<EOF\necho hi\nEOF") else {
        panic!()
    };
    assert_eq!(heredoc.text, "RUN <<EOF\necho hi\nEOF");
    assert_eq!(
        error("FROM x\nONBUILD ONBUILD RUN x"),
        "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        error("FROM x\nONBUILD from y"),
        "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("FROM x\nONBUILD MAINTAINER y"),
        "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
}

#[test]
fn a_stored_onbuild_trigger_parses_back() {
    let trigger = parse_trigger("RUN <<EOF\necho hi\nEOF", '\\').unwrap();
    let Instruction::Run(run) = trigger.value else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
    assert!(parse_trigger("FROM x", '\\')
        .unwrap_err()
        .to_string()
        .contains("FROM isn't allowed"));
}

#[test]
fn stage_structure_errors_carry_lines() {
    assert_eq!(error(""), "Dockerfile:1: file with no instructions");
    assert_eq!(
        error("# nothing\n"),
        "Dockerfile:1: file with no instructions"
    );
    assert_eq!(
        error("ARG A=1\n"),
        "Dockerfile: dockerfile contains no stages to build"
    );
    assert_eq!(
        error("ARG A\nRUN true\nFROM x\n"),
        "Dockerfile:2: no build stage in current context: RUN comes before the first FROM"
    );
    assert_eq!(
        error("FROM x\nRUNN make\n"),
        "Dockerfile:2: unknown instruction: RUNN"
    );
    assert_eq!(
        error("FROM a b\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a AS 1st\n"),
        "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        error("FROM a AS x\nFROM b AS X\n"),
        "Dockerfile:2: duplicate stage name \"x\""
    );
}

#[test]
fn global_args_are_kept_apart_from_stages() {
    let d = parsed(
        "ARG BASE=alpine\nARG TAG\nFROM --platform=linux/amd64 $BASE:${TAG:-3} AS build\nARG TAG\n",
    );
    let names: Vec<_> = d
        .global_args
        .iter()
        .map(|a| (a.line, a.value.name.as_str()))
        .collect();
    assert_eq!(names, [(1, "BASE"), (2, "TAG")]);
    assert_eq!(d.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(d.stages[0].base, "$BASE:${TAG:-3}");
    let none = |_: &str| None;
    assert_eq!(
        d.stage_base(0, &none).unwrap(),
        (
            BaseRef::Image("alpine:3".into()),
            Some("linux/amd64".into())
        )
    );
    let tag = |n: &str| (n == "TAG").then(|| "edge".to_string());
    assert_eq!(
        d.stage_base(0, &tag).unwrap().0,
        BaseRef::Image("alpine:edge".into())
    );
}

#[test]
fn backtick_escape_directive_changes_continuations() {
    let d = parsed("# escape=`\nFROM x\nRUN echo a `\n  b\nCOPY C:\\src C:\\dst\n");
    assert_eq!(d.escape, '`');
    let texts: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(texts, ["RUN echo a   b", "COPY C:\\src C:\\dst"]);
}

fn order(text: &str, target: Option<&str>) -> Result<Vec<usize>, String> {
    let none = |_: &str| None;
    parsed(text)
        .stage_order(target, &none)
        .map_err(|e| e.to_string())
}

const MULTI: &str = "\
FROM debian AS base
RUN true
FROM base AS build
RUN make
FROM alpine AS unused
RUN true
FROM scratch AS docs
COPY README /
FROM busybox
COPY --from=build /app /app
COPY --from=3 /README /
";

#[test]
fn stage_order_builds_dependencies_first_and_skips_unused_stages() {
    assert_eq!(order(MULTI, None), Ok(vec![0, 1, 3, 4]));
    assert_eq!(order(MULTI, Some("build")), Ok(vec![0, 1]));
    assert_eq!(order(MULTI, Some("UNUSED")), Ok(vec![2]));
    let d = parsed(MULTI);
    let none = |_: &str| None;
    assert_eq!(d.stage_dependencies(4, &none).unwrap(), [1, 3]);
    assert_eq!(d.stage_dependencies(1, &none).unwrap(), [0]);
    assert!(d.stage_dependencies(0, &none).unwrap().is_empty());
    assert_eq!(
        order(MULTI, Some("nope")),
        Err("Dockerfile: target stage \"nope\" could not be found".into())
    );
}

#[test]
fn stage_references_resolve_by_name_index_or_image() {
    let d = parsed(MULTI);
    assert_eq!(d.stage_by_ref("build"), Some(1));
    assert_eq!(d.stage_by_ref("Build"), Some(1));
    assert_eq!(d.stage_by_ref("0"), Some(0));
    assert_eq!(d.stage_by_ref("9"), None);
    assert_eq!(d.stage_by_ref("nginx:latest"), None);
    let none = |_: &str| None;
    assert_eq!(d.stage_base(1, &none).unwrap().0, BaseRef::Stage(0));
    assert_eq!(d.stage_base(3, &none).unwrap().0, BaseRef::Scratch);
    assert_eq!(d.stage_label(4), "stage-4");
    assert_eq!(d.stage_label(1), "build");
}

#[test]
fn missing_stage_indexes_and_cycles_are_errors_with_lines() {
    assert_eq!(
        order("FROM a\nFROM b\nCOPY --from=7 /x /x\n", None),
        Err("Dockerfile:3: stage \"7\" not found".into())
    );
    assert_eq!(
        order(
            "FROM a AS one\nCOPY --from=two /x /x\nFROM one AS two\n",
            None
        ),
        Err("Dockerfile:3: circular dependency between stages: two -> one -> two".into())
    );
    assert_eq!(
        order("FROM a AS one\nCOPY --from=one /x /x\n", None),
        Err("Dockerfile:2: circular dependency between stages: one -> one".into())
    );
    // A `--from` that names no stage is an image.
    assert_eq!(
        order("FROM a\nCOPY --from=nginx /x /x\n", None),
        Ok(vec![0])
    );
    // `--from` may use global args.
    let d = parsed("ARG SRC=build\nFROM a AS build\nFROM b\nCOPY --from=$SRC /x /x\n");
    let none = |_: &str| None;
    assert_eq!(d.stage_order(None, &none).unwrap(), [0, 1]);
    assert_eq!(
        parsed("ARG B\nFROM $B\n")
            .stage_order(None, &none)
            .unwrap_err()
            .to_string(),
        "Dockerfile:2: base name ($B) should not be blank"
    );
}

fn scope() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("APP", "/srv/app"),
        ("PORTS", "80 443"),
        ("USER", "app"),
        ("NAME", "world"),
    ])
}

fn expanded(text: &str) -> Result<Instruction, String> {
    let d = parsed(&format!("FROM scratch\n{text}"));
    let vars = scope();
    let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
    d.expand(&d.stages[0].instructions[0], &lookup)
        .map_err(|e| e.to_string())
}

#[test]
fn expansion_substitutes_the_fields_docker_substitutes() {
    assert_eq!(
        expanded("ENV HOME=$APP B=\"a b\" C='$APP'"),
        Ok(Instruction::Env(pairs(&[
            ("HOME", "/srv/app"),
            ("B", "a b"),
            ("C", "$APP")
        ])))
    );
    assert_eq!(
        expanded("WORKDIR ${APP}/src"),
        Ok(Instruction::Workdir("/srv/app/src".into()))
    );
    assert_eq!(
        expanded("USER ${USER:-root}"),
        Ok(Instruction::User("app".into()))
    );
    assert_eq!(
        expanded("EXPOSE $PORTS 8080"),
        Ok(Instruction::Expose(strings(&["80", "443", "8080"])))
    );
    assert_eq!(
        expanded("VOLUME $APP/data"),
        Ok(Instruction::Volume(strings(&["/srv/app/data"])))
    );
    let Ok(Instruction::Copy(copy)) = expanded("COPY --chown=$USER src/$NAME.c $APP/") else {
        panic!()
    };
    assert_eq!(
        (copy.sources, copy.dest, copy.chown),
        (
            strings(&["src/world.c"]),
            "/srv/app/".into(),
            Some("app".into())
        )
    );
    assert_eq!(
        expanded("ARG V=${NAME}1"),
        Ok(Instruction::Arg(vec![ArgDecl {
            name: "V".into(),
            default: Some("world1".into())
        }]))
    );
}

#[test]
fn expansion_leaves_commands_to_the_shell() {
    for text in [
        "RUN echo $APP",
        "CMD echo $APP",
        "ENTRYPOINT [\"echo\", \"$APP\"]",
        "HEALTHCHECK CMD test -d $APP",
    ] {
        let original = step(text);
        assert_eq!(expanded(text), Ok(original), "{text}");
    }
    let Ok(Instruction::Run(run)) = expanded("RUN --mount=type=cache,target=$APP/.cache make")
    else {
        panic!()
    };
    let RunMount::Cache(cache) = &run.mounts[0];
    assert_eq!(
        (cache.target.as_str(), cache.id.as_str()),
        ("/srv/app/.cache", "/srv/app/.cache")
    );
}

#[test]
fn copy_heredoc_bodies_expand_unless_the_delimiter_is_quoted() {
    let Ok(Instruction::Copy(copy)) = expanded("COPY <<A <<'B' /\n\"hi\" $NAME\nA\n$NAME\nB")
    else {
        panic!()
    };
    assert_eq!(copy.heredocs[0].content, "\"hi\" world\n");
    assert_eq!(copy.heredocs[1].content, "$NAME\n");
}

#[test]
fn expansion_errors_name_the_line() {
    assert_eq!(
        expanded("\nWORKDIR ${MISSING:?set MISSING}"),
        Err(
            "Dockerfile:3: failed to process \"${MISSING:?set MISSING}\": MISSING: set MISSING"
                .into()
        )
    );
}
