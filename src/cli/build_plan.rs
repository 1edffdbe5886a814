//! What building a service means, decided before anything is sent: the context directory, where
//! the Dockerfile is, the image names and the `POST /build` options — from the service's `build`
//! (short or long form) and the command line (`--build-arg`, `--no-cache`, `--pull`). Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

use super::build_context::DockerfileSource;
use crate::compose::model::{BuildConfig, Project};
use crate::compose::plan;
use crate::engine::api::client::BuildOptions;

#[derive(Debug, Error, PartialEq)]
pub enum BuildPlanError {
    #[error("service \"{service}\" has no build section in {files}")]
    NoBuild { service: String, files: String },
    #[error("service \"{service}\" in {files}: build.{field} is not supported yet by berth")]
    Unsupported {
        service: String,
        files: String,
        field: String,
    },
    #[error("service \"{service}\" in {files}: a remote build context ({context}) is not supported yet by berth; clone it and give a local directory")]
    RemoteContext {
        service: String,
        files: String,
        context: String,
    },
    #[error("service \"{service}\" in {files}: build.{field}: {detail}")]
    Invalid {
        service: String,
        files: String,
        field: String,
        detail: String,
    },
    #[error("invalid --build-arg {0:?}: expected KEY=VALUE or KEY")]
    BuildArg(String),
}

/// What the command line adds to every service's build.
#[derive(Debug, Clone, Default)]
pub struct BuildOverrides {
    /// `--build-arg K=V` (or `K`, taken from the environment; left out when unset there).
    pub build_args: Vec<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
}

/// One service's build, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBuild {
    pub service: String,
    /// The image `up` runs: `image:` or `<project>-<service>`.
    pub image: String,
    pub context_dir: PathBuf,
    pub dockerfile: DockerfileSource,
    pub options: BuildOptions,
    /// The compose files, for error messages.
    pub files: String,
}

/// Fields of `build` berth cannot honour: refused by name rather than ignored, because an image
/// built without them would not be the one the file describes.
const UNSUPPORTED: &[&str] = &[
    "additional_contexts",
    "ssh",
    "secrets",
    "cache_to",
    "privileged",
];

/// The build of `service`, or why it cannot be made.
pub fn plan_service(
    project: &Project,
    service: &str,
    overrides: &BuildOverrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ServiceBuild, BuildPlanError> {
    let files = project
        .config_files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let svc = &project.services[service];
    let Some(build) = &svc.build else {
        return Err(BuildPlanError::NoBuild {
            service: service.to_string(),
            files,
        });
    };
    let invalid = |field: &str, detail: String| BuildPlanError::Invalid {
        service: service.to_string(),
        files: files.clone(),
        field: field.to_string(),
        detail,
    };
    refuse_unsupported(build, service, &files)?;
    if is_remote(&build.context) {
        return Err(BuildPlanError::RemoteContext {
            service: service.to_string(),
            files,
            context: build.context.clone(),
        });
    }
    let context_dir = PathBuf::from(&build.context);
    let dockerfile = DockerfileSource::of(
        &context_dir,
        build.dockerfile.as_deref(),
        build.dockerfile_inline.as_deref(),
    );
    let image = plan::service_image(project, service, svc);
    let mut tags = vec![image.clone()];
    for tag in string_list(build, "tags").map_err(|d| invalid("tags", d))? {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let options = BuildOptions {
        tags,
        dockerfile: dockerfile.name_in_context().to_string(),
        build_args: build_args(build, overrides, env)?,
        target: build.target.clone(),
        no_cache: overrides.no_cache || flag(build, "no_cache"),
        pull: overrides.pull || flag(build, "pull"),
        labels: build
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect(),
        quiet: overrides.quiet,
        network_mode: build
            .extra
            .get("network")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        shm_size: shm_size(build).map_err(|d| invalid("shm_size", d))?,
        extra_hosts: extra_hosts(build).map_err(|d| invalid("extra_hosts", d))?,
        cache_from: string_list(build, "cache_from").map_err(|d| invalid("cache_from", d))?,
        platform: platform(build, service, &files)?,
    };
    Ok(ServiceBuild {
        service: service.to_string(),
        image,
        context_dir,
        dockerfile,
        options,
        files,
    })
}

fn refuse_unsupported(
    build: &BuildConfig,
    service: &str,
    files: &str,
) -> Result<(), BuildPlanError> {
    for field in UNSUPPORTED {
        let used = match build.extra.get(*field) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(serde_json::Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        if used {
            return Err(BuildPlanError::Unsupported {
                service: service.to_string(),
                files: files.to_string(),
                field: field.to_string(),
            });
        }
    }
    Ok(())
}

/// A context docker compose would fetch (git or http URL).
fn is_remote(context: &str) -> bool {
    [
        "http://",
        "https://",
        "git://",
        "git@",
        "ssh://",
        "github.com/",
    ]
    .iter()
    .any(|p| context.starts_with(p))
}

/// The service's `args` with the command line's on top; a bare `KEY` takes the environment's
/// value and is left out when the environment has none (as docker compose does).
fn build_args(
    build: &BuildConfig,
    overrides: &BuildOverrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, BuildPlanError> {
    let mut args = BTreeMap::new();
    for (key, value) in &build.args {
        if let Some(v) = value.clone().or_else(|| env(key)) {
            args.insert(key.clone(), v);
        }
    }
    for entry in &overrides.build_args {
        match entry.split_once('=') {
            Some(("", _)) => return Err(BuildPlanError::BuildArg(entry.clone())),
            Some((key, value)) => {
                args.insert(key.to_string(), value.to_string());
            }
            None if entry.is_empty() => return Err(BuildPlanError::BuildArg(entry.clone())),
            None => {
                if let Some(v) = env(entry) {
                    args.insert(entry.clone(), v);
                }
            }
        }
    }
    Ok(args)
}

fn flag(build: &BuildConfig, field: &str) -> bool {
    build.extra.get(field).and_then(|v| v.as_bool()) == Some(true)
}

fn string_list(build: &BuildConfig, field: &str) -> Result<Vec<String>, String> {
    match build.extra.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("expected a list of strings, got {i}"))
            })
            .collect(),
        Some(other) => Err(format!("expected a list of strings, got {other}")),
    }
}

