//! `berth version`.

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct VersionArgs {
    /// Format the output: "pretty" or "json"
    #[arg(short = 'f', long, default_value = "pretty", value_parser = ["pretty", "json"])]
    pub format: String,
    /// Show only the version number
    #[arg(long)]
    pub short: bool,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    if args.short {
        println!("{version}");
    } else if args.format == "json" {
        println!("{}", serde_json::json!({ "version": version }));
    } else {
        println!("berth version v{version}");
    }
    Ok(ExitCode::SUCCESS)
}
