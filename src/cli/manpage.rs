//! `berth manpage [--dir DIR]`: roff man pages generated from the clap definitions — `berth.1`
//! and one `berth-<subcommand>.1` per visible (sub)subcommand — so they document exactly the
//! flags the binary parses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, Clone, clap::Args)]
pub struct ManpageArgs {
    /// Write berth.1 and one page per subcommand into DIR (default: print berth.1 to stdout)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: &ManpageArgs) -> anyhow::Result<ExitCode> {
    // build() propagates global flags, versions and help flags into every subcommand, so each
    // page lists what the parser accepts there.
    let mut cli = super::Cli::command();
    cli.build();
    match &args.dir {
        None => render(&cli, &mut std::io::stdout().lock())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (file_name, page) in pages(&cli) {
                write_page(&dir.join(file_name), &page)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every page to install, as (file name, command to render): the top command, then each
/// visible subcommand. After `build()` clap names a subcommand `berth-image-save`, which is the
/// page name `man` looks up; `cli` must have been built.
pub fn pages(cli: &clap::Command) -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    collect_pages(cli, &mut out);
    out
}

fn collect_pages(cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
    let page_name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    out.push((format!("{page_name}.1"), cmd.clone()));
    for sub in cmd.get_subcommands() {
        // clap's generated `help` subcommand is not a berth command; hidden ones are internal.
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        collect_pages(sub, out);
    }
}

fn render(cmd: &clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    // Subcommands carry no version of their own; every page names the package that made it.
    clap_mangen::Man::new(cmd.clone())
        .source(concat!("berth ", env!("CARGO_PKG_VERSION")))
        .manual("berth manual")
        .render(out)
        .context("cannot write the man page")
}

fn write_page(path: &Path, cmd: &clap::Command) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    render(cmd, &mut bytes)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand_named_as_man_looks_them_up() {
        let mut cli = crate::cli::Cli::command();
        cli.build();
        let names: Vec<String> = pages(&cli).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "berth.1");
        for expected in ["berth-up.1", "berth-completion.1", "berth-image-save.1"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }
}
