//! `docker cp` in the engine: `HEAD`/`GET /containers/{id}/archive` (stat, tar of a path) and
//! `PUT` into a running or stopped container.
//!
//! Where the files are reached is [`archive_root`](super::archive_root)'s choice by state: a
//! running container through its init's root (the container lock is held only to read the
//! state: the copy must not block a stop), a stopped one through an overlay of its layers,
//! under the container lock for the whole copy so a start cannot mount the same upper
//! directory meanwhile. A container that never started keeps the upload path of
//! [`archive`](super::archive) (files bound read-only at start: compose's configs and secrets);
//! a read of a not-running container sees those files where its start will bind them.
//!
//! Uploads are extracted by the layer extractor (fd-relative, bounded), into the directory the
//! destination resolves to inside the container, with `.wh.` names kept as plain files.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};

use super::archive::MAX_ARCHIVE_BYTES;
use super::archive_root::{
    io_err, link_target, locate, reopen, with_root, ArchiveError, ContainerPath, Located,
    OverlayBind, OverlayRoot, RootAccess,
};
use super::archive_stat::{go_file_mode, rfc3339, PathStat};
use super::mounts::MountSource;
use super::state::{ContainerRecord, Status};
use super::ContainerError;
use crate::engine::unpack::{apply_tar_at, ApplyOptions, UnpackLimits, Whiteouts};
use crate::engine::Engine;

type Result<T> = std::result::Result<T, ArchiveError>;

/// Docker's `PUT` query flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// `noOverwriteDirNonDir`: a directory is never replaced by a file or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// `copyUIDGID`: everything is owned by the container's user (`docker cp -a`).
    pub copy_uid_gid: bool,
}

/// Bytes per chunk of a `GET` stream, and chunks in flight.
const CHUNK: usize = 64 << 10;
const CHUNKS_IN_FLIGHT: usize = 8;

/// Caps on one upload into a container: the content is further capped by the free space of
/// the destination's file system.
fn upload_limits() -> UnpackLimits {
    UnpackLimits {
        max_entries: 1_000_000,
        max_pending_dirs: 200_000,
        max_pending_dir_bytes: 64 << 20,
        max_total_bytes: 64 << 30,
        ..UnpackLimits::default()
    }
}

/// The stream of a `GET`: tar bytes, or the error that cut it short.
pub type ArchiveStream = mpsc::Receiver<io::Result<Bytes>>;

