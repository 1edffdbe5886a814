//! The `berth` command line: clap definitions, global flags, and one module per command.
//!
//! Exit codes follow docker compose: 0 on success, 1 on any error (printed on stderr), and the
//! code a command documents otherwise.

mod attach;
mod build;
mod build_context;
mod build_plan;
mod build_render;
mod builder;
mod commit;
mod completion;
pub mod config;
mod containers;
mod cp;
mod down;
mod dry_run;
mod events;
mod exec;
mod image;
mod images;
mod import;
mod kill;
mod login;
mod logs;
mod ls;
mod manpage;
mod output;
mod pause;
mod port;
mod progress;
mod project;
mod ps;
mod pull;
mod push;
mod restart;
mod rm;
mod run;
mod start;
mod stats;
mod stop;
mod template;
mod terminal;
mod top;
mod up;
mod version;
mod wait;
mod watch;
mod watch_actions;
mod watch_paths;
mod watch_session;
mod watch_sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::engine::{EngineRoots, EngineSettings};
pub use project::ProjectArgs;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Run multi-container applications from a compose file, with berth's own container engine",
    long_about = None,
    after_help = "Run 'berth COMMAND --help' for more information on a command."
)]
pub struct Cli {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub globals: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start containers
    Up(up::UpArgs),
    /// Stop and remove containers and networks (named volumes only with -v)
    Down(down::DownArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Start services (their existing containers)
    Start(start::StartArgs),
    /// Stop services (their containers stay, for `start`)
    Stop(stop::StopArgs),
    /// Restart service containers
    Restart(restart::RestartArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Print the public address of a service's port
    Port(port::PortArgs),
    /// Block until the services' containers stop; exit with the first one's status
    Wait(wait::WaitArgs),
    /// Create containers for services without starting them (up --no-start)
    Create(up::CreateArgs),
    /// Run a one-off command on a service
    Run(Box<run::RunArgs>),
    /// Force stop service containers
    Kill(kill::KillArgs),
    /// Removes stopped service containers
    Rm(rm::RmArgs),
    /// List running compose projects
    Ls(ls::LsArgs),
    /// List images used by the created containers
    Images(images::ImagesArgs),
    /// View output from containers
    Logs(logs::LogsArgs),
    /// Build or rebuild services
    Build(build::BuildArgs),
    /// Manage the engine's build cache (like `docker builder`)
    Builder(builder::BuilderArgs),
    /// Pull service images
    Pull(pull::PullArgs),
    /// Push service images
    Push(push::PushArgs),
    /// Log in to a registry (credentials in ~/.docker/config.json or its credential helper)
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Parse, resolve and render the compose file in canonical format
    #[command(visible_alias = "convert")]
    Config(config::ConfigArgs),
    /// Manage images: save, load, tag, rm, prune, inspect, history (like `docker image`)
    Image(image::ImageArgs),
    /// Import a root filesystem tarball as an image (like `docker import`)
    Import(import::ImportArgs),
    /// Show the berth version information
    Version(version::VersionArgs),
    /// Run the container engine daemon (the CLI starts it by itself when its socket is absent)
    Engine(EngineArgs),
    /// Watch the build context for services and rebuild/refresh containers when files are updated
    Watch(watch::WatchArgs),
    /// Copy files/folders between a service container and the local filesystem
    Cp(cp::CpArgs),
    /// Attach local standard input, output, and error streams to a service's running container
    Attach(attach::AttachArgs),
    /// Pause services
    Pause(pause::PauseArgs),
    /// Unpause services
    Unpause(pause::PauseArgs),
    /// Display the running processes
    Top(top::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Receive real time events from containers
    Events(events::EventsArgs),
    /// Print the shell completion script (bash, zsh, fish, ...) to stdout
    Completion(completion::CompletionArgs),
    /// Generate the man pages (berth.1 to stdout, or every page into --dir)
    Manpage(manpage::ManpageArgs),
    /// Create a new image from a service container's changes
    Commit(commit::CommitArgs),
}

#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// Persistent state (images, containers, volumes)
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = crate::engine::paths::DEFAULT_DATA_ROOT)]
    pub data_root: std::path::PathBuf,
    /// Runtime state (socket, shim state)
    #[arg(long, env = "BERTH_RUN_ROOT", default_value = crate::engine::paths::DEFAULT_RUN_ROOT)]
    pub run_root: std::path::PathBuf,
    /// Registry reached over plain HTTP besides loopback ones (host:port); repeatable
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

/// docker compose's global output and concurrency flags (each with its `COMPOSE_*` variable).
/// `main` records them once, before any command runs; a command reads them with [`globals()`]
/// (e.g. `globals().progress`, `globals().parallel_limit()`), so commands whose signatures take
/// only their own arguments still honour them. Given before the subcommand, as docker compose
/// takes them; `--dry-run` also after it (`berth up --dry-run`), as docker compose allows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Control when to print ANSI control characters ("never"|"always"|"auto")
    #[arg(long, env = "COMPOSE_ANSI", value_enum, default_value = "auto")]
    pub ansi: Ansi,
    /// Set type of progress output ("auto"|"tty"|"plain"|"json"|"quiet")
    #[arg(long, env = "COMPOSE_PROGRESS", value_enum, default_value = "auto")]
    pub progress: Progress,
    /// Control max parallelism, -1 for unlimited
    #[arg(
        long,
        env = "COMPOSE_PARALLEL_LIMIT",
        default_value_t = -1,
        allow_negative_numbers = true
    )]
    pub parallel: i64,
    /// Execute command in dry run mode: print what would be done, change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Ansi {
    Never,
    Always,
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

