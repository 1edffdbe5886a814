//! `berth exec`: run a command in a service's running container, with the caller's stdin,
//! stdout and stderr, and exit with the command's status.
//!
//! berth does not allocate pseudo-terminals yet, so every exec runs as `docker compose exec -T`
//! does; from a terminal, berth says so once instead of silently behaving differently.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::containers::{check_services, display_name, is_running, numbered, of_project};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::api::client::{EngineClient, LogStream};
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
    /// Disable pseudo-TTY allocation (berth does not allocate one yet: always in effect)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open (always on, as in docker compose)
    #[arg(short = 'i', long, hide = true)]
    pub interactive: bool,
    /// Run the command as this user (name or UID[:GID])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory for the command inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
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

/// The running container number `--index` of the service, or docker compose's error.
async fn running_container(
    project_args: &ProjectArgs,
    client: &EngineClient,
    args: &ExecArgs,
) -> anyhow::Result<ContainerSummary> {
    let (project, name) = project_or_name(project_args)?;
    let containers = of_project(client, &name, true).await?;
    check_services(
        project.as_ref(),
        &containers,
        std::slice::from_ref(&args.service),
    )?;
    let Some(container) = numbered(&containers, &args.service, args.index) else {
        bail!(
            "service \"{}\" has no container #{}; start it with `berth up -d {}`",
            args.service,
            args.index,
            args.service
        );
    };
    if !is_running(container) {
        bail!(
            "service \"{}\" is not running (container {} is {}); start it with `berth start {}`",
            args.service,
            display_name(container),
            container.state,
            args.service
        );
    }

    Ok(container.clone())
}

pub async fn run(project_args: &ProjectArgs, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    let container = running_container(project_args, &client, args).await?;
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
    let config = ExecConfig {
        attach_stdin: !args.detach,
        attach_stdout: !args.detach,
        attach_stderr: !args.detach,
        env: (!env.is_empty()).then_some(env),
        cmd: Some(args.command.clone()),
        user: args.user.clone().unwrap_or_default(),
        working_dir: args.workdir.clone().unwrap_or_default(),
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
    if std::io::stdin().is_terminal() && !args.no_tty {
        eprintln!("berth does not allocate a TTY yet: running without one, as with -T");
    }

    let session = client.start_exec_interactive(&exec_id).await?;
    let feeding = tokio::spawn(feed_stdin(session.stdin));
    let mut output = session.output;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(chunk) = output.next().await {
        let chunk = chunk?;
        let sink: &mut dyn Write = match chunk.stream {
            LogStream::Stderr => &mut err,
            _ => &mut out,
        };
        // A closed pipe on our side (`berth exec … | head`) ends the copy, not the command.
        if sink
            .write_all(&chunk.bytes)
            .and_then(|()| sink.flush())
            .is_err()
        {
            break;
        }
    }
    feeding.abort();
    let code = client.inspect_exec(&exec_id).await?.exit_code.unwrap_or(-1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Copy berth's stdin to the process, then half-close so it sees EOF. Reading happens on a
/// plain thread: a read blocked on a terminal cannot be cancelled, and a thread of tokio's
/// blocking pool would keep the runtime (and berth) from exiting when the command ends first.
async fn feed_stdin(mut stdin: impl tokio::io::AsyncWrite + Unpin) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some(bytes) = rx.recv().await {
        if stdin.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}
