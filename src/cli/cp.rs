//! `berth cp SERVICE:SRC DEST|-` and `berth cp SRC|- SERVICE:DEST`: docker compose's copy
//! between a service container and the host, over the engine's archive endpoints.
//!
//! Where a copy lands is `docker cp`'s rule, decided by [`place`] (pure, table-tested) from
//! whether the source is a directory and what the destination is: an existing directory
//! receives the source under its own name (or its contents, for `SRC/.`); anything else is
//! replaced by, or created as, the source under the destination's name. Host-side extraction
//! uses the engine's hardened extractor (fd-relative, no symlinked parents, bounded), owned by
//! the user running berth, as the Docker CLI extracts.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::containers::{display_name, numbered, of_project, service_of, with_one_offs};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::api::client::EngineClient;
use crate::engine::container::archive_io::{ChannelReader, ChannelWriter};
use crate::engine::unpack::{apply_tar_at, ApplyOptions, UnpackLimits, Whiteouts};
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct CpArgs {
    /// Index of the container if the service has several (default: every container of the
    /// service when copying to it, the first when copying from it)
    #[arg(long)]
    pub index: Option<u32>,
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Include containers created by the run command
    #[arg(long)]
    pub all: bool,
    /// SERVICE:SRC_PATH, or a host path, or - (a tar on stdin)
    #[arg(value_name = "SRC")]
    pub source: String,
    /// SERVICE:DEST_PATH, or a host path, or - (a tar on stdout)
    #[arg(value_name = "DEST")]
    pub destination: String,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Host(String),
    /// `-`: a tar on stdin or stdout.
    Stream,
    Service {
        service: String,
        path: String,
    },
}

/// Docker's reading of a `cp` argument: `-`, an absolute or `.`-prefixed host path, or
/// `SERVICE:PATH` at the first colon.
pub fn endpoint(arg: &str) -> Endpoint {
    if arg == "-" {
        return Endpoint::Stream;
    }
    match arg.split_once(':') {
        Some((service, path)) if !arg.starts_with('/') && !service.starts_with('.') => {
            Endpoint::Service {
                service: service.to_string(),
                path: path.to_string(),
            }
        }
        _ => Endpoint::Host(arg.to_string()),
    }
}

/// What is at the destination path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Missing,
    File,
    Dir,
}

/// Where a copy is extracted (`dir`) and the name its top entry takes there (`None`: the
/// source's own name, or its contents for `SRC/.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub dir: String,
    pub name: Option<String>,
}

/// `dest` without trailing `/` and `/.`, split into parent and last component.
fn split_dest(dest: &str) -> (String, String) {
    let mut trimmed = dest;
    loop {
        let next = trimmed
            .strip_suffix("/.")
            .or_else(|| trimmed.strip_suffix('/'));
        match next {
            Some(t) if !t.is_empty() => trimmed = t,
            _ => break,
        }
    }
    match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((parent, base)) => (parent.into(), base.into()),
        None => (".".into(), trimmed.into()),
    }
}

/// `docker cp`'s placement rule.
pub fn place(src_is_dir: bool, dest: &str, existing: Existing) -> Result<Placement, String> {
    let asserts_dir = dest.ends_with('/') || dest.ends_with("/.");
    let (parent, base) = split_dest(dest);
    let renamed = Placement {
        dir: parent,
        name: Some(base),
    };
    match existing {
        Existing::Dir => Ok(Placement {
            dir: dest.to_string(),
            name: None,
        }),
        Existing::File if src_is_dir => Err(format!(
            "cannot copy a directory to a file: {dest} is not a directory"
        )),
        Existing::File if asserts_dir => Err(format!("{dest} is not a directory")),
        Existing::Missing if asserts_dir && !src_is_dir => Err(format!(
            "destination directory {dest} does not exist (a file is not copied to a new \
             directory)"
        )),
        Existing::File | Existing::Missing => Ok(renamed),
    }
}

/// The last component of a path (`.` for a directory's contents, `SRC/.`).
fn source_base(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    split_dest(path).1
}

