//! The layer stage of a pull. Every missing layer is fetched and unpacked in one streaming pass —
//! download → copy into the content store's ingest (hashing the blob) → decompress → hash the
//! DiffID → extract — several layers at once, and their snapshots are committed bottom-up as each
//! one and the ones below it are ready, as containerd's unpacker does. A blob is committed only
//! once its size and digest check out, and its snapshot only after that: a bad blob leaves
//! neither behind.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use oci_spec::image::Descriptor;
use tokio::sync::{mpsc, OwnedMutexGuard};

use super::pull_context::{ProgressBacklog, PullContext};
use super::{status_msg, ImageError, ImageStore, Result, Rollback, UnpackJob};
use crate::engine::content::{ContentError, IngestWriter};
use crate::engine::snapshot::SnapshotStore;
use crate::engine::wire::{ProgressDetail, ProgressMessage};

/// Layers fetched and unpacked at once (dockerd downloads 3 at a time). Unpacking is CPU-bound,
/// so more would only interleave the same work; fewer would leave the network idle while a
/// large layer extracts.
const MAX_CONCURRENT_LAYERS: usize = 4;
/// Network chunks queued between a download and its unpacker. Few: a chunk can pin the whole
/// read buffer it was cut from, so a deep queue costs tens of megabytes per layer (measured:
/// 64 chunks gave the engine a 150 MB peak during a 177 MB pull), and the socket buffers
/// already absorb a slow write.
const CHUNKS_IN_FLIGHT: usize = 8;
/// A `Downloading` progress message every this many bytes.
const PROGRESS_EVERY: u64 = 512 * 1024;

/// One layer of the manifest, with what the config says about it.
pub(super) struct LayerTask<'a> {
    pub desc: &'a Descriptor,
    pub diff_id: &'a str,
    pub chain: &'a str,
    /// Short digest: the layer's ID in progress messages.
    pub id: String,
}

impl LayerTask<'_> {
    fn digest(&self) -> &str {
        self.desc.digest().as_ref()
    }
}

/// A snapshot being built; removed unless committed.
struct TmpSnapshot {
    store: SnapshotStore,
    path: Option<PathBuf>,
}

impl TmpSnapshot {
    fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a temporary snapshot has a path until committed")
    }

    /// Blocking: renames the tree to the chain id (unsynced: see `snapshot.rs`).
    fn commit(mut self, chain: &str) -> Result<()> {
        let path = self.path.take().expect("committed once");
        let committed = self.store.commit(&path, chain);
        if committed.is_err() {
            self.store.discard(&path);
        }
        committed.map(drop).map_err(ImageError::from)
    }
}

impl Drop for TmpSnapshot {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            self.store.discard(&p);
        }
    }
}

/// A layer ready for its snapshot to be committed.
struct Prepared {
    /// The layer's work lock: a concurrent pull of the same blob waits until the snapshot is
    /// committed, then finds it there.
    _work: OwnedMutexGuard<()>,
    unpacked: Option<Unpacked>,
}

struct Unpacked {
    tmp: TmpSnapshot,
    /// Bytes of file content.
    bytes: u64,
    /// The blob this pull downloaded and committed (a rollback removes it).
    new_blob: Option<String>,
}

