//! `berth port SERVICE PRIVATE_PORT`: the host address a service container's port is published
//! on, as `docker compose port` prints it (`127.0.0.1:8080`), for scripts.

use std::process::ExitCode;

use anyhow::bail;

use super::containers::{check_services, display_name, numbered, of_project};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct PortArgs {
    /// Index of the container if the service has several
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// tcp or udp
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "sctp"])]
    pub protocol: String,
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The container port
    #[arg(value_name = "PRIVATE_PORT")]
    pub private_port: u16,
}

pub async fn run(project_args: &ProjectArgs, args: &PortArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, false).await?;
    check_services(
        project.as_ref(),
        &containers,
        std::slice::from_ref(&args.service),
    )?;
    let Some(container) = numbered(&containers, &args.service, args.index) else {
        bail!(
            "service \"{}\" is not running (no container #{})",
            args.service,
            args.index
        );
    };
    let published = container.ports.iter().find(|p| {
        p.private_port == args.private_port && p.kind == args.protocol && p.public_port.is_some()
    });
    match published {
        Some(p) => {
            let ip = if p.ip.is_empty() { "0.0.0.0" } else { &p.ip };
            println!("{ip}:{}", p.public_port.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no port {}/{} for container {}: it is not published (see `ports:` of service \"{}\")",
            args.private_port,
            args.protocol,
            display_name(container),
            args.service
        ),
    }
}
