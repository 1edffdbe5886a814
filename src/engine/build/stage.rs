//! One stage of a build, step by step. The stage's state is an image (the classic builder's
//! model): every instruction makes a new one — RUN and COPY/ADD with a layer, the others with a
//! new config and an `empty_layer` history entry — unless the cache already knows the result.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::image::HistoryBuilder;

use super::cache::{self, StepInputs};
use super::copy::{self, CopyPlan, SourceRoot};
use super::dockerfile::{CopyArgs, Instruction, Located, Run, RunMount, RunProgram};
use super::metadata;
use super::progress::{vertex_name, Vertex};
use super::run_step::{self, RunError, RunSpec};
use super::session::{BuildEnv, BuildError, StepImage, PROXY_ARGS};
use crate::engine::image::{CommitRequest, ImageRecord, LayerRecord};

/// A stage being built.
pub struct StageRun<'a> {
    pub env: &'a BuildEnv,
    pub index: usize,
    pub image: StepImage,
    /// ARGs declared in this stage, with their values.
    pub args: Vec<(String, String)>,
    /// Results of the stages built before (for `COPY --from`).
    pub done: &'a HashMap<usize, StepImage>,
}

/// What a step computes before it can know its cache key.
struct Prepared {
    text: String,
    content: Option<String>,
}

