//! `berth run`: a one-off container of a service — its dependencies brought up first, as
//! `up -d` would — running COMMAND (or the service's command) attached until it exits, and
//! berth exiting with its status. `--rm` removes it afterwards; `-d` leaves it running.
//!
//! One-off containers are labelled `com.docker.compose.oneoff=True` and named
//! `<project>-<service>-run-<12 hex>`, as docker compose names them; `up` never mistakes one
//! for a service's container, and `down` removes them with the rest.
//! berth does not pass stdin into containers or allocate a TTY yet (`exec` does take stdin);
//! `run` says so when it is given input it would otherwise ignore.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use indexmap::IndexMap;

use super::output::status_line;
use super::project::{engine, load_project, ProjectArgs};
use crate::compose::model::Project;
use crate::compose::normalize::shell_split;
use crate::compose::plan::{self, LABEL_CONTAINER_NUMBER, LABEL_ONEOFF, LABEL_SERVICE};
use crate::engine::api::client::{EngineClient, LogStream, LogsOptions};
use crate::engine::wire::ContainerCreateRequest;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Run the container in the background and print its name
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Name of the container (default: <project>-<service>-run-<id>)
    #[arg(long)]
    pub name: Option<String>,
    /// Override the image's entrypoint (a command line, split like a shell would)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set environment variables (KEY=VALUE; KEY alone takes berth's own value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Add or override a label (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Run as this user (name or UID[:GID])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Don't start the services the service depends on
    #[arg(long)]
    pub no_deps: bool,
    /// Publish the service's ports (a one-off container publishes none by default)
    #[arg(long)]
    pub service_ports: bool,
    /// Disable pseudo-TTY allocation (berth does not allocate one yet: always in effect)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open (accepted for docker compose compatibility; see the note on stdin)
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,
    /// Pull the image before running: "always", "missing", "never" or "policy"
    #[arg(long, default_value = "policy", value_parser = ["always", "missing", "never", "policy"])]
    pub pull: String,
    /// Build the image before starting the container
    #[arg(long)]
    pub build: bool,
    /// The service to run a one-off container of
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// Command and arguments (default: the service's command)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, std::slice::from_ref(&args.service))?;
    if !project.services.contains_key(&args.service) {
        bail!("no such service: {}", args.service);
    }
    let entrypoint = match &args.entrypoint {
        Some(line) => Some(
            shell_split(line).map_err(|e| anyhow::anyhow!("invalid --entrypoint {line:?}: {e}"))?,
        ),
        None => None,
    };
    let client = engine(project_args).await?;
    let images = super::up::ImageFlags {
        pull: &args.pull,
        quiet_pull: false,
        build: super::up::BuildFlag::of(args.build, false),
    };
    super::up::prepare_one_off(&client, &project, &args.service, args.no_deps, &images).await?;

    let request = one_off_request(&project, args, entrypoint)?;
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-run-{}",
            project.name,
            args.service,
            &hex::encode(rand::random::<[u8; 6]>())
        )
    });
    let created = client
        .create_container(Some(&name), &request)
        .await
        .with_context(|| format!("cannot create the one-off container of {}", args.service))?;
    let id = created.id;
    if let Err(e) = super::up::copy_inline_objects(&client, &project, &args.service, &id).await {
        let _ = client.remove_container(&id, true, false).await;
        return Err(e);
    }
    if let Err(e) = client.start_container(&id).await {
        let _ = client.remove_container(&id, true, false).await;
        return Err(anyhow::Error::new(e).context(format!("cannot start {name}")));
    }
    if args.detach {
        println!("{name}");
        return Ok(ExitCode::SUCCESS);
    }
    warn_about_ignored_input(args);

    let code = follow_until_exit(&client, &id, &name, args.rm).await?;
    if args.rm {
        client
            .remove_container(&id, true, true)
            .await
            .with_context(|| format!("cannot remove {name}"))?;
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The service's create request made one-off: `run`'s label, command, entrypoint, environment,
/// user and directory overrides, no published ports unless `--service-ports`, no restart policy.
fn one_off_request(
    project: &Project,
    args: &RunArgs,
    entrypoint: Option<Vec<String>>,
) -> anyhow::Result<ContainerCreateRequest> {
    let mut request = plan::container_create_request(project, &args.service, 1)
        .with_context(|| format!("no such service: {}", args.service))?;
    let labels = request.labels.get_or_insert_with(IndexMap::new);
    labels.insert(LABEL_ONEOFF.to_string(), "True".to_string());
    labels.shift_remove(LABEL_CONTAINER_NUMBER);
    for kv in &args.labels {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    debug_assert_eq!(labels.get(LABEL_SERVICE), Some(&args.service));
    if !args.command.is_empty() {
        request.cmd = Some(args.command.clone());
    }
    if let Some(entrypoint) = entrypoint {
        request.entrypoint = Some(entrypoint);
        if args.command.is_empty() {
            // Docker drops the image's command when the entrypoint is replaced.
            request.cmd = Some(Vec::new());
        }
    }
    let env = request.env.take().unwrap_or_default();
    request.env = Some(with_env_overrides(env, &args.env));
    if let Some(user) = &args.user {
        request.user = user.clone();
    }
    if let Some(dir) = &args.workdir {
        request.working_dir = dir.clone();
    }
    if let Some(host) = request.host_config.as_mut() {
        if !args.service_ports {
            host.port_bindings = None;
        }
        // A one-off container runs once: docker compose gives it no restart policy.
        host.restart_policy = None;
    }

    Ok(request)
}

/// `-e KEY=VALUE` replaces the service's KEY; `-e KEY` takes KEY from berth's environment
/// (and is dropped when unset there), as docker compose does.
fn with_env_overrides(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    for kv in overrides {
        let pair = match kv.split_once('=') {
            Some(_) => Some(kv.clone()),
            None => std::env::var(kv).ok().map(|v| format!("{kv}={v}")),
        };
        if let Some(pair) = pair {
            let key = pair.split('=').next().unwrap_or_default().to_string();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(pair);
        }
    }
    env
}

/// Stream the container's output to berth's stdout/stderr until it exits; Ctrl-C or SIGTERM
/// stops it (then berth exits 130 / 143, as docker compose does). Returns the exit status.
async fn follow_until_exit(
    client: &EngineClient,
    id: &str,
    name: &str,
    remove_after: bool,
) -> anyhow::Result<i64> {
    let options = LogsOptions {
        follow: true,
        ..Default::default()
    };
    let mut output = client.logs(id, &options).await?;
    // One listener each for the whole loop: a `ctrl_c()` made afresh per iteration misses a
    // SIGINT that arrives while output is being written.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupted = loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => {
                    let result = match chunk.stream {
                        LogStream::Stderr => std::io::stderr().write_all(&chunk.bytes),
                        _ => {
                            let mut out = std::io::stdout();
                            out.write_all(&chunk.bytes).and_then(|()| out.flush())
                        }
                    };
                    if result.is_err() {
                        // Our own output closed (`berth run … | head`): the command runs on.
                        break None;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => break None,
            },
            _ = sigint.recv() => break Some(130),
            _ = sigterm.recv() => break Some(143),
        }
    };
    if let Some(code) = interrupted {
        status_line("Container", name, "Stopping");
        client.stop_container(id, None).await?;
        status_line("Container", name, "Stopped");
        if remove_after {
            client.remove_container(id, true, true).await?;
        }
        std::process::exit(code);
    }
    Ok(client.wait_container(id).await?)
}

/// berth cannot hand stdin to a container yet: say so instead of silently dropping input.
fn warn_about_ignored_input(args: &RunArgs) {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        if !args.no_tty {
            eprintln!(
                "berth does not attach a terminal to `run` containers yet: showing output only"
            );
        }
        return;
    }
    let piped = std::fs::metadata("/proc/self/fd/0")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_file() || m.file_type().is_socket())
        .unwrap_or(false);
    if piped {
        eprintln!(
            "warning: berth run does not pass stdin to the container yet (input ignored); \
             `berth exec` can feed a running container"
        );
    }
}
