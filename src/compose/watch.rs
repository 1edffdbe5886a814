//! `develop.watch`: the typed rules of a service, and the pure decision of what a changed host
//! path triggers — which rule, which action, and where the path is in the container.
//!
//! As docker compose decides it (compose-anchors.md §2.10): a path triggers a rule when it is the
//! rule's `path` or below it, is not editor or VCS noise (`.git/`, `*~`, vim's `.*.sw?` and
//! `4913`, emacs' `.#*` and `#*#`, JetBrains' `___jb_*`, `.DS_Store`, …), is not excluded by the
//! build context's `.dockerignore` when the rule lies in the context, nor by the rule's `ignore`,
//! and matches the rule's `include` when it has one. `ignore`/`include` are `.dockerignore`
//! patterns relative to the rule's `path`. The file system is read by the callers only.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::model::{Project, Service};
use super::yaml::{Mark, Node};
use crate::engine::build::ignore::{DockerIgnore, IgnoreError};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WatchError {
    #[error("services.{service}.develop.watch[{index}]: {message}")]
    Rule {
        service: String,
        index: usize,
        /// The rule's key at fault (`action`, `target`, …), to point at; `None`: the rule.
        field: Option<&'static str>,
        message: String,
    },
    /// A rule error with where the rule (or its faulty key) is in the compose files.
    #[error("{mark}: {inner}")]
    Located { mark: Mark, inner: Box<WatchError> },
    #[error("services.{service}: cannot read {file}: {message}")]
    DockerIgnore {
        service: String,
        file: PathBuf,
        message: String,
    },
}

impl WatchError {
    /// The error with where its rule is in the compose files, read from the merged raw model
    /// (`load_with_raw`): the typed model the rules are made from keeps no positions.
    pub fn located(self, raw: &Node) -> WatchError {
        let WatchError::Rule {
            service,
            index,
            field,
            ..
        } = &self
        else {
            return self;
        };
        let index = index.to_string();
        let mut path = vec!["services", service.as_str(), "develop", "watch", &index];
        path.extend(*field);
        match deepest_node(raw, &path).mark.clone() {
            mark if mark.line > 0 => WatchError::Located {
                mark,
                inner: Box::new(self),
            },
            _ => self,
        }
    }
}

/// The node at `path` (map keys, or sequence indexes as text), or the deepest one that exists.
fn deepest_node<'a>(raw: &'a Node, path: &[&str]) -> &'a Node {
    let mut cur = raw;
    for key in path {
        let next = match &cur.value {
            super::yaml::Value::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => cur.get(key),
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Sync,
    Rebuild,
    Restart,
    SyncRestart,
    SyncExec,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "sync" => Action::Sync,
            "rebuild" => Action::Rebuild,
            "restart" => Action::Restart,
            "sync+restart" => Action::SyncRestart,
            "sync+exec" => Action::SyncExec,
            _ => return None,
        })
    }

    /// Whether the changed files are copied into the container.
    pub fn syncs(self) -> bool {
        matches!(self, Action::Sync | Action::SyncRestart | Action::SyncExec)
    }
}

/// `exec` of a `sync+exec` rule: run in the container once the files are in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecHook {
    pub command: Vec<String>,
    pub user: String,
    pub privileged: bool,
    pub working_dir: String,
    /// `KEY=value`.
    pub environment: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub action: Action,
    /// Absolute host path (the project directory joined with the rule's `path`).
    pub path: PathBuf,
    /// Absolute container path; `None` only for `rebuild`.
    pub target: Option<String>,
    pub ignore: DockerIgnore,
    pub include: Option<DockerIgnore>,
    pub initial_sync: bool,
    pub exec: Option<ExecHook>,
}

/// A service's rules, with its build context's `.dockerignore` (applied to rules inside it).
#[derive(Debug, Clone)]
pub struct ServiceWatch {
    pub service: String,
    pub rules: Vec<Rule>,
    pub context: Option<(PathBuf, DockerIgnore)>,
}

/// What one changed path triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub rule: usize,
    pub action: Action,
    /// The path relative to the rule's `path` (empty when it is the rule's path itself).
    pub relative: String,
    /// Where it is in the container, for syncing rules.
    pub container_path: Option<String>,
}

