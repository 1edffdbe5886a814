//! Image builds from Dockerfiles (issue 9): see /work/wt/BUILD.md for the pipeline.

pub mod cache;
pub mod context;
pub mod copy;
pub mod progress;
pub mod run_step;
