//! `berth engine`: open the stores, reattach to running shims, serve the API on the UNIX socket.
//!
//! One engine per run root: `engine.pid` is held with `flock` for the daemon's whole life, which
//! is also what proves a leftover socket stale. Containers do not depend on the daemon (they run
//! under their shims), so shutting down leaves them running; a restarted engine reattaches.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use super::container::ContainerStore;
use super::image::ImageStore;
use super::{Engine, EngineRoots, EngineSettings, SharedEngine};
use crate::network::NetworkManager;
use crate::volume::VolumeStore;

/// mimalloc options for a long-lived, mostly idle daemon (see [`reexec_with_lean_allocator`]).
const LEAN_ALLOCATOR: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// The binary's allocator (mimalloc) reserves its first 1 GiB arena before `main`, read-write
/// ("eager commit" on an overcommitting Linux), so on a host with transparent huge pages set to
/// `always` every touched 2 MiB of it becomes a huge page: the idle engine measured 19 MB RSS
/// fresh and 56 MB after three `up`/`down` of 10 services. With arenas committed on demand and
/// freed pages purged at once: 11.6 MB and 17.3 MB. mimalloc reads its options when it starts,
/// before any code of ours, so the engine re-executes itself once with them in its environment
/// (a few milliseconds at engine start; the shims it starts inherit them). An option the user
/// set is kept, and its presence ends the loop. `MIMALLOC_ALLOW_THP=0` would do too, but through
/// `PR_SET_THP_DISABLE`, which every container started below the engine would inherit.
fn reexec_with_lean_allocator() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if LEAN_ALLOCATOR
        .iter()
        .any(|(key, _)| std::env::var_os(key).is_some())
    {
        return Ok(());
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "berth".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .envs(LEAN_ALLOCATOR)
        .exec();
    Err(err).context("re-execute the engine with its allocator options")
}

/// Run the daemon in the foreground until SIGTERM/SIGINT. Builds its own tokio runtime.
pub fn run(roots: EngineRoots, settings: EngineSettings) -> anyhow::Result<()> {
    reexec_with_lean_allocator()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-engine")
        .build()
        .context("start the engine's async runtime")?;
    runtime.block_on(serve_until_signal(roots, settings))
}

/// Create a directory (and parents) and give it `mode`, whatever the umask.
fn make_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on {}", path.display()))
}

/// Take the run root's single-instance lock and record our PID in it.
fn lock_run_root(roots: &EngineRoots) -> anyhow::Result<Flock<File>> {
    let pid_path = roots.engine_pid_file();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&pid_path)
        .with_context(|| format!("open {}", pid_path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "another berth engine (pid {}) is already running on run root {}; stop it first or \
                 use another --run-root",
                pid.trim(),
                roots.run_root.display()
            );
        }
        Err((_, errno)) => {
            return Err(std::io::Error::from(errno))
                .with_context(|| format!("lock {}", pid_path.display()))
        }
    };
    lock.set_len(0)?;
    lock.rewind()?;
    writeln!(lock, "{}", std::process::id())?;
    lock.sync_all()?;
    Ok(lock)
}

fn open_engine(roots: &EngineRoots, settings: EngineSettings) -> anyhow::Result<Engine> {
    let images = ImageStore::open(roots).context("open the image store")?;
    let containers = ContainerStore::open(roots).context("open the container store")?;
    let networks = NetworkManager::open(roots).context("open the network manager")?;
    let volumes = VolumeStore::open(roots).context("open the volume store")?;
    let events = crate::engine::events::EventBus::new();
    Ok(Engine {
        roots: roots.clone(),
        settings,
        images,
        containers,
        networks,
        volumes,
        events,
    })
}

/// Bring the engine's view back in line with the machine after a restart or crash, and start the
/// background work that lives as long as the daemon.
///
/// Networks come first (bridges and NAT rules of networks on disk), because reattached containers
/// need them; then containers: reattach to running shims and record exits that happened while
/// the engine was down.
async fn restore_state(engine: &SharedEngine) -> anyhow::Result<()> {
    for problem in engine.networks.restore().await {
        eprintln!("berth engine: network restore: {problem}");
    }
    let revive = engine
        .restore_containers()
        .await
        .context("reattach to running containers")?;
    let watcher = engine.clone();
    tokio::spawn(async move { watcher.process_container_exits().await });
    let starter = engine.clone();
    tokio::spawn(async move { starter.start_containers_at_engine_start(revive).await });
    Ok(())
}

