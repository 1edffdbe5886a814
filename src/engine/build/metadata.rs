//! Metadata instructions (ENV LABEL USER WORKDIR CMD ENTRYPOINT EXPOSE VOLUME HEALTHCHECK
//! STOPSIGNAL SHELL ONBUILD MAINTAINER) as pure edits of an image config: the classic builder
//! makes each a new config with an `empty_layer` history entry, no filesystem change.

use oci_spec::image::{Config, ImageConfiguration};

use super::dockerfile::{Healthcheck, Instruction};
use crate::engine::image::DockerConfigExtensions;
use crate::engine::wire::HealthConfig;

/// The shell of shell-form commands when no SHELL was given.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The shell in force for `ext`.
pub fn shell_of(ext: &DockerConfigExtensions) -> Vec<String> {
    ext.shell
        .clone()
        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}

/// `KEY=value` lists keep their order; setting a key replaces it in place.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The value of `key` in a `KEY=value` list.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `EXPOSE 80` means `80/tcp`.
fn port_key(port: &str) -> String {
    if port.contains('/') {
        port.to_ascii_lowercase()
    } else {
        format!("{port}/tcp")
    }
}

fn push_unique(list: &mut Option<Vec<String>>, value: String) {
    let v = list.get_or_insert_with(Vec::new);
    if !v.contains(&value) {
        v.push(value);
    }
}

fn nanos(d: Option<std::time::Duration>) -> i64 {
    d.map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn healthcheck(h: &Healthcheck) -> HealthConfig {
    let mut config = HealthConfig {
        test: Some(h.test()),
        ..Default::default()
    };
    if let Healthcheck::Cmd(c) = h {
        config.interval = nanos(c.interval);
        config.timeout = nanos(c.timeout);
        config.start_period = nanos(c.start_period);
        config.start_interval = nanos(c.start_interval);
        config.retries = c.retries.map(i64::from).unwrap_or(0);
    }
    config
}

/// Applies a metadata instruction (already substituted) to the config; false when `instr` is
/// not one (RUN, COPY, ADD, ARG are the executor's).
pub fn apply(
    image: &mut ImageConfiguration,
    ext: &mut DockerConfigExtensions,
    instr: &Instruction,
) -> bool {
    let mut c: Config = image.config().clone().unwrap_or_default();
    let shell = shell_of(ext);
    match instr {
        Instruction::Env(pairs) => {
            let mut env = c.env().clone().unwrap_or_default();
            for (k, v) in pairs {
                set_env(&mut env, k, v);
            }
            c.set_env(Some(env));
        }
        Instruction::Label(pairs) => {
            let labels = c.labels_mut().get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        Instruction::Workdir(dir) => {
            let base = c.working_dir().clone().unwrap_or_else(|| "/".into());
            c.set_working_dir(Some(join_workdir(&base, dir)));
        }
        Instruction::User(u) => {
            c.set_user(Some(u.clone()));
        }
        Instruction::Cmd(cmd) => {
            c.set_cmd(Some(cmd.argv(&shell)));
        }
        Instruction::Entrypoint(ep) => {
            c.set_entrypoint(Some(ep.argv(&shell)));
            // Docker: a new ENTRYPOINT resets the CMD inherited from the base.
            c.set_cmd(None);
        }
        Instruction::Expose(ports) => {
            let mut list = c.exposed_ports().clone();
            ports
                .iter()
                .for_each(|p| push_unique(&mut list, port_key(p)));
            c.set_exposed_ports(list);
        }
        Instruction::Volume(vols) => {
            let mut list = c.volumes().clone();
            vols.iter().for_each(|v| push_unique(&mut list, v.clone()));
            c.set_volumes(list);
        }
        Instruction::StopSignal(sig) => {
            c.set_stop_signal(Some(sig.clone()));
        }
        Instruction::Healthcheck(h) => ext.healthcheck = Some(healthcheck(h)),
        Instruction::Shell(argv) => ext.shell = Some(argv.clone()),
        Instruction::Onbuild(trigger) => ext
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.text.clone()),
        Instruction::Maintainer(name) => {
            image.set_author(Some(name.clone()));
        }
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Arg(_) => {
            return false
        }
    }
    image.set_config(Some(c));
    true
}

/// WORKDIR: relative paths build on the current one.
pub fn join_workdir(base: &str, dir: &str) -> String {
    if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::build::dockerfile::ShellOrExec;

    fn config() -> (ImageConfiguration, DockerConfigExtensions) {
        (
            ImageConfiguration::default(),
            DockerConfigExtensions::default(),
        )
    }

    #[test]
    fn env_replaces_in_place_and_entrypoint_resets_cmd() {
        let (mut img, mut ext) = config();
        apply(
            &mut img,
            &mut ext,
            &Instruction::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]),
        );
        apply(
            &mut img,
            &mut ext,
            &Instruction::Env(vec![("A".into(), "3".into())]),
        );
        assert_eq!(
            img.config().as_ref().unwrap().env().as_ref().unwrap(),
            &["A=3", "B=2"]
        );
        apply(
            &mut img,
            &mut ext,
            &Instruction::Cmd(ShellOrExec::Shell("run".into())),
        );
        assert_eq!(
            img.config().as_ref().unwrap().cmd().as_ref().unwrap(),
            &["/bin/sh", "-c", "run"]
        );
        apply(
            &mut img,
            &mut ext,
            &Instruction::Entrypoint(ShellOrExec::Exec(vec!["/app".into()])),
        );
        assert_eq!(img.config().as_ref().unwrap().cmd(), &None);
    }

    #[test]
    fn shell_applies_to_later_shell_forms_and_ports_get_their_protocol() {
        let (mut img, mut ext) = config();
        apply(
            &mut img,
            &mut ext,
            &Instruction::Shell(vec!["/bin/bash".into(), "-ec".into()]),
        );
        apply(
            &mut img,
            &mut ext,
            &Instruction::Cmd(ShellOrExec::Shell("x".into())),
        );
        assert_eq!(
            img.config().as_ref().unwrap().cmd().as_ref().unwrap(),
            &["/bin/bash", "-ec", "x"]
        );
        apply(
            &mut img,
            &mut ext,
            &Instruction::Expose(vec!["80".into(), "53/UDP".into(), "80".into()]),
        );
        assert_eq!(
            img.config()
                .as_ref()
                .unwrap()
                .exposed_ports()
                .as_ref()
                .unwrap(),
            &["80/tcp", "53/udp"]
        );
    }

    #[test]
    fn workdir_builds_on_the_previous_one() {
        assert_eq!(join_workdir("/", "app"), "/app");
        assert_eq!(join_workdir("/app", "src"), "/app/src");
        assert_eq!(join_workdir("/app", "/srv"), "/srv");
    }

    #[test]
    fn healthcheck_goes_into_dockers_field() {
        let (mut img, mut ext) = config();
        apply(
            &mut img,
            &mut ext,
            &Instruction::Healthcheck(Healthcheck::None),
        );
        assert_eq!(ext.healthcheck.clone().unwrap().test.unwrap(), ["NONE"]);
        assert!(!apply(&mut img, &mut ext, &Instruction::Arg(vec![])));
    }
}
