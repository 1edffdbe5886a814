//! `berth exec`: run a command in a service's running container, with the caller's stdin,
//! stdout and stderr, and exit with the command's status.
//!
//! From a terminal (or with `-t`) the command gets a pseudo-terminal of the container, the local
//! terminal goes into raw mode and the window size follows; `-T` runs it without one. The
//! detach keys (`ctrl-p,ctrl-q` unless `--detach-keys`) leave a TTY command running, and berth
//! exits 0, as `docker exec -it` does.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::containers::{check_services, display_name, is_running, numbered, of_project};
use super::project::{engine, project_or_name, ProjectArgs};
use super::terminal;
use crate::engine::api::client::{EngineClient, Hijacked};
use crate::engine::wire::{ContainerSummary, ExecConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables (KEY=VALUE; KEY alone takes berth's own value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Index of the container if the service has several
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Disable pseudo-TTY allocation (by default one is allocated when stdin is a terminal)
    #[arg(short = 'T', long = "no-tty", visible_alias = "no-TTY")]
    pub no_tty: bool,
    /// Allocate a pseudo-TTY even when stdin is not a terminal
    #[arg(short = 't', long = "tty", hide = true)]
    pub tty: bool,
    /// Keep STDIN open (always on, as in docker compose)
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,
    /// Run the command as this user (name or UID[:GID])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory for the command inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Override the key sequence for detaching from the command (with a TTY)
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// The service whose container runs the command
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// The running container number `index` of `service`, or docker compose's error.
pub(super) async fn running_container(
    project_args: &ProjectArgs,
    client: &EngineClient,
    service: &str,
    index: u32,
) -> anyhow::Result<ContainerSummary> {
    let (project, name) = project_or_name(project_args)?;
    let containers = of_project(client, &name, true).await?;
    let service = service.to_string();
    check_services(
        project.as_ref(),
        &containers,
        std::slice::from_ref(&service),
    )?;
    let Some(container) = numbered(&containers, &service, index) else {
        bail!(
            "service \"{service}\" has no container #{index}; \
             start it with `berth up -d {service}`"
        );
    };
    if !is_running(container) {
        bail!(
            "service \"{service}\" is not running (container {} is {}); \
             start it with `berth start {service}`",
            display_name(container),
            container.state,
        );
    }

    Ok(container.clone())
}

pub async fn run(project_args: &ProjectArgs, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    let container = running_container(project_args, &client, &args.service, args.index).await?;
    let container = &container;
    let env: Vec<String> = args
        .env
        .iter()
        .filter_map(|kv| match kv.split_once('=') {
            Some(_) => Some(kv.clone()),
            // `-e KEY` passes berth's own value, and nothing when it has none (as docker does).
            None => std::env::var(kv).ok().map(|v| format!("{kv}={v}")),
        })
        .collect();
    let tty =
        !args.detach && terminal::wants_tty(args.no_tty, args.tty, std::io::stdin().is_terminal());
    let config = ExecConfig {
        attach_stdin: !args.detach,
        attach_stdout: !args.detach,
        attach_stderr: !args.detach,
        tty,
        console_size: terminal::window_size()
            .filter(|_| tty)
            .map(|(rows, cols)| [rows, cols]),
        env: (!env.is_empty()).then_some(env),
        cmd: Some(args.command.clone()),
        user: args.user.clone().unwrap_or_default(),
        working_dir: args.workdir.clone().unwrap_or_default(),
        detach_keys: args.detach_keys.clone().unwrap_or_default(),
        ..Default::default()
    };
    let exec_id = client
        .create_exec(&container.id, &config)
        .await
        .with_context(|| format!("cannot exec in {}", display_name(container)))?;
    if args.detach {
        client.start_exec_detached(&exec_id).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let session = if tty {
        client.start_exec_tty(&exec_id).await?
    } else {
        let session = client.start_exec_interactive(&exec_id).await?;
        Hijacked {
            output: session.output,
            input: session.stdin,
        }
    };
    let raw = terminal::RawMode::enter_if(tty)?;
    let resizing = tty.then(|| {
        let (client, exec_id) = (client.clone(), exec_id.clone());
        terminal::follow_window_size(move |rows, cols| {
            let (client, exec_id) = (client.clone(), exec_id.clone());
            async move {
                let _ = client.resize_exec(&exec_id, rows, cols).await;
            }
        })
    });
    let end = terminal::run_session(session, true).await;
    drop(raw);
    if let Some(resizing) = resizing {
        resizing.abort();
    }
    if let terminal::SessionEnd::Signal(code) = end? {
        return Ok(ExitCode::from(code as u8));
    }
    let inspect = client.inspect_exec(&exec_id).await?;
    // Still running: the session ended with the detach keys (Docker's CLI exits 0 then).
    if inspect.running {
        return Ok(ExitCode::SUCCESS);
    }
    let code = inspect.exit_code.unwrap_or(-1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
