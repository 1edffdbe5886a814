//! `berth run`: a one-off container of a service — its dependencies brought up first, as
//! `up -d` would — running COMMAND (or the service's command) attached until it exits, and
//! berth exiting with its status. `--rm` removes it afterwards; `-d` leaves it running.
//!
//! One-off containers are labelled `com.docker.compose.oneoff=True` and named
//! `<project>-<service>-run-<12 hex>`, as docker compose names them; `up` never mistakes one
//! for a service's container, and `down` removes them with the rest.
//! Unless detached, berth's stdin goes to the container (EOF when it ends, as `docker run -i`);
//! from a terminal (or with `-t`, never with `-T`) the container gets a pseudo-terminal and the
//! local one goes into raw mode, its window size followed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use indexmap::IndexMap;

use super::output::status_line;
use super::project::{engine, load_project, ProjectArgs};
use super::terminal;
use crate::compose::files::read_env_file;
use crate::compose::model::{Project, ServicePort, ServiceVolume};
use crate::compose::normalize::{parse_port_spec, shell_split};
use crate::compose::notation::split_volume_spec;
use crate::compose::plan::{self, LABEL_CONTAINER_NUMBER, LABEL_ONEOFF, LABEL_SERVICE};
use crate::engine::api::client::{AttachOptions, EngineClient, Hijacked, LogStream, LogsOptions};
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
    #[arg(short = 'P', long)]
    pub service_ports: bool,
    /// Publish a container's port(s) to the host ([HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL])
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Bind mount a volume (SOURCE:TARGET[:ro|rw]; a SOURCE without a path is a named volume)
    #[arg(short = 'v', long = "volume", value_name = "VOLUME")]
    pub volumes: Vec<String>,
    /// Add Linux capabilities
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Read in a file of environment variables (applied before -e)
    #[arg(long, value_name = "FILE")]
    pub env_from_file: Vec<std::path::PathBuf>,
    /// Use the service's network aliases in the network(s) the container connects to
    #[arg(long)]
    pub use_aliases: bool,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
    /// Don't print anything to STDOUT but the container's own output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Disable pseudo-TTY allocation (by default one is allocated when stdin is a terminal)
    #[arg(short = 'T', long = "no-tty", visible_alias = "no-TTY")]
    pub no_tty: bool,
    /// Allocate a pseudo-TTY even when stdin is not a terminal
    #[arg(short = 't', long = "tty", hide = true)]
    pub tty: bool,
    /// Keep STDIN open (always on without -d, as in docker compose)
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
    let env_files = env_from_files(&args.env_from_file)?;
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}-run-{}",
            project.name,
            args.service,
            &hex::encode(rand::random::<[u8; 6]>())
        )
    });
    let one_off = one_off_project(&project, args)?;
    let mut request = one_off_request(&one_off, args, entrypoint, &name, env_files)?;
    let tty =
        !args.detach && terminal::wants_tty(args.no_tty, args.tty, std::io::stdin().is_terminal());
    attach_streams(&mut request, !args.detach, tty);
    let client = engine(project_args).await?;
    let images = super::up::ImageFlags {
        pull: &args.pull,
        quiet_pull: args.quiet_pull || args.quiet,
        build: super::up::BuildFlag::of(args.build, false),
    };
    super::up::prepare_one_off(&client, &project, &args.service, args.no_deps, &images).await?;
    let created = client
        .create_container(Some(&name), &request)
        .await
        .with_context(|| format!("cannot create the one-off container of {}", args.service))?;
    let id = created.id;
    if let Err(e) = super::up::copy_inline_objects(&client, &project, &args.service, &id).await {
        let _ = client.remove_container(&id, true, false).await;
        return Err(e);
    }
    let session = if args.detach {
        None
    } else {
        Some(attach_before_start(&client, &id, &name, tty).await?)
    };
    if let Err(e) = client.start_container(&id).await {
        let _ = client.remove_container(&id, true, false).await;
        return Err(anyhow::Error::new(e).context(format!("cannot start {name}")));
    }
    let Some(session) = session else {
        if !args.quiet {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let code = if tty {
        match on_terminal(&client, &id, &name, args.rm, session).await? {
            Some(code) => code,
            // Detached with the detach keys: the container runs on, and stays.
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        let feeding = tokio::spawn(terminal::feed_stdin(session.input));
        let code = follow_until_exit(&client, &id, &name, args.rm).await;
        feeding.abort();
        code?
    };
    if args.rm {
        client
            .remove_container(&id, true, true)
            .await
            .with_context(|| format!("cannot remove {name}"))?;
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The project with the service as `run`'s flags change it: its ports only with
/// `--service-ports` (else exposed, unpublished), `-p` ports added, `-v` volumes added,
/// `--cap-add`/`--cap-drop` added. Built by the compose model, so `plan` turns them into the
/// create request exactly as it does a compose file's.
fn one_off_project(project: &Project, args: &RunArgs) -> anyhow::Result<Project> {
    let mut project = project.clone();
    let service = project
        .services
        .get_mut(&args.service)
        .with_context(|| format!("no such service: {}", args.service))?;
    if !args.service_ports {
        let ports = std::mem::take(&mut service.ports);
        service
            .expose
            .extend(ports.iter().map(|p| format!("{}/{}", p.target, p.protocol)));
    }
    for spec in &args.publish {
        let parsed =
            parse_port_spec(spec).map_err(|e| anyhow::anyhow!("invalid -p {spec:?}: {e}"))?;
        service.ports.extend(
            parsed
                .into_iter()
                .map(|(host_ip, published, target, protocol)| ServicePort {
                    target,
                    published,
                    host_ip,
                    protocol,
                    mode: "ingress".to_string(),
                    ..Default::default()
                }),
        );
    }
    for spec in &args.volumes {
        service.volumes.push(volume_flag(spec)?);
    }
    service.cap_add.extend(args.cap_add.iter().cloned());
    service.cap_drop.extend(args.cap_drop.iter().cloned());
    Ok(project)
}

/// `-v SOURCE:TARGET[:ro|rw]`: a bind mount when SOURCE is a path (relative ones from the
/// project directory, as in the compose file), else a named volume.
fn volume_flag(spec: &str) -> anyhow::Result<ServiceVolume> {
    let parts = split_volume_spec(spec);
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, target.clone(), None),
        [source, target] => (Some(source.clone()), target.clone(), None),
        [source, target, mode] => (Some(source.clone()), target.clone(), Some(mode.as_str())),
        _ => bail!("invalid -v {spec:?}: use SOURCE:TARGET[:ro|rw]"),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => bail!("invalid -v {spec:?}: mode {other:?} is not ro or rw"),
    };
    if !target.starts_with('/') {
        bail!("invalid -v {spec:?}: the container path must be absolute");
    }
    let is_path = |s: &str| s.starts_with('/') || s.starts_with('.') || s.starts_with('~');
    let kind = match &source {
        Some(s) if is_path(s) => "bind",
        _ => "volume",
    };
    Ok(ServiceVolume {
        kind: kind.to_string(),
        source,
        target,
        read_only,
        ..Default::default()
    })
}

/// `KEY=VALUE` entries of the `--env-from-file` files, in order (later files win), read as
/// compose reads `env_file` (relative paths from the current directory, as docker compose).
fn env_from_files(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<String>> {
    let lookup: IndexMap<String, String> = std::env::vars().collect();
    let mut entries = Vec::new();
    for file in files {
        let vars = read_env_file(file, &lookup)
            .with_context(|| format!("cannot read --env-from-file {}", file.display()))?;
        entries.extend(
            vars.into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}"))),
        );
    }
    Ok(entries)
}

/// The service's create request made one-off: `run`'s label, command, entrypoint, environment,
/// user and directory overrides, no restart policy, and on its networks the container's own
/// name as alias (the service's aliases too only with `--use-aliases`, as docker compose).
fn one_off_request(
    project: &Project,
    args: &RunArgs,
    entrypoint: Option<Vec<String>>,
    name: &str,
    env_files: Vec<String>,
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
    let env = with_env_overrides(request.env.take().unwrap_or_default(), &env_files);
    request.env = Some(with_env_overrides(env, &args.env));
    if let Some(user) = &args.user {
        request.user = user.clone();
    }
    if let Some(dir) = &args.workdir {
        request.working_dir = dir.clone();
    }
    if let Some(host) = request.host_config.as_mut() {
        // A one-off container runs once: docker compose gives it no restart policy.
        host.restart_policy = None;
    }
    let service_name = plan::container_name(project, &args.service, 1);
    for endpoint in request
        .networking_config
        .iter_mut()
        .flat_map(|n| n.endpoints_config.values_mut())
    {
        let aliases = endpoint.aliases.get_or_insert_with(Vec::new);
        // The plan named the container as service container 1; a one-off is not that one.
        aliases.retain(|a| args.use_aliases && *a != service_name);
        aliases.insert(0, name.to_string());
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
    // Asked while the output streams, so the exit code is in by the time the log ends rather
    // than one more round trip after it.
    let exit = client.wait_container(id);
    tokio::pin!(exit);
    let mut exit_code = None;
    // One listener each for the whole loop: a `ctrl_c()` made afresh per iteration misses a
    // SIGINT that arrives while output is being written.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let interrupted = loop {
        tokio::select! {
            code = &mut exit, if exit_code.is_none() => exit_code = Some(code),
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
    match exit_code {
        Some(code) => Ok(code?),
        None => Ok(exit.await?),
    }
}

/// The create request's streams when berth stays attached: stdin open (closed when berth's
/// input ends, `StdinOnce`), and a TTY of berth's window size when asked for. Detached (`-d`),
/// the service's own `tty`/`stdin_open` stay, as `up` creates them.
fn attach_streams(request: &mut ContainerCreateRequest, attached: bool, tty: bool) {
    if !attached {
        return;
    }
    request.attach_stdin = attached;
    request.attach_stdout = attached;
    request.attach_stderr = attached;
    request.open_stdin = attached;
    request.stdin_once = attached;
    request.tty = tty;
    if tty {
        if let Some((rows, cols)) = terminal::window_size() {
            request
                .host_config
                .get_or_insert_with(Default::default)
                .console_size = Some([rows, cols]);
        }
    }
}

/// Attach to the created container before its start, as `docker run` does, so nothing it writes
/// or reads at its start is missed: stdin, and the output too for a TTY (without one the output
/// comes from the log, as for any container). On failure the container is removed.
async fn attach_before_start(
    client: &EngineClient,
    id: &str,
    name: &str,
    tty: bool,
) -> anyhow::Result<Hijacked> {
    let options = AttachOptions {
        stdin: true,
        stdout: tty,
        stderr: tty,
        detach_keys: None,
    };
    match client.attach(id, &options, tty).await {
        Ok(session) => Ok(session),
        Err(e) => {
            let _ = client.remove_container(id, true, false).await;
            Err(anyhow::Error::new(e).context(format!("cannot attach to {name}")))
        }
    }
}

/// A TTY run: the local terminal in raw mode, its size followed, input and output copied until
/// the container exits (its status returned) or the detach keys end the session (`None`: it
/// runs on, as after `docker run -it` and ctrl-p ctrl-q). A signal to berth stops the container,
/// as [`follow_until_exit`] does.
async fn on_terminal(
    client: &EngineClient,
    id: &str,
    name: &str,
    remove_after: bool,
    session: Hijacked,
) -> anyhow::Result<Option<i64>> {
    let raw = terminal::RawMode::enter_if(true)?;
    let resizing = {
        let (client, id) = (client.clone(), id.to_string());
        terminal::follow_window_size(move |rows, cols| {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let _ = client.resize_container(&id, rows, cols).await;
            }
        })
    };
    let end = terminal::run_session(session, true).await;
    drop(raw);
    resizing.abort();
    if let terminal::SessionEnd::Signal(code) = end? {
        status_line("Container", name, "Stopping");
        client.stop_container(id, None).await?;
        status_line("Container", name, "Stopped");
        if remove_after {
            client.remove_container(id, true, true).await?;
        }
        std::process::exit(code);
    }
    // The attach ends at the container's exit only once its state says so: still running, it
    // was a detach.
    if client.inspect_container(id).await?.state.running {
        return Ok(None);
    }
    Ok(Some(client.wait_container(id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(line: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(line);
        Wrapper::try_parse_from(argv).expect("flags parse").run
    }

    fn project() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let compose = "services:\n  web:\n    image: busybox\n    ports: [\"8080:80\"]\n    networks:\n      default:\n        aliases: [site]\n";
        std::fs::write(dir.path().join("compose.yaml"), compose).expect("write");
        crate::compose::load(&crate::compose::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            project_name: Some("t".into()),
            ..Default::default()
        })
        .expect("load")
    }

    #[test]
    fn attached_runs_open_stdin_once_and_detached_ones_keep_the_services_streams() {
        let service_tty = ContainerCreateRequest {
            tty: true,
            open_stdin: true,
            ..Default::default()
        };
        let mut detached = service_tty.clone();
        attach_streams(&mut detached, false, false);
        assert_eq!(detached, service_tty);

        let mut piped = service_tty.clone();
        attach_streams(&mut piped, true, false);
        assert!(piped.open_stdin && piped.stdin_once && piped.attach_stdin);
        assert!(
            !piped.tty,
            "no terminal asked for: none, whatever the service says"
        );

        let mut on_terminal = ContainerCreateRequest::default();
        attach_streams(&mut on_terminal, true, true);
        assert!(on_terminal.tty && on_terminal.open_stdin && on_terminal.stdin_once);
    }

    #[test]
    fn tty_flags_parse_as_docker_compose_spells_them() {
        assert!(args(&["-T", "web"]).no_tty);
        assert!(args(&["--no-tty", "web"]).no_tty);
        assert!(args(&["--no-TTY", "web"]).no_tty);
        assert!(args(&["-t", "web"]).tty);
        assert!(args(&["-i", "web"]).interactive);
    }

    #[test]
    fn flags_become_ports_volumes_and_capabilities() {
        let a = args(&[
            "-p",
            "127.0.0.1:9000:90/udp",
            "-v",
            "./src:/src:ro",
            "-v",
            "data:/data",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            "-T",
            "web",
        ]);
        let request = one_off_request(
            &one_off_project(&project(), &a).expect("project"),
            &a,
            None,
            "t-web-run-1",
            Vec::new(),
        )
        .expect("request");
        let host = request.host_config.expect("host config");
        let bindings = host.port_bindings.expect("-p publishes");
        assert_eq!(bindings.len(), 1, "the service's 8080:80 only with -P");
        let udp = bindings["90/udp"].as_ref().expect("binding")[0].clone();
        assert_eq!(
            (udp.host_ip.as_str(), udp.host_port.as_str()),
            ("127.0.0.1", "9000")
        );
        assert!(request
            .exposed_ports
            .expect("exposed")
            .contains_key("80/tcp"));
        let mounts = host.mounts.expect("mounts");
        assert!(mounts.iter().any(|m| m.target == "/src" && m.read_only));
        assert!(mounts
            .iter()
            .any(|m| m.target == "/data" && m.source == "t_data"));
        assert_eq!(
            host.cap_add.as_deref(),
            Some(&["NET_ADMIN".to_string()][..])
        );
        assert_eq!(host.cap_drop.as_deref(), Some(&["CHOWN".to_string()][..]));

        let published = args(&["-P", "web"]);
        let request = one_off_request(
            &one_off_project(&project(), &published).expect("project"),
            &published,
            None,
            "x",
            Vec::new(),
        )
        .expect("request");
        assert!(request
            .host_config
            .expect("host")
            .port_bindings
            .expect("-P")["80/tcp"]
            .is_some());
    }

    #[test]
    fn aliases_only_with_use_aliases() {
        let aliases = |line: &[&str]| {
            let a = args(line);
            let request = one_off_request(
                &one_off_project(&project(), &a).expect("project"),
                &a,
                None,
                "t-web-run-1",
                Vec::new(),
            )
            .expect("request");
            let endpoints = request
                .networking_config
                .expect("networks")
                .endpoints_config;
            endpoints
                .values()
                .next()
                .expect("default")
                .aliases
                .clone()
                .expect("aliases")
        };
        assert_eq!(aliases(&["web"]), ["t-web-run-1"]);
        assert_eq!(
            aliases(&["--use-aliases", "web"]),
            ["t-web-run-1", "web", "site"]
        );
    }

    #[test]
    fn bad_volume_flags_say_why() {
        assert_eq!(
            volume_flag("a:b").unwrap_err().to_string(),
            "invalid -v \"a:b\": the container path must be absolute"
        );
        assert_eq!(
            volume_flag("/a:/b:zz").unwrap_err().to_string(),
            "invalid -v \"/a:/b:zz\": mode \"zz\" is not ro or rw"
        );
        assert_eq!(volume_flag("/a:/b").expect("bind").kind, "bind");
    }
}
