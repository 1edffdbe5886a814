//! The loading pipeline's entry point: options in, normalised `Project` out.
//!
//! Stages, in order (each in its own module): discovery and project environment (here), parse
//! (`yaml`), interpolate (`interpolate`), include (`include`), extends (`extends`), merge of the
//! `-f` files (`merge`), validation and normalisation to long syntax (`normalize`), profiles and
//! service selection, consistency checks (`consistency`).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use super::error::ComposeError;
use super::files::{absolute, display_name, read_env_file, read_text, LoadContext, ParsedFile};
use super::interpolate;
use super::model::Project;
use super::yaml::{self, Mark, Node, Value};
use super::{consistency, extends, include, merge, normalize, spec_schema};

/// Default compose file names, in the order docker compose tries them.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// Override files looked up next to the discovered main file.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// Everything that decides how a project is loaded (the CLI's global flags plus the environment).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty = discover `compose.yaml` & co. upward from `working_dir`.
    pub files: Vec<PathBuf>,
    /// `-p`; else `COMPOSE_PROJECT_NAME`, `name:`, then the project directory's name.
    pub project_name: Option<String>,
    /// `--project-directory`; else the directory of the first file.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (repeatable); else `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    /// `--profile` (repeatable), plus `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// Services named on the command line (they are enabled whatever their profiles).
    pub services: Vec<String>,
    /// The directory the user stands in.
    pub working_dir: PathBuf,
    /// The process environment (passed in so tests can control it).
    pub environment: IndexMap<String, String>,
    pub skip_interpolation: bool,
    pub skip_normalization: bool,
    pub skip_consistency: bool,
    /// Skip the specification's schema (compose-go's `SkipValidation`, for raw-model stages).
    pub skip_validation: bool,
}

/// Find the compose file(s) when no `-f` is given: `compose.yaml` & co. in `start` or a parent,
/// plus an override file next to it.
pub fn discover(start: &Path) -> Result<Vec<PathBuf>, ComposeError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if let Some(main) = DEFAULT_FILES
            .iter()
            .map(|n| d.join(n))
            .find(|p| p.is_file())
        {
            let mut files = vec![main];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                files.push(o);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(ComposeError::NotFound {
        dir: start.to_path_buf(),
        tried: DEFAULT_FILES.join(", "),
    })
}

/// docker compose's normalisation of a directory name into a project name.
pub fn normalize_project_name(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

pub fn check_project_name(name: &str) -> Result<(), ComposeError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ComposeError::ProjectName {
            name: name.to_string(),
        })
    }
}

/// Merge `extra` into `vars` without overriding (the process environment always wins).
fn add_missing(vars: &mut IndexMap<String, String>, extra: IndexMap<String, Option<String>>) {
    for (k, v) in extra {
        if let Some(v) = v {
            vars.entry(k).or_insert(v);
        }
    }
}

