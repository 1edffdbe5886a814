//! The packet filter of a bridge network: what berth adds to the host's netfilter so that
//! traffic inside a network, from it to the outside (masqueraded) and the replies pass, while
//! traffic between two networks does not — on whatever firewall the host already runs.
//!
//! # Netfilter semantics that shape this
//!
//! Every table (nftables tables, the iptables-nft `ip filter` table, and the legacy x_tables
//! `filter` table) registers its own *base chains* on the same hook (`forward` here). A packet
//! walks them all, in priority order. `accept` only ends the chain it is in — the packet goes on
//! to the next base chain — while `drop` is final. Two consequences:
//!
//! - berth cannot make its traffic pass by accepting it in its own table: when `dockerd` has set
//!   the iptables `FORWARD` policy to `DROP` (it does, and it loads `br_netfilter`, which sends
//!   even bridged frames between two containers of one network through that chain), or ufw has,
//!   the packet is dropped in *that* table. So berth must put accept rules where the host's
//!   filter is, as Docker and netavark do;
//! - isolation, though, can live in berth's own table: a `drop` there holds whatever other
//!   tables accept.
//!
//! # What berth adds, per network (`br-<id>`)
//!
//! 1. Its own nftables table `ip berth-<bridge>` (`nft.rs`, raw nf_tables netlink, one atomic
//!    batch): a `forward` filter chain that drops anything entering the network from another
//!    interface unless conntrack says it answers a connection the network opened (Docker's
//!    "unpublished port drop"; published ports go through the userland proxy, from the host, so
//!    they need no hole) and, for internal networks, anything leaving it; a `postrouting`
//!    masquerade chain for non-internal networks (when the engine gives networks outbound
//!    access, `NetworkOptions::outbound_nat`). One table per network: teardown is "delete our
//!    table" and never touches another network's.
//! 2. Accept rules in iptables `filter` (`iptables.rs`), in every backend in use — the
//!    nf_tables one and the legacy one can both be loaded, and both would drop — plus the one
//!    `iptables` runs by default, so that a `dockerd` started later finds them in place. They live
//!    in a chain of berth's own, `BERTH-FORWARD`, jumped to from the top of `FORWARD` (above
//!    Docker's `DOCKER-USER`/`DOCKER-FORWARD`/`DOCKER-ISOLATION-*`, ufw's `ufw-*` chains and the
//!    policy; a `dockerd` that starts later inserts its jump above ours, which is harmless since
//!    its chains drop only traffic to its own bridges), each rule tagged `berth:<bridge>`: teardown
//!    deletes exactly its network's rules and drops the chain and the jump with the last one.
//!    A network's changes go in as one `iptables-restore --noflush` per backend (one process,
//!    one atomic commit). The rules accept `-i br -o br` (inside the network, what
//!    br_netfilter shows iptables), `-i br ! -o br` and `-o br` conntrack
//!    `RELATED,ESTABLISHED` (out and back; internal networks get only the first). Traffic
//!    from network A to network B is accepted here and dropped by B's own table (1):
//!    isolation does not depend on the host's filter.
//! 3. firewalld (`firewalld.rs`): its `inet firewalld` table is owned by firewalld (nobody else
//!    may edit it) and rejects forwarded traffic of interfaces in no zone, so the bridge is put in
//!    the `trusted` zone (runtime only) through `firewall-cmd`, as Docker puts its bridges in its
//!    `docker` zone.
//!
//! Other nftables tables with a `forward` base chain whose *policy* is drop (a hand-written
//! `/etc/nftables.conf`) are not edited: they belong to the admin, and a rule berth inserted
//! there would be lost on the next `nft -f`. berth names each such chain in the network's
//! warning, with the two rules that let the network through (`foreign.rs`). Chains that drop by
//! an explicit final rule rather than by policy are not detected.
//!
//! Also not handled: a `DROP` the admin put in a chain jumped to above `BERTH-FORWARD` (e.g. in
//! `DOCKER-USER` after a `dockerd` restart moved its jump first) applies to berth's traffic too,
//! as it would to Docker's; ip6tables (berth makes no IPv6 networks); firewalld is driven only
//! through `firewall-cmd` and is covered by unit tests, not by a running firewalld.
//!
//! Everything is ensured idempotently — on network create, on engine start (`restore`) and on
//! a container attach after the host's filter changed (`generation.rs`) — by reading the
//! current state first (`iptables-save`), so a `kill -9` of the engine and a restart neither
//! lose nor duplicate rules, and a firewall reload that flushed them is repaired by the next
//! container start. Decisions are pure functions of that
//! state (unit-tested); the commands run behind [`Runner`]. Missing tools (no iptables, no
//! firewalld) mean nothing of theirs can drop berth's traffic, and are skipped.

