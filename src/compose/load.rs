//! The loading pipeline's entry point: options in, normalised `Project` out.

use std::path::PathBuf;

use indexmap::IndexMap;

use super::model::Project;

/// Everything that decides how a project is loaded (the CLI's global flags plus the environment).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty = discover `compose.yaml` & co. upward from `working_dir`.
    pub files: Vec<PathBuf>,
    /// `-p`; else `COMPOSE_PROJECT_NAME`, `name:`, then the project directory's name.
    pub project_name: Option<String>,
    /// `--project-directory`; else the directory of the first file.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (repeatable); else `.env` in the project directory.
    pub env_files: Vec<PathBuf>,
    /// `--profile` (repeatable), plus `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// Services named on the command line (they are enabled whatever their profiles).
    pub services: Vec<String>,
    /// The directory the user stands in.
    pub working_dir: PathBuf,
    /// The process environment (passed in so tests can control it).
    pub environment: IndexMap<String, String>,
    pub skip_interpolation: bool,
    pub skip_normalization: bool,
    pub skip_consistency: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    Invalid(String),
}

pub fn load(_options: &LoadOptions) -> Result<Project, ComposeError> {
    todo!("helper: compose")
}