impl GlobalArgs {
    /// How many engine calls of one kind may run at once (`--parallel`; -1 or 0: no limit).
    pub fn parallel_limit(&self) -> usize {
        match usize::try_from(self.parallel) {
            Ok(n) if n > 0 => n,
            _ => usize::MAX,
        }
    }
}

static GLOBALS: std::sync::OnceLock<GlobalArgs> = std::sync::OnceLock::new();

/// The global flags of this run (their defaults before `main` records them, e.g. in unit tests).
pub fn globals() -> &'static GlobalArgs {
    GLOBALS.get_or_init(GlobalArgs::default)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = GLOBALS.set(cli.globals.clone());
    let result = match cli.command {
        Command::Engine(args) => {
            let roots = EngineRoots::new(args.data_root, args.run_root);
            let settings = EngineSettings {
                insecure_registries: args.insecure_registries,
            };
            crate::engine::daemon::run(roots, settings).map(|()| ExitCode::SUCCESS)
        }
        Command::Config(args) => {
            project::load_options(&cli.project, &[]).and_then(|opts| config::run(&args, opts))
        }
        Command::Version(args) => version::run(&args),
        Command::Completion(args) => completion::run(&args),
        Command::Manpage(args) => manpage::run(&args),
        command => run_async(cli.project, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// Commands that talk to the engine run on a tokio runtime built here, after argument parsing.
fn run_async(project: ProjectArgs, command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    refuse_unsupported_dry_run(&command)?;
    runtime.block_on(async move {
        match command {
            Command::Up(args) => up::run(&project, &args).await,
            Command::Down(args) => down::run(&project, &args).await,
            Command::Ps(args) => ps::run(&project, &args).await,
            Command::Start(args) => start::run(&project, &args).await,
            Command::Stop(args) => stop::run(&project, &args).await,
            Command::Restart(args) => restart::run(&project, &args).await,
            Command::Exec(args) => exec::run(&project, &args).await,
            Command::Port(args) => port::run(&project, &args).await,
            Command::Wait(args) => wait::run(&project, &args).await,
            Command::Create(args) => up::create(&project, &args).await,
            Command::Run(args) => run::run(&project, &args).await,
            Command::Kill(args) => kill::run(&project, &args).await,
            Command::Rm(args) => rm::run(&project, &args).await,
            Command::Ls(args) => ls::run(&project, &args).await,
            Command::Images(args) => images::run(&project, &args).await,
            Command::Logs(args) => logs::run(&project, &args).await,
            Command::Build(args) => build::run(&project, &args).await,
            Command::Builder(args) => builder::run(&project, &args).await,
            Command::Pull(args) => pull::run(&project, &args).await,
            Command::Push(args) => push::run(&project, &args).await,
            Command::Login(args) => login::login(&project, &args).await,
            Command::Logout(args) => login::logout(&args).await,
            Command::Import(args) => import::run(&project, &args).await,
            Command::Image(args) => image::run(&project, &args).await,
            Command::Watch(args) => watch::run(&project, &args).await,
            Command::Cp(args) => cp::run(&project, &args).await,
            Command::Pause(args) => pause::run(&project, &args, pause::Direction::Pause).await,
            Command::Unpause(args) => pause::run(&project, &args, pause::Direction::Unpause).await,
            Command::Top(args) => top::run(&project, &args).await,
            Command::Stats(args) => stats::run(&project, &args).await,
            Command::Events(args) => events::run(&project, &args).await,
            Command::Engine(_) | Command::Config(_) | Command::Version(_) => {
                unreachable!("dispatched before the runtime is built")
            }
            Command::Attach(args) => attach::run(&project, &args).await,
            Command::Completion(_) | Command::Manpage(_) => {
                unreachable!("dispatched before the runtime is built")
            }
            Command::Commit(args) => commit::run(&project, &args).await,
        }
    })
}

/// `--dry-run` where a command does not implement it would change what the user asked to keep
/// unchanged, so it is refused instead of ignored.
fn refuse_unsupported_dry_run(command: &Command) -> anyhow::Result<()> {
    // Read-only commands change nothing anyway, as docker compose treats them.
    let supported = matches!(
        command,
        Command::Up(_)
            | Command::Down(_)
            | Command::Ps(_)
            | Command::Ls(_)
            | Command::Images(_)
            | Command::Logs(_)
            | Command::Port(_)
            | Command::Top(_)
            | Command::Stats(_)
            | Command::Events(_)
    );
    if globals().dry_run && !supported {
        anyhow::bail!(
            "--dry-run is not supported by this berth command yet (only by `up`, `down` and read-only commands)"
        );
    }
    Ok(())
}

/// The error and its causes on one line each, as `Error: …` / `  caused by: …`; causes that the
/// message already contains are not repeated.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = format!("Error: {e}");
    let mut shown = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
            shown.push_str(&text);
        }
    }
    out
}

