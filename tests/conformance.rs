//! Conformance runner over the compose corpus in `$BERTH_CONFORMANCE_DIR` (see its MANIFEST.md):
//! `valid/` must load and round-trip through `berth config` (entries marked `expect: fails` must
//! be rejected), `invalid/` must be rejected with an
//! error naming the same problem, `cases/` must produce the expected canonical model.
//! Prints `N passed, N failed` per folder. When `$BERTH_CONFORMANCE_DIR` is unset the runner says so
//! and skips (fatal under `BERTH_CI=1`); when it is set, a missing, unreadable or short corpus fails:
//! every index must parse and hold exactly the counts `MANIFEST.md` states.
//!
//! Where berth is knowingly different from docker compose, the entry is listed in `DIFFERENCES`
//! with the reason; those entries must still behave as listed (so the list cannot go stale).

#[path = "common/precondition.rs"]
mod precondition;

use std::path::{Path, PathBuf};

use berth::cli::config::{to_text, ConfigFormat};
use berth::compose::{load, LoadOptions, Project};
use indexmap::IndexMap;
use serde_json::Value as J;

/// Entries where berth differs on purpose or does not implement the feature yet: (entry, reason).
const DIFFERENCES: &[(&str, &str)] = &[
    ("cases/020-environment-normalize-resolve", "berth rejects the project name `myProject` (upper case), as docker compose's CLI does; the reference test fed it to compose-go's Normalize directly"),
    ("cases/059-normalize-network-names-and-build-args", "same: upper-case project name `myProject` is rejected"),
    ("cases/060-normalize-depends-on", "same: upper-case project name `myProject` is rejected"),
    ("cases/061-normalize-implicit-dependencies", "same: upper-case project name `myProject` is rejected"),
    ("cases/062-normalize-pre-start-image", "same: upper-case project name `myProject` is rejected"),
    ("cases/049-merge-env-file-string-and-mapping", "the merge-stage input names env files that do not exist; berth reads env_file while loading and reports the missing required file"),
    ("cases/041-merge-build-sequences", "the merge-stage input is schema-invalid (`build.platform`); berth validates while loading and rejects it"),
    ("invalid/yaml-merge-self-reference", "berth reports the same cycle (an alias inside its own anchor) but names the alias by its own path (`x-healthcheck.egress-service.<<`) where compose-go repeats the key"),
    ("invalid/extends-remote-cycle", "uses compose-go's test-only `remote:` loader, which berth does not have; berth still rejects it (the file cannot be read)"),
];

/// The corpus named by `$BERTH_CONFORMANCE_DIR`; `None` (a skip) only when the variable is unset.
fn corpus() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("BERTH_CONFORMANCE_DIR") else {
        precondition::skip("BERTH_CONFORMANCE_DIR is not set: the conformance corpus was not run");
        return None;
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "BERTH_CONFORMANCE_DIR={} holds no MANIFEST.md: point it at the conformance corpus",
        dir.display()
    );
    Some(dir)
}

/// An index or fixture of the corpus; unreadable or unparsable YAML fails the run.
fn yaml_file(p: &Path) -> J {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_yaml::from_str::<J>(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", p.display()))
}

/// The count `MANIFEST.md` states in bold right before `unit` (e.g. `**83 entries**`).
fn manifest_count(manifest: &str, unit: &str) -> usize {
    let marker = format!(" {unit}**");
    let end = manifest
        .find(&marker)
        .unwrap_or_else(|| panic!("MANIFEST.md states no count of {unit}"));
    let start = manifest[..end].rfind("**").expect("bold count") + 2;
    manifest[start..end]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("MANIFEST.md count of {unit}: {e}"))
}

