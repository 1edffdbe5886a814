//! One logical line → a typed instruction: the keyword (any case), its flags, and its arguments
//! in the form that instruction takes, with Docker's errors for anything else.

use super::arguments::{
    go_duration, json_array, name_values, quoted_words, split_keyword, whitespace_words,
};
use super::flags::{self, FlagKind, Flags};
use super::lines::{heredoc_word, LogicalLine};
use super::{
    mounts, ArgDecl, CopyArgs, ErrorKind, Healthcheck, HealthcheckCmd, Heredoc, Instruction,
    Located, Onbuild, Run, ShellOrExec,
};

/// A parsed line: the start of a stage, or an instruction inside one.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    From(FromLine),
    Instruction(Located<Instruction>),
}

/// `FROM [--platform=…] image [AS name]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FromLine {
    pub line: usize,
    pub text: String,
    pub base: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// The parts of a line every instruction parser needs.
struct Request<'a> {
    keyword: &'a str,
    args: String,
    flag_words: Vec<String>,
    heredocs: &'a [Heredoc],
    escape: char,
}

impl Request<'_> {
    fn flags(&self, accepted: &[(&'static str, FlagKind)]) -> Result<Flags, ErrorKind> {
        Flags::parse(&self.flag_words, accepted)
    }

    fn no_flags(&self) -> Result<(), ErrorKind> {
        self.flags(&[]).map(|_| ())
    }

    /// The whole argument text as one value (WORKDIR, USER, MAINTAINER, STOPSIGNAL).
    fn single(&self, keyword: &'static str) -> Result<String, ErrorKind> {
        self.no_flags()?;
        if self.args.is_empty() {
            return Err(ErrorKind::ExactlyOneArgument(keyword));
        }
        Ok(self.args.clone())
    }
}

/// Parses one logical line.
pub fn parse_line(line: &LogicalLine, escape: char) -> Result<Parsed, ErrorKind> {
    let text = line.text.trim().to_string();
    let (keyword, rest) = split_keyword(&line.text);
    let (args, flag_words) = flags::extract(rest);
    let request = Request {
        keyword,
        args: args.trim().to_string(),
        flag_words,
        heredocs: &line.heredocs,
        escape,
    };
    if keyword.eq_ignore_ascii_case("from") {
        let (base, name, platform) = from(&request)?;
        return Ok(Parsed::From(FromLine {
            line: line.number,
            text,
            base,
            name,
            platform,
        }));
    }
    Ok(Parsed::Instruction(Located {
        line: line.number,
        value: instruction(&request)?,
        text,
    }))
}

fn instruction(request: &Request) -> Result<Instruction, ErrorKind> {
    let r = request;
    Ok(match r.keyword.to_ascii_lowercase().as_str() {
        "run" => Instruction::Run(run(r)?),
        "copy" => Instruction::Copy(copy(r, false)?),
        "add" => Instruction::Add(copy(r, true)?),
        "env" => {
            r.no_flags()?;
            Instruction::Env(name_values(&r.args, r.escape, "ENV")?)
        }
        "label" => {
            r.no_flags()?;
            Instruction::Label(name_values(&r.args, r.escape, "LABEL")?)
        }
        "arg" => Instruction::Arg(arg(r)?),
        "workdir" => Instruction::Workdir(r.single("WORKDIR")?),
        "user" => Instruction::User(r.single("USER")?),
        "maintainer" => Instruction::Maintainer(r.single("MAINTAINER")?),
        "stopsignal" => Instruction::StopSignal(r.single("STOPSIGNAL")?),
        "cmd" => {
            r.no_flags()?;
            Instruction::Cmd(shell_or_exec(&r.args)?)
        }
        "entrypoint" => {
            r.no_flags()?;
            Instruction::Entrypoint(entrypoint(&r.args)?)
        }
        "shell" => Instruction::Shell(shell(r)?),
        "expose" => Instruction::Expose(list(r, "EXPOSE", false)?),
        "volume" => Instruction::Volume(volume(r)?),
        "healthcheck" => Instruction::Healthcheck(healthcheck(r)?),
        "onbuild" => Instruction::Onbuild(Box::new(onbuild(r)?)),
        _ => return Err(ErrorKind::UnknownInstruction(r.keyword.to_string())),
    })
}

/// JSON array → exec form; anything else → shell form, the text as written.
fn shell_or_exec(args: &str) -> Result<ShellOrExec, ErrorKind> {
    match json_array(args) {
        Some(exec) => Ok(ShellOrExec::Exec(exec?)),
        None => Ok(ShellOrExec::Shell(args.to_string())),
    }
}

/// A bare `ENTRYPOINT` clears the entrypoint: an empty exec form, not an empty shell command.
fn entrypoint(args: &str) -> Result<ShellOrExec, ErrorKind> {
    if args.is_empty() {
        return Ok(ShellOrExec::Exec(Vec::new()));
    }
    shell_or_exec(args)
}

fn run(r: &Request) -> Result<Run, ErrorKind> {
    let flags = r.flags(&[
        ("mount", FlagKind::Strings),
        ("network", FlagKind::String),
        ("security", FlagKind::String),
    ])?;
    // The values that change nothing are accepted; the others would build something different.
    if let Some(network) = flags.string("network").filter(|n| n != "default") {
        return Err(ErrorKind::Unsupported(format!("RUN --network={network}")));
    }
    if let Some(security) = flags.string("security").filter(|s| s != "sandbox") {
        return Err(ErrorKind::Unsupported(format!("RUN --security={security}")));
    }
    let mounts = flags
        .strings("mount")
        .iter()
        .map(|m| mounts::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    if r.args.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument("RUN"));
    }
    Ok(Run {
        command: shell_or_exec(&r.args)?,
        mounts,
        heredocs: r.heredocs.iter().map(strip_tabs).collect(),
    })
}

