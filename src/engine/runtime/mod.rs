//! What runs one container, given a plain [`spec::RuntimeSpec`]: the shim (the container's
//! parent for its whole life), `berth init` (namespaces, rootfs, cgroups, capabilities, seccomp,
//! then `execve`), and the pieces they set up. It knows a runtime spec, never the Docker API nor
//! the container store: the engine (`engine::container`) resolves a request into a spec and hands
//! it over.

pub mod caps;
pub mod cgroup;
pub mod console;
pub mod devices;
pub mod in_root;
pub mod init;
pub mod json_log;
pub mod limits;
pub mod process_setup;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod syscall;
pub mod sysctl;
pub mod tty_relay;
pub mod user;