/// The engine's roots and settings as the CLI sees them (env vars or the hidden global flags).
pub fn engine_roots(project: &ProjectArgs) -> (EngineRoots, EngineSettings) {
    let mut roots = EngineRoots::from_env();
    if let Some(d) = &project.data_root {
        roots.data_root = d.clone();
    }
    if let Some(r) = &project.run_root {
        roots.run_root = r.clone();
    }
    let settings = EngineSettings {
        insecure_registries: project.insecure_registries.clone(),
    };
    (roots, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals_of(argv: &[&str]) -> GlobalArgs {
        Cli::try_parse_from(argv).expect("parses").globals
    }

    #[test]
    fn global_flags_parse_as_docker_compose_spells_them() {
        let g = globals_of(&[
            "berth",
            "--ansi",
            "never",
            "--progress",
            "json",
            "--parallel",
            "2",
            "ps",
        ]);
        assert_eq!(
            (g.ansi, g.progress, g.parallel_limit()),
            (Ansi::Never, Progress::Json, 2)
        );
        assert_eq!(
            globals_of(&["berth", "--parallel", "-1", "ps"]).parallel_limit(),
            usize::MAX
        );
        assert!(globals_of(&["berth", "down", "--dry-run"]).dry_run);
        assert!(Cli::try_parse_from(["berth", "--progress", "fancy", "ps"]).is_err());
    }
}
