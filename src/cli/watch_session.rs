//! `berth watch [SERVICES]` and the watcher behind `berth up --watch`: file events from
//! `notify` (recursive, so new directories are watched as they appear), debounced per service
//! with a short quiet period, then the rules' actions — `sync` through the engine's sync
//! endpoint into each running container, `restart`, `sync+restart`, `sync+exec`, and `rebuild`
//! (build, then recreate only that service through the plan, volumes kept).
//!
//! docker compose waits 500 ms of quiet before acting; berth's default is 30 ms (`--debounce`,
//! `BERTH_WATCH_DEBOUNCE_MS`): an editor's save (write, rename, chmod) lands within a few
//! milliseconds, and a `git checkout` of 1,000 files keeps events flowing with gaps far shorter
//! than that, so it still becomes one batch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::mpsc;

use super::project::ProjectArgs;
use super::watch_actions::{act_on_batch, initial_sync, Recreate, Services, WatchOptions};
use super::watch_paths::{watch_paths, PathWatcher};
use crate::compose::model::Project;
use crate::compose::watch::{project_rules, ServiceWatch, WatchError};
use crate::engine::api::client::EngineClient;

/// The services' rules, refusing a watch with nothing to watch as docker compose does. A bad
/// rule is reported at its `file:line` in the compose files.
pub fn rules_for(
    project_args: &ProjectArgs,
    project: &Project,
    services: &[String],
) -> anyhow::Result<Vec<ServiceWatch>> {
    let rules = project_rules(project, services).map_err(|e| locate(e, project_args, services))?;
    if rules.is_empty() {
        bail!(
            "none of the selected services is configured for watch, consider setting a 'develop' section"
        );
    }
    Ok(rules)
}

/// `e` with its position, from the raw model of a second load: only this error path needs
/// positions, which the typed model the commands use does not keep.
fn locate(e: WatchError, project_args: &ProjectArgs, services: &[String]) -> WatchError {
    if !matches!(e, WatchError::Rule { .. }) {
        return e;
    }
    let raw = super::project::load_options(project_args, services)
        .ok()
        .and_then(|options| crate::compose::load::load_with_raw(&options).ok());
    match raw {
        Some((_, raw)) => e.located(&raw),
        None => e,
    }
}

/// A running watch: dropping it stops the file watcher and aborts the service tasks; `stop`
/// lets the batches in flight finish first.
pub struct Watching {
    _watcher: PathWatcher,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stopping: tokio_util::sync::CancellationToken,
}

impl Watching {
    /// No new batch starts; the ones being acted on (a rebuild, a restart) finish, so nothing
    /// the watch does races what the caller does next (`up --watch` stopping the stack).
    pub async fn stop(mut self) {
        self.stopping.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Watch `rules`' paths and act on their changes until the returned handle is dropped.
pub fn start(
    project_args: ProjectArgs,
    project: Project,
    client: EngineClient,
    rules: Vec<ServiceWatch>,
    options: WatchOptions,
    recreate: Recreate,
) -> anyhow::Result<Watching> {
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let stopping = tokio_util::sync::CancellationToken::new();
    let services = Services::new(project_args, project, client, options.clone(), recreate);
    for watch in rules.iter().cloned() {
        let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
        senders.push((watch.clone(), tx));
        let services = services.clone();
        let stop = stopping.clone();
        tasks.push(tokio::spawn(service_loop(
            services,
            watch,
            rx,
            options.debounce,
            stop,
        )));
    }
    let watcher = watch_paths(senders)?;
    eprintln!("Watch enabled");
    Ok(Watching {
        _watcher: watcher,
        tasks,
        stopping,
    })
}

/// A service's changes: the first event opens a batch, which closes after `quiet` without
/// events; batches are acted on one after the other, so changes made during a rebuild collapse
/// into the next batch (one trailing rebuild).
async fn service_loop(
    services: Services,
    watch: ServiceWatch,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    quiet: Duration,
    stopping: tokio_util::sync::CancellationToken,
) {
    tokio::select! {
        _ = initial_sync(&services, &watch) => {}
        _ = stopping.cancelled() => return,
    }
    loop {
        let batch = tokio::select! {
            batch = next_batch(&mut rx, quiet) => batch,
            _ = stopping.cancelled() => return,
        };
        let Some(batch) = batch else { return };
        // Not raced against the stop: a batch once started is carried out whole.
        act_on_batch(&services, &watch, &triggered(&watch, &batch)).await;
    }
}

/// The next batch: the first path opens it, and it closes once `quiet` passes without another.
/// `None` when the watcher has gone.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<PathBuf>,
    quiet: Duration,
) -> Option<BTreeSet<PathBuf>> {
    let mut batch = BTreeSet::from([rx.recv().await?]);
    while let Ok(Some(path)) = tokio::time::timeout(quiet, rx.recv()).await {
        batch.insert(path);
    }
    // Anything that arrived while the timer fired belongs to this batch too.
    while let Ok(path) = rx.try_recv() {
        batch.insert(path);
    }
    Some(batch)
}

/// Per rule, the relative paths the batch triggers (empty rules left out).
fn triggered(watch: &ServiceWatch, batch: &BTreeSet<PathBuf>) -> BTreeMap<usize, BTreeSet<String>> {
    let mut by_rule: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for path in batch {
        for trigger in watch.triggers(path) {
            by_rule
                .entry(trigger.rule)
                .or_default()
                .insert(trigger.relative);
        }
    }
    by_rule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_with_short_gaps_is_one_batch_and_a_pause_starts_the_next() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Gaps of about a millisecond, as a checkout writes; a quiet period well above them.
        let quiet = Duration::from_millis(250);
        let sender = tokio::spawn(async move {
            for i in 0..1000 {
                tx.send(PathBuf::from(format!("/p/f{i}"))).unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
            tx.send(PathBuf::from("/p/later")).unwrap();
        });
        let first = next_batch(&mut rx, quiet).await.unwrap();
        assert_eq!(first.len(), 1000);
        let second = next_batch(&mut rx, quiet).await.unwrap();
        assert_eq!(second, BTreeSet::from([PathBuf::from("/p/later")]));
        sender.await.unwrap();
        assert_eq!(next_batch(&mut rx, quiet).await, None);
    }
}
