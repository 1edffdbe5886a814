//! Fixtures shared by the loader stages' unit tests: project directories written on the fly.

use std::path::Path;

use super::{load, ComposeError, LoadOptions, Project};

/// Write `text` to `dir/name`, creating parent directories.
pub fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("a file inside dir")).expect("create dirs");
    std::fs::write(p, text).expect("write file");
}

/// Load the project found in `dir`, named `t`.
pub fn load_dir(dir: &Path) -> Result<Project, ComposeError> {
    load(&LoadOptions {
        working_dir: dir.to_path_buf(),
        project_name: Some("t".into()),
        ..Default::default()
    })
}
