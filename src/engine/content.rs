//! Content-addressed blob store: `content/ingest/` then an atomic rename into `content/blobs/sha256/`
//! after size and digest checks, so a crash leaves garbage, never a wrong blob.
//!
//! Every digest is validated (`sha256:` + 64 lowercase hex) before it becomes a path component.
//! Writers hash while they write, so a blob is read once from the network and never re-read to
//! be verified.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::reference::is_valid_digest;

#[derive(Debug, Error)]
pub enum ContentError {
    #[error("invalid digest {0:?}: expected sha256: followed by 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("blob {digest} is not in the content store")]
    NotFound { digest: String },
    #[error("digest mismatch: expected {expected}, got {actual} ({size} bytes); the data was corrupted or tampered with, nothing was stored")]
    DigestMismatch {
        expected: String,
        actual: String,
        size: u64,
    },
    #[error(
        "size mismatch for {digest}: expected {expected} bytes, got {actual}; nothing was stored"
    )]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is larger than its declared {limit} bytes; nothing was stored")]
    TooLarge { digest: String, limit: u64 },
    #[error("content store i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, ContentError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The store rooted at `EngineRoots::content_dir()`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating) the store and discards leftovers of interrupted writes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let store = ContentStore { root };
        let blobs = store.root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let ingest = store.ingest_dir();
        // Anything in ingest/ was never committed: a crash mid-write or a failed verification.
        // Only clear it when no other writer may be active, i.e. at open.
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(io_err(&ingest))?;
        }
        fs::create_dir_all(&ingest).map_err(io_err(&ingest))?;
        Ok(store)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where a committed blob lives. Fails for anything but a well-formed sha256 digest.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        if !is_valid_digest(digest) {
            return Err(ContentError::InvalidDigest(digest.to_string()));
        }
        Ok(self
            .root
            .join("blobs")
            .join("sha256")
            .join(&digest["sha256:".len()..]))
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Opens a committed blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound {
                    digest: digest.to_string(),
                }
            } else {
                ContentError::Io { path, source: e }
            }
        })
    }

    /// Reads a small committed blob (manifest, config) whole, at most `limit` bytes.
    pub fn read_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        if buf.len() as u64 > limit {
            return Err(ContentError::TooLarge {
                digest: digest.to_string(),
                limit,
            });
        }
        Ok(buf)
    }

    /// Stores `bytes` under their own digest (if `expected` is given, they must match it).
    pub fn write_blob(&self, bytes: &[u8], expected: Option<&str>) -> Result<String> {
        let digest = sha256_digest(bytes);
        let mut w = self.writer(expected.unwrap_or(&digest), Some(bytes.len() as u64))?;
        w.write_chunk(bytes)?;
        w.commit()?;
        Ok(digest)
    }

    /// A writer for a blob of known digest (and size, when known). Nothing is visible under
    /// `blobs/` until `commit` verifies both.
    pub fn writer(
        &self,
        expected_digest: &str,
        expected_size: Option<u64>,
    ) -> Result<IngestWriter> {
        let target = self.blob_path(expected_digest)?;
        let path = self.ingest_dir().join(format!(
            "{}-{}-{}",
            &expected_digest["sha256:".len()..],
            std::process::id(),
            INGEST_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(IngestWriter {
            file: Some(file),
            path,
            target,
            expected_digest: expected_digest.to_string(),
            expected_size,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// A writer whose digest is only known at the end (import of a local tarball).
    pub fn writer_unknown(&self) -> Result<IngestWriter> {
        // A placeholder digest that only names the ingest file; `commit_as_computed` replaces it.
        let mut w = self.writer(&format!("sha256:{}", "0".repeat(64)), None)?;
        w.expected_digest.clear();
        Ok(w)
    }

    /// Removes a committed blob (rollback of a failed pull, image removal).
    pub fn remove(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::Io { path, source: e }),
        }
    }

    /// Every committed blob digest.
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.root.join("blobs").join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            if let Some(n) = e.file_name().to_str() {
                out.push(format!("sha256:{n}"));
            }
        }
        Ok(out)
    }
}

/// An in-progress blob in `ingest/`. Dropped without `commit`, it removes its file.
pub struct IngestWriter {
    file: Option<File>,
    path: PathBuf,
    target: PathBuf,
    expected_digest: String,
    expected_size: Option<u64>,
    hasher: Sha256,
    written: u64,
}

