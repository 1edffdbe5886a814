//! A build from start to end: the context received into `build/<id>/`, the Dockerfile parsed,
//! the needed stages built in dependency order (each FROM resolved: scratch, an earlier stage,
//! a stored or pulled image), the final image labelled and tagged — and `build/<id>/` removed
//! whatever happened.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::cache::BuildCache;
use super::context;
use super::dockerfile::{self, BaseRef, Dockerfile, Located};
use super::ignore::DockerIgnore;
use super::progress::{short_id, BuildMessage, Progress};
use super::session::{
    BuildDir, BuildEnv, BuildError, BuildOptions, StepImage, PLATFORM, PROXY_ARGS,
};
use super::stage::StageRun;
use crate::engine::image::{CommitRequest, ImageRecord};
use crate::engine::reference::ImageReference;
use crate::engine::SharedEngine;

/// Runs a build whose context tar is at `context_tar`; the progress goes to `tx`.
pub async fn build(
    engine: SharedEngine,
    opts: BuildOptions,
    context_tar: PathBuf,
    tx: mpsc::Sender<BuildMessage>,
) -> Result<ImageRecord, BuildError> {
    let progress = Progress::new(tx, opts.quiet);
    if let Some(p) = opts
        .platform
        .as_deref()
        .filter(|p| !p.is_empty() && *p != PLATFORM)
    {
        return Err(BuildError::Invalid(format!(
            "platform {p} is not supported: berth builds {PLATFORM} images only"
        )));
    }
    let build_id = hex::encode(rand::random::<[u8; 8]>());
    let dirs = BuildDir::create(&engine.roots.data_root, &build_id)?;
    let dockerfile = load_definition(&dirs, &opts, &context_tar, &progress).await?;
    let cache =
        BuildCache::open(&engine.roots.data_root).map_err(|e| BuildError::Engine(e.to_string()))?;
    let lookup = |name: &str| opts.build_args.get(name).cloned().flatten();
    let order = dockerfile.stage_order(opts.target.as_deref(), &lookup)?;
    let global_scope = dockerfile.global_scope(&lookup)?;
    let total_steps = order
        .iter()
        .map(|&i| dockerfile.stages[i].instructions.len() + 1)
        .sum();
    let env = BuildEnv {
        engine,
        dockerfile: Arc::new(dockerfile),
        opts,
        dirs,
        cache,
        progress,
        build_id,
        total_steps,
        step: AtomicUsize::new(0),
        used_args: Mutex::new(HashSet::new()),
        global_scope,
    };
    let last = build_stages(&env, &order).await?;
    warn_unused_args(&env).await;
    finish(&env, last).await
}

/// Builds the stages of `order`, each as soon as the stages it uses are built (independent
/// stages run at the same time); the last one's image. After a failure the stages already
/// running finish (their containers are removed on the way) before the error is returned.
async fn build_stages(env: &BuildEnv, order: &[usize]) -> Result<StepImage, BuildError> {
    let lookup = |name: &str| env.opts.build_args.get(name).cloned().flatten();
    let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in order {
        deps.insert(i, env.dockerfile.stage_dependencies(i, &lookup)?);
    }
    let mut done: HashMap<usize, StepImage> = HashMap::new();
    let mut pending: Vec<usize> = order.to_vec();
    let mut running = FuturesUnordered::new();
    let mut failure = None;
    loop {
        if failure.is_none() {
            let ready: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|i| deps[i].iter().all(|d| done.contains_key(d)))
                .collect();
            pending.retain(|i| !ready.contains(i));
            for i in ready {
                let before = done.clone();
                running.push(async move { (i, build_stage(env, i, &before).await) });
            }
        }
        match running.next().await {
            None => break,
            Some((i, Ok(image))) => {
                done.insert(i, image);
            }
            Some((_, Err(e))) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let last = order.last().and_then(|i| done.remove(i));
    last.ok_or_else(|| BuildError::Invalid("no stage to build".into()))
}

/// Receives the context, honours a `.dockerignore` in it, reads and parses the Dockerfile.
async fn load_definition(
    dirs: &BuildDir,
    opts: &BuildOptions,
    context_tar: &Path,
    progress: &Progress,
) -> Result<Dockerfile, BuildError> {
    let name = if opts.dockerfile.is_empty() {
        "Dockerfile".to_string()
    } else {
        opts.dockerfile.clone()
    };
    let v = progress
        .vertex("[internal] load build context".to_string(), None)
        .await;
    let (tar, dest) = (context_tar.to_path_buf(), dirs.context());
    let name_for_ignore = name.clone();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&tar)
            .map_err(|e| BuildError::Engine(format!("open {}: {e}", tar.display())))?;
        context::receive(file, &dest)?;
        honour_dockerignore(&dest, &name_for_ignore)
    })
    .await
    .map_err(|e| BuildError::Engine(e.to_string()))??;
    v.finished().await;
    let v = progress
        .vertex(
            format!("[internal] load build definition from {name}"),
            None,
        )
        .await;
    let text = read_dockerfile(&dirs.context(), &name)?;
    let parsed = dockerfile::parse(&name, &text)?;
    if let Some(note) = &parsed.syntax_note {
        progress
            .line(format!("[Note] syntax directive {note} ignored: berth has one built-in Dockerfile frontend\n"))
            .await;
    }
    v.finished().await;
    Ok(parsed)
}