/// Read `--env-file`s (or the default `.env` in `dir`) into the environment.
fn read_project_env(
    env: &mut IndexMap<String, String>,
    env_files: &[PathBuf],
    working_dir: &Path,
    dir: &Path,
) -> Result<(), ComposeError> {
    if !env_files.is_empty() {
        // Later --env-file wins over earlier ones; the process environment over all of them.
        let mut from_files: IndexMap<String, String> = IndexMap::new();
        for f in env_files {
            let p = absolute(working_dir, f);
            if !p.is_file() {
                return Err(ComposeError::EnvFileNotFound { path: p });
            }
            let mut lookup = env.clone();
            for (k, v) in &from_files {
                lookup.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in read_env_file(&p, &lookup)? {
                if let Some(v) = v {
                    from_files.insert(k, v);
                }
            }
        }
        add_missing(
            env,
            from_files.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        );
        return Ok(());
    }
    let disabled = env
        .get("COMPOSE_DISABLE_ENV_FILE")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let dotenv_path = dir.join(".env");
    if !disabled && dotenv_path.is_file() {
        let vars = read_env_file(&dotenv_path, env)?;
        add_missing(env, vars);
    }
    Ok(())
}

/// The full pipeline.
pub fn load(options: &LoadOptions) -> Result<Project, ComposeError> {
    let (project, _) = load_with_raw(options)?;
    Ok(project)
}

/// The full pipeline, also returning the merged raw model (for `config --no-normalize`).
pub fn load_with_raw(options: &LoadOptions) -> Result<(Project, Node), ComposeError> {
    let working_dir = if options.working_dir.as_os_str().is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        options.working_dir.clone()
    };
    let mut env = options.environment.clone();
    // 1. `.env` of the working dir (or --env-file) may set COMPOSE_FILE & co.
    read_project_env(&mut env, &options.env_files, &working_dir, &working_dir)?;

    // 2. Which files.
    let files = compose_files(options, &env, &working_dir)?;

    // 3. Project directory and its `.env`.
    let project_dir = match &options.project_directory {
        Some(d) => absolute(&working_dir, d),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| working_dir.clone()),
    };
    if options.env_files.is_empty() && project_dir != working_dir {
        read_project_env(&mut env, &[], &working_dir, &project_dir)?;
    }

    // The project name may be known before parsing (-p, COMPOSE_PROJECT_NAME) and is then
    // visible to interpolation.
    let early_name = options
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .filter(|s| !s.is_empty());
    if let Some(n) = &early_name {
        check_project_name(n)?;
        env.insert("COMPOSE_PROJECT_NAME".into(), n.clone());
    }

    // 4. Parse + interpolate + include + extends, per file; then merge.
    let ctx = LoadContext {
        env: env.clone(),
        interpolate: !options.skip_interpolation,
        project_dir: project_dir.clone(),
        working_dir,
    };
    let raw = parse_and_merge(&files, ctx, early_name.is_some())?;

    // 5. Project name.
    let name = match early_name {
        Some(n) => n,
        None => project_name(&raw, &project_dir)?,
    };
    env.insert("COMPOSE_PROJECT_NAME".into(), name.clone());
    finish(options, raw, files, project_dir, env, name)
}