/// A heredoc body as the command sees it: `<<-` removes leading tabs from every line.
fn strip_tabs(heredoc: &Heredoc) -> Heredoc {
    let mut heredoc = heredoc.clone();
    if heredoc.strip_tabs {
        heredoc.content = heredoc
            .content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect();
    }
    heredoc
}

fn copy(r: &Request, is_add: bool) -> Result<CopyArgs, ErrorKind> {
    let keyword = if is_add { "ADD" } else { "COPY" };
    let flags = if is_add {
        r.flags(&[
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::String),
        ])?
    } else {
        r.flags(&[
            ("from", FlagKind::String),
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
        ])?
    };
    let mut words = match json_array(&r.args) {
        Some(list) => list?,
        None => whitespace_words(&r.args),
    };
    if words.len() < 2 {
        return Err(ErrorKind::NoDestination(keyword));
    }
    let dest = words.pop().unwrap_or_default();
    if heredoc_word(&dest)?.is_some() {
        return Err(ErrorKind::MisplacedHeredoc {
            keyword,
            role: "a destination",
        });
    }
    let (sources, heredocs) = split_sources(words, r.heredocs)?;
    Ok(CopyArgs {
        sources,
        heredocs,
        dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
    })
}

/// Sources that are heredoc words become inline files with their bodies; the rest are paths.
fn split_sources(
    words: Vec<String>,
    bodies: &[Heredoc],
) -> Result<(Vec<String>, Vec<Heredoc>), ErrorKind> {
    let mut paths = Vec::new();
    let mut heredocs = Vec::new();
    for word in words {
        match heredoc_word(&word)? {
            Some(mut heredoc) => {
                if let Some(body) = bodies.iter().find(|b| b.name == heredoc.name) {
                    heredoc.content = body.content.clone();
                }
                heredocs.push(strip_tabs(&heredoc));
            }
            None => paths.push(word),
        }
    }
    Ok((paths, heredocs))
}

fn arg(r: &Request) -> Result<Vec<ArgDecl>, ErrorKind> {
    r.no_flags()?;
    let words = quoted_words(&r.args, r.escape);
    if words.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument("ARG"));
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(ErrorKind::BlankName("ARG")),
            Some((name, value)) => Ok(ArgDecl {
                name: name.to_string(),
                default: Some(value.to_string()),
            }),
            None => Ok(ArgDecl {
                name: word,
                default: None,
            }),
        })
        .collect()
}

fn shell(r: &Request) -> Result<Vec<String>, ErrorKind> {
    r.no_flags()?;
    match json_array(&r.args) {
        Some(shell) => {
            let shell = shell?;
            if shell.is_empty() {
                return Err(ErrorKind::AtLeastOneArgument("SHELL"));
            }
            Ok(shell)
        }
        None if r.args.is_empty() => Err(ErrorKind::AtLeastOneArgument("SHELL")),
        None => Err(ErrorKind::NotJson("SHELL")),
    }
}

/// EXPOSE (and VOLUME in shell form): white-space separated words.
fn list(r: &Request, keyword: &'static str, json: bool) -> Result<Vec<String>, ErrorKind> {
    r.no_flags()?;
    let words = match json_array(&r.args).filter(|_| json) {
        Some(list) => list?,
        None => whitespace_words(&r.args),
    };
    if words.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument(keyword));
    }
    Ok(words)
}

fn volume(r: &Request) -> Result<Vec<String>, ErrorKind> {
    let volumes: Vec<String> = list(r, "VOLUME", true)?
        .iter()
        .map(|v| v.trim().to_string())
        .collect();
    if volumes.iter().any(String::is_empty) {
        return Err(ErrorKind::EmptyVolume);
    }
    Ok(volumes)
}

