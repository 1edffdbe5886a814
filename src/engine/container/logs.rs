//! Logs: Docker's json-file format (written by the shim) and its reader for
//! `GET /containers/{id}/logs` (tail, since/until, timestamps, follow).

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

use super::state::Status;
use super::{ContainerStore, Result};
use crate::engine::runtime::json_log::{JsonLogLine, Rotation};
use crate::engine::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// A piece of output for the API's multiplexed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Prefix each line with its RFC 3339 time and a space.
    pub timestamps: bool,
    /// Only the last N lines (`None` = all).
    pub tail: Option<usize>,
    /// Lines logged before are skipped.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Lines logged after are skipped.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

fn chunk_of(line: &JsonLogLine, opts: &LogOptions) -> Option<LogChunk> {
    let stream = match line.stream.as_str() {
        "stdout" if opts.stdout => LogStream::Stdout,
        "stderr" if opts.stderr => LogStream::Stderr,
        _ => return None,
    };
    if opts.since.is_some() || opts.until.is_some() {
        let t = chrono::DateTime::parse_from_rfc3339(&line.time).ok()?;
        // Both ends inclusive, as Docker's json-file reader has them.
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t > u) {
            return None;
        }
    }
    let mut bytes = Vec::new();
    if opts.timestamps {
        bytes.extend_from_slice(line.time.as_bytes());
        bytes.push(b' ');
    }
    bytes.extend_from_slice(line.log.as_bytes());
    Some(LogChunk { stream, bytes })
}

/// Complete lines of `buf`, leaving a trailing partial line in it (the shim may be mid-write).
fn take_lines(buf: &mut Vec<u8>) -> Vec<JsonLogLine> {
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let complete: Vec<u8> = buf.drain(..=last_nl).collect();
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Attaches still streaming, per container: an auto-removed container (`docker run --rm`) is
/// removed only once they have sent everything, since removal deletes the log they read.
#[derive(Default)]
pub(crate) struct ActiveAttaches {
    count: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    changed: tokio::sync::Notify,
}

/// Held by an attach's pump while it streams.
struct AttachGuard {
    store: ContainerStore,
    id: String,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        let attaches = &self.store.inner.attaches;
        let mut count = attaches.count.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = count.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                count.remove(&self.id);
            }
        }
        attaches.changed.notify_waiters();
    }
}

impl ContainerStore {
    fn attach_guard(&self, id: &str) -> AttachGuard {
        let attaches = &self.inner.attaches;
        *attaches
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default() += 1;
        AttachGuard {
            store: self.clone(),
            id: id.to_string(),
        }
    }

    /// Wait (at most `limit`) until no attach of `id` is streaming.
    pub(crate) async fn until_attaches_done(&self, id: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let attaches = &self.inner.attaches;
            let woken = attaches.changed.notified();
            let active = attaches
                .count
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(id);
            if !active || tokio::time::Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), woken).await;
        }
    }
}

/// How often a followed log is read for new output when nothing woke the reader (the file
/// cannot be watched, or a write was missed): the floor under [`LogWatch`].
const FOLLOW_READ: Duration = Duration::from_millis(100);

/// Wakes a followed log's reader when the shim writes the file (inotify on it), so an attach
/// or `logs -f` gets output as it is logged rather than at the next poll. The shim is another
/// process (it outlives the engine), so the file is the one place both see.
///
/// All followers share one inotify instance (one watch per log file) read by one thread: the
/// kernel allows a user only 128 instances, which an instance per follower would spend on a
/// `logs -f` of a large project and take from other programs (a `berth watch`, editors).
struct LogWatch {
    wd: WatchDescriptor,
    /// Which watch of `wd` this is: the kernel may hand a dropped descriptor's number out again.
    watch_id: u64,
    written: watch::Receiver<u64>,
}

/// The engine's one inotify instance and, per watched log, the channel its writes are counted
/// on with how many followers use it.
struct LogWatches {
    inotify: Inotify,
    logs: Mutex<HashMap<WatchDescriptor, WatchedLog>>,
}

struct WatchedLog {
    watch_id: u64,
    writes: watch::Sender<u64>,
    followers: usize,
}

static NEXT_WATCH_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `None` when inotify cannot be had (no instance left): followers then poll.
static LOG_WATCHES: OnceLock<Option<LogWatches>> = OnceLock::new();