/// Applies the context's own `.dockerignore`, keeping the Dockerfile and the ignore file.
fn honour_dockerignore(root: &Path, dockerfile: &str) -> Result<(), BuildError> {
    let Ok(text) = std::fs::read_to_string(root.join(".dockerignore")) else {
        return Ok(());
    };
    let ignore = DockerIgnore::parse(&text)
        .map_err(|e| BuildError::Invalid(format!(".dockerignore: {e}")))?;
    let dockerfile = dockerfile.trim_start_matches("./");
    context::apply_ignore(root, &ignore, &[dockerfile, ".dockerignore"])?;
    Ok(())
}

/// The Dockerfile named by the query, resolved inside the context like a COPY source.
fn read_dockerfile(root: &Path, name: &str) -> Result<String, BuildError> {
    let found = context::select(root, name, context::Scope::Context).map_err(|_| {
        BuildError::Invalid(format!(
            "cannot read the Dockerfile: {name} is not in the build context"
        ))
    })?;
    let path = root.join(&found[0].rel);
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(16 << 20).read_to_string(&mut text))
        .map_err(|e| BuildError::Invalid(format!("cannot read the Dockerfile {name}: {e}")))?;
    Ok(text)
}

/// Builds stage `index`: its FROM, the base's ONBUILD triggers, then its instructions.
async fn build_stage(
    env: &BuildEnv,
    index: usize,
    done: &HashMap<usize, StepImage>,
) -> Result<StepImage, BuildError> {
    let stage = &env.dockerfile.stages[index];
    let of = stage.instructions.len() + 1;
    let mut run = StageRun {
        env,
        index,
        image: StepImage::scratch(),
        args: Vec::new(),
        done,
    };
    let vertex = run.open_vertex(&stage.text, 1, of).await;
    let base = resolve_base(env, index, done).await;
    let base = match base {
        Ok(b) => b,
        Err(e) => {
            vertex.error(&e.to_string()).await;
            return Err(e);
        }
    };
    match &base.record {
        Some(r) => vertex.done(&r.id).await,
        None => vertex.finished().await,
    }
    run.image = base;
    run_triggers(&mut run, stage.line).await?;
    for (n, located) in stage.instructions.iter().enumerate() {
        run.step(located, n + 2, of).await?;
    }
    Ok(run.image)
}

/// ONBUILD triggers of the base run first, as the base's author meant; the child does not
/// inherit them.
async fn run_triggers(run: &mut StageRun<'_>, from_line: usize) -> Result<(), BuildError> {
    let Some(triggers) = run.image.ext.on_build.take() else {
        return Ok(());
    };
    for text in triggers {
        let parsed = dockerfile::parse_trigger(&text, run.env.dockerfile.escape)?;
        let located = Located {
            line: from_line,
            text: parsed.text.clone(),
            value: parsed.value,
        };
        run.step(&located, 1, 1).await?;
    }
    Ok(())
}

