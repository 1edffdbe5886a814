//! Stages: instructions grouped by `FROM`, the global `ARG`s before the first one, what each
//! stage's base is once global args are substituted, and which stages a target needs, in the
//! order they must be built.

use super::instructions::Parsed;
use super::words::Lexer;
use super::{ArgDecl, Dockerfile, DockerfileError, ErrorKind, Instruction, Located, Lookup, Stage};

/// Groups parsed lines into global args and stages.
pub fn group(parsed: Vec<Parsed>) -> Result<(Vec<Located<ArgDecl>>, Vec<Stage>), DockerfileError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for item in parsed {
        match item {
            Parsed::From(from) => {
                if let Some(name) = &from.name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        return Err(DockerfileError::at(
                            from.line,
                            ErrorKind::DuplicateStageName(name.clone()),
                        ));
                    }
                }
                stages.push(Stage {
                    name: from.name,
                    base: from.base,
                    platform: from.platform,
                    line: from.line,
                    text: from.text,
                    instructions: Vec::new(),
                });
            }
            Parsed::Instruction(step) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(step),
                None => global_args.extend(before_from(step)?),
            },
        }
    }
    if stages.is_empty() {
        return Err(DockerfileError::whole_file(ErrorKind::NoStages));
    }
    Ok((global_args, stages))
}

/// Only ARG may come before the first FROM.
fn before_from(step: Located<Instruction>) -> Result<Vec<Located<ArgDecl>>, DockerfileError> {
    match step.value {
        Instruction::Arg(decls) => Ok(decls
            .into_iter()
            .map(|value| Located {
                line: step.line,
                text: step.text.clone(),
                value,
            })
            .collect()),
        other => Err(DockerfileError::at(
            step.line,
            ErrorKind::BeforeFrom(other.keyword().to_string()),
        )),
    }
}

/// What a stage starts from, after substitution of global args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `FROM scratch`: an empty file system.
    Scratch,
    /// An earlier (or any other) stage of this Dockerfile, by index.
    Stage(usize),
    /// An image reference to resolve in the store or pull.
    Image(String),
}

/// The automatic platform args BuildKit defines in the global scope without an `ARG`; their
/// values come from the caller's lookup when it sets them.
const AUTOMATIC_GLOBAL_ARGS: [&str; 8] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

impl Dockerfile {
    /// The global args' values in declaration order: a build arg overrides the default, and a
    /// default may use the global args declared before it. An arg with neither is left out (it
    /// expands to nothing, but a stage that redeclares it sees it unset, as in Docker).
    pub fn global_scope(
        &self,
        build_args: Lookup,
    ) -> Result<Vec<(String, String)>, DockerfileError> {
        let mut scope: Vec<(String, String)> = Vec::new();
        let lexer = Lexer::new(self.escape);
        for located in &self.global_args {
            let arg = &located.value;
            let value = match (build_args(&arg.name), &arg.default) {
                (Some(value), _) => Some(value),
                (None, Some(default)) => {
                    let lookup = |name: &str| scope_lookup(&scope, name);
                    let expanded = lexer
                        .expand_word(default, &lookup)
                        .map_err(|kind| self.error(located.line, kind))?;
                    Some(expanded)
                }
                (None, None) => None,
            };
            scope.retain(|(name, _)| name != &arg.name);
            if let Some(value) = value {
                scope.push((arg.name.clone(), value));
            }
        }
        Ok(scope)
    }

    /// Stage `index`'s base and platform, substituted with the global scope.
    pub fn stage_base(
        &self,
        index: usize,
        build_args: Lookup,
    ) -> Result<(BaseRef, Option<String>), DockerfileError> {
        let scope = self.global_scope(build_args)?;
        self.base_in_scope(index, &scope, build_args)
    }

    fn base_in_scope(
        &self,
        index: usize,
        scope: &[(String, String)],
        build_args: Lookup,
    ) -> Result<(BaseRef, Option<String>), DockerfileError> {
        let stage = &self.stages[index];
        let lookup = |name: &str| {
            scope_lookup(scope, name).or_else(|| {
                AUTOMATIC_GLOBAL_ARGS
                    .contains(&name)
                    .then(|| build_args(name))
                    .flatten()
            })
        };
        let lexer = Lexer::new(self.escape);
        let expand = |text: &str| {
            lexer
                .expand_word(text, &lookup)
                .map_err(|kind| self.error(stage.line, kind))
        };
        let base = expand(&stage.base)?;
        if base.is_empty() {
            return Err(self.error(stage.line, ErrorKind::BlankBase(stage.base.clone())));
        }
        let platform = stage.platform.as_deref().map(expand).transpose()?;
        let base_ref = if base == "scratch" {
            BaseRef::Scratch
        } else {
            match self.stage_named(&base).filter(|&i| i != index) {
                Some(i) => BaseRef::Stage(i),
                None => BaseRef::Image(base),
            }
        };
        Ok((base_ref, platform))
    }

