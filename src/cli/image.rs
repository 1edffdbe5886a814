//! `berth image save|load|tag|rm|prune|inspect|history`: Docker's image commands, against
//! berth's engine, so images can leave and enter berth without a registry.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::output::{human_ago, human_size, table};
use super::project::{engine, ProjectArgs};

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save {
        /// Write to a file, instead of STDOUT
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Load an image from a tar archive or STDIN
    Load {
        /// Read from tar archive file, instead of STDIN
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Suppress the load output
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm {
        /// Force removal of the image
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove unused images
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
    /// Display detailed information on one or more images
    Inspect {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Show the history of an image
    History {
        /// Don't truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Only show image IDs
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
}

pub async fn run(project_args: &ProjectArgs, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let client = engine(project_args).await?;
    match &args.command {
        ImageCommand::Save { output, images } => match output {
            Some(path) => {
                let mut file = tokio::fs::File::create(path)
                    .await
                    .with_context(|| format!("cannot create {}", path.display()))?;
                client.save_images(images, &mut file).await?;
            }
            None if std::io::stdout().is_terminal() => anyhow::bail!(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            ),
            None => client.save_images(images, &mut tokio::io::stdout()).await?,
        },
        ImageCommand::Load { input, quiet } => {
            let lines = match input {
                Some(path) if !path.is_file() => {
                    anyhow::bail!("cannot load {}: no such file", path.display())
                }
                Some(path) => client.load_images_file(path).await?,
                None if std::io::stdin().is_terminal() => anyhow::bail!(
                    "requested load from stdin, but stdin is empty; use -i FILE or pipe the archive"
                ),
                None => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                        .context("cannot read the archive from stdin")?;
                    client.load_images_bytes(buf).await?
                }
            };
            if !quiet {
                lines.iter().for_each(|l| println!("{l}"));
            }
        }
        ImageCommand::Tag { source, target } => client.tag_image(source, target).await?,
        ImageCommand::Rm { force, images } => return remove(&client, images, *force).await,
        ImageCommand::Prune { all, force } => prune(&client, *all, *force).await?,
        ImageCommand::Inspect { images } => {
            let mut out = Vec::new();
            for name in images {
                out.push(client.inspect_image(name).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::History {
            no_trunc,
            quiet,
            image,
        } => history(&client, image, *no_trunc, *quiet).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A service's image as `down --rmi` sees it: the name (`plan::service_image`) and whether the
/// compose file names it (`image:`) or a build would give it `<project>-<service>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceImage {
    pub name: String,
    pub named_in_file: bool,
}

/// The images `down --rmi` removes, as docker compose picks them: with `all` every service's
/// image; with `local` only those without an `image:` name (berth builds none, so none exist yet).
pub fn images_to_remove(rmi: &str, services: &[ServiceImage]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for image in services {
        if (rmi == "all" || !image.named_in_file) && !out.contains(&image.name) {
            out.push(image.name.clone());
        }
    }
    out
}

/// `down --rmi`: removes the images; a missing one is skipped and one still in use is reported,
/// as docker compose does, without failing `down`.
pub async fn remove_service_images(
    client: &crate::engine::api::client::EngineClient,
    rmi: &str,
    services: &[ServiceImage],
) {
    use crate::engine::api::client::ClientError;
    for image in images_to_remove(rmi, services) {
        match client.remove_image(&image, false).await {
            Ok(_) => super::output::status_line("Image", &image, "Removed"),
            Err(ClientError::Api { status: 404, .. }) => {}
            Err(ClientError::Api { status: 409, .. }) => {
                super::output::status_line("Image", &image, "Resource is still in use")
            }
            Err(e) => eprintln!("warning: image {image} not removed: {e}"),
        }
    }
}

/// Like `docker rmi`: every image is tried, failures are reported and make the exit status 1.
async fn remove(
    client: &crate::engine::api::client::EngineClient,
    images: &[String],
    force: bool,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in images {
        match client.remove_image(name, force).await {
            Ok(records) => {
                for r in records.as_array().into_iter().flatten() {
                    for (kind, what) in r.as_object().into_iter().flatten() {
                        println!("{kind}: {}", what.as_str().unwrap_or_default());
                    }
                }
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

async fn prune(
    client: &crate::engine::api::client::EngineClient,
    all: bool,
    force: bool,
) -> anyhow::Result<()> {
    if !force {
        let what = if all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let report = client.prune_images(all).await?;
    let deleted = report["ImagesDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for r in &deleted {
            for (kind, what) in r.as_object().into_iter().flatten() {
                println!(
                    "{}: {}",
                    kind.to_lowercase(),
                    what.as_str().unwrap_or_default()
                );
            }
        }
        println!();
    }
    let bytes = report["SpaceReclaimed"].as_i64().unwrap_or(0);
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

async fn history(
    client: &crate::engine::api::client::EngineClient,
    image: &str,
    no_trunc: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let rows = client.image_history(image).await?;
    let id = |r: &serde_json::Value| {
        let id = r["Id"].as_str().unwrap_or("<missing>");
        if no_trunc || id == "<missing>" {
            id.to_string()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    if quiet {
        rows.iter().for_each(|r| println!("{}", id(r)));
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut by = r["CreatedBy"].as_str().unwrap_or_default().to_string();
            if !no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                id(r),
                human_ago(now - r["Created"].as_i64().unwrap_or(now)),
                by,
                human_size(r["Size"].as_i64().unwrap_or(0)),
                r["Comment"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table_rows
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{images_to_remove, ServiceImage};

    #[test]
    fn rmi_all_takes_service_images_and_local_only_unnamed_builds() {
        let image = |name: &str, named_in_file| ServiceImage {
            name: name.to_string(),
            named_in_file,
        };
        let services = vec![
            image("nginx:1", true),
            image("nginx:1", true),
            image("p-app", false),
        ];
        assert_eq!(
            images_to_remove("all", &services),
            vec!["nginx:1".to_string(), "p-app".to_string()]
        );
        assert_eq!(
            images_to_remove("local", &services),
            vec!["p-app".to_string()]
        );
        assert!(images_to_remove("local", &services[..2]).is_empty());
    }
}