pub async fn run(project_args: &ProjectArgs, args: &CpArgs) -> anyhow::Result<ExitCode> {
    let (_, project) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    match (endpoint(&args.source), endpoint(&args.destination)) {
        (Endpoint::Service { service, path }, to @ (Endpoint::Host(_) | Endpoint::Stream)) => {
            let from = targets(&client, &project, &service, args, false).await?;
            copy_out(&client, &from[0], &path, &to, args.follow_link).await?;
        }
        (from @ (Endpoint::Host(_) | Endpoint::Stream), Endpoint::Service { service, path }) => {
            let to = targets(&client, &project, &service, args, true).await?;
            if from == Endpoint::Stream && to.len() > 1 {
                bail!("copying a tar from stdin to {} containers of service \"{service}\": choose one with --index", to.len());
            }
            for container in &to {
                copy_in(&client, container, &from, &path, args).await?;
            }
        }
        (Endpoint::Service { .. }, Endpoint::Service { .. }) => {
            bail!("copying between services is not supported: copy to the host first")
        }
        _ => bail!("one of SRC and DEST must be SERVICE:PATH"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The containers of `service` a copy acts on: `--index`'s, else every one when copying to
/// the service and the first when copying from it.
async fn targets(
    client: &EngineClient,
    project: &str,
    service: &str,
    args: &CpArgs,
    to_service: bool,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let containers = if args.all {
        with_one_offs(client, project, true).await?
    } else {
        of_project(client, project, true).await?
    };
    if let Some(index) = args.index {
        return match numbered(&containers, service, index) {
            Some(c) => Ok(vec![c.clone()]),
            None => bail!("service \"{service}\" has no container #{index}"),
        };
    }
    let mut of_service: Vec<ContainerSummary> = containers
        .into_iter()
        .filter(|c| service_of(c) == service)
        .collect();
    if of_service.is_empty() {
        bail!("no container found for service \"{service}\"");
    }
    if !to_service {
        of_service.truncate(1);
    }
    Ok(of_service)
}

/// The destination's stat in the container, through a final symlink as `docker cp` does.
async fn container_dest(
    client: &EngineClient,
    id: &str,
    path: &str,
) -> anyhow::Result<(String, Existing)> {
    let mut path = path.to_string();
    let mut stat = client.stat_container_path(id, &path).await?;
    if let Some(link) = stat.as_ref().filter(|s| s.is_symlink()) {
        path = link.link_target.clone();
        stat = client.stat_container_path(id, &path).await?;
    }
    let existing = match stat {
        None => Existing::Missing,
        Some(s) if s.is_dir() => Existing::Dir,
        Some(_) => Existing::File,
    };
    Ok((path, existing))
}

fn host_existing(path: &str) -> Existing {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Existing::Dir,
        Ok(_) => Existing::File,
        Err(_) => Existing::Missing,
    }
}

/// Host → container (a directory tree, a file, or a tar from stdin).
async fn copy_in(
    client: &EngineClient,
    container: &ContainerSummary,
    from: &Endpoint,
    dest: &str,
    args: &CpArgs,
) -> anyhow::Result<()> {
    let shown = format!("{}:{dest}", display_name(container));
    let (dest_path, existing) = container_dest(client, &container.id, dest).await?;
    let (tx, rx) = mpsc::channel(8);
    let (dir, producer) = match from {
        Endpoint::Host(src) => {
            let src_is_dir = host_source_is_dir(src, args.follow_link)?;
            let placement = place(src_is_dir, &dest_path, existing).map_err(anyhow::Error::msg)?;
            let name = placement.name.unwrap_or_else(|| source_base(src));
            let (src, follow) = (src.clone(), args.follow_link);
            let producer = tokio::task::spawn_blocking(move || {
                write_host_source(ChannelWriter::new(tx), &src, &name, follow)
            });
            (placement.dir, producer)
        }
        _ => {
            if existing != Existing::Dir {
                bail!("destination {shown} must be an existing directory to extract a tar into");
            }
            let producer = tokio::task::spawn_blocking(move || {
                let mut out = ChannelWriter::new(tx);
                std::io::copy(&mut std::io::stdin().lock(), &mut out)?;
                out.flush()
            });
            (dest_path, producer)
        }
    };
    let sent = client
        .put_archive_stream(&container.id, &dir, rx, true, args.archive)
        .await;
    let produced = producer.await?;
    sent.with_context(|| format!("copy to {shown}"))?;
    produced.with_context(|| format!("read the source for {shown}"))
}

fn host_source_is_dir(src: &str, follow: bool) -> anyhow::Result<bool> {
    let meta = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    };
    let meta = meta.with_context(|| format!("cannot copy {src}"))?;
    if !meta.is_dir() && (src.ends_with('/') || src.ends_with("/.")) {
        bail!("cannot copy {src}: not a directory");
    }
    Ok(meta.is_dir())
}

/// The tar of a host path with its top entry named `name` (`.`: the directory's contents).
/// Symlinks inside are stored as links; the top one is followed only with `-L`.
fn write_host_source(
    mut out: ChannelWriter,
    src: &str,
    name: &str,
    follow: bool,
) -> std::io::Result<()> {
    let path = if follow {
        std::fs::canonicalize(src)?
    } else {
        Path::new(src).to_path_buf()
    };
    let mut tar = tar::Builder::new(&mut out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    if std::fs::symlink_metadata(&path)?.is_dir() {
        tar.append_dir_all(name, &path)?;
    } else {
        tar.append_path_with_name(&path, name)?;
    }
    tar.into_inner()?;
    out.flush()
}

/// Container → host (or a tar on stdout).
async fn copy_out(
    client: &EngineClient,
    container: &ContainerSummary,
    src: &str,
    to: &Endpoint,
    follow: bool,
) -> anyhow::Result<()> {
    let shown = format!("{}:{src}", display_name(container));
    let mut get_path = src.to_string();
    let mut final_base = source_base(src);
    if follow {
        if let Some(stat) = client.stat_container_path(&container.id, src).await? {
            if stat.is_symlink() {
                get_path = stat.link_target;
            }
        }
    }
    let (stat, mut body) = client
        .get_archive(&container.id, &get_path)
        .await
        .with_context(|| format!("copy from {shown}"))?;
    let Endpoint::Host(dest) = to else {
        let mut stdout = tokio::io::stdout();
        while let Some(chunk) = body.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut stdout, &chunk?).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut stdout).await?;
        return Ok(());
    };
    let placement = place(stat.is_dir(), dest, host_existing(dest)).map_err(anyhow::Error::msg)?;
    if let Some(name) = placement.name {
        final_base = name;
    }
    let archive_root = source_base(&get_path);
    let (tx, rx) = mpsc::channel(8);
    let extract = tokio::task::spawn_blocking(move || {
        extract_on_host(
            ChannelReader::new(rx),
            &placement.dir,
            &archive_root,
            &final_base,
        )
    });
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
        if tx.send(chunk).await.is_err() {
            break; // the extractor stopped: its error says why
        }
    }
    drop(tx);
    extract
        .await?
        .with_context(|| format!("copy {shown} to {dest}"))
}

