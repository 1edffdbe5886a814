//! Preconditions of the integration tests: the tools and data they need.
//!
//! A test whose precondition is missing says so and passes on a developer's machine, but in CI
//! (`BERTH_CI=1`, set by `.ci/run`) a skipped test is a failed test: a green run must mean every
//! test ran.

// Each test binary includes this file and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// True when skips are fatal (CI).
pub fn in_ci() -> bool {
    std::env::var_os("BERTH_CI").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Report a missing precondition: panics in CI, prints and lets the caller return otherwise.
pub fn skip(reason: &str) {
    if in_ci() {
        panic!("BERTH_CI is set, so a skipped test fails: {reason}");
    }
    println!("skipped: {reason}");
}

/// The first executable called `name` on `PATH`; panics naming the tool when there is none.
pub fn tool(name: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: install it (.ci/run installs every tool the tests use)")
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
