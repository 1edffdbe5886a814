//! `berth config`: print the canonical model, as `docker compose config` does.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::compose::model::Project;
use crate::compose::{load::load_with_raw, LoadOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ConfigFormat {
    #[default]
    Yaml,
    Json,
}

/// Parse, resolve and print the compose model in canonical form
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ConfigFormat::Yaml)]
    pub format: ConfigFormat,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Print the configuration hash of the services (`*` for all, or a comma-separated list)
    #[arg(long, value_name = "SERVICE")]
    pub hash: Option<String>,
    /// Only validate the configuration, print nothing
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't interpolate environment variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Don't normalise the model (default network, implicit dependencies, resource names)
    #[arg(long)]
    pub no_normalize: bool,
    /// Don't check the model for consistency (undefined references, cycles)
    #[arg(long)]
    pub no_consistency: bool,
    /// Write the output to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Only these services (and their dependencies)
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

pub fn run(args: &ConfigArgs, options: LoadOptions) -> anyhow::Result<ExitCode> {
    if args.quiet {
        // Validation only: loading is the check, printing would be wasted work.
        std::mem::forget(load_with_raw(&with_flags(args, options))?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = render(args, options)?;
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The load options as this command's flags change them.
fn with_flags(args: &ConfigArgs, mut options: LoadOptions) -> LoadOptions {
    options.skip_interpolation |= args.no_interpolate;
    options.skip_normalization |= args.no_normalize;
    options.skip_consistency |= args.no_consistency;
    if !args.service_names.is_empty() {
        options.services = args.service_names.clone();
    }
    if args.profiles {
        // Every profile the project declares, whichever are active.
        options.profiles = vec!["*".to_string()];
    }
    options
}

/// Everything `berth config` prints, as text.
pub fn render(args: &ConfigArgs, options: LoadOptions) -> anyhow::Result<String> {
    let (project, raw) = load_with_raw(&with_flags(args, options))?;
    // `config` prints and exits: freeing these trees node by node costs more (a sixth of the
    // run on a 500-service project) than letting the process exit reclaim them.
    std::mem::forget(raw);
    let project = std::mem::ManuallyDrop::new(project);
    let lines = |items: Vec<String>| -> String { items.into_iter().map(|s| s + "\n").collect() };
    if args.services {
        return Ok(lines(project.services.keys().cloned().collect()));
    }
    if args.volumes {
        return Ok(lines(project.volumes.keys().cloned().collect()));
    }
    if args.networks {
        return Ok(lines(project.networks.keys().cloned().collect()));
    }
    if args.profiles {
        let mut all: Vec<String> = Vec::new();
        for s in project.services.values() {
            for p in &s.profiles {
                if !all.contains(p) {
                    all.push(p.clone());
                }
            }
        }
        all.sort();
        return Ok(lines(all));
    }
    if args.images {
        return Ok(lines(
            project
                .services
                .iter()
                .map(|(n, s)| {
                    s.image
                        .clone()
                        .unwrap_or_else(|| format!("{}-{}", project.name, n))
                })
                .collect(),
        ));
    }
    if let Some(which) = &args.hash {
        let wanted: Vec<String> = if which == "*" {
            project.services.keys().cloned().collect()
        } else {
            which.split(',').map(|s| s.trim().to_string()).collect()
        };
        let mut out = String::new();
        for name in wanted {
            let svc = project.services.get(&name).with_context(|| {
                format!("no such service: {name}; see `berth config --services`")
            })?;
            out.push_str(&format!(
                "{name} {}\n",
                crate::compose::plan::service_config_hash(svc)
            ));
        }
        return Ok(out);
    }
    to_text(&project, args.format, !args.no_interpolate)
}

/// The model as `docker compose config` prints it (YAML or JSON).
/// `interpolated` is false under `--no-interpolate`: every `$` is then still as written.
pub fn to_text(
    project: &Project,
    format: ConfigFormat,
    interpolated: bool,
) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(project)?;
    // Literal `$` is printed as `$$`, so the output loads back to the same model.
    if interpolated {
        escape_dollars(&mut value);
    }
    order_like_docker_compose(&mut value);
    Ok(match format {
        ConfigFormat::Json => serde_json::to_string_pretty(&value)? + "\n",
        ConfigFormat::Yaml => crate::compose::emit::to_yaml(&value),
    })
}

/// docker compose prints service attributes in alphabetical order and ports/volumes with their
/// own fixed key order; follow it so diffs against its output stay small.
fn order_like_docker_compose(v: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    fn reorder(obj: &mut Map<String, Value>, first: &[&str]) {
        let mut old = std::mem::take(obj);
        for k in first {
            if let Some(v) = old.remove(*k) {
                obj.insert((*k).to_string(), v);
            }
        }
        let mut rest: Vec<(String, Value)> = old.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        obj.extend(rest);
    }
    let Some(services) = v.get_mut("services").and_then(Value::as_object_mut) else {
        return;
    };
    for svc in services.values_mut().filter_map(Value::as_object_mut) {
        reorder(svc, &[]);
        for p in svc
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            reorder(
                p,
                &[
                    "name",
                    "mode",
                    "host_ip",
                    "target",
                    "published",
                    "protocol",
                    "app_protocol",
                ],
            );
        }
        for m in svc
            .get_mut("volumes")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            reorder(
                m,
                &[
                    "type",
                    "source",
                    "target",
                    "read_only",
                    "consistency",
                    "bind",
                    "volume",
                    "tmpfs",
                    "image",
                ],
            );
        }
    }
}

