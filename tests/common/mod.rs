//! Shared fixtures for the integration tests (each test binary includes what it uses).
#![allow(dead_code)]
pub mod debian;
pub mod engine;
pub mod precondition;
pub mod project;
pub mod registry;
pub mod rootfs;