/// The `-f` files, else `COMPOSE_FILE`, else the discovered ones; each must exist.
fn compose_files(
    options: &LoadOptions,
    env: &IndexMap<String, String>,
    working_dir: &Path,
) -> Result<Vec<PathBuf>, ComposeError> {
    let files: Vec<PathBuf> = if !options.files.is_empty() {
        options
            .files
            .iter()
            .map(|f| absolute(working_dir, f))
            .collect()
    } else if let Some(cf) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".to_string());
        cf.split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| absolute(working_dir, Path::new(f)))
            .collect()
    } else {
        discover(working_dir)?
    };
    for f in &files {
        if !f.is_file() {
            return Err(ComposeError::Read {
                path: f.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
    }
    Ok(files)
}

/// Parse, interpolate, include and extend every file, then merge them in order.
fn parse_and_merge(
    files: &[PathBuf],
    mut ctx: LoadContext,
    name_known: bool,
) -> Result<Node, ComposeError> {
    let mut raw_files = Vec::with_capacity(files.len());
    for f in files {
        let text = read_text(f)?;
        raw_files.push((
            f.clone(),
            yaml::parse(&text, &display_name(f, &ctx.working_dir))?,
        ));
    }
    // Unless -p / COMPOSE_PROJECT_NAME set it, the project name is the last file's `name:`
    // (itself interpolated), and every file sees it as COMPOSE_PROJECT_NAME.
    if !name_known && ctx.interpolate {
        for (_, node) in &raw_files {
            if let Some(n) = node.get("name") {
                let mut n = n.clone();
                interpolate::interpolate_node(&mut n, &ctx.env, "name")?;
                if let Some(name) = n.as_str() {
                    ctx.env
                        .insert("COMPOSE_PROJECT_NAME".into(), name.to_string());
                }
            }
        }
    }
    let mut merged: Option<Node> = None;
    for (f, mut node) in raw_files {
        if ctx.interpolate {
            interpolate::interpolate_node(&mut node, &ctx.env, "")?;
        }
        let mut parsed = ParsedFile { path: f, node };
        include::apply(&mut parsed, &ctx, &mut Vec::new())?;
        extends::apply(&mut parsed, &ctx)?;
        merged = Some(match merged {
            None => merge::strip_tags(parsed.node),
            Some(base) => merge::merge_files(base, parsed.node)?,
        });
    }
    Ok(merged.unwrap_or_else(|| Node::new(Value::Map(IndexMap::new()), Mark::default())))
}

/// The merged model's `name:`, else the project directory's name, normalised.
fn project_name(raw: &Node, project_dir: &Path) -> Result<String, ComposeError> {
    match raw.get("name") {
        Some(n) if !n.is_null() => {
            let s = n
                .as_str()
                .map(String::from)
                .ok_or_else(|| ComposeError::invalid(n, "name", "name must be a string"))?;
            check_project_name(&s)?;
            Ok(s)
        }
        _ => {
            let base = project_dir
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let n = normalize_project_name(&base);
            check_project_name(&n)?;
            Ok(n)
        }
    }
}

/// Schema, normalisation, profiles and consistency over the merged raw model.
fn finish(
    options: &LoadOptions,
    raw: Node,
    files: Vec<PathBuf>,
    project_dir: PathBuf,
    env: IndexMap<String, String>,
    name: String,
) -> Result<(Project, Node), ComposeError> {
    // 6. The specification's schema (compose-go validates the merged, interpolated document);
    // without interpolation, `${VAR}` may stand where the schema wants a number.
    if !options.skip_interpolation && !options.skip_validation {
        spec_schema::validate(&raw)?;
        spec_schema::validate_semantics(&raw)?;
    }

    // 7. Validate + normalise.
    let settings = normalize::Settings {
        project_name: name,
        project_dir: project_dir.clone(),
        env,
        normalize: !options.skip_normalization,
        interpolated: !options.skip_interpolation,
    };
    let mut project = normalize::project(&raw, &settings).map_err(|e| {
        if options.skip_interpolation {
            e.with_uninterpolated_hint()
        } else {
            e
        }
    })?;
    project.working_dir = project_dir;
    project.config_files = files;
    project.object_environment = object_environment(&project, &settings.env);

    // 8. Profiles and selection.
    let profiles = active_profiles(options, &settings.env);
    consistency::apply_profiles(&mut project, &profiles, &options.services)?;

    // 9. Consistency.
    if !options.skip_consistency {
        consistency::check(&project, Some(&raw))?;
    }
    Ok((project, raw))
}

/// `--profile`s, else `COMPOSE_PROFILES`.
fn active_profiles(options: &LoadOptions, env: &IndexMap<String, String>) -> Vec<String> {
    if !options.profiles.is_empty() {
        return options.profiles.clone();
    }
    env.get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The values of the variables named by `environment:` in top-level `secrets` and `configs`.
fn object_environment(
    project: &Project,
    env: &IndexMap<String, String>,
) -> IndexMap<String, String> {
    project
        .secrets
        .values()
        .chain(project.configs.values())
        .filter_map(|def| def.get("environment").and_then(serde_json::Value::as_str))
        .filter_map(|var| env.get(var).map(|v| (var.to_string(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::test_support::write;

    fn opts(dir: &Path) -> LoadOptions {
        LoadOptions {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn discovers_upward_with_override_and_names_project_after_dir() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("My.App");
        write(
            &root,
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n",
        );
        write(
            &root,
            "compose.override.yaml",
            "services:\n  web:\n    user: app\n",
        );
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        let p = load(&opts(&root.join("sub/deeper"))).unwrap();
        assert_eq!(p.name, "myapp");
        assert_eq!(p.services["web"].user.as_deref(), Some("app"));
        assert_eq!(p.config_files.len(), 2);
        assert_eq!(p.networks["default"].name, "myapp_default");
    }

    #[test]
    fn no_file_names_directory_and_candidates() {
        let t = tempfile::tempdir().unwrap();
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(e.contains(&t.path().display().to_string()), "{e}");
        assert!(
            e.contains("compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml"),
            "{e}"
        );
    }

    #[test]
    fn dotenv_feeds_interpolation_but_process_env_wins() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            ".env",
            "TAG=from-dotenv\nPORT=8080\nCOMPOSE_PROJECT_NAME=demo\n",
        );
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: \"nginx:${TAG}\"\n    ports: [\"${PORT}:80\"]\n    environment:\n      P: $$HOME\n",
        );
        let mut o = opts(t.path());
        o.environment.insert("TAG".into(), "from-env".into());
        let p = load(&o).unwrap();
        assert_eq!(p.name, "demo");
        let web = &p.services["web"];
        assert_eq!(web.image.as_deref(), Some("nginx:from-env"));
        assert_eq!(web.ports[0].published.as_deref(), Some("8080"));
        assert_eq!(web.ports[0].target, 80);
        assert_eq!(web.environment["P"].as_deref(), Some("$HOME"));
    }

    #[test]
    fn invalid_project_names_are_errors() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "compose.yaml",
            "name: www.my.project\nservices: {}\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(e.contains("invalid project name \"www.my.project\""), "{e}");
        let mut o = opts(t.path());
        o.project_name = Some("-my_project".into());
        let e = load(&o).unwrap_err().to_string();
        assert!(e.contains("invalid project name \"-my_project\""), "{e}");
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    ports:\n      - \"80x\"\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(e.contains("compose.yaml:5:9: services.web.ports[0]"), "{e}");
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: \"${MISSING:?set MISSING}\"\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(e.contains("compose.yaml:3:12: services.web.image: required variable MISSING is missing a value: set MISSING"), "{e}");
    }

    #[test]
    fn env_file_flag_replaces_dotenv_and_compose_variables_are_honoured() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            ".env",
            "TAG=dotenv\nCOMPOSE_FILE=a.yaml:b.yaml\nCOMPOSE_PROFILES=extra\n",
        );
        write(t.path(), "custom.env", "TAG=custom\n");
        write(
            t.path(),
            "a.yaml",
            "services:\n  web:\n    image: \"img:${TAG}\"\n",
        );
        write(
            t.path(),
            "b.yaml",
            "services:\n  tool:\n    image: busybox\n    profiles: [extra]\n",
        );
        let p = load(&opts(t.path())).unwrap();
        assert_eq!(p.services["web"].image.as_deref(), Some("img:dotenv"));
        assert!(
            p.services.contains_key("tool"),
            "COMPOSE_PROFILES from .env enables `extra`"
        );
        let mut o = opts(t.path());
        o.files = vec!["a.yaml".into()];
        o.env_files = vec!["custom.env".into()];
        let p = load(&o).unwrap();
        assert_eq!(p.services["web"].image.as_deref(), Some("img:custom"));
        o.env_files = vec!["missing.env".into()];
        let e = load(&o).unwrap_err().to_string();
        assert!(e.contains("missing.env not found"), "{e}");
    }

    #[test]
    fn typed_fields_are_checked_and_cast_after_interpolation() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: x\n    read_only: ${RO}\n    scale: ${N}\n    stop_grace_period: ${G}\n    mem_limit: 1g\n    healthcheck:\n      test: [CMD, \"true\"]\n      retries: ${N}\n",
        );
        let mut o = opts(t.path());
        o.environment.extend([
            ("RO".to_string(), "true".to_string()),
            ("N".to_string(), "2".to_string()),
            ("G".to_string(), "90s".to_string()),
        ]);
        let p = load(&o).unwrap();
        let web = &p.services["web"];
        assert_eq!(web.read_only, Some(true));
        assert_eq!(web.scale, Some(2));
        assert_eq!(web.stop_grace_period.as_deref(), Some("1m30s"));
        assert_eq!(
            web.stop_grace_period_duration(),
            std::time::Duration::from_secs(90)
        );
        assert_eq!(web.extra["mem_limit"], serde_json::json!(1 << 30));
        assert_eq!(web.healthcheck.as_ref().unwrap().retries, Some(2));
        o.environment.insert("RO".into(), "maybe".into());
        let e = load(&o).unwrap_err().to_string();
        assert!(
            e.contains(
                "compose.yaml:4:16: services.web.read_only must be a boolean, got \"maybe\""
            ),
            "{e}"
        );
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: [x]\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(
            e.contains("compose.yaml:3:12: services.web.image must be a string"),
            "{e}"
        );
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [curl, x]\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(e.contains("must start with CMD, CMD-SHELL or NONE"), "{e}");
        write(
            t.path(),
            "compose.yaml",
            "services:\n  web:\n    image: x\n    imgae: y\n",
        );
        let e = load(&opts(t.path())).unwrap_err().to_string();
        assert!(
            e.contains("compose.yaml:4:12: services.web additional properties 'imgae' not allowed"),
            "{e}"
        );
    }
}