/// The corpus is whole: each index lists exactly as many entries as `MANIFEST.md` says.
fn check_counts(root: &Path) {
    let manifest = std::fs::read_to_string(root.join("MANIFEST.md")).expect("read MANIFEST.md");
    for (folder, unit) in [
        ("valid", "compose files"),
        ("invalid", "entries"),
        ("cases", "cases"),
    ] {
        let want = manifest_count(&manifest, unit);
        let index = yaml_file(&root.join(folder).join("index.yaml"));
        let got = index.as_array().map_or(0, Vec::len);
        assert_eq!(
            got, want,
            "{folder}/index.yaml lists {got} entries, MANIFEST.md says {want}"
        );
    }
    let case_dirs = std::fs::read_dir(root.join("cases"))
        .expect("read cases/")
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    let want = manifest_count(&manifest, "cases");
    assert_eq!(
        case_dirs, want,
        "cases/ holds {case_dirs} case folders, MANIFEST.md says {want}"
    );
}

fn env_of(v: &J) -> IndexMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        J::String(s) => s.clone(),
                        J::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The comparable part of a project.
fn model(p: &Project) -> J {
    serde_json::to_value(p).unwrap_or(J::Null)
}

struct Tally {
    name: &'static str,
    passed: usize,
    failed: Vec<(String, String)>,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            passed: 0,
            failed: Vec::new(),
        }
    }
    fn record(&mut self, entry: &str, result: Result<(), String>) {
        let known = DIFFERENCES.iter().any(|(e, _)| *e == entry);
        match (result, known) {
            (Ok(()), false) => self.passed += 1,
            (Ok(()), true) => self.failed.push((
                entry.to_string(),
                "listed in DIFFERENCES but now passes: remove it from the list".into(),
            )),
            (Err(_), true) => self.passed += 1,
            (Err(e), false) => self.failed.push((entry.to_string(), e)),
        }
    }
    fn report(&self) -> bool {
        println!(
            "{}: {} passed, {} failed",
            self.name,
            self.passed,
            self.failed.len()
        );
        for (e, why) in &self.failed {
            println!("  FAIL {e}: {}", why.replace('\n', "\n       "));
        }
        self.failed.is_empty()
    }
}

fn round_trip(opts: &LoadOptions) -> Result<(), String> {
    let first = load(opts).map_err(|e| format!("load: {e}"))?;
    let text = to_text(&first, ConfigFormat::Yaml, true).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = dir.path().join("config.yaml");
    std::fs::write(&out, &text).map_err(|e| e.to_string())?;
    let again = LoadOptions {
        files: vec![out],
        project_name: Some(first.name.clone()),
        project_directory: Some(first.working_dir.clone()),
        working_dir: dir.path().to_path_buf(),
        environment: IndexMap::new(),
        skip_consistency: opts.skip_consistency,
        ..Default::default()
    };
    let second = load(&again).map_err(|e| format!("re-load of config output: {e}\n{text}"))?;
    if model(&first) != model(&second) {
        return Err(format!(
            "round trip changed the model:\nfirst:  {}\nsecond: {}",
            model(&first),
            model(&second)
        ));
    }
    Ok(())
}

fn run_valid(root: &Path) -> Tally {
    let mut t = Tally::new("valid");
    let index = yaml_file(&root.join("valid/index.yaml"));
    for e in index.as_array().into_iter().flatten() {
        let file = e["file"].as_str().unwrap_or_default();
        let expect = e["expect"].as_str().unwrap_or_default();
        if e["role"] != "entrypoint" || !matches!(expect, "ok" | "ok-no-consistency" | "fails") {
            continue;
        }
        let path = root.join("valid").join(file);
        if expect == "fails" {
            // Kept with its fixtures, but the reference rejects it (the note says why). A
            // missing fixture would be "rejected" too: it must be there.
            assert!(path.is_file(), "valid/{file} is listed but missing");
            let opts = LoadOptions {
                files: vec![path.clone()],
                working_dir: path.parent().unwrap_or(root).to_path_buf(),
                environment: env_of(&e["environment"]),
                ..Default::default()
            };
            let result = match load(&opts) {
                Ok(_) => Err(format!(
                    "loaded, but the reference rejects it: {}",
                    e["note"].as_str().unwrap_or_default()
                )),
                Err(_) => Ok(()),
            };
            t.record(&format!("valid/{file}"), result);
            continue;
        }
        let dir = path.parent().unwrap_or(root).to_path_buf();
        let opts = LoadOptions {
            files: vec![path.clone()],
            working_dir: dir,
            environment: env_of(&e["environment"]),
            skip_consistency: expect == "ok-no-consistency",
            ..Default::default()
        };
        t.record(&format!("valid/{file}"), round_trip(&opts));
    }
    t
}

