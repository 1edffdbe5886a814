//! `berth login` / `berth logout`, and the credentials every pull and push sends.
//!
//! As with docker: credentials are checked against the registry (`GET /v2/` and its challenge)
//! before they are saved; they go to the credential helper that `config.json` names for the
//! registry (`credHelpers`, then `credsStore`), else into `config.json` itself (mode 0600). The
//! CLI resolves them and sends them to the engine per request (`X-Registry-Auth`).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;

use super::project::ProjectArgs;
use crate::engine::auth::{self, AuthConfig, CredentialSource, DockerConfig};
use crate::engine::reference::{ImageReference, DOCKER_HUB};
use crate::engine::registry::RegistryClient;

#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (insecure: it stays in the shell history; prefer --password-stdin)
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogoutArgs {
    /// Registry (default: Docker Hub)
    pub server: Option<String>,
}

/// The registry a `login`/`logout` argument names: `https://host:5000/v2/` → `host:5000`,
/// nothing → Docker Hub.
pub fn registry_of(server: Option<&str>) -> String {
    server
        .map(auth::normalize_key)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DOCKER_HUB.to_string())
}

/// The credentials to send for `image`'s registry (none: anonymous).
pub fn credentials_for(image: &str) -> anyhow::Result<Option<AuthConfig>> {
    let reference = ImageReference::parse(image)?;
    auth::resolve(&reference.registry)
        .with_context(|| format!("cannot read the credentials for {}", reference.registry))
}

fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a password from the terminal without echoing it.
fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn terminal echo off")?;
    let answer = prompt(label);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    answer
}

/// Username and password from the flags, stdin or the terminal, as docker takes them.
fn read_credentials(args: &LoginArgs) -> anyhow::Result<(String, String)> {
    let interactive = std::io::stdin().is_terminal();
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            anyhow::bail!("--password-stdin needs a username: give it with --username");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        Some(text.trim_end_matches(['\r', '\n']).to_string())
    } else {
        args.password.clone()
    };
    let username = match &args.username {
        Some(u) => u.clone(),
        None if interactive => prompt("Username")?,
        None => anyhow::bail!(
            "Cannot perform an interactive login from a non TTY device: give --username and \
             --password-stdin"
        ),
    };
    let password = match password {
        Some(p) => p,
        None if interactive => prompt_hidden("Password")?,
        None => anyhow::bail!(
            "Cannot perform an interactive login from a non TTY device: give the password with \
             --password-stdin"
        ),
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("a username and a password are required to log in");
    }
    Ok((username, password))
}

pub async fn login(project_args: &ProjectArgs, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_of(args.server.as_deref());
    let (username, password) = read_credentials(args)?;
    let creds = AuthConfig {
        username,
        password,
        serveraddress: auth::server_key(&registry),
        ..Default::default()
    };
    let (_, settings) = super::engine_roots(project_args);
    RegistryClient::for_registry(&registry, &settings)?
        .with_credentials(Some(creds.clone()))
        .check_login()
        .await
        .with_context(|| format!("login to {registry} failed"))?;
    let path = DockerConfig::path()?;
    let mut config = DockerConfig::load(&path)?;
    match config.source_for(&registry) {
        CredentialSource::Helper(helper) => {
            auth::helper_store(&helper, &registry, &creds)?;
            config.mark_helper_login(&registry);
        }
        CredentialSource::File => {
            config.set_file_entry(&registry, &creds);
            eprintln!(
                "WARNING! Your password will be stored unencrypted in {}.",
                path.display()
            );
        }
    }
    config.save(&path)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub async fn logout(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_of(args.server.as_deref());
    let path = DockerConfig::path()?;
    let mut config = DockerConfig::load(&path)?;
    let in_helper = match config.source_for(&registry) {
        CredentialSource::Helper(helper) => auth::helper_erase(&helper, &registry)?,
        CredentialSource::File => false,
    };
    let in_file = config.remove_file_entry(&registry);
    if !in_helper && !in_file {
        println!("Not logged in to {registry}");
        return Ok(ExitCode::SUCCESS);
    }
    config.save(&path)?;
    println!(
        "Removing login credentials for {}",
        auth::server_key(&registry)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_arguments_name_their_registry() {
        assert_eq!(registry_of(None), "docker.io");
        assert_eq!(
            registry_of(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(
            registry_of(Some("http://127.0.0.1:5000/v2/")),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of(Some("reg.example")), "reg.example");
    }
}