impl ImageStore {
    /// Fetches and unpacks every layer whose snapshot is missing; returns the unpacked sizes by
    /// DiffID. On failure the remaining layers stop, and every blob and snapshot this stage
    /// committed is in `rollback`.
    pub(super) async fn fetch_layers(
        &self,
        cx: &PullContext<'_>,
        tasks: Vec<LayerTask<'_>>,
        rollback: &mut Rollback,
    ) -> Result<HashMap<String, u64>> {
        let mut todo = Vec::new();
        for task in tasks {
            if self.snapshots.exists(task.chain) {
                cx.send(status_msg("Already exists", Some(&task.id))).await;
            } else {
                cx.send(status_msg("Pulling fs layer", Some(&task.id)))
                    .await;
                todo.push(task);
            }
        }
        self.check_room(&cx.image, &todo)?;
        let cancel = Arc::new(AtomicBool::new(false));
        // A plain queue rather than a stream combinator: closures returning borrowing futures
        // make the pull's future not `Send` for every lifetime, which the server's spawn needs.
        let mut waiting = todo.iter();
        let mut prepared = FuturesOrdered::new();
        for task in waiting.by_ref().take(MAX_CONCURRENT_LAYERS) {
            prepared.push_back(self.prepare_layer(cx, task, &cancel));
        }
        let mut sizes = HashMap::new();
        let mut failure = None;
        let mut backlog = ProgressBacklog::default();
        // In layer order: a snapshot is committed after the ones below it. After a failure the
        // layers still in flight are cancelled and waited for, so nothing is committed behind
        // the rollback's back.
        while let Some((task, result)) = prepared.next().await {
            if let Some(next) = waiting.next() {
                prepared.push_back(self.prepare_layer(cx, next, &cancel));
            }
            let committed = match result {
                Ok(layer) => {
                    if let Some(blob) = layer.unpacked.as_ref().and_then(|u| u.new_blob.clone()) {
                        rollback.blobs.push(blob);
                    }
                    if failure.is_some() {
                        continue;
                    }
                    self.commit_pulled_layer(cx, task, layer, rollback, &mut sizes, &mut backlog)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                cancel.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
        }
        backlog.flush(cx).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(sizes),
        }
    }

    async fn commit_pulled_layer(
        &self,
        cx: &PullContext<'_>,
        task: &LayerTask<'_>,
        layer: Prepared,
        rollback: &mut Rollback,
        sizes: &mut HashMap<String, u64>,
        backlog: &mut ProgressBacklog,
    ) -> Result<()> {
        let Some(unpacked) = layer.unpacked else {
            // Another pull unpacked it while this one waited.
            backlog.post(cx, status_msg("Already exists", Some(&task.id)));
            return Ok(());
        };
        let chain = task.chain.to_string();
        let tmp = unpacked.tmp;
        tokio::task::spawn_blocking(move || tmp.commit(&chain))
            .await
            .map_err(|e| ImageError::Other(format!("snapshot commit task failed: {e}")))??;
        rollback.snapshots.push(task.chain.to_string());
        sizes.insert(task.diff_id.to_string(), unpacked.bytes);
        backlog.post(cx, status_msg("Pull complete", Some(&task.id)));
        Ok(())
    }

    /// Fetches (unless stored) and unpacks one layer into a temporary snapshot.
    async fn prepare_layer<'t>(
        &self,
        cx: &PullContext<'_>,
        task: &'t LayerTask<'t>,
        cancel: &Arc<AtomicBool>,
    ) -> (&'t LayerTask<'t>, Result<Prepared>) {
        (task, self.prepare(cx, task, cancel).await)
    }

    async fn prepare(
        &self,
        cx: &PullContext<'_>,
        task: &LayerTask<'_>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Prepared> {
        let stopped = || ImageError::Other("pull stopped after another layer failed".into());
        if cancel.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        let work = self.inflight.exclusive(task.digest()).await;
        if self.snapshots.exists(task.chain) {
            return Ok(Prepared {
                _work: work,
                unpacked: None,
            });
        }
        let tmp = TmpSnapshot {
            store: self.snapshots.clone(),
            path: Some(self.snapshots.prepare(task.chain)?),
        };
        let job = LayerJob {
            unpack: self.unpack_job(&cx.image, task.digest()),
            diff_id: task.diff_id.to_string(),
            tmp,
        };
        let unpacked = if self.content.contains(task.digest()) {
            let blob = self
                .content
                .open_blob(task.digest())
                .map_err(|source| cx.content_error(source))?;
            run_blocking(move || job.unpack_stored(blob)).await?
        } else {
            self.stream_layer(cx, task, job, cancel.clone()).await?
        };
        Ok(Prepared {
            _work: work,
            unpacked: Some(unpacked),
        })
    }

