//! Per-step substitution: exactly the fields Docker substitutes, with the variables in scope at
//! that step (the executor's ARG and ENV state).
//!
//! Substituted: ENV and LABEL keys and values; ARG names and defaults; COPY/ADD sources,
//! destination, `--from`, `--chown`, `--chmod`, `--checksum` and the bodies of unquoted heredocs;
//! WORKDIR, USER, STOPSIGNAL, VOLUME; EXPOSE (which may also split into several ports); RUN
//! cache-mount targets and ids. Never RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK or ONBUILD
//! commands: a shell sees those, and expands them itself at run time.
//!
//! One instruction is expanded in one go with the variables as they were before it, as Docker
//! does: `ENV A=1 B=$A` gives B the *previous* A. `lookup` answers for the stage's ARGs (build
//! arg or default) and ENV, ENV winning over ARG of the same name.

use super::words::Lexer;
use super::{
    ArgDecl, CopyArgs, Dockerfile, DockerfileError, ErrorKind, Heredoc, Instruction, Located,
    Lookup, Run, RunMount,
};

impl Dockerfile {
    /// `step` with its variables substituted, errors placed at the step's line.
    pub fn expand(
        &self,
        step: &Located<Instruction>,
        lookup: Lookup,
    ) -> Result<Instruction, DockerfileError> {
        step.value
            .expand(self.escape, lookup)
            .map_err(|kind| self.error(step.line, kind))
    }
}

impl Instruction {
    /// This instruction with variables substituted in the fields Docker substitutes.
    pub fn expand(&self, escape: char, lookup: Lookup) -> Result<Instruction, ErrorKind> {
        let lexer = Lexer::new(escape);
        let word = |text: &String| lexer.expand_word(text, lookup);
        let words = |list: &[String]| list.iter().map(word).collect::<Result<Vec<_>, _>>();
        let pairs = |list: &[(String, String)]| {
            list.iter()
                .map(|(k, v)| Ok((word(k)?, word(v)?)))
                .collect::<Result<Vec<_>, ErrorKind>>()
        };
        Ok(match self {
            Instruction::Env(list) => Instruction::Env(pairs(list)?),
            Instruction::Label(list) => Instruction::Label(pairs(list)?),
            Instruction::Arg(decls) => Instruction::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: word(&d.name)?,
                            default: d.default.as_ref().map(word).transpose()?,
                        })
                    })
                    .collect::<Result<_, ErrorKind>>()?,
            ),
            Instruction::Copy(copy) => Instruction::Copy(expand_copy(copy, &lexer, lookup)?),
            Instruction::Add(add) => Instruction::Add(expand_copy(add, &lexer, lookup)?),
            Instruction::Workdir(path) => Instruction::Workdir(word(path)?),
            Instruction::User(user) => Instruction::User(word(user)?),
            Instruction::StopSignal(signal) => Instruction::StopSignal(word(signal)?),
            Instruction::Volume(list) => Instruction::Volume(words(list)?),
            Instruction::Expose(ports) => Instruction::Expose(expand_ports(ports, &lexer, lookup)?),
            Instruction::Run(run) => Instruction::Run(expand_run(run, &lexer, lookup)?),
            unchanged => unchanged.clone(),
        })
    }
}

/// EXPOSE: each written port may become several (`EXPOSE $PORTS` with `PORTS="80 443"`).
fn expand_ports(ports: &[String], lexer: &Lexer, lookup: Lookup) -> Result<Vec<String>, ErrorKind> {
    let mut expanded = Vec::new();
    for port in ports {
        expanded.extend(lexer.expand_words(port, lookup)?);
    }
    Ok(expanded)
}

fn expand_copy(copy: &CopyArgs, lexer: &Lexer, lookup: Lookup) -> Result<CopyArgs, ErrorKind> {
    let word = |text: &String| lexer.expand_word(text, lookup);
    let optional = |value: &Option<String>| value.as_ref().map(word).transpose();
    Ok(CopyArgs {
        sources: copy.sources.iter().map(word).collect::<Result<_, _>>()?,
        heredocs: copy
            .heredocs
            .iter()
            .map(|h| expand_heredoc(h, lookup))
            .collect::<Result<_, _>>()?,
        dest: word(&copy.dest)?,
        from: optional(&copy.from)?,
        chown: optional(&copy.chown)?,
        chmod: optional(&copy.chmod)?,
        checksum: optional(&copy.checksum)?,
        link: copy.link,
        keep_git_dir: copy.keep_git_dir,
    })
}

/// An inline file's body: quotes are content, and the escape character is always `\` (Docker
/// treats the body as a file, not as Dockerfile text). A quoted delimiter keeps it literal.
fn expand_heredoc(heredoc: &Heredoc, lookup: Lookup) -> Result<Heredoc, ErrorKind> {
    if !heredoc.expand {
        return Ok(heredoc.clone());
    }
    let lexer = Lexer {
        literal_quotes: true,
        ..Lexer::new('\\')
    };
    Ok(Heredoc {
        content: lexer.expand_word(&heredoc.content, lookup)?,
        ..heredoc.clone()
    })
}

fn expand_run(run: &Run, lexer: &Lexer, lookup: Lookup) -> Result<Run, ErrorKind> {
    let mounts = run
        .mounts
        .iter()
        .map(|mount| match mount {
            RunMount::Cache(cache) => {
                let mut cache = cache.clone();
                // The default id is the written target, so expanding both keeps them equal.
                cache.target = lexer.expand_word(&cache.target, lookup)?;
                cache.id = lexer.expand_word(&cache.id, lookup)?;
                Ok(RunMount::Cache(cache))
            }
        })
        .collect::<Result<_, ErrorKind>>()?;
    Ok(Run {
        mounts,
        ..run.clone()
    })
}