fn escape_dollars(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(escape_dollars),
        serde_json::Value::Object(o) => o.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_dir(text: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("compose.yaml"), text).unwrap();
        t
    }

    fn opts(dir: &std::path::Path) -> LoadOptions {
        LoadOptions {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    const STACK: &str = "name: demo\nservices:\n  web:\n    image: nginx\n    ports: ['8080:80']\n    depends_on: [db]\n    volumes: ['data:/data']\n  db:\n    image: postgres\n  admin:\n    image: adminer\n    profiles: [backend]\n  debug:\n    image: busybox\n    profiles: [debug]\nvolumes:\n  data: {}\n";

    #[test]
    fn prints_canonical_yaml_that_reloads_to_the_same_model() {
        let t = project_dir(STACK);
        let text = render(&ConfigArgs::default(), opts(t.path())).unwrap();
        assert!(text.starts_with("name: demo\nservices:\n"), "{text}");
        assert!(
            text.contains("published: '8080'") || text.contains("published: \"8080\""),
            "{text}"
        );
        // Services of inactive profiles stay off.
        assert!(text.contains("  db:\n"), "{text}");
        assert!(!text.contains("debug") && !text.contains("admin"), "{text}");
        let first = crate::compose::load(&opts(t.path())).unwrap();
        std::fs::write(t.path().join("compose.yaml"), &text).unwrap();
        let second = crate::compose::load(&opts(t.path())).unwrap();
        assert_eq!(first.services, second.services);
        assert_eq!(first.networks, second.networks);
        assert_eq!(first.volumes, second.volumes);
    }

    /// The `web` service as `config` prints it, reloaded to check the output loads back.
    fn printed_service(compose: &str) -> String {
        let t = project_dir(compose);
        std::fs::write(t.path().join("s.txt"), "x").unwrap();
        let text = render(&ConfigArgs::default(), opts(t.path())).unwrap();
        let first = crate::compose::load(&opts(t.path())).unwrap();
        std::fs::write(t.path().join("compose.yaml"), &text).unwrap();
        let again = crate::compose::load(&opts(t.path()))
            .unwrap_or_else(|e| panic!("config output does not load back: {e}\n{text}"));
        // As printed (extra_hosts lines are sorted, so compare the printed form).
        let json = |p: &crate::compose::Project| serde_json::to_value(&p.services).unwrap();
        assert_eq!(json(&first), json(&again), "{text}");
        text
    }

    // compose-go types.Duration.MarshalYAML (time.Duration.String) as loader_test.go
    // TestFullExample asserts them: every duration field in Go's form.
    #[test]
    fn durations_print_in_go_form() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    stop_grace_period: 60s\n    healthcheck: {test: [CMD, 'true'], interval: 90s, timeout: 120s, start_period: 1h, start_interval: 500ms}\n    deploy:\n      restart_policy: {delay: 5s, window: 2m}\n      update_config: {delay: 10s, monitor: 60s}\n      rollback_config: {delay: 1m30s, monitor: 3600s}\n",
        );
        for want in [
            "stop_grace_period: 1m0s",
            "interval: 1m30s",
            "timeout: 2m0s",
            "start_period: 1h0m0s",
            "start_interval: 500ms",
            "delay: 5s\n        window: 2m0s",
            "delay: 10s\n        monitor: 1m0s",
            "delay: 1m30s\n        monitor: 1h0m0s",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    // compose-go types.UnitBytes (TestFullExample: MemoryBytes, ShmSize, ThrottleDevice.Rate):
    // every byte size is a count of bytes.
    #[test]
    fn byte_sizes_print_as_integers() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    shm_size: 64m\n    deploy:\n      resources:\n        limits: {memory: 50M}\n        reservations: {memory: 20M}\n    blkio_config:\n      device_read_bps: [{path: /dev/sda, rate: 12mb}]\n      device_write_iops: [{path: /dev/sda, rate: 100}]\n    build: {context: ., shm_size: 2g}\n    volumes: [{type: tmpfs, target: /t, tmpfs: {size: 10m}}]\n",
        );
        for want in [
            "shm_size: 67108864",
            "memory: 52428800",
            "memory: 20971520",
            "rate: 12582912",
            "rate: 100",
            "shm_size: 2147483648",
            "size: 10485760",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    // compose-go types.Labels / Mapping (loader_test.go TestLoadDeployLabels-style): labels
    // written as a list print as a mapping, wherever they are.
    #[test]
    fn labels_print_as_mappings() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    labels: [l=1]\n    deploy: {labels: [a=b, c]}\n    build: {context: ., labels: [x=y]}\n    volumes: [{type: volume, source: v, target: /v, volume: {labels: [vl=2]}}]\nvolumes:\n  v: {labels: [v=1]}\nnetworks:\n  n: {labels: [n=1]}\nsecrets:\n  s: {file: ./s.txt, labels: [s=1]}\n",
        );
        for want in [
            "labels:\n        a: b\n        c: \"\"",
            "l: \"1\"",
            "x: \"y\"",
            "vl: \"2\"",
            "v: \"1\"",
            "\"n\": \"1\"",
            "s: \"1\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    // compose-go types.FileMode.MarshalYAML (`0%o`) and ServiceSecretConfig (target as written,
    // `/run/secrets/<source>` only when unset): loader_test.go TestLoadSecretsAndConfigs-style.
    #[test]
    fn file_objects_keep_target_and_print_octal_modes() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    secrets:\n      - {source: s, target: mysecret, mode: 0440}\n      - s\n    configs:\n      - {source: c, mode: \"0555\"}\nsecrets:\n  s: {file: ./s.txt}\nconfigs:\n  c: {file: ./s.txt}\n",
        );
        for want in [
            "target: mysecret\n        mode: \"0440\"",
            "target: /run/secrets/s",
            "mode: \"0555\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    // compose-go transform/defaults.go defaultVolumeBind; types.ServiceDependency (required
    // printed, restart only when set).
    #[test]
    fn bind_defaults_and_optional_dependencies() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    volumes: [{type: bind, source: ./d, target: /d, bind: {propagation: rshared}}, {type: bind, source: ./e, target: /e}]\n    depends_on:\n      db: {condition: service_started, required: false}\n  db:\n    image: b\n",
        );
        assert!(
            text.contains("propagation: rshared\n          create_host_path: true"),
            "{text}"
        );
        assert!(!text.contains("target: /e\n        bind"), "{text}");
        assert!(
            text.contains("db:\n        condition: service_started\n        required: false\n"),
            "{text}"
        );
        assert!(!text.contains("restart: false"), "{text}");
    }

    // compose-go types.HostsList.MarshalYAML: sorted `HOST=IP` lines, one per address
    // (hostList_test.go TestHostsListMarshal-style).
    #[test]
    fn extra_hosts_print_as_sorted_host_ip_lines() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    extra_hosts: {zed: 1.1.1.1, alpha: ['::1', 10.0.0.1]}\n",
        );
        assert!(
            text.contains(
                "extra_hosts:\n      - alpha=10.0.0.1\n      - alpha=::1\n      - zed=1.1.1.1\n"
            ),
            "{text}"
        );
    }

    // go-yaml reads `01777` as octal and compose-go's `ServiceVolumeTmpfs.Mode` is that number
    // (loader_test.go TestLoadTmpfsVolume-style).
    #[test]
    fn tmpfs_modes_read_octal_like_go() {
        let text = printed_service(
            "services:\n  web:\n    image: a\n    volumes:\n      - {type: tmpfs, target: /a, tmpfs: {mode: 01777}}\n      - {type: tmpfs, target: /b, tmpfs: {mode: '0755'}}\n",
        );
        assert!(text.contains("mode: 1023"), "{text}");
        assert!(text.contains("mode: 493"), "{text}");
    }

    #[test]
    fn listing_flags() {
        let t = project_dir(STACK);
        let r = |a: ConfigArgs| render(&a, opts(t.path())).unwrap();
        assert_eq!(
            r(ConfigArgs {
                services: true,
                ..Default::default()
            }),
            "web\ndb\n"
        );
        assert_eq!(
            r(ConfigArgs {
                volumes: true,
                ..Default::default()
            }),
            "data\n"
        );
        assert_eq!(
            r(ConfigArgs {
                networks: true,
                ..Default::default()
            }),
            "default\n"
        );
        assert_eq!(
            r(ConfigArgs {
                profiles: true,
                ..Default::default()
            }),
            "backend\ndebug\n"
        );
        assert_eq!(
            r(ConfigArgs {
                images: true,
                ..Default::default()
            }),
            "nginx\npostgres\n"
        );
        let h = r(ConfigArgs {
            hash: Some("web".into()),
            ..Default::default()
        });
        assert!(h.starts_with("web ") && h.trim_end().len() > 60, "{h}");
        let j = r(ConfigArgs {
            format: ConfigFormat::Json,
            ..Default::default()
        });
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["volumes"]["data"]["name"], "demo_data");
    }

    #[test]
    fn no_interpolate_prints_variables_as_written() {
        let t = project_dir(
            "name: demo\nservices:\n  web:\n    image: \"busybox:${TAG:-latest}\"\n    \
             environment: {A: '${X}', B: '$$HOME'}\n    \
             ports: ['${IP:-127.0.0.1}:${PORT:-8080}:80/udp']\n    \
             volumes: ['${DATA:-./data}:/data:ro']\n",
        );
        let args = ConfigArgs {
            no_interpolate: true,
            ..Default::default()
        };
        let text = render(&args, opts(t.path())).unwrap();
        for want in [
            "image: busybox:${TAG:-latest}",
            "A: ${X}",
            "B: $$HOME",
            "host_ip: ${IP:-127.0.0.1}",
            "published: ${PORT:-8080}",
            "target: 80",
            "protocol: udp",
            "source: ${DATA:-./data}",
            "read_only: true",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn no_interpolate_names_a_typed_field_that_needs_a_value() {
        let t = project_dir("services:\n  web:\n    image: x\n    mem_limit: ${MEM:-1g}\n");
        let args = ConfigArgs {
            no_interpolate: true,
            ..Default::default()
        };
        let e = render(&args, opts(t.path())).unwrap_err().to_string();
        assert!(
            e.contains("compose.yaml:4:16")
                && e.contains("services.web.mem_limit")
                && e.contains("drop --no-interpolate"),
            "{e}"
        );
        // With interpolation the same file loads.
        assert!(render(&ConfigArgs::default(), opts(t.path())).is_ok());
    }
}