/// Does `got` name the same problem as the reference message `want`?
fn same_problem(got: &str, want: &str) -> bool {
    // compose-go prefixes schema errors with the (test's) file name; berth names the real file.
    let want = want
        .strip_prefix("validating filename0.yml: ")
        .unwrap_or(want);
    let norm = |s: &str| {
        s.to_lowercase()
            .replace(['`', '\'', '"'], "")
            .replace("[", ".")
            .replace("]", "")
    };
    let (g, w) = (norm(got), norm(want));
    if g.contains(&w) {
        return true;
    }
    // The reference's own wording is not required: every significant word must appear.
    let words: Vec<&str> = w
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '/'))
        .filter(|x| {
            x.len() > 2
                && !matches!(
                    *x,
                    "the" | "and" | "for" | "invalid" | "compose" | "project" | "must" | "with"
                )
        })
        .collect();
    !words.is_empty() && words.iter().all(|x| g.contains(x))
}

fn run_invalid(root: &Path) -> Tally {
    let mut t = Tally::new("invalid");
    let index = yaml_file(&root.join("invalid/index.yaml"));
    for e in index.as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        let file = e["file"].as_str().unwrap_or_default();
        let want = e["error"].as_str().unwrap_or_default();
        let path = root.join("invalid").join(file);
        let opts = LoadOptions {
            files: vec![path.clone()],
            working_dir: path.parent().unwrap_or(root).to_path_buf(),
            environment: env_of(&e["environment"]),
            ..Default::default()
        };
        let result = match load(&opts) {
            Ok(_) => Err(format!("loaded, but must fail with: {want}")),
            Err(err) => {
                let got = err.to_string();
                if e["match"] == "any" || e["match"] == "gist" || same_problem(&got, want) {
                    Ok(())
                } else {
                    Err(format!("wrong error\n want: {want}\n got:  {got}"))
                }
            }
        };
        t.record(&format!("invalid/{name}"), result);
    }
    t
}