/// How one request reaches the container, and the lock it holds meanwhile (stopped ones).
struct Access {
    record: ContainerRecord,
    status: Status,
    root: RootAccess,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Engine {
    async fn archive_access(&self, id_or_name: &str, writable: bool) -> Result<Access> {
        let id = self.containers.resolve_id(id_or_name)?;
        let guard = self.containers.lock(&id).await;
        let record = self.containers.load_record(&id)?;
        let state = self.containers.state(&id);
        if state.status == Status::Running {
            return Ok(Access {
                record,
                status: state.status,
                root: RootAccess::Process(state.init),
                _guard: None,
            });
        }
        let image = self
            .images
            .resolve(&record.image_id)
            .ok_or_else(|| ContainerError::NoSuchImage(record.request.image.clone()))?;
        let lowers = self
            .images
            .lower_dirs(&image)
            .map_err(|e| ContainerError::Other(e.to_string()))?;
        let dir = self.containers.dir(&id);
        let scratch = dir.join("archive");
        // Left by an engine that died mid-copy: only links and empty mount points (the mount
        // was in a namespace that died with it).
        let _ = std::fs::remove_dir_all(&scratch);
        let upper = Some(dir.join("upper")).filter(|u| u.is_dir());
        let binds = self.overlay_binds(&record)?;
        // A read sees the files copied in before the first start, as the container will; a
        // write goes to the layers (it never reaches those files: they are read-only binds).
        let copied = if writable {
            Vec::new()
        } else {
            (self.containers.copied_mounts(&id).into_iter())
                .map(|m| OverlayBind {
                    source: m.source,
                    destination: m.destination,
                    read_only: true,
                })
                .collect()
        };
        Ok(Access {
            record,
            status: state.status,
            root: RootAccess::Overlay(OverlayRoot {
                scratch,
                lowers,
                upper,
                work: dir.join("work"),
                writable,
                binds,
                copied,
            }),
            _guard: Some(guard),
        })
    }

    /// The container's volumes and bind mounts with their host sources (tmpfs mounts have no
    /// content while it is stopped).
    fn overlay_binds(&self, record: &ContainerRecord) -> Result<Vec<OverlayBind>> {
        let planned = super::mounts::plan(
            record.request.host_config.as_ref(),
            &record.anonymous_volumes,
        )?;
        let mut binds = Vec::new();
        for m in planned {
            let source = match &m.source {
                MountSource::HostPath(p) => p.clone(),
                MountSource::Volume(name) => match self.volumes.mountpoint(name) {
                    Ok(p) => p,
                    Err(_) => continue, // never created: the container never started
                },
                MountSource::Tmpfs(_) => continue,
            };
            binds.push(OverlayBind {
                source,
                destination: m.destination,
                read_only: m.read_only,
            });
        }
        Ok(binds)
    }

    /// `HEAD /containers/{id}/archive`: the stat of `path`.
    pub async fn stat_container_path(&self, id_or_name: &str, path: &str) -> Result<PathStat> {
        let path = ContainerPath::parse(path)?;
        let access = self.archive_access(id_or_name, false).await?;
        let who = access.record.name.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _held = access._guard;
            with_root(access.root, move |root| {
                let found = locate(root, &path, false, &who)?;
                Ok(path_stat(root, &path, &found))
            })
        });
        task.await.map_err(|e| ArchiveError::Io {
            what: "archive task".into(),
            source: io::Error::other(e),
        })?
    }

    /// `GET /containers/{id}/archive`: the stat of `path`, then its tar as it is written.
    pub async fn container_archive(
        &self,
        id_or_name: &str,
        path: &str,
    ) -> Result<(PathStat, ArchiveStream)> {
        let path = ContainerPath::parse(path)?;
        let access = self.archive_access(id_or_name, false).await?;
        let who = access.record.name.clone();
        let (stat_tx, stat_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let fail = tx.clone();
        tokio::task::spawn_blocking(move || {
            let _held = access._guard;
            let done = with_root(access.root, move |root| {
                let found = match locate(root, &path, false, &who) {
                    Ok(found) => found,
                    Err(e) => {
                        let _ = stat_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = stat_tx.send(Ok(path_stat(root, &path, &found)));
                let name = archive_name(&path);
                let mut out = ChannelWriter::new(tx);
                super::archive_tar::write_tree(&mut out, &found, &name)?;
                out.flush().map_err(io_err("send the archive"))
            });
            if let Err(e) = done {
                // The status went out already: the stream ends with the error.
                let _ = fail.blocking_send(Err(io::Error::other(e.to_string())));
            }
        });
        let stat = stat_rx.await.map_err(|_| ArchiveError::Io {
            what: "archive task".into(),
            source: io::Error::other("ended before it found the path"),
        })??;
        Ok((stat, rx))
    }

    /// `PUT /containers/{id}/archive`: extract the tar in `body` into directory `path`.
    pub async fn extract_into_container<S, E>(
        &self,
        id_or_name: &str,
        path: &str,
        body: S,
        options: PutOptions,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display,
    {
        let target = ContainerPath::parse(path)?;
        let access = self.archive_access(id_or_name, true).await?;
        let never_started = access.status == Status::Created
            && !matches!(&access.root, RootAccess::Overlay(o) if o.upper.is_some());
        if never_started {
            drop(access);
            let tar = collect(body, MAX_ARCHIVE_BYTES + (64 << 10)).await?;
            return Ok(self.put_container_archive(id_or_name, path, tar).await?);
        }
        let read_only =
            (access.record.request.host_config.as_ref()).is_some_and(|h| h.readonly_rootfs);
        if read_only && access.status != Status::Running {
            // Running, the kernel answers for each path (a volume below may be writable);
            // stopped, berth would write the upper directory the container never may.
            return Err(ArchiveError::BadRequest(format!(
                "container {} rootfs is marked read-only",
                access.record.name
            )));
        }
        let user = options.copy_uid_gid.then(|| access.record.user.clone());
        let who = access.record.name.clone();
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
        let task = tokio::task::spawn_blocking(move || {
            let _held = access._guard;
            with_root(access.root, move |root| {
                let found = locate(root, &target, true, &who)?;
                extract(root, &found, &target, rx, options, user.as_deref())
            })
        });
        pump(body, tx).await;
        task.await.map_err(|e| ArchiveError::Io {
            what: "archive task".into(),
            source: io::Error::other(e),
        })?
    }
}

/// The name of the archive's top entry: the path's last component, or `.` for a directory's
/// contents (`/dir/.`, as Docker names them) and for the root.
fn archive_name(path: &ContainerPath) -> String {
    match path.components.last() {
        Some(base) if !path.contents => base.clone(),
        _ => ".".into(),
    }
}

fn path_stat(root: &OwnedFd, path: &ContainerPath, found: &Located) -> PathStat {
    let st = &found.stat;
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    PathStat {
        name: path.base().to_string(),
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: rfc3339(st.st_mtime, st.st_mtime_nsec),
        link_target: if is_link {
            link_target(root, path)
        } else {
            String::new()
        },
    }
}

/// The body of a `PUT` into the extraction thread, chunk by chunk (the extractor reads what
/// it needs; a failed extraction drops the receiver and the rest is not read).
async fn pump<S, E>(mut body: S, tx: mpsc::Sender<io::Result<Bytes>>)
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(chunk) = body.next().await {
        let item = chunk.map_err(|e| io::Error::other(format!("reading the upload: {e}")));
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

async fn collect<S, E>(mut body: S, limit: usize) -> Result<Bytes>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut all = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ArchiveError::BadRequest(format!("reading the upload: {e}")))?;
        if all.len() + chunk.len() > limit {
            return Err(ArchiveError::TooLarge(format!(
                "archive over {limit} bytes: berth copies that much at most into a container \
                 that has not started yet"
            )));
        }
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}

/// Extracts into the located directory, as the container's user if asked.
fn extract(
    root: &OwnedFd,
    found: &Located,
    target: &ContainerPath,
    rx: mpsc::Receiver<io::Result<Bytes>>,
    options: PutOptions,
    user: Option<&str>,
) -> Result<()> {
    if found.stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(ArchiveError::BadRequest(format!(
            "extraction point is not a directory: {}",
            target.absolute()
        )));
    }
    let owner = match user {
        Some(spec) => Some(container_user(root, spec)?),
        None => None,
    };
    let dir = reopen(&found.fd, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(io_err(format!("open {}", target.absolute())))?;
    let mut limits = upload_limits();
    limits.max_total_bytes = limits.max_total_bytes.min(free_bytes(&dir));
    // Across mounts: a volume below the destination is part of the container's own view.
    let apply = ApplyOptions {
        whiteouts: Whiteouts::Plain,
        cross_mounts: true,
        owner,
        no_overwrite_dir_non_dir: options.no_overwrite_dir_non_dir,
        rebase: None,
    };
    let mut reader = ChannelReader::new(rx);
    apply_tar_at(&mut reader, dir, &limits, apply)?;
    Ok(())
}

/// The container user's uid and gid, from its own passwd and group files.
fn container_user(root: &OwnedFd, spec: &str) -> Result<(u32, u32)> {
    let root_path = std::path::PathBuf::from(format!("/proc/thread-self/fd/{}", root.as_raw_fd()));
    let user = crate::engine::runtime::user::resolve(&root_path, spec)
        .map_err(|e| ArchiveError::BadRequest(format!("copyUIDGID: {e}")))?;
    Ok((user.uid, user.gid))
}

/// Free bytes of the file system under `dir` (unknown: no extra cap).
fn free_bytes(dir: &OwnedFd) -> u64 {
    match nix::sys::statvfs::fstatvfs(dir) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()),
        Err(_) => u64::MAX,
    }
}

/// The blocking side of an upload (also the CLI's side of a download).
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The blocking side of a download (also the CLI's side of an upload): chunks of [`CHUNK`]
/// bytes.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        // The client hung up: stop walking.
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}