impl LogWatches {
    fn shared() -> Option<&'static LogWatches> {
        let watches: &'static LogWatches = LOG_WATCHES
            .get_or_init(|| {
                let inotify = Inotify::init(InitFlags::IN_CLOEXEC).ok()?;
                Some(LogWatches {
                    inotify,
                    logs: Mutex::new(HashMap::new()),
                })
            })
            .as_ref()?;
        static READER: std::sync::Once = std::sync::Once::new();
        READER.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("log-watch".into())
                .spawn(move || watches.read_forever());
            if spawned.is_err() {
                eprintln!("berth engine: cannot start the log watcher: followers poll");
            }
        });
        Some(watches)
    }

    /// Counts each write on its log's channel; a watch the kernel dropped (the file was
    /// removed) closes the channel, and its followers go back to polling.
    fn read_forever(&self) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("berth engine: log watcher stopped ({e}): followers poll");
                    self.logs.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    return;
                }
            };
            let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    logs.remove(&event.wd);
                } else if let Some(log) = logs.get(&event.wd) {
                    log.writes.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}

impl LogWatch {
    /// `None` when the file cannot be watched (not there yet, or no inotify): the reader then
    /// polls every [`FOLLOW_READ`].
    fn new(path: &std::path::Path) -> Option<Self> {
        let watches = LogWatches::shared()?;
        let wd = watches
            .inotify
            // A rotation renames (IN_MOVE_SELF) or unlinks (IN_ATTRIB) the file: the follower
            // wakes then too, to go on with the new file.
            .add_watch(
                path,
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_ATTRIB,
            )
            .ok()?;
        let mut logs = watches.logs.lock().unwrap_or_else(|p| p.into_inner());
        // The kernel gives a file watched twice the same descriptor: the followers share it.
        let log = logs.entry(wd).or_insert_with(|| WatchedLog {
            watch_id: NEXT_WATCH_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            writes: watch::Sender::new(0),
            followers: 0,
        });
        log.followers += 1;
        Some(Self {
            wd,
            watch_id: log.watch_id,
            written: log.writes.subscribe(),
        })
    }

    /// Until the file was written since the last call (a write between a read of the file and
    /// this wait is counted, so none is missed).
    async fn written(&mut self) {
        if self.written.changed().await.is_err() {
            // The watch is gone: the floor interval still reads the file.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        let Some(watches) = LOG_WATCHES.get().and_then(Option::as_ref) else {
            return;
        };
        let mut logs = watches.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs
            .get_mut(&self.wd)
            .filter(|log| log.watch_id == self.watch_id)
        {
            log.followers -= 1;
            if log.followers == 0 {
                logs.remove(&self.wd);
                let _ = watches.inotify.rm_watch(self.wd);
            }
        }
    }
}

/// When a followed log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FollowUntil {
    /// `logs -f`: once the container is not running.
    NotRunning,
    /// An attach: once the container has exited after the attach (whose `FinishedAt` then was
    /// this), so attaching to a created container waits for its start, as in Docker.
    NextExit { finished_before: String },
}

impl ContainerStore {
    /// Stream the container's log; with `follow`, until it has exited and the file is drained.
    pub fn logs(&self, id: &str, opts: LogOptions) -> Result<mpsc::Receiver<LogChunk>> {
        self.load_record(id)?;
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        let id = id.to_string();
        let path = self.log_path(&id);
        tokio::spawn(async move {
            let _ = store
                .pump_logs(&id, path, opts, FollowUntil::NotRunning, tx)
                .await;
        });
        Ok(rx)
    }