/// The rules of `service` (none when it has no `develop.watch`), with `dockerignore` the text
/// of its build context's `.dockerignore` if any (read by the caller).
pub fn rules_of(
    project: &Project,
    name: &str,
    service: &Service,
    dockerignore: Option<&str>,
) -> Result<Option<ServiceWatch>, WatchError> {
    let Some(items) = service
        .extra
        .get("develop")
        .and_then(|d| d.get("watch"))
        .and_then(|w| w.as_array())
    else {
        return Ok(None);
    };
    let rules = items
        .iter()
        .enumerate()
        .map(|(index, item)| rule(&project.working_dir, name, index, item))
        .collect::<Result<Vec<_>, _>>()?;
    let context = match (&service.build, dockerignore) {
        (Some(build), Some(text)) => {
            let ignore = DockerIgnore::parse(text).map_err(|e| WatchError::DockerIgnore {
                service: name.to_string(),
                file: Path::new(&build.context).join(".dockerignore"),
                message: e.to_string(),
            })?;
            Some((PathBuf::from(&build.context), ignore))
        }
        _ => None,
    };
    Ok(Some(ServiceWatch {
        service: name.to_string(),
        rules,
        context,
    }))
}

fn rule(
    project_dir: &Path,
    service: &str,
    index: usize,
    item: &serde_json::Value,
) -> Result<Rule, WatchError> {
    let bad_at = |field: Option<&'static str>, message: String| WatchError::Rule {
        service: service.to_string(),
        index,
        field,
        message,
    };
    let bad = |field: &'static str, message: String| bad_at(Some(field), message);
    let text = |key: &str| item.get(key).and_then(|v| v.as_str());
    let action_text = text("action").ok_or_else(|| bad("action", "action is required".into()))?;
    let action = Action::parse(action_text).ok_or_else(|| {
        bad(
            "action",
            format!(
            "unknown action {action_text:?} (sync, rebuild, restart, sync+restart or sync+exec)"
        ),
        )
    })?;
    let path = text("path").ok_or_else(|| bad("path", "path is required".into()))?;
    let target = text("target").map(str::to_string);
    if target.is_none() && action != Action::Rebuild {
        return Err(bad_at(
            None,
            format!("target is required for action {action_text}"),
        ));
    }
    if let Some(t) = &target {
        if !t.starts_with('/') {
            return Err(bad(
                "target",
                format!("target {t:?} must be an absolute path in the container"),
            ));
        }
    }
    let patterns = |key: &'static str| -> Result<Option<DockerIgnore>, WatchError> {
        let list: Vec<String> = match item.get(key) {
            None => return Ok(None),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(v) => v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        };
        DockerIgnore::parse(&list.join("\n"))
            .map(Some)
            .map_err(|e| bad(key, pattern_error(key, &e)))
    };
    let exec = match (action, item.get("exec")) {
        (Action::SyncExec, Some(e)) => Some(exec_hook(e).map_err(|m| bad("exec", m))?),
        (Action::SyncExec, None) => {
            return Err(bad_at(None, "sync+exec needs exec.command".into()))
        }
        _ => None,
    };
    let initial_sync = item
        .get("initial_sync")
        .or_else(|| item.get("x-initialSync"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(Rule {
        action,
        path: lexically_clean(&project_dir.join(path)),
        target: target.map(|t| lexically_clean_str(&t)),
        ignore: patterns("ignore")?.unwrap_or_default(),
        include: patterns("include")?,
        initial_sync,
        exec,
    })
}

/// A bad `ignore`/`include` pattern by its place in the rule's list: the patterns are parsed as
/// the lines of a `.dockerignore`, whose name and line numbers would point nowhere.
fn pattern_error(key: &str, e: &IgnoreError) -> String {
    match e {
        IgnoreError::EmptyExclusion { line } => {
            format!("{key}[{}]: illegal exclusion pattern \"!\"", line - 1)
        }
        IgnoreError::BadPattern {
            line,
            pattern,
            reason,
        } => format!(
            "{key}[{}]: syntax error in pattern {pattern:?}: {reason}",
            line - 1
        ),
    }
}

fn exec_hook(e: &serde_json::Value) -> Result<ExecHook, String> {
    let command = match e.get("command") {
        Some(serde_json::Value::String(s)) => super::notation::shell_split(s)?,
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|w| {
                w.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| w.to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    if command.is_empty() {
        return Err("exec.command is required for sync+exec".into());
    }
    let text = |key: &str| {
        e.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let environment = match e.get("environment") {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                serde_json::Value::Null => k.clone(),
                other => format!("{k}={other}"),
            })
            .collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ExecHook {
        command,
        user: text("user"),
        privileged: e
            .get("privileged")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        working_dir: text("working_dir"),
        environment,
    })
}

/// `a/./b/../c` → `a/c` without touching the file system (rule paths may not exist yet).
fn lexically_clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn lexically_clean_str(p: &str) -> String {
    lexically_clean(Path::new(p)).to_string_lossy().into_owned()
}

/// Editor temp files and VCS internals that never trigger anything (docker compose's
/// `pkg/watch/ephemeral.go` list plus `.git/`).
pub fn is_noise(relative: &str) -> bool {
    let mut parts = relative.split('/');
    if relative.split('/').any(|c| c == ".git") {
        return true;
    }
    let name = parts.next_back().unwrap_or_default();
    let swap = name.starts_with('.')
        && [".swp", ".swx", ".swo", ".swn"]
            .iter()
            .any(|ext| name.ends_with(ext));
    swap || name.ends_with('~')
        || name == "4913"
        || name == ".DS_Store"
        || name == ".kate-swp"
        || name.starts_with("___jb_")
        || name.starts_with(".#")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name.ends_with("-go-tmp-umask")
}

/// `path` relative to `base` with `/` separators, when it is `base` or below it.
fn relative_to(path: &Path, base: &Path) -> Option<String> {
    let rest = path.strip_prefix(base).ok()?;
    Some(
        rest.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

impl ServiceWatch {
    /// The rules `path` (absolute, on the host) triggers, in rule order.
    pub fn triggers(&self, path: &Path) -> Vec<Trigger> {
        let path = lexically_clean(path);
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| self.trigger(index, rule, &path))
            .collect()
    }

    fn trigger(&self, index: usize, rule: &Rule, path: &Path) -> Option<Trigger> {
        let relative = relative_to(path, &rule.path)?;
        if is_noise(&relative) || self.excluded_by_context(path) {
            return None;
        }
        if !relative.is_empty() && rule.ignore.matches(&relative) {
            return None;
        }
        if let Some(include) = &rule.include {
            if relative.is_empty() || !include.matches(&relative) {
                return None;
            }
        }
        let container_path = rule
            .target
            .as_ref()
            .filter(|_| rule.action.syncs())
            .map(|t| {
                if relative.is_empty() {
                    t.clone()
                } else {
                    format!("{}/{relative}", t.trim_end_matches('/'))
                }
            });
        Some(Trigger {
            rule: index,
            action: rule.action,
            relative,
            container_path,
        })
    }

    fn excluded_by_context(&self, path: &Path) -> bool {
        let Some((context, ignore)) = &self.context else {
            return false;
        };
        match relative_to(path, context) {
            Some(rel) if !rel.is_empty() => {
                // `.dockerignore` itself and the Dockerfile are always sent; changes to them
                // still count.
                rel != ".dockerignore" && ignore.matches(&rel)
            }
            _ => false,
        }
    }
}

/// Every service of `project` (all, or those named) that has watch rules, with their
/// `.dockerignore` read from the build context.
pub fn project_rules(
    project: &Project,
    services: &[String],
) -> Result<Vec<ServiceWatch>, WatchError> {
    let mut out = Vec::new();
    for (name, service) in &project.services {
        if !services.is_empty() && !services.contains(name) {
            continue;
        }
        let dockerignore = service.build.as_ref().and_then(|b| {
            std::fs::read_to_string(Path::new(&b.context).join(".dockerignore")).ok()
        });
        if let Some(watch) = rules_of(project, name, service, dockerignore.as_deref())? {
            out.push(watch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn watch(rules: serde_json::Value, dockerignore: Option<&str>) -> ServiceWatch {
        let mut project = Project {
            working_dir: PathBuf::from("/proj"),
            ..Default::default()
        };
        let mut service: Service = serde_json::from_value(json!({
            "build": {"context": "/proj"},
            "develop": {"watch": rules}
        }))
        .unwrap();
        service.build.as_mut().unwrap().context = "/proj".into();
        project.services.insert("web".into(), service.clone());
        rules_of(&project, "web", &service, dockerignore)
            .unwrap()
            .unwrap()
    }

    type Decision = Option<(usize, Action, Option<String>)>;

    fn decide(w: &ServiceWatch, path: &str) -> Decision {
        w.triggers(Path::new(path))
            .into_iter()
            .next()
            .map(|t| (t.rule, t.action, t.container_path))
    }

    #[test]
    fn which_rule_a_changed_path_triggers_and_where_it_goes() {
        let w = watch(
            json!([
                {"action": "sync", "path": "./src", "target": "/app/src",
                 "ignore": ["node_modules/", "*.log"]},
                {"action": "rebuild", "path": "package.json"},
                {"action": "sync+exec", "path": "cfg", "target": "/etc/cfg",
                 "exec": {"command": "kill -HUP 1"}},
                {"action": "sync", "path": "docs", "target": "/docs", "include": ["*.md"]},
            ]),
            Some("secret.txt\nsrc/generated/\n"),
        );
        let sync = |p: &str| Some((0, Action::Sync, Some(p.to_string())));
        let table: Vec<(&str, Decision)> = vec![
            ("/proj/src/a.js", sync("/app/src/a.js")),
            ("/proj/src/deep/er/b.js", sync("/app/src/deep/er/b.js")),
            ("/proj/src", sync("/app/src")),
            ("/proj/src/./x/../c.js", sync("/app/src/c.js")),
            ("/proj/src/node_modules/x/index.js", None),
            ("/proj/src/debug.log", None),
            ("/proj/src/generated/out.js", None),
            ("/proj/src/.git/HEAD", None),
            ("/proj/src/a.js~", None),
            ("/proj/src/.a.js.swp", None),
            ("/proj/src/.a.js.swx", None),
            ("/proj/src/4913", None),
            ("/proj/src/.DS_Store", None),
            ("/proj/src/___jb_tmp___", None),
            ("/proj/src/.#a.js", None),
            ("/proj/srcfoo/a.js", None),
            ("/proj/package.json", Some((1, Action::Rebuild, None))),
            (
                "/proj/cfg/app.conf",
                Some((2, Action::SyncExec, Some("/etc/cfg/app.conf".into()))),
            ),
            (
                "/proj/docs/readme.md",
                Some((3, Action::Sync, Some("/docs/readme.md".into()))),
            ),
            ("/proj/docs/image.png", None),
            ("/proj/secret.txt", None),
            ("/elsewhere/a.js", None),
        ];
        for (path, want) in table {
            assert_eq!(decide(&w, path), want, "{path}");
        }
    }

    #[test]
    fn rule_errors_name_the_rule() {
        let project = Project::default();
        let service: Service = serde_json::from_value(json!({
            "image": "x",
            "develop": {"watch": [{"action": "sync", "path": "a", "target": "/a"},
                                   {"action": "sync", "path": "b"}]}
        }))
        .unwrap();
        let err = rules_of(&project, "web", &service, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.web.develop.watch[1]: target is required for action sync"
        );
        let service: Service = serde_json::from_value(json!({
            "image": "x",
            "develop": {"watch": [{"action": "sync+exec", "path": "a", "target": "/a"}]}
        }))
        .unwrap();
        assert!(rules_of(&project, "web", &service, None)
            .unwrap_err()
            .to_string()
            .contains("exec.command"));
    }

    /// The rule error of the project in `dir`, located as `berth watch` reports it.
    fn located_error(dir: &Path) -> String {
        let options = crate::compose::LoadOptions {
            working_dir: dir.to_path_buf(),
            project_name: Some("t".into()),
            ..Default::default()
        };
        let (project, raw) = crate::compose::load::load_with_raw(&options).expect("loads");
        let err = project_rules(&project, &[]).unwrap_err();
        err.located(&raw).to_string()
    }

    #[test]
    fn rule_errors_name_the_compose_file_and_line_of_the_key_at_fault() {
        use crate::compose::test_support::write;
        let dir = tempfile::tempdir().unwrap();
        let compose = "services:\n  web:\n    image: x\n    develop:\n      watch:\n        - action: rebuild\n          path: ok\n";
        let rule = |body: &str| format!("{compose}        - action: {body}\n");
        let cases = [
            (
                rule("sync\n          path: a\n          target: rel"),
                "compose.yaml:10:19: services.web.develop.watch[1]: target \"rel\" must be an absolute path",
            ),
            (
                rule("sync+exec\n          path: a\n          target: /a"),
                "compose.yaml:8:17: services.web.develop.watch[1]: sync+exec needs exec.command",
            ),
            (
                rule("sync\n          path: a\n          target: /a\n          ignore: ['*.tmp', '[x']"),
                "compose.yaml:11:19: services.web.develop.watch[1]: ignore[1]: syntax error in pattern \"[x\"",
            ),
            (
                rule("sync+exec\n          path: a\n          target: /a\n          exec: {command: ''}"),
                "compose.yaml:11:17: services.web.develop.watch[1]: exec.command is required",
            ),
        ];
        for (text, want) in cases {
            write(dir.path(), "compose.yaml", &text);
            let got = located_error(dir.path());
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
        // A rule from an override file names that file.
        write(dir.path(), "compose.yaml", compose);
        write(
            dir.path(),
            "compose.override.yaml",
            "services:\n  web:\n    develop:\n      watch:\n        - action: sync\n          path: b\n          target: b\n",
        );
        let got = located_error(dir.path());
        assert!(
            got.contains("compose.override.yaml:7:19: services.web.develop.watch["),
            "{got}"
        );
    }

    #[test]
    fn exec_hooks_and_initial_sync_are_typed() {
        let w = watch(
            json!([{"action": "sync+exec", "path": "a", "target": "/a", "initial_sync": true,
                    "exec": {"command": ["sh", "-c", "echo hi"], "user": "app",
                             "privileged": true, "working_dir": "/w",
                             "environment": {"A": "1"}}}]),
            None,
        );
        let rule = &w.rules[0];
        assert!(rule.initial_sync);
        assert_eq!(
            rule.exec.as_ref().unwrap(),
            &ExecHook {
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                user: "app".into(),
                privileged: true,
                working_dir: "/w".into(),
                environment: vec!["A=1".into()],
            }
        );
    }
}