mod chains;
mod firewalld;
mod foreign;
mod generation;
mod iptables;
mod nft;
mod xtables;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use thiserror::Error;

use super::ipam::Subnet;

pub use generation::{FirewallWatch, Generation};
pub use iptables::comment as rule_tag;
pub use nft::table_name;

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("cannot open an nf_tables netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("nf_tables {op} for {table} failed")]
    Kernel {
        op: &'static str,
        table: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enable IPv4 forwarding (net.ipv4.ip_forward)")]
    Forwarding(#[source] std::io::Error),
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, FirewallError>;

/// Serialises host-firewall edits between engines (other data roots, parallel tests): reading
/// `iptables-save` and acting on it must not interleave with another engine's edit.
const LOCK: &str = "/run/berth-firewall.lock";

/// What a command printed, and whether it succeeded.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The seam between deciding and doing: runs the host's firewall tools.
pub trait Runner {
    /// Whether `program` is installed.
    fn installed(&self, program: &str) -> bool;
    /// The file name `program` finally resolves to through its symlinks (`iptables` →
    /// `xtables-nft-multi`), when it is installed.
    fn resolved_name(&self, program: &str) -> Option<String>;
    /// Whether the legacy x_tables `filter` table is loaded in this network namespace (without
    /// it, `iptables-legacy-save` has no `filter` table to print).
    fn legacy_filter_loaded(&self) -> bool;
    fn run(&mut self, program: &str, args: &[String]) -> Result<CommandOutput>;
    /// [`Runner::run`] with `input` on the program's standard input.
    fn run_with_input(
        &mut self,
        program: &str,
        args: &[String],
        input: &str,
    ) -> Result<CommandOutput>;
}

/// Runs the real tools, found on `PATH` or in the sbin directories (an engine started from a
/// user's shell may not have them on its `PATH`).
pub struct HostRunner;

impl HostRunner {
    fn locate(program: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    }
}

impl Runner for HostRunner {
    fn installed(&self, program: &str) -> bool {
        Self::locate(program).is_some()
    }

    fn resolved_name(&self, program: &str) -> Option<String> {
        let real = std::fs::canonicalize(Self::locate(program)?).ok()?;
        Some(real.file_name()?.to_string_lossy().into_owned())
    }

    fn legacy_filter_loaded(&self) -> bool {
        xtables::filter_loaded()
    }

    fn run(&mut self, program: &str, args: &[String]) -> Result<CommandOutput> {
        self.run_with_input(program, args, "")
    }

    fn run_with_input(
        &mut self,
        program: &str,
        args: &[String],
        input: &str,
    ) -> Result<CommandOutput> {
        use std::io::Write;
        use std::process::Stdio;
        let spawn = |source| FirewallError::Spawn {
            program: program.to_string(),
            source,
        };
        let path =
            Self::locate(program).ok_or_else(|| spawn(std::io::ErrorKind::NotFound.into()))?;
        let stdin = if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        };
        let mut child = std::process::Command::new(path)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let Some(mut pipe) = child.stdin.take() {
            // A program that exits early closes its end: its status and stderr say why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn)?;
        Ok(CommandOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Run `args` and fail with its stderr when it fails.
fn run_checked(runner: &mut dyn Runner, program: &str, args: &[String]) -> Result<CommandOutput> {
    let out = runner.run(program, args)?;
    if out.success {
        Ok(out)
    } else {
        Err(FirewallError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: out.stderr,
        })
    }
}

/// [`run_checked`] with `input` on standard input; a failure names the input too, joined into
/// one line.
fn run_checked_with_input(
    runner: &mut dyn Runner,
    program: &str,
    args: &[String],
    input: &str,
) -> Result<CommandOutput> {
    let out = runner.run_with_input(program, args, input)?;
    if out.success {
        Ok(out)
    } else {
        let lines: Vec<&str> = input.lines().collect();
        Err(FirewallError::Command {
            command: format!("{program} {} <<< '{}'", args.join(" "), lines.join("; ")),
            stderr: out.stderr,
        })
    }
}

/// Set up (or repair) everything of a network: its own table (with a masquerade chain when
/// `masquerade`, never for an internal network), then the host's accepts. Returns the host
/// filter's fingerprint read at the end, still under the lock, so that no other engine's edit
/// falls between the ensure and the fingerprint.
///
/// `alone`: the network is new and this engine has no other, so the iptables part is first
/// tried without reading the table (see [`iptables::ensure_alone`]).
pub fn ensure(
    bridge: &str,
    subnet: Subnet,
    internal: bool,
    masquerade: bool,
    alone: bool,
) -> Result<Generation> {
    // Each part on its own: without nf_tables (no table), the host's iptables can still drop.
    let forwarding = if masquerade {
        enable_ip_forward()
    } else {
        Ok(())
    };
    // The table and the host's accepts are independent, and each waits on the kernel (an
    // nf_tables commit of base chains, an iptables process): side by side, not one after the
    // other. The fingerprint is read after both, so it covers the table too.
    let (table, host) = std::thread::scope(|scope| {
        let table = scope.spawn(|| nft::install_table(bridge, subnet, internal, masquerade));
        let host = lock().and_then(|lock| {
            ensure_host(&mut HostRunner, bridge, internal, alone)?;
            Ok(lock)
        });
        let table = table
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (table, host.map(|_lock| Generation::read()))
    });
    forwarding.and(table).and(host)
}

/// The host part of [`ensure`], behind the seam.
pub fn ensure_host(
    runner: &mut dyn Runner,
    bridge: &str,
    internal: bool,
    alone: bool,
) -> Result<()> {
    if alone {
        iptables::ensure_alone(runner, bridge, internal)?;
    } else {
        iptables::ensure(runner, bridge, internal)?;
    }
    firewalld::ensure(runner, bridge)
}

/// Warnings about other programs' nftables chains that drop the network's traffic and that
/// berth leaves alone (see the module doc). Asked when a network is made or the engine starts,
/// not on every container start: the ruleset listing costs a process and rarely changes.
pub fn foreign_warnings(bridge: &str) -> Vec<String> {
    foreign::warnings(&mut HostRunner, bridge)
}

/// Remove everything of a network: the host's accepts, then its table. Fine when nothing (or
/// only part) is there. A host without nf_tables never had a table.
pub fn remove(bridge: &str) -> Result<()> {
    remove_accepts(bridge, None)?;
    remove_own_table(bridge)
}

/// The first half of [`remove`]: the host filter's accepts, after which nothing lets traffic
/// of the bridge through. `last_internal`: `Some(internal)` (as the network was made) when it
/// is the last network of this engine, so the iptables part is first tried without reading the
/// table (see [`iptables::remove_alone`]).
pub fn remove_accepts(bridge: &str, last_internal: Option<bool>) -> Result<()> {
    let _lock = lock()?;
    remove_host(&mut HostRunner, bridge, last_internal)
}

/// The second half of [`remove`]: the network's own nftables table (its drops and masquerade
/// match only its bridge, so it may outlive the network's accepts for as long as the bridge
/// does). A host without nf_tables never had one.
pub fn remove_own_table(bridge: &str) -> Result<()> {
    match nft::remove_table(bridge) {
        Ok(()) | Err(FirewallError::Socket(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The host part of [`remove`], behind the seam. Tries every part before reporting a failure.
pub fn remove_host(
    runner: &mut dyn Runner,
    bridge: &str,
    last_internal: Option<bool>,
) -> Result<()> {
    let ipt = match last_internal {
        Some(internal) => iptables::remove_alone(runner, bridge, internal),
        None => iptables::remove(runner, bridge),
    };
    let fwd = firewalld::remove(runner, bridge);
    ipt.and(fwd)
}

/// Turn on IPv4 forwarding, without which masquerading has nothing to do. A host-wide setting
/// (Docker sets it too); left on when networks go away, as Docker leaves it.
pub fn enable_ip_forward() -> Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let current = std::fs::read_to_string(PATH).map_err(FirewallError::Forwarding)?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(PATH, "1").map_err(FirewallError::Forwarding)
}

/// Held until dropped (the file closes, the flock goes).
struct FirewallLock(#[allow(dead_code)] std::fs::File);

fn lock() -> Result<FirewallLock> {
    let err = |source| FirewallError::Lock {
        path: LOCK.into(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(err)?;
    // SAFETY: flock on a descriptor we own; released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(FirewallLock(file))
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording [`Runner`]: canned answers per command line, and the list of what ran.

    use super::{CommandOutput, Result, Runner};
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct FakeRunner {
        pub installed: Vec<&'static str>,
        /// `"program arg arg"` → output; a command not listed succeeds with no output.
        pub answers: HashMap<String, CommandOutput>,
        /// Program → the file name it resolves to; unlisted programs resolve to nothing.
        pub resolved: HashMap<&'static str, &'static str>,
        /// The legacy `filter` table is not loaded (by default it is, so its save runs).
        pub legacy_unloaded: bool,
        pub ran: Vec<String>,
        /// What each command run with input was given, in order.
        pub inputs: Vec<String>,
    }

    impl FakeRunner {
        pub fn with(installed: &[&'static str]) -> Self {
            FakeRunner {
                installed: installed.to_vec(),
                ..Default::default()
            }
        }

        pub fn answer(&mut self, command: &str, success: bool, stdout: &str) {
            self.answers.insert(
                command.to_string(),
                CommandOutput {
                    success,
                    stdout: stdout.to_string(),
                    stderr: if success { "" } else { "failed" }.to_string(),
                },
            );
        }

        /// The commands that changed something (not the reads).
        pub fn changes(&self) -> Vec<&str> {
            self.ran
                .iter()
                .map(String::as_str)
                .filter(|c| {
                    !c.contains("-save")
                        && !c.contains("--version")
                        && !c.contains("--state")
                        && !c.contains("--query-")
                        && !c.starts_with("nft ")
                })
                .collect()
        }
    }

    impl Runner for FakeRunner {
        fn installed(&self, program: &str) -> bool {
            self.installed.contains(&program)
        }

        fn resolved_name(&self, program: &str) -> Option<String> {
            self.resolved.get(program).map(|s| s.to_string())
        }

        fn legacy_filter_loaded(&self) -> bool {
            !self.legacy_unloaded
        }

        fn run_with_input(
            &mut self,
            program: &str,
            args: &[String],
            input: &str,
        ) -> Result<CommandOutput> {
            self.inputs.push(input.to_string());
            self.run(program, args)
        }

        fn run(&mut self, program: &str, args: &[String]) -> Result<CommandOutput> {
            let line = std::iter::once(program.to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            self.ran.push(line.clone());
            Ok(self.answers.get(&line).cloned().unwrap_or(CommandOutput {
                success: true,
                ..Default::default()
            }))
        }
    }
}