fn healthcheck(r: &Request) -> Result<Healthcheck, ErrorKind> {
    let (kind, rest) = split_keyword(&r.args);
    if kind.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument("HEALTHCHECK"));
    }
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        // Docker ignores flags on HEALTHCHECK NONE.
        if !rest.is_empty() {
            return Err(ErrorKind::Healthcheck(
                "HEALTHCHECK NONE takes no arguments".into(),
            ));
        }
        return Ok(Healthcheck::None);
    }
    let flags = r.flags(&[
        ("interval", FlagKind::String),
        ("timeout", FlagKind::String),
        ("start-period", FlagKind::String),
        ("start-interval", FlagKind::String),
        ("retries", FlagKind::String),
    ])?;
    if kind != "CMD" {
        return Err(ErrorKind::Healthcheck(format!(
            "Unknown type {kind:?} in HEALTHCHECK (try CMD)"
        )));
    }
    let test = shell_or_exec(rest)?;
    let empty = match &test {
        ShellOrExec::Shell(s) => s.is_empty(),
        ShellOrExec::Exec(v) => v.is_empty(),
    };
    if empty {
        return Err(ErrorKind::Healthcheck(
            "Missing command after HEALTHCHECK CMD".into(),
        ));
    }
    Ok(Healthcheck::Cmd(HealthcheckCmd {
        test,
        interval: interval(&flags, "interval")?,
        timeout: interval(&flags, "timeout")?,
        start_period: interval(&flags, "start-period")?,
        start_interval: interval(&flags, "start-interval")?,
        retries: retries(&flags)?,
    }))
}

/// A healthcheck duration flag: unset or zero inherit; otherwise at least 1ms, as Docker requires.
fn interval(flags: &Flags, name: &str) -> Result<Option<std::time::Duration>, ErrorKind> {
    let Some(text) = flags.string(name).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.starts_with('-') {
        return Err(ErrorKind::Healthcheck(format!(
            "Interval {name:?} cannot be negative"
        )));
    }
    let duration = go_duration(&text).map_err(ErrorKind::Healthcheck)?;
    if duration.is_zero() {
        return Ok(None);
    }
    if duration < std::time::Duration::from_millis(1) {
        return Err(ErrorKind::Healthcheck(format!(
            "Interval {name:?} cannot be less than 1ms"
        )));
    }
    Ok(Some(duration))
}

fn retries(flags: &Flags) -> Result<Option<u32>, ErrorKind> {
    let Some(text) = flags.string("retries").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let retries: i64 = text
        .parse()
        .map_err(|_| ErrorKind::Healthcheck(format!("--retries must be a number, not {text:?}")))?;
    if retries < 0 {
        return Err(ErrorKind::Healthcheck(format!(
            "--retries cannot be negative ({retries})"
        )));
    }
    // Zero means "inherit", as an unset option does.
    u32::try_from(retries)
        .map(|n| (n > 0).then_some(n))
        .map_err(|_| ErrorKind::Healthcheck(format!("--retries is too large ({retries})")))
}

fn onbuild(r: &Request) -> Result<Onbuild, ErrorKind> {
    r.no_flags()?;
    let (trigger, _) = split_keyword(&r.args);
    if trigger.is_empty() {
        return Err(ErrorKind::AtLeastOneArgument("ONBUILD"));
    }
    match trigger.to_ascii_uppercase().as_str() {
        "ONBUILD" => return Err(ErrorKind::OnbuildChain),
        t @ ("FROM" | "MAINTAINER") => return Err(ErrorKind::OnbuildTrigger(t.to_string())),
        _ => {}
    }
    // The trigger keeps its own flags (`ONBUILD COPY --from=x …`), so it is parsed as a line.
    let after_keyword = r.args.as_str();
    let line = LogicalLine {
        number: 0,
        text: after_keyword.to_string(),
        heredocs: r.heredocs.to_vec(),
        empty_continuation: false,
    };
    let Parsed::Instruction(inner) = parse_line(&line, r.escape)? else {
        return Err(ErrorKind::OnbuildTrigger("FROM".into()));
    };
    // What the image config records: the trigger text, heredoc bodies appended as Docker does.
    let mut stored = after_keyword.to_string();
    for heredoc in r.heredocs {
        stored.push('\n');
        stored.push_str(&heredoc.content);
        stored.push_str(&heredoc.name);
    }
    Ok(Onbuild {
        text: stored,
        instruction: inner.value,
    })
}

fn from(r: &Request) -> Result<(String, Option<String>, Option<String>), ErrorKind> {
    let flags = r.flags(&[("platform", FlagKind::String)])?;
    let words = whitespace_words(&r.args);
    let name = match words.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            if !valid_stage_name(&lower) {
                return Err(ErrorKind::InvalidStageName(name.clone()));
            }
            Some(lower)
        }
        _ => return Err(ErrorKind::FromArguments),
    };
    Ok((words[0].clone(), name, flags.string("platform")))
}

/// `^[a-z][a-z0-9-_.]*$`, after lowercasing.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}