/// Bind the API socket. A socket file left by a crashed engine is removed: holding the run root's
/// lock proves that no engine serves it any more.
fn bind_socket(roots: &EngineRoots) -> anyhow::Result<UnixListener> {
    let path = roots.socket_path();
    match std::fs::remove_file(&path) {
        Ok(()) => eprintln!("berth engine: removed stale socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale socket {}", path.display())),
    }
    let listener = bind_private(&path).with_context(|| format!("listen on {}", path.display()))?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener).with_context(|| format!("listen on {}", path.display()))
}

/// The mode the API socket is created with: root and the socket's group, as Docker's.
const SOCKET_MODE: u32 = 0o660;

/// Binds a UNIX socket that is never wider than `SOCKET_MODE`, not even between `bind` and a
/// `chmod`: it is created under a umask that leaves only those bits. The umask is per process,
/// so the bind runs on a thread of its own that first unshares its file-system attributes
/// (`CLONE_FS`): the daemon's other threads keep their umask while this one is changed.
fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            !SOCKET_MODE & 0o777,
        ));
        std::os::unix::net::UnixListener::bind(&path)
    })
    .join()
    .map_err(|_| std::io::Error::other("the socket-binding thread panicked"))?
}

async fn serve_until_signal(roots: EngineRoots, settings: EngineSettings) -> anyhow::Result<()> {
    make_dir(&roots.data_root, 0o700)?;
    // The run root holds the socket: traversable (not listable) so the socket's own mode decides.
    make_dir(&roots.run_root, 0o711)?;
    let lock = lock_run_root(&roots)?;
    // Request bodies spooled by an engine that died mid-request are garbage now.
    let spool = super::api::server::spool_dir(&roots);
    if spool.exists() {
        std::fs::remove_dir_all(&spool).with_context(|| format!("empty {}", spool.display()))?;
    }
    let engine: SharedEngine = Arc::new(open_engine(&roots, settings)?);
    restore_state(&engine)
        .await
        .context("restore engine state")?;

    let listener = bind_socket(&roots)?;
    let settler = spawn_snapshot_settler(engine.clone());
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    eprintln!(
        "berth engine: pid {} serving the API on {} (data root {})",
        std::process::id(),
        roots.socket_path().display(),
        roots.data_root.display()
    );
    let shutdown = async move {
        let which = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        eprintln!("berth engine: {which} received, shutting down (containers keep running)");
    };
    super::api::server::serve(listener, engine.clone(), shutdown).await;
    settler.abort();
    // Veths of containers stopped just before go in the background: let them finish.
    engine.networks.settle().await;
    // Snapshots are committed unsynced; one sync now spares their re-unpack after a reboot.
    if let Err(e) = engine.images.settle_snapshots() {
        eprintln!("berth engine: syncing snapshots: {e}");
    }

    let _ = std::fs::remove_file(roots.socket_path());
    // Unlink the pid file while still holding the lock, so no other engine can be fooled by it.
    let _ = std::fs::remove_file(roots.engine_pid_file());
    drop(lock);
    eprintln!("berth engine: stopped");
    Ok(())
}

/// How often a running engine makes the snapshots it committed unsynced durable. Without it a
/// long-lived engine would keep every snapshot since its start at risk of a re-unpack after a
/// machine crash; with it at most this much recent work is, and no pull or build waits for a sync.
const SNAPSHOT_SETTLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Settles unsynced snapshots in the background every [`SNAPSHOT_SETTLE_INTERVAL`] (a directory
/// listing when there are none).
fn spawn_snapshot_settler(engine: SharedEngine) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SNAPSHOT_SETTLE_INTERVAL);
        tick.tick().await; // the first tick is immediate: nothing is unsynced yet
        loop {
            tick.tick().await;
            let images = engine.clone();
            let settled = tokio::task::spawn_blocking(move || images.images.settle_snapshots());
            match settled.await {
                Ok(Err(e)) => eprintln!("berth engine: syncing snapshots: {e}"),
                Err(e) => eprintln!("berth engine: syncing snapshots: {e}"),
                Ok(Ok(())) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_socket_is_born_with_mode_0660_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        // Worst case: a daemon started with umask 0 (a plain bind would give 0777). Set on a
        // thread of its own so that other tests keep theirs.
        let p = path.clone();
        let (listener, umask_after) = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            let l = bind_private(&p).unwrap();
            let after = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            (l, after)
        })
        .join()
        .unwrap();
        // Right after bind, before anything else could chmod it.
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o660, "{mode:o}");
        // The caller's umask was left alone.
        assert_eq!(umask_after.bits(), 0);
        drop(listener);
    }
}
