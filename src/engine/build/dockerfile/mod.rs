//! The Dockerfile: text → stages of typed instructions, each with its 1-based line; Docker's
//! variable substitution; and which stages a target needs.
//!
//! Parsing is a pipeline of pure stages, each in its own module:
//! 1. `lines`: parser directives, comments, line continuations and heredoc bodies → logical
//!    lines (one per instruction, with the line it starts on);
//! 2. `instructions`: one logical line → a typed instruction (`flags`, JSON vs shell form and
//!    `name=value` lists from `arguments`, `RUN --mount` from `mounts`), with Docker's errors;
//! 3. `stages`: instructions grouped by `FROM` into stages, global `ARG`s kept apart, and the
//!    stages a target depends on, in build order;
//! 4. [`words`] (with `patterns` for `${v#p}`-style trimming) and `expand`: substitution,
//!    applied by the executor per step with the variables in scope at that step (Docker expands
//!    lazily, so values here stay as written);
//! 5. `argv`: what a RUN/CMD/ENTRYPOINT/HEALTHCHECK executes or records, given the `SHELL`.

mod arguments;
mod argv;
mod expand;
mod flags;
mod instructions;
mod lines;
mod model;
mod mounts;
mod patterns;
mod stages;

pub use argv::{RunProgram, SCRIPT_DIR};
pub use stages::BaseRef;
pub mod words;

pub use model::*;
pub use words::{Lexer, Lookup};

/// What went wrong, with Docker's wording where Docker has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("dockerfile contains no stages to build")]
    NoStages,
    #[error("no build stage in current context: {0} comes before the first FROM")]
    BeforeFrom(String),
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    #[error("{keyword} cannot accept a heredoc as {role}")]
    MisplacedHeredoc {
        keyword: &'static str,
        role: &'static str,
    },
    #[error("unknown flag: {0}")]
    UnknownFlag(String),
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    #[error("missing a value on flag: {0}")]
    MissingFlagValue(String),
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotBoolean { flag: String, value: String },
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    #[error(
        "{0} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination(&'static str),
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("{0} must have two arguments")]
    MissingValue(&'static str),
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    MissingEquals(String),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStageName(String),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("{0}")]
    Healthcheck(String),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("invalid mount: {0}")]
    InvalidMount(String),
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("failed to process {text:?}: {message}")]
    Substitution { text: String, message: String },
    #[error("target stage {0:?} could not be found")]
    TargetNotFound(String),
    #[error("stage {0:?} not found")]
    StageNotFound(String),
    #[error("circular dependency between stages: {0}")]
    StageCycle(String),
}

/// A Dockerfile error with its place: Display is `Dockerfile:7: unknown instruction: RUNN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    /// The Dockerfile's name as the user gave it (`Dockerfile`, `docker/app.Dockerfile`).
    pub file: String,
    /// 1-based line, when the error belongs to one.
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

impl DockerfileError {
    pub fn at(line: usize, kind: ErrorKind) -> DockerfileError {
        DockerfileError {
            file: String::new(),
            line: Some(line),
            kind,
        }
    }

    pub fn whole_file(kind: ErrorKind) -> DockerfileError {
        DockerfileError {
            file: String::new(),
            line: None,
            kind,
        }
    }

    pub(crate) fn in_file(mut self, file: &str) -> DockerfileError {
        self.file = file.to_string();
        self
    }
}

impl std::fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

impl std::error::Error for DockerfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// Parses a whole Dockerfile. `file_name` only labels errors.
pub fn parse(file_name: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    let mut dockerfile = parse_unnamed(text).map_err(|e| e.in_file(file_name))?;
    dockerfile.file_name = file_name.to_string();
    for warning in &mut dockerfile.warnings {
        *warning = format!("{file_name}:{warning}");
    }
    Ok(dockerfile)
}

fn parse_unnamed(text: &str) -> Result<Dockerfile, DockerfileError> {
    let split = lines::split(text)?;
    let mut parsed = Vec::with_capacity(split.lines.len());
    let mut warnings = Vec::new();
    for line in &split.lines {
        if line.empty_continuation {
            // Placed by `parse`, which knows the file name.
            warnings.push(format!(
                "{}: empty continuation line found in: {} (empty continuation lines will become errors in a future release)",
                line.number,
                line.text.trim()
            ));
        }
        let step = instructions::parse_line(line, split.directives.escape)
            .map_err(|kind| DockerfileError::at(line.number, kind))?;
        parsed.push(step);
    }
    let (global_args, stages) = stages::group(parsed)?;
    Ok(Dockerfile {
        file_name: String::new(),
        escape: split.directives.escape,
        syntax_note: split.directives.syntax,
        global_args,
        stages,
        warnings,
    })
}

/// Parses an `ONBUILD` trigger stored in a base image's config (`RUN make`), to run it at the
/// start of a stage built on that image. Its line is 1; `escape` is the building Dockerfile's.
pub fn parse_trigger(text: &str, escape: char) -> Result<Located<Instruction>, DockerfileError> {
    let error = |kind| DockerfileError::at(1, kind).in_file("ONBUILD trigger");
    let split = lines::split_with_escape(text, escape).map_err(|e| e.in_file("ONBUILD trigger"))?;
    let [line] = split.lines.as_slice() else {
        return Err(error(ErrorKind::ExactlyOneArgument("ONBUILD")));
    };
    match instructions::parse_line(line, escape).map_err(error)? {
        instructions::Parsed::Instruction(step) => Ok(step),
        instructions::Parsed::From(_) => Err(error(ErrorKind::OnbuildTrigger("FROM".into()))),
    }
}

#[cfg(test)]
mod tests;