impl StageRun<'_> {
    /// Variables visible to substitution: ENV wins over ARG, as in Docker.
    fn lookup(&self, name: &str) -> Option<String> {
        let env = self
            .image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        if let Some(v) = metadata::env_value(&env, name) {
            return Some(v.to_string());
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn step_error(&self, line: usize, detail: impl std::fmt::Display) -> BuildError {
        BuildError::Step {
            file: self.env.dockerfile.file_name.clone(),
            line,
            detail: detail.to_string(),
        }
    }

    /// Runs one instruction at step `no` of the stage's `of`.
    pub async fn step(
        &mut self,
        located: &Located<Instruction>,
        no: usize,
        of: usize,
    ) -> Result<(), BuildError> {
        let vertex = self.open_vertex(&located.text, no, of).await;
        let result = self.step_in(located, &vertex).await;
        if let Err(e) = &result {
            vertex.error(&e.to_string()).await;
        }
        result
    }

    pub async fn open_vertex(&self, text: &str, no: usize, of: usize) -> Vertex {
        let df = &self.env.dockerfile;
        let stage = &df.stages[self.index];
        let name = vertex_name(
            stage.name.as_deref(),
            self.index,
            df.stages.len() > 1,
            no,
            of,
            text,
        );
        let global = self.env.next_step();
        let line = format!("Step {global}/{} : {text}\n", self.env.total_steps);
        self.env.progress.vertex(name, Some(line)).await
    }

    async fn step_in(
        &mut self,
        located: &Located<Instruction>,
        vertex: &Vertex,
    ) -> Result<(), BuildError> {
        let lookup = |name: &str| self.lookup(name);
        let expanded = self.env.dockerfile.expand(located, &lookup)?;
        if let Instruction::Arg(decls) = &expanded {
            self.declare_args(decls);
        }
        let prepared = self.prepare(&expanded, located).await?;
        let key = cache::step_key(StepInputs {
            parent: &self.image.id(),
            instruction: &prepared.text,
            args: &self.args_in_scope(),
            content: prepared.content.as_deref(),
        });
        if let Some(hit) = self.cached(&key) {
            vertex.cached().await;
            self.image = hit;
            return Ok(());
        }
        let made = self.execute(&expanded, located, vertex).await?;
        self.env
            .cache
            .store(&key, &made.id)
            .map_err(|e| self.step_error(located.line, e))?;
        vertex.done(&made.id).await;
        self.image = self.env.load(made)?;
        Ok(())
    }

    fn cached(&self, key: &str) -> Option<StepImage> {
        if self.env.opts.nocache {
            return None;
        }
        let id = self.env.cache.lookup(key)?;
        let rec = self.env.engine.images.resolve(&id)?;
        self.env.load(rec).ok()
    }

    /// `name=value` of the args in scope (the cache key covers them; proxies are left out, as
    /// Docker leaves them out of history).
    fn args_in_scope(&self) -> Vec<String> {
        self.args
            .iter()
            .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    fn declare_args(&mut self, decls: &[super::dockerfile::ArgDecl]) {
        for d in decls {
            let value = self
                .env
                .build_arg(&d.name)
                .or_else(|| d.default.clone())
                .or_else(|| self.env.global_arg(&d.name));
            self.args.retain(|(k, _)| k != &d.name);
            if let Some(v) = value {
                self.args.push((d.name.clone(), v));
            }
        }
    }

    /// The normalised text and, for COPY/ADD, the digest of what it copies.
    async fn prepare(
        &self,
        expanded: &Instruction,
        located: &Located<Instruction>,
    ) -> Result<Prepared, BuildError> {
        let text = format!("{expanded:?}");
        let content = match expanded {
            Instruction::Copy(c) | Instruction::Add(c) => Some(self.copy_inputs(c, located).await?),
            _ => None,
        };
        Ok(Prepared { text, content })
    }

    async fn execute(
        &self,
        expanded: &Instruction,
        located: &Located<Instruction>,
        vertex: &Vertex,
    ) -> Result<ImageRecord, BuildError> {
        match expanded {
            Instruction::Run(run) => self.run(run, located, vertex).await,
            Instruction::Copy(c) => self.copy(c, false, located).await,
            Instruction::Add(c) => self.copy(c, true, located).await,
            other => {
                let mut next = self.image.clone();
                metadata::apply(&mut next.config, &mut next.ext, other);
                let created_by = format!("/bin/sh -c #(nop) {}", located.text);
                self.commit(next, None, created_by, located.line).await
            }
        }
    }

    /// Stores `next` (the parent's config, edited) with `layer` on top of the parent's layers.
    /// The step's image: `next`'s config with a history entry, on the layers so far plus the
    /// step's. A layer committed for an image that cannot be made is released again, so a failed
    /// step leaves no blob or snapshot behind.
    async fn commit(
        &self,
        next: StepImage,
        layer: Option<LayerRecord>,
        created_by: String,
        line: usize,
    ) -> Result<ImageRecord, BuildError> {
        let parents = self.image.layers();
        let made = self
            .commit_image(next, layer.clone(), parents.clone(), created_by, line)
            .await;
        if let (Err(_), Some(layer)) = (&made, layer) {
            let engine = self.env.engine.clone();
            let _ =
                tokio::task::spawn_blocking(move || engine.images.release_layer(&layer, &parents))
                    .await;
        }
        made
    }

    async fn commit_image(
        &self,
        mut next: StepImage,
        layer: Option<LayerRecord>,
        mut layers: Vec<LayerRecord>,
        created_by: String,
        line: usize,
    ) -> Result<ImageRecord, BuildError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let entry = HistoryBuilder::default()
            .created(now.clone())
            .created_by(created_by)
            .empty_layer(layer.is_none())
            .build()
            .map_err(|e| self.step_error(line, e))?;
        next.config
            .history_mut()
            .get_or_insert_with(Vec::new)
            .push(entry);
        next.config.set_created(Some(now));
        layers.extend(layer);
        let req = CommitRequest {
            config: next.config,
            extensions: next.ext,
            layers,
            tag: None,
            intermediate: true,
        };
        let engine = self.env.engine.clone();
        tokio::task::spawn_blocking(move || engine.images.commit_image(req))
            .await
            .map_err(|e| self.step_error(line, e))?
            .map_err(|e| self.step_error(line, e))
    }

    async fn run(
        &self,
        run: &Run,
        located: &Located<Instruction>,
        vertex: &Vertex,
    ) -> Result<ImageRecord, BuildError> {
        let Some(record) = &self.image.record else {
            return Err(self.step_error(
                located.line,
                format!(
                    "{}: the stage is empty (FROM scratch): there is no shell to run",
                    located.text
                ),
            ));
        };
        let argv = self.run_argv(run, located)?;
        let spec = self.run_spec(record, argv.clone(), run)?;
        let lowers = self
            .env
            .engine
            .images
            .lower_dirs(record)
            .map_err(|e| self.step_error(located.line, e))?;
        let targets: Vec<String> = spec.cache_mounts.iter().map(|(_, t)| t.clone()).collect();
        let stubs = run_step::mount_point_stubs(&lowers, &targets);
        let parents = record.layers.clone();
        let engine = self.env.engine.clone();
        let commit = move |upper: &std::path::Path| {
            engine
                .images
                .commit_layer(upper, &parents, &stubs)
                .map_err(|e| e.to_string())
        };
        let layer = run_step::run(&self.env.engine, &spec, vertex, commit)
            .await
            .map_err(|e| self.run_error(e, located))?;
        self.commit(self.image.clone(), layer, argv.join(" "), located.line)
            .await
    }

    fn run_error(&self, e: RunError, located: &Located<Instruction>) -> BuildError {
        match e {
            RunError::Failed { code, last_lines } => {
                let mut detail = format!("{}: exit code {code}", located.text);
                for l in last_lines {
                    detail.push('\n');
                    detail.push_str(&l);
                }
                self.step_error(located.line, detail)
            }
            other => self.step_error(located.line, format!("{}: {other}", located.text)),
        }
    }

    /// The command: exec form as is; shell form through SHELL; a lone heredoc is the script.
    fn run_argv(
        &self,
        run: &Run,
        located: &Located<Instruction>,
    ) -> Result<Vec<String>, BuildError> {
        match run.program(&metadata::shell_of(&self.image.ext)) {
            RunProgram::Argv(argv) => Ok(argv),
            RunProgram::Script { name, .. } => Err(self.step_error(
                located.line,
                format!(
                    "{}: a heredoc script with its own interpreter (<<{name} starting with #!) \
                     is not supported yet",
                    located.text
                ),
            )),
        }
    }

    fn run_spec(
        &self,
        record: &ImageRecord,
        argv: Vec<String>,
        run: &Run,
    ) -> Result<RunSpec, BuildError> {
        let config_env = self
            .image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        // Build args reach RUN as environment, under ENV of the same name.
        let env = self
            .args
            .iter()
            .chain(self.env.proxy_args().iter())
            .filter(|(k, _)| metadata::env_value(&config_env, k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut cache_mounts = Vec::new();
        for RunMount::Cache(m) in &run.mounts {
            let dir = self.env.cache_mount_dir(&m.id, m.mode, m.uid, m.gid)?;
            cache_mounts.push((dir, m.target.clone()));
        }
        Ok(RunSpec {
            image: record.id.clone(),
            argv,
            env,
            network_mode: self.env.opts.network_mode.clone(),
            shm_size: self.env.opts.shm_size,
            extra_hosts: self.env.opts.extra_hosts.clone(),
            cache_mounts,
            build_id: self.env.build_id.clone(),
            ..Default::default()
        })
    }

    /// Where COPY sources come from, and the digest the cache key takes from them.
    async fn copy_inputs(
        &self,
        c: &CopyArgs,
        located: &Located<Instruction>,
    ) -> Result<String, BuildError> {
        if !c.heredocs.is_empty() {
            return Err(self.step_error(
                located.line,
                format!(
                    "{}: inline sources (heredocs) are not supported yet",
                    located.text
                ),
            ));
        }
        if let Some(url) = c.sources.iter().find(|s| copy::is_remote_url(s)) {
            return Err(self.step_error(
                located.line,
                format!(
                    "ADD {url}: cannot fetch remote URL {url} (berth builds offline-only for now)"
                ),
            ));
        }
        if let Some(from) = &c.from {
            return Ok(self.copy_source_image(from, located)?.id());
        }
        let keyword = located.value.keyword();
        let root = self.env.dirs.context();
        let sources = c.sources.clone();
        // Selecting and hashing read the whole of what is copied: off the async workers.
        let digest = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let mut selected = Vec::new();
            for p in &sources {
                let found = super::context::select(&root, p, super::context::Scope::Context)
                    .map_err(|e| e.to_string())?;
                selected.extend(found.into_iter().map(|s| (s, p.clone())));
            }
            cache::sources_digest(&root, &selected).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| self.step_error(located.line, e))?;
        digest.map_err(|e| self.step_error(located.line, format!("{keyword} {e}")))
    }

    /// `--from=<stage|image>`: a stage built before, or an image (stored or pulled).
    fn copy_source_image(
        &self,
        from: &str,
        located: &Located<Instruction>,
    ) -> Result<StepImage, BuildError> {
        if let Some(i) = self.env.dockerfile.stage_by_ref(from) {
            return self.done.get(&i).cloned().ok_or_else(|| {
                self.step_error(
                    located.line,
                    format!("stage {from:?} is not built before this step"),
                )
            });
        }
        let rec = self.env.engine.images.resolve(from).ok_or_else(|| {
            self.step_error(
                located.line,
                format!("--from={from}: no such stage or image (pull the image first)"),
            )
        })?;
        self.env.load(rec)
    }

    async fn copy(
        &self,
        c: &CopyArgs,
        add: bool,
        located: &Located<Instruction>,
    ) -> Result<ImageRecord, BuildError> {
        let plan = self.copy_plan(c, add, located)?;
        let parents = self.image.layers();
        let engine = self.env.engine.clone();
        let keyword = located.value.keyword();
        let layer = tokio::task::spawn_blocking(move || {
            let upper = copy::copy_layer(plan).map_err(|e| e.to_string())?;
            engine
                .images
                .commit_layer(&upper, &parents, &[])
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| self.step_error(located.line, e))?
        .map_err(|e| self.step_error(located.line, format!("{keyword} {e}")))?;
        let created_by = format!("/bin/sh -c #(nop) {}", located.text);
        self.commit(self.image.clone(), layer, created_by, located.line)
            .await
    }

    fn copy_plan(
        &self,
        c: &CopyArgs,
        add: bool,
        located: &Located<Instruction>,
    ) -> Result<CopyPlan, BuildError> {
        let lowers = |img: &StepImage| -> Result<Vec<PathBuf>, BuildError> {
            match &img.record {
                Some(r) => self
                    .env
                    .engine
                    .images
                    .lower_dirs(r)
                    .map_err(|e| self.step_error(located.line, e)),
                None => Ok(Vec::new()),
            }
        };
        let from = match &c.from {
            Some(f) => SourceRoot::Image(lowers(&self.copy_source_image(f, located)?)?),
            None => SourceRoot::Context(self.env.dirs.context()),
        };
        let chmod = match &c.chmod {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                self.step_error(located.line, format!("--chmod={m}: not an octal mode"))
            })?),
            None => None,
        };
        let workdir = self
            .image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.working_dir().clone())
            .unwrap_or_else(|| "/".into());
        let step_dir = self.env.dirs.step_dir();
        copy::prepare_step_dir(&step_dir).map_err(|e| self.step_error(located.line, e))?;
        Ok(CopyPlan {
            step_dir,
            lowers: lowers(&self.image)?,
            from,
            patterns: c.sources.clone(),
            dest: c.dest.clone(),
            workdir,
            chown: c.chown.clone(),
            chmod,
            add,
        })
    }
}
