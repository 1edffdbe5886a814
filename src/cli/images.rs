//! `berth images`: the images the project's containers were created from, one row per container.

use std::process::ExitCode;

use anyhow::Context;

use super::containers::{check_services, display_name, of_project, of_services};
use super::output::{human_ago, human_size, table};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::wire::ImageInspect;

#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// Only display IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format the output: "table" or "json"
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Services whose images to list (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// One container's image as `images` shows it.
struct Row {
    container: String,
    repository: String,
    tag: String,
    image: ImageInspect,
}

pub async fn run(project_args: &ProjectArgs, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let mut rows = Vec::new();
    for c in of_services(&containers, &args.services) {
        let container = display_name(c);
        // By ID: the name may have been re-pulled or retagged since the container was made.
        let image = client
            .inspect_image(&c.image_id)
            .await
            .with_context(|| format!("cannot inspect the image of container {container}"))?;
        let (repository, tag) = repository_and_tag(&c.image);
        rows.push(Row {
            container,
            repository,
            tag,
            image,
        });
    }

    print_rows(&rows, args)?;
    Ok(ExitCode::SUCCESS)
}

/// The rows as `-q` (unique image ids), `--format json`, or the table.
fn print_rows(rows: &[Row], args: &ImagesArgs) -> anyhow::Result<()> {
    if args.quiet {
        let mut seen: Vec<&str> = Vec::new();
        for r in rows {
            let id = r.image.id.trim_start_matches("sha256:");
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(());
    }
    if args.format == "json" {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "ID": r.image.id,
                    "ContainerName": r.container,
                    "Repository": r.repository,
                    "Tag": r.tag,
                    "Platform": platform(&r.image),
                    "Size": r.image.size,
                    "Created": r.image.created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    print_table(rows);
    Ok(())
}

/// docker compose's table: one row per container.
fn print_table(rows: &[Row]) {
    let now = chrono::Utc::now();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = r.image.id.trim_start_matches("sha256:");
            let created = chrono::DateTime::parse_from_rfc3339(&r.image.created)
                .map(|t| human_ago((now - t.with_timezone(&chrono::Utc)).num_seconds()))
                .unwrap_or_else(|_| "N/A".to_string());
            vec![
                r.container.clone(),
                r.repository.clone(),
                r.tag.clone(),
                platform(&r.image),
                id.chars().take(12).collect(),
                human_size(r.image.size),
                created,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "CONTAINER",
                "REPOSITORY",
                "TAG",
                "PLATFORM",
                "IMAGE ID",
                "SIZE",
                "CREATED"
            ],
            &table_rows
        )
    );
}

fn platform(image: &ImageInspect) -> String {
    format!("{}/{}", image.os, image.architecture)
}

/// `host:5000/app:1` → (`host:5000/app`, `1`); a digest reference or no tag gives `<none>` /
/// `latest` as Docker shows them.
fn repository_and_tag(reference: &str) -> (String, String) {
    if let Some((repo, _digest)) = reference.split_once('@') {
        return (repo.to_string(), "<none>".to_string());
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::repository_and_tag;

    #[test]
    fn references_split_into_repository_and_tag() {
        let split = repository_and_tag;
        assert_eq!(
            split("127.0.0.1:5000/app:1"),
            ("127.0.0.1:5000/app".into(), "1".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(split("app@sha256:abc"), ("app".into(), "<none>".into()));
    }
}
