//! How RUN, CMD, ENTRYPOINT and HEALTHCHECK become what a process or an image config holds, as
//! Docker decides: shell form runs under the current `SHELL`, exec form as written, and a RUN
//! heredoc is either the script itself or input fed to the command.

use super::{Healthcheck, Run, ShellOrExec};

/// Where BuildKit places a heredoc script that starts with `#!`; the executor mounts the file
/// there so the kernel runs it with its interpreter.
pub const SCRIPT_DIR: &str = "/dev/pipes";

impl ShellOrExec {
    /// The argument vector: `shell + [text]` for shell form, the array itself for exec form.
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            ShellOrExec::Shell(text) => shell.iter().cloned().chain([text.clone()]).collect(),
            ShellOrExec::Exec(args) => args.clone(),
        }
    }
}

/// What a RUN step executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunProgram {
    /// Run this argument vector.
    Argv(Vec<String>),
    /// A lone heredoc starting with `#!`: write `content` to an executable file `name` under
    /// [`SCRIPT_DIR`] and run that path.
    Script { name: String, content: String },
}

impl Run {
    /// The program this RUN executes with the current `SHELL`.
    pub fn program(&self, shell: &[String]) -> RunProgram {
        let (ShellOrExec::Shell(command), Some(first)) = (&self.command, self.heredocs.first())
        else {
            return RunProgram::Argv(self.command.argv(shell));
        };
        let lone_heredoc = super::lines::heredoc_word(command.trim())
            .ok()
            .flatten()
            .is_some();
        if !lone_heredoc {
            // The command reads the heredocs itself: hand the shell the text Docker rebuilds.
            let mut full = command.clone();
            for heredoc in &self.heredocs {
                full.push('\n');
                full.push_str(&heredoc.content);
                full.push_str(&heredoc.name);
            }
            return RunProgram::Argv(ShellOrExec::Shell(full).argv(shell));
        }
        if first.content.starts_with("#!") {
            return RunProgram::Script {
                name: first.name.clone(),
                content: first.content.clone(),
            };
        }
        // A plain `RUN <<EOF`: the body is the shell command.
        RunProgram::Argv(ShellOrExec::Shell(first.content.clone()).argv(shell))
    }
}

impl Healthcheck {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", text]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::None => vec!["NONE".into()],
            Healthcheck::Cmd(cmd) => match &cmd.test {
                ShellOrExec::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
                ShellOrExec::Exec(args) => ["CMD".to_string()]
                    .into_iter()
                    .chain(args.iter().cloned())
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::build::dockerfile::{parse, Instruction};

    fn sh() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into()]
    }

    fn run(text: &str) -> Run {
        let d = parse("Dockerfile", &format!("FROM x\n{text}")).unwrap();
        match &d.stages[0].instructions[0].value {
            Instruction::Run(run) => run.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn argv(list: &[&str]) -> RunProgram {
        RunProgram::Argv(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn shell_form_runs_under_the_shell_and_exec_form_as_written() {
        assert_eq!(
            run("RUN make all").program(&sh()),
            argv(&["/bin/sh", "-c", "make all"])
        );
        assert_eq!(
            run("RUN [\"make\", \"all\"]").program(&sh()),
            argv(&["make", "all"])
        );
        let bash = vec![
            "/bin/bash".to_string(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into(),
        ];
        assert_eq!(
            run("RUN a | b").program(&bash),
            argv(&["/bin/bash", "-eo", "pipefail", "-c", "a | b"])
        );
    }

    #[test]
    fn a_lone_heredoc_is_the_command_or_a_script() {
        assert_eq!(
            run("RUN <<EOF\necho a\necho b\nEOF").program(&sh()),
            argv(&["/bin/sh", "-c", "echo a\necho b\n"])
        );
        assert_eq!(
            run("RUN <<-EOF\n\techo a\n\tEOF").program(&sh()),
            argv(&["/bin/sh", "-c", "echo a\n"])
        );
        assert_eq!(
            run("RUN <<PY\n#!/usr/bin/env python3\nprint(1)\nPY").program(&sh()),
            RunProgram::Script {
                name: "PY".into(),
                content: "#!/usr/bin/env python3\nprint(1)\n".into()
            }
        );
    }

    #[test]
    fn heredocs_fed_to_a_command_go_to_the_shell_whole() {
        assert_eq!(
            run("RUN cat <<A >/a && cat <<B >/b\none\nA\ntwo\nB").program(&sh()),
            argv(&[
                "/bin/sh",
                "-c",
                "cat <<A >/a && cat <<B >/b\none\nA\ntwo\nB"
            ])
        );
    }

    #[test]
    fn healthchecks_become_docker_test_arrays() {
        let check = |text: &str| {
            let d = parse("Dockerfile", &format!("FROM x\n{text}")).unwrap();
            match &d.stages[0].instructions[0].value {
                Instruction::Healthcheck(h) => h.test(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(check("HEALTHCHECK NONE"), ["NONE"]);
        assert_eq!(
            check("HEALTHCHECK CMD curl -f x"),
            ["CMD-SHELL", "curl -f x"]
        );
        assert_eq!(
            check("HEALTHCHECK CMD [\"true\", \"1\"]"),
            ["CMD", "true", "1"]
        );
    }
}
