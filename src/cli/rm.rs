//! `berth rm`: remove the project's stopped containers (running ones only with `-s`, which stops
//! them first), after asking for confirmation unless `-f`. `-v` also removes the anonymous
//! volumes the containers had; named volumes are never touched.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::containers::{
    check_services, display_name, for_each_level, is_running, of_services, stop_in_order,
    with_one_offs,
};
use super::output::{progress_line, status_line};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal (needed when stdin is not a terminal)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short = 's', long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Services whose containers to remove (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    // docker compose's `rm` removes stopped one-off (`run`) containers too.
    let mut containers = with_one_offs(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    if args.stop {
        let running: Vec<_> = of_services(&containers, &args.services)
            .into_iter()
            .filter(|c| is_running(c))
            .collect();
        stop_in_order(&client, &running, None).await?;
        containers = with_one_offs(&client, &name, true).await?;
    }
    // Running containers are left alone (docker compose skips them without a word).
    let stopped: Vec<_> = of_services(&containers, &args.services)
        .into_iter()
        .filter(|c| !is_running(c))
        .collect();
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = stopped.iter().map(|c| display_name(c)).collect();
    let message = format!("Going to remove {}", names.join(", "));
    if args.force {
        println!("{message}");
    } else if std::io::stdin().is_terminal() {
        if !confirm(&message)? {
            return Ok(ExitCode::SUCCESS);
        }
    } else {
        // berth differs here on purpose: with nobody at a terminal to answer, it refuses rather
        // than guess an answer from whatever stdin holds.
        bail!(
            "{message}: not confirmed, because stdin is not a terminal to ask on; \
             run `berth rm -f` to remove without asking"
        );
    }

    let client = &client;
    for_each_level(vec![stopped], |c| async move {
        let name = display_name(c);
        progress_line("Container", &name, "Removing");
        client
            .remove_container(&c.id, false, args.volumes)
            .await
            .with_context(|| format!("cannot remove container {name}"))?;
        status_line("Container", &name, "Removed");
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Ask `message` + `Are you sure? [y/N]` on the terminal; only `y`/`yes` confirms.
fn confirm(message: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout();
    write!(stdout, "{message}\nAre you sure? [y/N] ")?;
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer from stdin")?;
    Ok(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::is_yes;

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y", "Y\n", " yes "] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
