//! The loader's error: every stage reports through `ComposeError`, with the position and the
//! model path of the offending value where one is known.

use std::path::PathBuf;

use super::dotenv::DotenvError;
use super::graph::GraphError;
use super::interpolate::LocatedInterpolateError;
use super::yaml::{Mark, Node, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no compose file found in {dir} or any parent directory (tried {tried}); create compose.yaml or pass -f FILE")]
    NotFound { dir: PathBuf, tried: String },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error(transparent)]
    Interpolation(#[from] LocatedInterpolateError),
    #[error("{}", invalid_text(mark.as_ref(), path, message))]
    Invalid {
        mark: Option<Mark>,
        path: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Dotenv {
        path: PathBuf,
        #[source]
        source: DotenvError,
    },
    #[error("env file {path} not found; create it or mark it `required: false`")]
    EnvFileNotFound { path: PathBuf },
    #[error("invalid project name {name:?}: it must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit; pass another with -p or `name:`")]
    ProjectName { name: String },
    #[error("{0}")]
    Consistency(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// `file:line:col: path: message`, without repeating the path when the message starts with it.
fn invalid_text(mark: Option<&Mark>, path: &str, message: &str) -> String {
    let at = mark.map(|m| format!("{m}: ")).unwrap_or_default();
    if message.starts_with(path) {
        format!("{at}{message}")
    } else {
        format!("{at}{path}: {message}")
    }
}

impl ComposeError {
    /// Under `config --no-interpolate` a typed field (a number, size, duration, boolean) may
    /// still hold `${VAR}`: say that the value, not the file, is what cannot be read.
    pub fn with_uninterpolated_hint(self) -> ComposeError {
        match self {
            ComposeError::Invalid {
                mark,
                path,
                message,
            } if message.contains('$') && !message.contains("--no-interpolate") => {
                ComposeError::Invalid {
                    mark,
                    path,
                    message: format!(
                        "{message}; this field needs a value, so it can only be printed with \
                         interpolation (drop --no-interpolate)"
                    ),
                }
            }
            other => other,
        }
    }

    pub fn invalid(node: &Node, path: &str, message: impl Into<String>) -> ComposeError {
        ComposeError::Invalid {
            mark: Some(node.mark.clone()).filter(|m| m.line > 0),
            path: path.to_string(),
            message: message.into(),
        }
    }
}