impl IngestWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Digest of the bytes written so far.
    pub fn current_digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Checks what was written against the declared size and digest, without committing: a
    /// pull that streams a layer into its snapshot while downloading it decides with this
    /// whether a failure was the blob's fault.
    pub fn verify(&self) -> Result<()> {
        if self.expected_digest.is_empty() {
            return Ok(());
        }
        self.check(&self.current_digest())
    }

    fn check(&self, actual: &str) -> Result<()> {
        if let Some(size) = self.expected_size {
            if size != self.written {
                return Err(ContentError::SizeMismatch {
                    digest: self.expected_digest.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        if actual != self.expected_digest {
            return Err(ContentError::DigestMismatch {
                expected: self.expected_digest.clone(),
                actual: actual.to_string(),
                size: self.written,
            });
        }
        Ok(())
    }

    /// Verifies size and digest, fsyncs, and renames into `blobs/`. Returns the digest.
    pub fn commit(mut self) -> Result<String> {
        let actual = self.current_digest();
        if self.expected_digest.is_empty() {
            self.expected_digest = actual.clone();
            self.target = self.target.with_file_name(&actual["sha256:".len()..]);
        }
        self.check(&actual)?;
        let file = self.file.take().expect("commit consumes the writer");
        file.sync_all().map_err(io_err(&self.path))?;
        drop(file);
        fs::rename(&self.path, &self.target).map_err(io_err(&self.target))?;
        if let Some(dir) = self.target.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(actual)
    }
}

impl Write for IngestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.expected_size {
            if self.written + buf.len() as u64 > limit {
                return Err(io::Error::other(ContentError::TooLarge {
                    digest: self.expected_digest.clone(),
                    limit,
                }));
            }
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest writer already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl IngestWriter {
    fn write_all_checked(&mut self, buf: &[u8]) -> Result<()> {
        let path = self.path.clone();
        Write::write_all(self, buf).map_err(|e| match e.downcast::<ContentError>() {
            Ok(ce) => ce,
            Err(e) => ContentError::Io { path, source: e },
        })
    }

    /// Appends bytes; exceeding the declared size is an error (an endless stream cannot fill
    /// the disk).
    pub fn write_chunk(&mut self, buf: &[u8]) -> Result<()> {
        self.write_all_checked(buf)
    }
}

impl Drop for IngestWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let d = tempfile::tempdir().unwrap();
        let s = ContentStore::open(d.path().join("content")).unwrap();
        (d, s)
    }

    fn blob_count(s: &ContentStore) -> usize {
        s.list().unwrap().len()
    }

    fn ingest_count(s: &ContentStore) -> usize {
        fs::read_dir(s.ingest_dir()).unwrap().count()
    }

    #[test]
    fn verified_blob_is_committed() {
        let (_d, s) = store();
        let digest = s.write_blob(b"hello", None).unwrap();
        assert_eq!(digest, sha256_digest(b"hello"));
        assert!(s.contains(&digest));
        assert_eq!(s.read_blob(&digest, 100).unwrap(), b"hello");
        assert_eq!(ingest_count(&s), 0);
    }

    #[test]
    fn wrong_digest_or_size_stores_nothing() {
        let (_d, s) = store();
        let other = sha256_digest(b"other");
        let e = s.write_blob(b"hello", Some(&other)).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        let mut w = s.writer(&sha256_digest(b"hello"), Some(3)).unwrap();
        let e = w.write_chunk(b"hello").unwrap_err();
        assert!(
            e.to_string().contains("larger than its declared 3 bytes"),
            "{e}"
        );
        drop(w);
        let mut w = s.writer(&sha256_digest(b"hello"), Some(10)).unwrap();
        w.write_chunk(b"hello").unwrap();
        let e = w.commit().unwrap_err();
        assert!(e.to_string().contains("size mismatch"), "{e}");
        assert_eq!(blob_count(&s), 0);
        assert_eq!(ingest_count(&s), 0);
    }

    #[test]
    fn digests_that_could_escape_are_refused() {
        let (_d, s) = store();
        for bad in ["sha256:../../x", "sha256:ABC", "md5:00", "sha256:"] {
            assert!(matches!(
                s.blob_path(bad),
                Err(ContentError::InvalidDigest(_))
            ));
        }
    }

    #[test]
    fn unknown_digest_writer_commits_under_computed_digest() {
        let (_d, s) = store();
        let mut w = s.writer_unknown().unwrap();
        w.write_chunk(b"abc").unwrap();
        let d = w.commit().unwrap();
        assert_eq!(d, sha256_digest(b"abc"));
        assert!(s.contains(&d));
    }
}