/// `want` ⊆ `got` by the corpus rules: mappings key by key, lists item by item with the same
/// length (any order if `unordered`), scalars by their text; relative paths in `want` may match
/// their absolute form under `base`.
fn contains(got: &J, want: &J, base: &Path, unordered: bool, path: &str) -> Result<(), String> {
    match want {
        J::Object(w) => {
            if w.is_empty() {
                // `{}`: present (with any content), empty or absent.
                return match got {
                    J::Null | J::Object(_) => Ok(()),
                    J::Array(g) if g.is_empty() => Ok(()),
                    _ => Err(format!("{path}: expected a mapping, got {got}")),
                };
            }
            let g = got
                .as_object()
                .ok_or_else(|| format!("{path}: expected a mapping, got {got}"))?;
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => contains(gv, wv, base, unordered, &p)?,
                    None if wv.is_null() => return Err(format!("{p}: missing (expected null)")),
                    None if wv.as_object().is_some_and(|o| o.is_empty())
                        || wv.as_array().is_some_and(|a| a.is_empty()) => {}
                    None if *wv == J::Bool(false) => {}
                    None => return Err(format!("{p}: missing, expected {wv}")),
                }
            }
            Ok(())
        }
        J::Array(w) => {
            let empty = Vec::new();
            let g = match got {
                J::Array(g) => g,
                J::Null if w.is_empty() => &empty,
                _ => return Err(format!("{path}: expected a list, got {got}")),
            };
            if g.len() != w.len() {
                return Err(format!(
                    "{path}: expected {} items, got {}: {got}",
                    w.len(),
                    g.len()
                ));
            }
            if unordered {
                let mut used = vec![false; g.len()];
                for (i, wi) in w.iter().enumerate() {
                    let hit = (0..g.len())
                        .find(|&j| !used[j] && contains(&g[j], wi, base, true, path).is_ok());
                    match hit {
                        Some(j) => used[j] = true,
                        None => return Err(format!("{path}[{i}]: no match for {wi} in {got}")),
                    }
                }
                Ok(())
            } else {
                for (i, (gi, wi)) in g.iter().zip(w).enumerate() {
                    contains(gi, wi, base, false, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
        }
        J::Null => {
            if got.is_null() {
                Ok(())
            } else {
                Err(format!("{path}: expected null, got {got}"))
            }
        }
        _ => {
            let text = |v: &J| match v {
                J::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (g, w) = (text(got), text(want));
            if g == w {
                return Ok(());
            }
            // A relative path on either side may stand for its absolute form under `base`.
            for (rel, abs) in [(&w, &g), (&g, &w)] {
                if !rel.starts_with('/') && *abs == clean(&base.join(rel)).display().to_string() {
                    return Ok(());
                }
            }
            if let Some(home) = std::env::var_os("HOME") {
                for (tilde, abs) in [(&w, &g), (&g, &w)] {
                    if let Some(rest) = tilde.strip_prefix('~') {
                        if *abs == format!("{}{rest}", home.to_string_lossy()) {
                            return Ok(());
                        }
                    }
                }
            }
            if let (Ok(a), Ok(b)) = (g.parse::<f64>(), w.parse::<f64>()) {
                if a == b {
                    return Ok(());
                }
            }
            Err(format!("{path}: expected {w:?}, got {g:?}"))
        }
    }
}

fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            o => out.push(o.as_os_str()),
        }
    }
    out
}

fn get_path<'a>(v: &'a J, dotted: &str) -> Option<&'a J> {
    dotted.split('.').try_fold(v, |cur, k| cur.get(k))
}

