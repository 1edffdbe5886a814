//! Image builds from Dockerfiles (issue 9): see /work/wt/BUILD.md for the pipeline.

pub mod context;
pub mod progress;
