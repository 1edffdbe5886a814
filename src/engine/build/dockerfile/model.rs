//! The parsed Dockerfile: stages of typed instructions, each with its line and original text.
//!
//! Values are kept as written (unexpanded); [`Instruction::expand`] substitutes variables per step,
//! because which variables are in scope is only known while the executor walks the stage.

use std::time::Duration;

/// A whole Dockerfile after parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The name errors are reported under (`Dockerfile`, `docker/app.Dockerfile`).
    pub file_name: String,
    /// The escape character (`\` unless a `# escape=` directive chose `` ` ``).
    pub escape: char,
    /// The `# syntax=` directive's value; berth has one built-in frontend, so it is only noted.
    pub syntax_note: Option<String>,
    /// `ARG`s before the first `FROM`: usable in `FROM` lines, and in a stage after redeclaring.
    /// [`Dockerfile::global_scope`] gives their values.
    pub global_args: Vec<Located<ArgDecl>>,
    /// The stages in file order (index = the stage number Docker uses in `--from=0`).
    pub stages: Vec<Stage>,
    /// Things Docker accepts but warns about (`Dockerfile:3: empty continuation line …`), for
    /// the build output.
    pub warnings: Vec<String>,
}

/// One `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The `AS` name, lowercased as Docker does.
    pub name: Option<String>,
    /// The image (or earlier stage, or `scratch`) as written, before substitution of global args.
    pub base: String,
    /// `FROM --platform=…`, as written.
    pub platform: Option<String>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// The `FROM` instruction's text, for progress output.
    pub text: String,
    pub instructions: Vec<Located<Instruction>>,
}

/// A value with the place it came from.
///
/// Values inside are as written: quotes in ENV/LABEL/ARG values and `$VAR`s are still there
/// until [`Dockerfile::expand`](super::Dockerfile::expand) is applied with the step's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written, continuation lines joined (heredoc bodies left out): what
    /// progress output prints and what the cache key normalises.
    pub text: String,
    pub value: T,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A command in shell form (run by the `SHELL`) or exec form (a JSON array, run as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

/// A here-document (`<<EOF … EOF`) attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), quotes removed.
    pub name: String,
    /// The body, every line ending in `\n`; leading tabs already stripped for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`): the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from each body line.
    pub strip_tabs: bool,
    /// A file descriptor number written before `<<` (`3<<EOF`), for RUN.
    pub file_descriptor: Option<u32>,
}

/// What `RUN --mount` asks for; berth supports cache mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    Cache(CacheMount),
}

/// `--mount=type=cache,target=…`: a directory kept between builds, keyed by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    pub target: String,
    /// Defaults to the target path, as in BuildKit.
    pub id: String,
    pub sharing: CacheSharing,
    pub readonly: bool,
    /// Mode, uid and gid of the cache directory when it is first created.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How concurrent builds share one cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: ShellOrExec,
    pub mounts: Vec<RunMount>,
    /// Here-documents in the command line. When the shell-form command is a lone `<<EOF`, the
    /// (single) heredoc's body is the script; otherwise the bodies are fed to the command.
    /// [`Run::program`] turns this into what to execute.
    pub heredocs: Vec<Heredoc>,
}

/// `COPY` and `ADD` (ADD-only fields are unset for COPY, `from` is unset for ADD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Source paths (globs, URLs for ADD) in the order written.
    pub sources: Vec<String>,
    /// Inline sources (`COPY <<EOF /dst`): each becomes a file named after its delimiter.
    pub heredocs: Vec<Heredoc>,
    pub dest: String,
    /// `--from=stage|index|image`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// ADD `--keep-git-dir` (for git URLs).
    pub keep_git_dir: bool,
    /// ADD `--checksum=sha256:…` (for URLs).
    pub checksum: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    Cmd(HealthcheckCmd),
}

/// `HEALTHCHECK [options] CMD …`; unset options inherit the base image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckCmd {
    pub test: ShellOrExec,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD`: an instruction recorded in the image, run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq)]
pub struct Onbuild {
    /// The trigger as written after `ONBUILD` (what goes into the image config).
    pub text: String,
    pub instruction: Instruction,
}

/// Every instruction that may appear inside a stage (FROM starts a [`Stage`] instead).
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    Run(Run),
    Copy(CopyArgs),
    Add(CopyArgs),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Shell(Vec<String>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Healthcheck(Healthcheck),
    StopSignal(String),
    Onbuild(Box<Onbuild>),
    Arg(Vec<ArgDecl>),
    Maintainer(String),
}

impl Instruction {
    /// The instruction's name in upper case, as progress output and errors print it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Arg(_) => "ARG",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}
