//! The file watcher of a watch session: which host paths `notify` watches for the rules, and
//! how it follows rule paths that change kind while watching.
//!
//! A rule on a directory is watched recursively; a rule on a file through its directory (editors
//! replace files by renaming over them, which ends a watch on the file itself); a rule whose
//! path does not exist yet through its nearest existing ancestor. An event on a rule path or one
//! of its ancestors re-plans: when the path has appeared as a directory it is then watched
//! recursively and, for a syncing rule, synced whole once the watch is in place — so files
//! created below it before the watch existed arrive too; when the directory is removed, its
//! ancestor is watched again so it can come back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use anyhow::Context;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::compose::watch::ServiceWatch;

/// Re-plans follow the file system; a directory chain appearing while being watched settles in
/// a few steps. Bounded so a path that flips kind endlessly cannot hold the planner.
const MAX_STEPS_PER_RULE: usize = 64;

/// Where one rule path is watched from, given what exists on the host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchPoint {
    /// The rule path is a directory: it and everything below it.
    Tree(PathBuf),
    /// A directory's entries (not below them): the rule path's directory when the path is a
    /// file, else its nearest existing ancestor, where it (or the next step towards it) appears.
    Entries(PathBuf),
}

/// The watch point of `rule_path`; `is_dir` answers `Some(is a directory)` for an existing path
/// and `None` for a missing one.
pub fn watch_point(rule_path: &Path, is_dir: impl Fn(&Path) -> Option<bool>) -> WatchPoint {
    match is_dir(rule_path) {
        Some(true) => WatchPoint::Tree(rule_path.to_path_buf()),
        Some(false) => WatchPoint::Entries(rule_path.parent().unwrap_or(rule_path).to_path_buf()),
        None => rule_path
            .ancestors()
            .skip(1)
            .find(|a| is_dir(a) == Some(true))
            .map_or_else(
                || WatchPoint::Entries("/".into()),
                |a| WatchPoint::Entries(a.into()),
            ),
    }
}

fn host_is_dir(path: &Path) -> Option<bool> {
    std::fs::metadata(path).ok().map(|m| m.is_dir())
}

/// Whether an event at `event_path` can change where a rule is watched from: it is the rule's
/// path or one of its ancestors (events below a rule path never are).
pub fn may_move_a_watch_point(rule_paths: &[PathBuf], event_path: &Path) -> bool {
    rule_paths.iter().any(|r| r.starts_with(event_path))
}

type Sender = mpsc::UnboundedSender<PathBuf>;

/// One rule as the planner follows it.
struct Tracked {
    path: PathBuf,
    point: Option<WatchPoint>,
    /// The service task to send the rule's path to when it appears (syncing rules only: the
    /// event of the directory's creation already triggered the other actions).
    sync_to: Option<Sender>,
}

/// The watcher and the planner's view of it; owned by the planner thread.
struct Planner {
    watcher: RecommendedWatcher,
    rules: Vec<Tracked>,
    recursive: BTreeSet<PathBuf>,
}

enum Signal {
    Replan,
    Stop,
}

/// The running watcher: dropping it stops the planner thread, which drops the `notify` watcher.
pub struct PathWatcher {
    signals: std_mpsc::Sender<Signal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PathWatcher {
    fn drop(&mut self) {
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Watch every rule path of `senders`' services; each event path goes to the services whose
/// rules it is under (what it triggers is the service task's decision).
pub fn watch_paths(senders: Vec<(ServiceWatch, Sender)>) -> anyhow::Result<PathWatcher> {
    let (signals, signal_rx) = std_mpsc::channel();
    let rules: Vec<Tracked> = senders
        .iter()
        .flat_map(|(watch, tx)| {
            watch.rules.iter().map(move |r| Tracked {
                path: r.path.clone(),
                point: None,
                sync_to: r.action.syncs().then(|| tx.clone()),
            })
        })
        .collect();
    let rule_paths: Vec<PathBuf> = rules.iter().map(|r| r.path.clone()).collect();
    let replan = signals.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            // The watcher cannot be changed from its own callback: the planner thread does it.
            if may_move_a_watch_point(&rule_paths, &path) {
                let _ = replan.send(Signal::Replan);
            }
            for (watch, tx) in &senders {
                if watch.rules.iter().any(|r| path.starts_with(&r.path)) {
                    let _ = tx.send(path.clone());
                }
            }
        }
    })
    .context("cannot start the file watcher")?;
    let mut planner = Planner {
        watcher,
        rules,
        recursive: BTreeSet::new(),
    };
    planner.replan()?;
    let thread = std::thread::Builder::new()
        .name("berth-watch-paths".into())
        .spawn(move || planner.follow(signal_rx))
        .context("cannot start the watch planner")?;
    Ok(PathWatcher {
        signals,
        thread: Some(thread),
    })
}