/// The image a FROM names: scratch, a stage built before, or a stored (or pulled) image.
async fn resolve_base(
    env: &BuildEnv,
    index: usize,
    done: &HashMap<usize, StepImage>,
) -> Result<StepImage, BuildError> {
    let lookup = |name: &str| env.build_arg(name);
    let (base, platform) = env.dockerfile.stage_base(index, &lookup)?;
    let line = env.dockerfile.stages[index].line;
    if let Some(p) = platform.filter(|p| p != PLATFORM) {
        return Err(BuildError::Step {
            file: env.dockerfile.file_name.clone(),
            line,
            detail: format!("FROM --platform={p}: berth builds {PLATFORM} images only"),
        });
    }
    match base {
        BaseRef::Scratch => Ok(StepImage::scratch()),
        BaseRef::Stage(i) => done
            .get(&i)
            .cloned()
            .ok_or_else(|| BuildError::Invalid(format!("stage {i} is needed before it is built"))),
        BaseRef::Image(name) => {
            let rec = base_image(env, &name)
                .await
                .map_err(|detail| BuildError::Step {
                    file: env.dockerfile.file_name.clone(),
                    line,
                    detail,
                })?;
            env.load(rec)
        }
    }
}

/// A stored image, pulled when absent or when the build asks to pull.
async fn base_image(env: &BuildEnv, name: &str) -> Result<ImageRecord, String> {
    if !env.opts.pull {
        if let Some(rec) = env.engine.images.resolve(name) {
            return Ok(rec);
        }
    }
    let reference = ImageReference::parse(name).map_err(|e| format!("FROM {name}: {e}"))?;
    let credentials = env
        .opts
        .registry_auth
        .get(&crate::engine::auth::server_key(&reference.registry))
        .or_else(|| env.opts.registry_auth.get(&reference.registry))
        .cloned();
    let (tx, mut rx) = mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let pulled = env
        .engine
        .images
        .pull_with_auth(&reference, &env.engine.settings, credentials, tx)
        .await;
    let _ = drain.await;
    pulled.map_err(|e| format!("FROM {name}: {e}"))
}

/// `[Warning] One or more build-args [X] were not consumed`, as Docker prints it.
async fn warn_unused_args(env: &BuildEnv) {
    let used = env
        .used_args
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let unused: Vec<&str> = env
        .opts
        .build_args
        .keys()
        .map(String::as_str)
        .filter(|k| !used.contains(*k) && !PROXY_ARGS.contains(k))
        .collect();
    if !unused.is_empty() {
        env.progress
            .line(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                unused.join(" ")
            ))
            .await;
    }
}

/// The final image: the last step's, with the query's labels, tagged with every `t`.
async fn finish(env: &BuildEnv, last: StepImage) -> Result<ImageRecord, BuildError> {
    let mut config = last.config.clone();
    if !env.opts.labels.is_empty() {
        let mut c = config.config().clone().unwrap_or_default();
        let labels = c.labels_mut().get_or_insert_with(Default::default);
        for (k, v) in &env.opts.labels {
            labels.insert(k.clone(), v.clone());
        }
        config.set_config(Some(c));
    }
    let req = CommitRequest {
        config,
        extensions: last.ext.clone(),
        layers: last.layers(),
        tag: None,
        intermediate: false,
    };
    let engine = env.engine.clone();
    let tags = env.opts.tags.clone();
    let rec = tokio::task::spawn_blocking(move || {
        let mut rec = engine.images.commit_image(req)?;
        for t in &tags {
            rec = engine.images.tag(&rec.id, t)?;
        }
        Ok::<_, crate::engine::image::ImageError>(rec)
    })
    .await
    .map_err(|e| BuildError::Engine(e.to_string()))?
    .map_err(|e| BuildError::Engine(e.to_string()))?;
    env.progress
        .send(BuildMessage {
            aux: Some(super::progress::AuxId { id: rec.id.clone() }),
            ..Default::default()
        })
        .await;
    env.progress
        .line(format!("Successfully built {}\n", short_id(&rec.id)))
        .await;
    for t in &env.opts.tags {
        env.progress
            .line(format!("Successfully tagged {t}\n"))
            .await;
    }
    Ok(rec)
}
