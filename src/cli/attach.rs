//! `berth attach SERVICE`: connect berth's stdin, stdout and stderr to a service's running
//! container, as `docker compose attach` does. A TTY container's terminal takes over the local
//! one (raw mode, window size); the detach keys (`ctrl-p,ctrl-q` unless `--detach-keys`) leave
//! it running. berth exits with the container's status when it exits, 0 after a detach.

use std::process::ExitCode;

use anyhow::Context;

use super::exec::running_container;
use super::project::{engine, ProjectArgs};
use super::terminal::{self, SessionEnd};
use crate::engine::api::client::AttachOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Index of the container if the service has several
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Override the key sequence for detaching from a container
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Proxy all received signals to the process (without a TTY)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// The service whose container to attach to
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

pub async fn run(project_args: &ProjectArgs, args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    let summary = running_container(project_args, &client, &args.service, args.index).await?;
    let container = client.inspect_container(&summary.id).await?;
    let tty = container.config.tty;
    let with_input = !args.no_stdin && container.config.open_stdin;
    let options = AttachOptions {
        stdin: with_input,
        stdout: true,
        stderr: true,
        detach_keys: args.detach_keys.clone(),
    };
    let session = client
        .attach(&container.id, &options, tty)
        .await
        .with_context(|| format!("cannot attach to {}", args.service))?;
    let raw = terminal::RawMode::enter_if(tty && with_input)?;
    let resizing = tty.then(|| {
        let (client, id) = (client.clone(), container.id.clone());
        terminal::follow_window_size(move |rows, cols| {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let _ = client.resize_container(&id, rows, cols).await;
            }
        })
    });
    let end = terminal::run_session(session, with_input).await;
    drop(raw);
    if let Some(resizing) = resizing {
        resizing.abort();
    }
    match end? {
        SessionEnd::Signal(code) => {
            // Without a terminal the signal was meant for the container, as `docker attach`
            // proxies it; berth goes on until it exits.
            if args.sig_proxy && !tty {
                let name = match code {
                    130 => "SIGINT",
                    129 => "SIGHUP",
                    _ => "SIGTERM",
                };
                client.kill_container(&container.id, Some(name)).await?;
                let exit = client.wait_container(&container.id).await?;
                return Ok(ExitCode::from(u8::try_from(exit).unwrap_or(1)));
            }
            Ok(ExitCode::from(code as u8))
        }
        SessionEnd::Closed => {
            let state = client.inspect_container(&container.id).await?.state;
            // Still running: the session ended with the detach keys.
            if state.running {
                return Ok(ExitCode::SUCCESS);
            }
            Ok(ExitCode::from(u8::try_from(state.exit_code).unwrap_or(1)))
        }
    }
}