fn run_case(dir: &Path) -> Result<(), String> {
    let opts_yaml = yaml_file(&dir.join("options.yaml"));
    let expected_text = std::fs::read_to_string(dir.join("expected.yaml"))
        .map_err(|e| e.to_string())?
        .replace("<CASE_DIR>", &dir.display().to_string());
    let expected: J = serde_yaml::from_str(&expected_text).map_err(|e| e.to_string())?;
    let strs = |k: &str| -> Vec<String> {
        opts_yaml[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut environment = env_of(&opts_yaml["environment"]);
    if opts_yaml["dotenv"] == J::Bool(false) {
        environment.insert("COMPOSE_DISABLE_ENV_FILE".into(), "true".into());
    }
    let opts = LoadOptions {
        files: strs("files").iter().map(|f| dir.join(f)).collect(),
        project_name: opts_yaml["project_name"].as_str().map(String::from),
        env_files: strs("env_files").iter().map(|f| dir.join(f)).collect(),
        profiles: strs("profiles"),
        services: strs("selected_services"),
        working_dir: dir.to_path_buf(),
        environment,
        skip_normalization: opts_yaml["skip_normalization"] == J::Bool(true),
        // Raw-model stages (merge, interpolate, normalize) ran on fragments in the reference.
        skip_validation: opts_yaml["skip_validation"] == J::Bool(true),
        skip_consistency: opts_yaml["skip_consistency_check"] == J::Bool(true)
            || opts_yaml["stage"] != "load",
        ..Default::default()
    };
    let mut project = load(&opts).map_err(|e| format!("load: {e}"))?;
    if opts_yaml["discard_env_file"] == J::Bool(true) {
        for s in project.services.values_mut() {
            s.env_file.clear();
        }
    }
    let stage = opts_yaml["stage"].as_str().unwrap_or("load");
    let got = if stage == "load" {
        model(&project)
    } else {
        // Raw-model stages: the expected document must load to the same model.
        let t = tempfile::tempdir().map_err(|e| e.to_string())?;
        let f = t.path().join("expected.yaml");
        std::fs::write(&f, &expected_text).map_err(|e| e.to_string())?;
        let other = load(&LoadOptions {
            files: vec![f],
            project_name: Some(project.name.clone()),
            project_directory: Some(dir.to_path_buf()),
            working_dir: dir.to_path_buf(),
            environment: IndexMap::from([(
                "COMPOSE_DISABLE_ENV_FILE".to_string(),
                "true".to_string(),
            )]),
            skip_normalization: opts.skip_normalization,
            skip_validation: opts.skip_validation,
            skip_consistency: true,
            ..Default::default()
        })
        .map_err(|e| format!("loading expected.yaml: {e}"))?;
        // expected.yaml asserts only some fields: its model must be contained in ours.
        let (a, b) = (model(&project), model(&other));
        return contains(
            &a,
            &b,
            dir,
            opts_yaml["unordered_lists"] == J::Bool(true),
            "",
        )
        .map_err(|e| format!("{e}\n got:      {a}\n expected: {b}"));
    };
    let unordered = opts_yaml["unordered_lists"] == J::Bool(true);
    contains(&got, &expected, dir, unordered, "")?;
    let exact_paths: Vec<String> = if opts_yaml["exact"] == J::Bool(true) {
        vec![String::new()]
    } else {
        strs("exact_paths")
    };
    for p in exact_paths {
        let (g, w) = if p.is_empty() {
            (Some(&got), Some(&expected))
        } else {
            (get_path(&got, &p), get_path(&expected, &p))
        };
        let mut got_root;
        let g = if p.is_empty() && expected.get("name").is_none() {
            // The expected document does not assert the project name.
            got_root = got.clone();
            if let Some(o) = got_root.as_object_mut() {
                o.remove("name");
            }
            Some(&got_root)
        } else {
            g
        };
        if let (Some(g), Some(w)) = (g, w) {
            // Exactness: same shape both ways.
            contains(w, g, dir, unordered, &p)
                .map_err(|e| format!("exact {p}: extra content: {e}"))?;
        }
    }
    for p in strs("expect_absent") {
        if get_path(&got, &p).is_some() {
            return Err(format!("{p} must be absent"));
        }
    }
    Ok(())
}

fn run_cases(root: &Path) -> Tally {
    let mut t = Tally::new("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("cases"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        t.record(&format!("cases/{name}"), run_case(&d));
    }
    t
}

#[test]
fn conformance_corpus() {
    let Some(root) = corpus() else {
        return;
    };
    check_counts(&root);
    let results = [run_valid(&root), run_invalid(&root), run_cases(&root)];
    let mut ok = true;
    for r in &results {
        ok &= r.report();
    }
    assert!(ok, "conformance failures (see the list above)");
}

/// `BERTH_SHOW_ERRORS=1` prints berth's message for every invalid/ entry (for reviewing wording).
#[test]
fn show_invalid_errors() {
    if std::env::var_os("BERTH_SHOW_ERRORS").is_none() {
        return;
    }
    let Some(root) = corpus() else {
        return;
    };
    let index = yaml_file(&root.join("invalid/index.yaml"));
    for e in index.as_array().into_iter().flatten() {
        let path = root
            .join("invalid")
            .join(e["file"].as_str().unwrap_or_default());
        let opts = LoadOptions {
            files: vec![path.clone()],
            working_dir: path.parent().unwrap_or(&root).to_path_buf(),
            environment: env_of(&e["environment"]),
            ..Default::default()
        };
        if let Err(err) = load(&opts) {
            println!("{:<45} {err}", e["name"].as_str().unwrap_or_default());
        }
    }
}