    /// Downloads a layer while a blocking task unpacks what arrives.
    async fn stream_layer(
        &self,
        cx: &PullContext<'_>,
        task: &LayerTask<'_>,
        job: LayerJob,
        cancel: Arc<AtomicBool>,
    ) -> Result<Unpacked> {
        let blob = self
            .content
            .writer(task.digest(), Some(task.desc.size()))
            .map_err(|source| cx.content_error(source))?;
        let (chunks, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let image = cx.image.clone();
        let unpacker = tokio::task::spawn_blocking(move || {
            job.unpack_download(ChunkReader::new(received), blob, &image, &cancel)
        });
        let downloaded = download(cx, task, chunks).await;
        let unpacked = unpacker
            .await
            .map_err(|e| ImageError::Other(format!("unpack task failed: {e}")))?;
        // A failed download also fails the unpacker (its stream ends early): the download's
        // error says what happened.
        downloaded?;
        let unpacked = unpacked?;
        cx.send(status_msg("Verifying Checksum", Some(&task.id)))
            .await;
        cx.send(status_msg("Download complete", Some(&task.id)))
            .await;
        cx.send(progress("Extracting", &task.id, task.desc.size()))
            .await;
        Ok(unpacked)
    }
}

fn progress(status: &str, id: &str, current_of: u64) -> ProgressMessage {
    ProgressMessage {
        status: Some(status.into()),
        id: Some(id.to_string()),
        progress_detail: Some(ProgressDetail {
            current: Some(current_of),
            total: Some(current_of),
        }),
        ..Default::default()
    }
}

/// Streams the blob's chunks to the unpacker, reporting progress; stops early (without error)
/// when the unpacker stopped reading.
async fn download(
    cx: &PullContext<'_>,
    task: &LayerTask<'_>,
    chunks: mpsc::Sender<Bytes>,
) -> Result<()> {
    let size = task.desc.size();
    let mut response = cx.client.blob(task.digest()).await?;
    let (mut done, mut reported) = (0u64, 0u64);
    while let Some(chunk) = cx.client.next_chunk(&mut response).await? {
        done += chunk.len() as u64;
        if chunks.send(chunk).await.is_err() {
            break;
        }
        if done - reported >= PROGRESS_EVERY || done == size {
            reported = done;
            let mut message = progress("Downloading", &task.id, done);
            if let Some(detail) = message.progress_detail.as_mut() {
                detail.total = Some(size);
            }
            cx.send(message).await;
        }
    }
    Ok(())
}

async fn run_blocking(
    work: impl FnOnce() -> Result<Unpacked> + Send + 'static,
) -> Result<Unpacked> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageError::Other(format!("unpack task failed: {e}")))?
}

/// The blocking half of one layer: unpack into `tmp`, check the DiffID.
struct LayerJob {
    unpack: UnpackJob,
    diff_id: String,
    tmp: TmpSnapshot,
}

impl LayerJob {
    fn unpack_stored(self, blob: impl Read) -> Result<Unpacked> {
        let stats = self.unpack.clone().run(blob, self.tmp.path())?;
        self.check_diff_id(&stats.diff_id)?;
        Ok(Unpacked {
            tmp: self.tmp,
            bytes: stats.bytes,
            new_blob: None,
        })
    }

    /// Unpacks the download while copying it into `blob`; commits the blob only when its size
    /// and digest, then the DiffID, check out. A blob that is wrong is reported as such even
    /// when it also broke the unpack: the rest of it is read to know.
    fn unpack_download(
        self,
        source: ChunkReader,
        blob: IngestWriter,
        image: &str,
        cancel: &AtomicBool,
    ) -> Result<Unpacked> {
        let content_error = |source| ImageError::Content {
            image: image.to_string(),
            source,
        };
        let mut tee = Tee {
            source,
            blob,
            refused: None,
        };
        let unpacked = self.unpack.clone().run(&mut tee, self.tmp.path());
        let drained = io::copy(&mut tee, &mut io::sink());
        if let Some(refused) = tee.refused.take() {
            return Err(content_error(refused));
        }
        tee.blob.verify().map_err(content_error)?;
        let stats = unpacked?;
        drained.map_err(|source| ImageError::Io {
            path: PathBuf::from("(layer download)"),
            source,
        })?;
        self.check_diff_id(&stats.diff_id)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(ImageError::Other(
                "pull stopped after another layer failed".into(),
            ));
        }
        let digest = tee.blob.commit().map_err(content_error)?;
        Ok(Unpacked {
            tmp: self.tmp,
            bytes: stats.bytes,
            new_blob: Some(digest),
        })
    }

    fn check_diff_id(&self, actual: &str) -> Result<()> {
        if actual == self.diff_id {
            return Ok(());
        }
        Err(ImageError::DiffIdMismatch {
            image: self.unpack.image.clone(),
            layer: self.unpack.layer.clone(),
            expected: self.diff_id.clone(),
            actual: actual.to_string(),
        })
    }
}

/// The download as a blocking reader: chunks from the async side, end of stream when it hangs up.
struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        ChunkReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Copies what the unpacker reads into the blob's ingest file. A write the ingest refuses (more
/// than the declared size) is kept to be reported as the blob's fault.
struct Tee {
    source: ChunkReader,
    blob: IngestWriter,
    refused: Option<ContentError>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        if let Err(e) = self.blob.write_chunk(&buf[..n]) {
            let message = e.to_string();
            self.refused.get_or_insert(e);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}