    /// The stage a `--from` value names: a stage name (any case) or a stage index. None means
    /// the value is an image reference.
    pub fn stage_by_ref(&self, reference: &str) -> Option<usize> {
        if let Ok(index) = reference.parse::<usize>() {
            return (index < self.stages.len()).then_some(index);
        }
        self.stage_named(reference)
    }

    fn stage_named(&self, name: &str) -> Option<usize> {
        let name = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// The stages needed to build `target` (the last stage when None), dependencies first, each
    /// once; stages nothing depends on are left out.
    pub fn stage_order(
        &self,
        target: Option<&str>,
        build_args: Lookup,
    ) -> Result<Vec<usize>, DockerfileError> {
        let target = match target {
            None => self.stages.len() - 1,
            Some(name) => self
                .stage_named(name)
                .ok_or_else(|| self.error_whole(ErrorKind::TargetNotFound(name.to_string())))?,
        };
        let scope = self.global_scope(build_args)?;
        let mut walk = Walk {
            state: vec![Visit::New; self.stages.len()],
            order: Vec::new(),
            path: Vec::new(),
        };
        self.visit(target, &scope, build_args, &mut walk)?;
        Ok(walk.order)
    }

    /// Depth-first: a stage is added after everything it depends on; meeting a stage that is
    /// still on the path is a cycle.
    fn visit(
        &self,
        index: usize,
        scope: &[(String, String)],
        build_args: Lookup,
        walk: &mut Walk,
    ) -> Result<(), DockerfileError> {
        match walk.state[index] {
            Visit::Done => return Ok(()),
            Visit::OnPath => {
                walk.path.push(index);
                let names: Vec<String> = walk.path.iter().map(|&i| self.stage_label(i)).collect();
                return Err(self.error(
                    self.stages[index].line,
                    ErrorKind::StageCycle(names.join(" -> ")),
                ));
            }
            Visit::New => {}
        }
        walk.state[index] = Visit::OnPath;
        walk.path.push(index);
        for dependency in self.dependencies(index, scope, build_args)? {
            self.visit(dependency, scope, build_args, walk)?;
        }
        walk.path.pop();
        walk.state[index] = Visit::Done;
        walk.order.push(index);
        Ok(())
    }

    /// The stages stage `index` uses directly (its base, the stages its `COPY --from`s name), so
    /// that independent stages can be built in parallel.
    pub fn stage_dependencies(
        &self,
        index: usize,
        build_args: Lookup,
    ) -> Result<Vec<usize>, DockerfileError> {
        let scope = self.global_scope(build_args)?;
        self.dependencies(index, &scope, build_args)
    }

    fn dependencies(
        &self,
        index: usize,
        scope: &[(String, String)],
        build_args: Lookup,
    ) -> Result<Vec<usize>, DockerfileError> {
        let mut dependencies = Vec::new();
        if let (BaseRef::Stage(base), _) = self.base_in_scope(index, scope, build_args)? {
            dependencies.push(base);
        }
        let lookup = |name: &str| scope_lookup(scope, name);
        let lexer = Lexer::new(self.escape);
        for step in &self.stages[index].instructions {
            let Instruction::Copy(copy) = &step.value else {
                continue;
            };
            let Some(from) = &copy.from else { continue };
            let from = lexer
                .expand_word(from, &lookup)
                .map_err(|kind| self.error(step.line, kind))?;
            match self.stage_by_ref(&from) {
                Some(stage) if stage == index => {
                    let cycle = format!("{0} -> {0}", self.stage_label(index));
                    return Err(self.error(step.line, ErrorKind::StageCycle(cycle)));
                }
                Some(stage) => dependencies.push(stage),
                None if from.parse::<usize>().is_ok() => {
                    return Err(self.error(step.line, ErrorKind::StageNotFound(from)));
                }
                // Anything else is an image reference, as in Docker.
                None => {}
            }
        }
        Ok(dependencies)
    }

    /// The name progress output gives a stage: its `AS` name, or `stage-N`.
    pub fn stage_label(&self, index: usize) -> String {
        self.stages[index]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"))
    }

    pub(crate) fn error(&self, line: usize, kind: ErrorKind) -> DockerfileError {
        DockerfileError::at(line, kind).in_file(&self.file_name)
    }

    fn error_whole(&self, kind: ErrorKind) -> DockerfileError {
        DockerfileError::whole_file(kind).in_file(&self.file_name)
    }
}

fn scope_lookup(scope: &[(String, String)], name: &str) -> Option<String> {
    scope
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    OnPath,
    Done,
}

struct Walk {
    state: Vec<Visit>,
    order: Vec<usize>,
    path: Vec<usize>,
}