/// Extracts the container's tar into host directory `dir`, renaming its top entry from
/// `archive_root` to `name`, owned by the user running berth.
fn extract_on_host(
    mut tar: ChannelReader,
    dir: &str,
    archive_root: &str,
    name: &str,
) -> anyhow::Result<()> {
    let root: OwnedFd = std::fs::File::open(dir)
        .with_context(|| format!("open the destination directory {dir}"))?
        .into();
    // SAFETY: plain getters.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    let options = ApplyOptions {
        whiteouts: Whiteouts::Plain,
        cross_mounts: false,
        owner: Some(me),
        no_overwrite_dir_non_dir: true,
        rebase: (archive_root != name).then(|| (archive_root.to_string(), name.to_string())),
    };
    apply_tar_at(&mut tar, root, &UnpackLimits::default(), options)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_as_docker_reads_them() {
        assert_eq!(endpoint("-"), Endpoint::Stream);
        assert_eq!(
            endpoint("web:/etc/x"),
            Endpoint::Service {
                service: "web".into(),
                path: "/etc/x".into()
            }
        );
        assert_eq!(endpoint("/tmp/a:b"), Endpoint::Host("/tmp/a:b".into()));
        assert_eq!(endpoint("./a:b"), Endpoint::Host("./a:b".into()));
        assert_eq!(endpoint("plain"), Endpoint::Host("plain".into()));
    }

    #[test]
    fn placement_follows_docker_cp() {
        use Existing::*;
        let at = |dir: &str, name: Option<&str>| {
            Ok(Placement {
                dir: dir.into(),
                name: name.map(str::to_string),
            })
        };
        let table: &[(bool, &str, Existing, Result<Placement, ()>)] = &[
            // A file onto: a missing path (created), an existing file (replaced), a dir (into).
            (false, "/d/new", Missing, at("/d", Some("new"))),
            (false, "/d/f", File, at("/d", Some("f"))),
            (false, "/d", Dir, at("/d", None)),
            (false, "/d/new/", Missing, Err(())),
            (false, "/d/f/", File, Err(())),
            // A directory onto: a missing path (created with the contents), a file (error), a
            // dir (into, under its own name or as its contents — the source decides).
            (true, "/d/new", Missing, at("/d", Some("new"))),
            (true, "/d/new/", Missing, at("/d", Some("new"))),
            (true, "/d/f", File, Err(())),
            (true, "/d/", Dir, at("/d/", None)),
            (true, "rel", Missing, at(".", Some("rel"))),
            (true, "/top", Missing, at("/", Some("top"))),
        ];
        for (src_is_dir, dest, existing, want) in table {
            let got = place(*src_is_dir, dest, *existing).map_err(|_| ());
            assert_eq!(&got, want, "{src_is_dir} {dest} {existing:?}");
        }
        assert_eq!(source_base("/app/."), ".");
        assert_eq!(source_base("/app/"), "app");
        assert_eq!(source_base("file"), "file");
    }
}