    /// The output of an attach (`docker run`, `docker start -a`): what the container writes
    /// from now on (plus the log so far with `logs`), until its next exit. The shim owns the
    /// container's stdio and writes it to the log file; an attach follows that file, so it
    /// works the same for a container started before or after the engine restarted.
    pub fn attach_output(
        &self,
        id: &str,
        stdout: bool,
        stderr: bool,
        logs: bool,
    ) -> Result<mpsc::Receiver<LogChunk>> {
        self.load_record(id)?;
        let until = FollowUntil::NextExit {
            finished_before: self.state(id).finished_at,
        };
        let path = self.log_path(id);
        // Without `logs`, only what is written after this call: start at the file's end.
        let tail = if logs { None } else { Some(0) };
        let opts = LogOptions {
            follow: true,
            stdout,
            stderr,
            tail,
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        let guard = self.attach_guard(id);
        let id = id.to_string();
        tokio::spawn(async move {
            let _ = store.pump_logs(&id, path, opts, until, tx).await;
            drop(guard);
        });
        Ok(rx)
    }

    /// Whether a followed log is complete: read before the file, so that after a "done" one
    /// more read drains what the shim wrote before recording the exit.
    fn follow_done(&self, id: &str, until: &FollowUntil) -> bool {
        let state = self.state(id);
        match until {
            FollowUntil::NotRunning => state.status != Status::Running,
            FollowUntil::NextExit { finished_before } => {
                state.status != Status::Running
                    && !state.finished_at.is_empty()
                    && state.finished_at != *finished_before
            }
        }
    }

    /// When a followed log is read again: once the shim wrote it (or after [`FOLLOW_READ`]),
    /// or as soon as a running container's shim exits (it records the exit first), so the end
    /// of a run reaches its attach without waiting out the interval.
    async fn next_read_due(&self, id: &str, watch: Option<&mut LogWatch>) {
        let interval = async {
            match watch {
                Some(watch) => {
                    let _ = tokio::time::timeout(FOLLOW_READ, watch.written()).await;
                }
                None => tokio::time::sleep(FOLLOW_READ).await,
            }
        };
        let state = self.state(id);
        // A running container whose shim is gone (killed) has nothing to announce its end.
        if state.status != Status::Running || !state.shim.alive() {
            return interval.await;
        }
        tokio::select! {
            _ = interval => {}
            _ = state.shim.exited() => {}
        }
    }

    async fn pump_logs(
        &self,
        id: &str,
        path: PathBuf,
        opts: LogOptions,
        until: FollowUntil,
        tx: mpsc::Sender<LogChunk>,
    ) -> std::io::Result<()> {
        let rotation = self
            .load_record(id)
            .map(|r| r.log_rotation())
            .unwrap_or_default();
        let mut reader = LogReader {
            path,
            rotation,
            current: None,
            pending: Vec::new(),
        };
        if opts.tail == Some(0) {
            // Only what comes next (an attach): from the end of the file being written.
            reader.start_at_end().await?;
        } else {
            // Read in pieces: a long log never sits in the engine's memory whole, only the
            // `tail` lines kept.
            let mut sink = match opts.tail {
                None => Sink::Client(&tx),
                Some(keep) => Sink::Tail {
                    keep,
                    last: VecDeque::new(),
                },
            };
            if reader.read_through(&mut sink, &opts).await?.0 == Reached::ClientGone {
                return Ok(());
            }
            if let Sink::Tail { last, .. } = sink {
                for c in last {
                    if tx.send(c).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if !opts.follow {
            return Ok(());
        }
        self.follow(id, reader, &opts, &until, &tx).await
    }

    /// The follow part of [`Self::pump_logs`]: what the shim writes from here on, across
    /// rotations, until `until`.
    async fn follow(
        &self,
        id: &str,
        mut reader: LogReader,
        opts: &LogOptions,
        until: &FollowUntil,
        tx: &mpsc::Sender<LogChunk>,
    ) -> std::io::Result<()> {
        let mut watch = None;
        let mut gap = ROTATION_GAP;
        loop {
            // Made before the read below, so a write after that read wakes the wait after it;
            // made again while the file is missing, and after a rotation (for the new file).
            if watch.is_none() {
                watch = LogWatch::new(&reader.path);
            }
            let done = self.follow_done(id, until);
            let (reached, moved_on) = reader.read_through(&mut Sink::Client(tx), opts).await?;
            if reached == Reached::ClientGone {
                return Ok(());
            }
            if moved_on {
                watch = None;
                continue;
            }
            if reached == Reached::Gap && !done && self.load_record(id).is_ok() {
                // Between a rotation's rename and its new file: a moment (longer each time,
                // up to the poll interval, if the shim could not make the file).
                tokio::time::sleep(gap).await;
                gap = (gap * 2).min(FOLLOW_READ);
                continue;
            }
            gap = ROTATION_GAP;
            if done || self.load_record(id).is_err() {
                return Ok(());
            }
            tokio::select! {
                _ = self.next_read_due(id, watch.as_mut()) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

/// A reader of a container's log across its rotations: the file it has open (kept open, so a
/// rotation loses nothing written to it after the last read) and what was read of it after
/// its last complete line.
struct LogReader {
    path: PathBuf,
    rotation: Rotation,
    current: Option<OpenLog>,
    pending: Vec<u8>,
}

/// How far [`LogReader::read_through`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// The end of the file being written.
    Current,
    /// The end of a rotated file, with nothing at the log's path yet (a rotation between its
    /// rename and its create).
    Gap,
    /// There is no log file at all.
    NoFile,
    /// The client went away.
    ClientGone,
}

impl LogReader {
    /// Skip what is there now: open the file being written at its end.
    async fn start_at_end(&mut self) -> std::io::Result<()> {
        if let Some(mut log) = OpenLog::open(&self.path).await {
            log.file.seek(SeekFrom::End(0)).await?;
            self.current = Some(log);
        }
        Ok(())
    }

    /// Reads the open file (or, with none open, the oldest there is: every file there is
    /// newer than the start of the read) and each file rotated after it, in the order they
    /// were written, into `sink`. Also says whether it moved on to another file.
    async fn read_through(
        &mut self,
        sink: &mut Sink<'_>,
        opts: &LogOptions,
    ) -> std::io::Result<(Reached, bool)> {
        if self.current.is_none() {
            self.current = first_file(&self.path, &self.rotation).await;
        }
        let mut moved_on = false;
        loop {
            let Some(log) = self.current.as_mut() else {
                return Ok((Reached::NoFile, moved_on));
            };
            if !drain(log, &mut self.pending, sink, opts).await? {
                return Ok((Reached::ClientGone, moved_on));
            }
            match next_file(&self.path, &self.rotation, Some(log.inode)).await {
                NextFile::Same => return Ok((Reached::Current, moved_on)),
                NextFile::Missing => return Ok((Reached::Gap, moved_on)),
                NextFile::Open(next) => {
                    // The shim wrote this file last before it rotated it: drain it, then go
                    // on with the one written after it.
                    if !drain(log, &mut self.pending, sink, opts).await? {
                        return Ok((Reached::ClientGone, moved_on));
                    }
                    self.current = Some(next);
                    moved_on = true;
                }
            }
        }
    }
}

/// How long a follower waits when the log's path is briefly missing during a rotation.
const ROTATION_GAP: Duration = Duration::from_millis(5);

/// Where the lines read go: to the client as they come, or (for `tail`) into the last N,
/// sent once the whole log is read.
enum Sink<'a> {
    Client(&'a mpsc::Sender<LogChunk>),
    Tail {
        keep: usize,
        last: VecDeque<LogChunk>,
    },
}

impl Sink<'_> {
    /// Takes the complete lines of `pending` that `opts` selects; false once the client is gone.
    async fn take(&mut self, pending: &mut Vec<u8>, opts: &LogOptions) -> bool {
        for line in take_lines(pending) {
            let Some(chunk) = chunk_of(&line, opts) else {
                continue;
            };
            match self {
                Sink::Client(tx) => {
                    if tx.send(chunk).await.is_err() {
                        return false;
                    }
                }
                Sink::Tail { keep: 0, .. } => {}
                Sink::Tail { keep, last } => {
                    if last.len() == *keep {
                        last.pop_front();
                    }
                    last.push_back(chunk);
                }
            }
        }
        true
    }
}

/// How much of a log file is read at a time.
const READ_PIECE: usize = 64 * 1024;

/// Reads what is left of `log`, a piece at a time, into `sink`; false once the client is gone.
async fn drain(
    log: &mut OpenLog,
    pending: &mut Vec<u8>,
    sink: &mut Sink<'_>,
    opts: &LogOptions,
) -> std::io::Result<bool> {
    loop {
        pending.reserve(READ_PIECE);
        let read = log.file.read_buf(pending).await?;
        if !sink.take(pending, opts).await {
            return Ok(false);
        }
        if read == 0 {
            return Ok(true);
        }
    }
}

/// Where a follower goes on after the file it has open.
enum NextFile {
    /// That file is still the one being written.
    Same,
    /// It was rotated: this is the file written after it.
    Open(OpenLog),
    /// It was rotated and nothing is there yet (between a rotation's rename and its create).
    Missing,
}

/// The oldest of the log's files there are.
async fn first_file(path: &std::path::Path, rotation: &Rotation) -> Option<OpenLog> {
    match next_file(path, rotation, None).await {
        NextFile::Open(log) => Some(log),
        NextFile::Same | NextFile::Missing => None,
    }
}

/// The file written after the one with inode `after`: the next newer file of the rotation, or
/// the oldest one there is when the follower fell so far behind that its file was dropped (or
/// when it has none, `after` being `None`). Opened and then checked against a rotation in
/// between, which would make it the wrong one.
async fn next_file(path: &std::path::Path, rotation: &Rotation, after: Option<u64>) -> NextFile {
    use std::os::unix::fs::MetadataExt;
    if after.is_some() && !rotation.rotates() {
        // The shim never replaces this log's file: nothing to look for on every read.
        return NextFile::Same;
    }
    let inode_at = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.ino());
    let chain = rotation.files_oldest_first(path);
    for _attempt in 0..3 {
        // One blocking task for the whole scan: a rotation while it runs would make it
        // inconsistent, so it is quick (and checked below anyway).
        let scan = chain.clone();
        let inodes: Vec<Option<u64>> =
            tokio::task::spawn_blocking(move || scan.iter().map(|p| inode_at(p)).collect())
                .await
                .unwrap_or_default();
        if inodes.len() != chain.len() {
            return NextFile::Missing;
        }
        let held = after.and_then(|inode| inodes.iter().position(|i| *i == Some(inode)));
        if held == Some(chain.len() - 1) {
            return NextFile::Same;
        }
        let from = held.map_or(0, |h| h + 1);
        let Some(next) = (from..chain.len()).find(|&i| inodes[i].is_some()) else {
            return NextFile::Missing;
        };
        let Some(log) = OpenLog::open(&chain[next]).await else {
            continue;
        };
        let still_in_place = match held {
            Some(h) => inode_at(&chain[h]) == after,
            None => true,
        };
        if still_in_place && Some(log.inode) == inodes[next] {
            return NextFile::Open(log);
        }
    }
    NextFile::Missing
}

/// A log file a follower keeps open, so that a rotation loses nothing written to it after
/// the last read.
struct OpenLog {
    file: tokio::fs::File,
    inode: u64,
}

impl OpenLog {
    async fn open(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let file = tokio::fs::File::open(path).await.ok()?;
        let inode = file.metadata().await.ok()?.ino();
        Some(Self { file, inode })
    }
}

impl Engine {
    /// See [`ContainerStore::attach_output`].
    pub fn attach_container_output(
        &self,
        id: &str,
        stdout: bool,
        stderr: bool,
        logs: bool,
    ) -> Result<mpsc::Receiver<LogChunk>> {
        self.containers.attach_output(id, stdout, stderr, logs)
    }

    pub async fn container_logs(
        &self,
        id_or_name: &str,
        opts: LogOptions,
    ) -> Result<mpsc::Receiver<LogChunk>> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.logs(&id, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let mut buf = br#"{"log":"a\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}
{"log":"b\n","stre"#
            .to_vec();
        let lines = take_lines(&mut buf);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].log, "a\n");
        assert_eq!(buf, br#"{"log":"b\n","stre"#.to_vec());
    }

    #[test]
    fn streams_and_timestamps_are_applied() {
        let line = JsonLogLine {
            log: "x\n".into(),
            stream: "stderr".into(),
            time: "2026-01-01T00:00:00.5Z".into(),
        };
        let opts = LogOptions {
            stdout: true,
            ..Default::default()
        };
        assert_eq!(chunk_of(&line, &opts), None);
        let opts = LogOptions {
            stderr: true,
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            chunk_of(&line, &opts).unwrap().bytes,
            b"2026-01-01T00:00:00.5Z x\n".to_vec()
        );
    }

    #[tokio::test]
    async fn a_long_log_is_read_in_pieces_and_tail_keeps_only_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let text: String = (0..20_000)
            .map(|i| {
                format!(
                    "{{\"log\":\"line {i}\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}}\n"
                )
            })
            .collect();
        assert!(text.len() > 20 * READ_PIECE);
        std::fs::write(&path, &text).unwrap();
        let opts = LogOptions {
            stdout: true,
            tail: Some(2),
            ..Default::default()
        };
        let mut sink = Sink::Tail {
            keep: 2,
            last: VecDeque::new(),
        };
        let mut pending = Vec::new();
        let mut log = OpenLog::open(&path).await.unwrap();
        assert!(drain(&mut log, &mut pending, &mut sink, &opts)
            .await
            .unwrap());
        let Sink::Tail { last, .. } = sink else {
            unreachable!()
        };
        let lines: Vec<String> = last
            .into_iter()
            .map(|c| String::from_utf8(c.bytes).unwrap())
            .collect();
        assert_eq!(lines, ["line 19998\n", "line 19999\n"]);
        assert!(
            pending.capacity() <= 4 * READ_PIECE,
            "read whole: {} bytes buffered",
            pending.capacity()
        );
    }

    #[tokio::test]
    async fn a_watched_log_wakes_its_reader_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        assert!(LogWatch::new(&path).is_none(), "nothing to watch yet");
        std::fs::write(&path, "").unwrap();
        let mut watch = LogWatch::new(&path).expect("watch the log");
        // Nothing written: no wake-up.
        let quiet = tokio::time::timeout(Duration::from_millis(50), watch.written()).await;
        assert!(quiet.is_err());
        // A write (as the shim appends) before the wait is not missed.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{}\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.written())
            .await
            .expect("woken by the write");
    }
}