/// `shm_size` in bytes (the loader has turned `64m` into a number already).
fn shm_size(build: &BuildConfig) -> Result<Option<u64>, String> {
    match build.extra.get("shm_size") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("expected a size in bytes, got {v}")),
    }
}

/// `extra_hosts` as `host:ip` entries, from either the list or the mapping form.
fn extra_hosts(build: &BuildConfig) -> Result<Vec<String>, String> {
    match build.extra.get("extra_hosts") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                let s = i.as_str().ok_or_else(|| format!("not a string: {i}"))?;
                Ok(s.replacen('=', ":", 1))
            })
            .collect(),
        Some(serde_json::Value::Object(map)) => Ok(map
            .iter()
            .flat_map(|(host, ips)| match ips {
                serde_json::Value::Array(list) => list
                    .iter()
                    .filter_map(|ip| ip.as_str().map(|ip| format!("{host}:{ip}")))
                    .collect::<Vec<_>>(),
                other => vec![format!("{host}:{}", other.as_str().unwrap_or_default())],
            })
            .collect()),
        Some(other) => Err(format!("expected a list or a mapping, got {other}")),
    }
}

/// berth builds for linux/amd64 only: `platforms` naming anything else is refused.
fn platform(
    build: &BuildConfig,
    service: &str,
    files: &str,
) -> Result<Option<String>, BuildPlanError> {
    let platforms = string_list(build, "platforms").map_err(|detail| BuildPlanError::Invalid {
        service: service.to_string(),
        files: files.to_string(),
        field: "platforms".into(),
        detail,
    })?;
    if platforms.iter().any(|p| p != "linux/amd64") {
        return Err(BuildPlanError::Unsupported {
            service: service.to_string(),
            files: files.to_string(),
            field: format!("platforms ({})", platforms.join(", ")),
        });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::Service;

    fn project(build: serde_json::Value, image: Option<&str>) -> Project {
        let build: BuildConfig = serde_json::from_value(build).unwrap();
        let service = Service {
            image: image.map(str::to_string),
            build: Some(build),
            ..Service::default()
        };
        Project {
            name: "shop".into(),
            config_files: vec!["/p/compose.yaml".into()],
            services: [("web".to_string(), service)].into_iter().collect(),
            ..Project::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_build_only_service_is_named_after_project_and_service_and_gets_its_tags() {
        let p = project(
            serde_json::json!({"context": "/p/app", "tags": ["reg/web:1", "shop-web"], "target": "final",
                "labels": {"a": "b"}, "network": "none", "shm_size": 67108864,
                "extra_hosts": ["db=10.0.0.2"], "cache_from": ["base:1"]}),
            None,
        );
        let b = plan_service(&p, "web", &BuildOverrides::default(), &no_env).unwrap();
        assert_eq!(b.image, "shop-web");
        assert_eq!(b.options.tags, ["shop-web", "reg/web:1"]);
        assert_eq!(b.options.dockerfile, "Dockerfile");
        assert_eq!(b.options.target.as_deref(), Some("final"));
        assert_eq!(b.options.labels["a"], "b");
        assert_eq!(b.options.network_mode.as_deref(), Some("none"));
        assert_eq!(b.options.shm_size, Some(64 << 20));
        assert_eq!(b.options.extra_hosts, ["db:10.0.0.2"]);
        assert_eq!(b.options.cache_from, ["base:1"]);
        assert_eq!(b.context_dir, PathBuf::from("/p/app"));
    }

    #[test]
    fn args_come_from_the_file_the_environment_and_the_command_line_in_that_order() {
        let p = project(
            serde_json::json!({"context": "/p", "args": {"A": "file", "B": null, "C": null, "D": "file"}}),
            Some("reg/web:2"),
        );
        let env = |k: &str| (k == "B" || k == "E").then(|| format!("env-{k}"));
        let overrides = BuildOverrides {
            build_args: vec!["D=cli".into(), "E".into(), "F".into()],
            no_cache: true,
            ..BuildOverrides::default()
        };
        let b = plan_service(&p, "web", &overrides, &env).unwrap();
        assert_eq!(b.image, "reg/web:2");
        let args: Vec<(&str, &str)> = b
            .options
            .build_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            args,
            [("A", "file"), ("B", "env-B"), ("D", "cli"), ("E", "env-E")]
        );
        assert!(b.options.no_cache);
        let bad = BuildOverrides {
            build_args: vec!["=x".into()],
            ..BuildOverrides::default()
        };
        assert_eq!(
            plan_service(&p, "web", &bad, &env),
            Err(BuildPlanError::BuildArg("=x".into()))
        );
    }

    #[test]
    fn what_berth_cannot_build_is_refused_naming_service_file_and_field() {
        for (field, value) in [
            ("ssh", serde_json::json!(["default"])),
            ("secrets", serde_json::json!([{"source": "tok"}])),
            ("additional_contexts", serde_json::json!({"x": "../x"})),
            ("platforms", serde_json::json!(["linux/arm64"])),
        ] {
            let mut build = serde_json::json!({"context": "/p"});
            build[field] = value;
            let e = plan_service(
                &project(build, None),
                "web",
                &BuildOverrides::default(),
                &no_env,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("service \"web\" in /p/compose.yaml: build.")
                    && e.contains(field)
                    && e.contains("not supported yet"),
                "{e}"
            );
        }
        let amd64 = serde_json::json!({"context": "/p", "platforms": ["linux/amd64"]});
        assert!(plan_service(
            &project(amd64, None),
            "web",
            &BuildOverrides::default(),
            &no_env
        )
        .is_ok());
        let remote = serde_json::json!({"context": "https://github.com/x/y.git"});
        let e = plan_service(
            &project(remote, None),
            "web",
            &BuildOverrides::default(),
            &no_env,
        )
        .unwrap_err();
        assert!(matches!(e, BuildPlanError::RemoteContext { .. }));
    }

    #[test]
    fn an_inline_dockerfile_goes_under_the_reserved_name() {
        let p = project(
            serde_json::json!({"context": "/p", "dockerfile_inline": "FROM scratch\n"}),
            None,
        );
        let b = plan_service(&p, "web", &BuildOverrides::default(), &no_env).unwrap();
        assert_eq!(
            b.options.dockerfile,
            super::super::build_context::INLINE_DOCKERFILE
        );
    }
}