impl Planner {
    fn follow(mut self, signals: std_mpsc::Receiver<Signal>) {
        while let Ok(Signal::Replan) = signals.recv() {
            // A burst of events is one re-plan.
            while let Ok(signal) = signals.try_recv() {
                if matches!(signal, Signal::Stop) {
                    return;
                }
            }
            if let Err(e) = self.replan() {
                eprintln!("watch: {e:#}");
            }
        }
    }

    /// Brings every rule's watch point up to date with the file system. After each new watch
    /// the path is looked at again, so whatever appeared before the watch existed is seen.
    fn replan(&mut self) -> anyhow::Result<()> {
        for i in 0..self.rules.len() {
            for _ in 0..MAX_STEPS_PER_RULE {
                let point = watch_point(&self.rules[i].path, host_is_dir);
                if self.rules[i].point.as_ref() == Some(&point) {
                    break;
                }
                let before = self.rules[i].point.replace(point.clone());
                if let Some(WatchPoint::Tree(old)) = &before {
                    // The directory went away (its watch with it); its ancestor is watched next.
                    self.recursive.remove(old);
                    let _ = self.watcher.unwatch(old);
                }
                self.watch(&point)?;
                if let (Some(_), WatchPoint::Tree(dir), Some(tx)) =
                    (&before, &point, &self.rules[i].sync_to)
                {
                    let _ = tx.send(dir.clone());
                }
            }
        }
        Ok(())
    }

    fn watch(&mut self, point: &WatchPoint) -> anyhow::Result<()> {
        let (path, mode) = match point {
            WatchPoint::Tree(p) => {
                self.recursive.insert(p.clone());
                (p, RecursiveMode::Recursive)
            }
            // A recursive watch over it already reports its entries; watching it again
            // non-recursively would turn that watch non-recursive.
            WatchPoint::Entries(p) if self.recursive.iter().any(|r| p.starts_with(r)) => {
                return Ok(())
            }
            WatchPoint::Entries(p) => (p, RecursiveMode::NonRecursive),
        };
        self.watcher
            .watch(path, mode)
            .with_context(|| format!("cannot watch {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(dirs: &[&str], files: &[&str]) -> impl Fn(&Path) -> Option<bool> {
        let dirs: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
        let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        move |p| {
            if dirs.iter().any(|d| d == p) {
                Some(true)
            } else {
                files.iter().any(|f| f == p).then_some(false)
            }
        }
    }

    #[test]
    fn a_rule_is_watched_from_what_exists() {
        let host = fs(&["/", "/p", "/p/src"], &["/p/package.json"]);
        let point = |p: &str| watch_point(Path::new(p), &host);
        assert_eq!(point("/p/src"), WatchPoint::Tree("/p/src".into()));
        assert_eq!(point("/p/package.json"), WatchPoint::Entries("/p".into()));
        // Missing: the nearest existing ancestor, however deep the missing part.
        assert_eq!(point("/p/gen"), WatchPoint::Entries("/p".into()));
        assert_eq!(point("/p/gen/out/js"), WatchPoint::Entries("/p".into()));
        assert_eq!(
            point("/p/src/new/deeper"),
            WatchPoint::Entries("/p/src".into())
        );
        // Below a file nothing can appear until the file is a directory; its parent shows that.
        assert_eq!(point("/p/package.json/x"), WatchPoint::Entries("/p".into()));
        assert_eq!(point("/nothing/here"), WatchPoint::Entries("/".into()));
    }

    #[test]
    fn only_events_on_a_rule_path_or_its_ancestors_re_plan() {
        let rules = [PathBuf::from("/p/gen/out"), PathBuf::from("/p/src")];
        assert!(may_move_a_watch_point(&rules, Path::new("/p/gen")));
        assert!(may_move_a_watch_point(&rules, Path::new("/p/gen/out")));
        assert!(may_move_a_watch_point(&rules, Path::new("/p/src")));
        assert!(!may_move_a_watch_point(&rules, Path::new("/p/src/a.js")));
        assert!(!may_move_a_watch_point(&rules, Path::new("/p/gen/outer")));
        assert!(!may_move_a_watch_point(&rules, Path::new("/p/other")));
    }
}
