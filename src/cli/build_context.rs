//! The build context as the Docker CLI sends it to `POST /build`: a tar of the context directory
//! without what `.dockerignore` excludes, symlinks stored as symlinks (never followed, so nothing
//! outside the context is read), owners zeroed as the Docker CLI does, the Dockerfile and
//! `.dockerignore` always included. A Dockerfile outside the context, or compose's
//! `dockerfile_inline`, goes in under a reserved name the engine is told about (`dockerfile=`).
//!
//! The tar is written by a blocking thread into a bounded channel the request body drains, so a
//! context of gigabytes streams through a few hundred kilobytes of memory.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::engine::build::ignore::DockerIgnore;

/// The name a compose `dockerfile_inline` has in the context tar.
pub const INLINE_DOCKERFILE: &str = ".berth-dockerfile-inline";
/// The name a Dockerfile from outside the context directory has in the context tar.
pub const OUTSIDE_DOCKERFILE: &str = ".berth-dockerfile-outside";

/// Chunks of tar in flight between the writer thread and the request body (×64 KiB).
const CHANNEL_CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ContextError {
    #[error("build context {dir} does not exist")]
    Missing { dir: PathBuf },
    #[error("build context {dir} is not a directory")]
    NotADirectory { dir: PathBuf },
    #[error("cannot read Dockerfile {path}: {source}")]
    Dockerfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read .dockerignore in {dir}: {message}")]
    Ignore { dir: PathBuf, message: String },
    #[error("reading the build context at {path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sending the build context: {0}")]
    Send(String),
}

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A path inside the context, relative and `/`-separated.
    InContext(String),
    /// A file outside the context directory.
    Outside(PathBuf),
    /// Compose's `dockerfile_inline` text.
    Inline(String),
}

impl DockerfileSource {
    /// Compose's `dockerfile` (relative to the context, or absolute) and `dockerfile_inline`
    /// as a source. Decided lexically, as docker compose does: a path that leaves the context
    /// (`../Dockerfile`, an absolute path elsewhere) is sent under a reserved name.
    pub fn of(context: &Path, dockerfile: Option<&str>, inline: Option<&str>) -> Self {
        if let Some(text) = inline {
            return DockerfileSource::Inline(text.to_string());
        }
        let given = Path::new(dockerfile.unwrap_or("Dockerfile"));
        let full = lexical_join(context, given);
        match full.strip_prefix(lexical_join(context, Path::new(""))) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                DockerfileSource::InContext(rel.to_string_lossy().into_owned())
            }
            _ => DockerfileSource::Outside(full),
        }
    }

    /// The `dockerfile=` the engine is told: where the Dockerfile is in the tar.
    pub fn name_in_context(&self) -> &str {
        match self {
            DockerfileSource::InContext(rel) => rel,
            DockerfileSource::Outside(_) => OUTSIDE_DOCKERFILE,
            DockerfileSource::Inline(_) => INLINE_DOCKERFILE,
        }
    }
}

/// `base` joined with `rel`, with `.` and `..` resolved without touching the file system (a
/// symlinked context directory is not followed out of, as docker compose does not).
fn lexical_join(base: &Path, rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in base.join(rel).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Which context paths stay out of the tar: `.dockerignore` as the engine's matcher reads it.
pub trait Exclusions: Send + 'static {
    /// Whether `rel` (relative, `/`-separated) is excluded.
    fn excluded(&self, rel: &str, is_dir: bool) -> bool;
    /// Whether an excluded directory may still hold re-included (`!pattern`) paths, so it must
    /// be walked rather than skipped whole.
    fn may_reinclude_under(&self, rel_dir: &str) -> bool;
}

/// A context with no `.dockerignore`: everything goes in.
pub struct NothingExcluded;

impl Exclusions for NothingExcluded {
    fn excluded(&self, _: &str, _: bool) -> bool {
        false
    }
    fn may_reinclude_under(&self, _: &str) -> bool {
        false
    }
}

/// `.dockerignore` text as the context walk's exclusions (the engine's matcher, so the CLI and
/// `docker build` through berth's socket leave out the same paths).
pub fn ignore_file(text: &str) -> Result<Box<dyn Exclusions>, String> {
    DockerIgnore::parse(text)
        .map(|ignore| Box::new(ignore) as Box<dyn Exclusions>)
        .map_err(|e| e.to_string())
}

impl Exclusions for DockerIgnore {
    fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
        self.matches(rel)
    }
    fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        !self.can_skip_dir(rel_dir)
    }
}

/// One path of the context as the walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative, `/`-separated.
    pub rel: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
}

/// The paths of `dir` that go in the tar, in sorted order (a directory before what it holds):
/// never following symlinks; sockets, fifos and devices left out as the engine cannot use them;
/// `always` (the Dockerfile, `.dockerignore`) kept whatever `.dockerignore` says.
pub fn walk(
    dir: &Path,
    exclusions: &dyn Exclusions,
    always: &[&str],
) -> Result<Vec<ContextEntry>, ContextError> {
    let mut out = Vec::new();
    walk_into(dir, "", exclusions, always, &mut out)?;
    Ok(out)
}

fn walk_into(
    root: &Path,
    rel_dir: &str,
    exclusions: &dyn Exclusions,
    always: &[&str],
    out: &mut Vec<ContextEntry>,
) -> Result<(), ContextError> {
    let dir = root.join(rel_dir);
    let walk_err = |path: &Path, source| ContextError::Walk {
        path: path.to_path_buf(),
        source,
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| walk_err(&dir, e))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| walk_err(&dir, e))?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let rel = if rel_dir.is_empty() {
            name
        } else {
            format!("{rel_dir}/{name}")
        };
        let path = root.join(&rel);
        let file_type = fs::symlink_metadata(&path)
            .map_err(|e| walk_err(&path, e))?
            .file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_file() {
            EntryKind::File
        } else {
            continue;
        };
        let is_dir = kind == EntryKind::Directory;
        let kept = always.contains(&rel.as_str()) || !exclusions.excluded(&rel, is_dir);
        if kept {
            out.push(ContextEntry {
                rel: rel.clone(),
                kind,
            });
        }
        let holds_always = always.iter().any(|a| a.starts_with(&format!("{rel}/")));
        if is_dir && (kept || holds_always || exclusions.may_reinclude_under(&rel)) {
            walk_into(root, &rel, exclusions, always, out)?;
        }
    }
    Ok(())
}

/// A `Write` that hands full chunks to the request body's channel (blocking when it is full, so
/// memory stays bounded by the channel's capacity).
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// A context ready to send: its directory, its entries and the Dockerfile's source.
pub struct Context {
    pub dir: PathBuf,
    pub entries: Vec<ContextEntry>,
    pub dockerfile: DockerfileSource,
}

/// The tar of `context` as a stream of chunks, and the writer thread's handle (its error, if
/// any, says what went wrong better than the aborted request does).
pub fn stream(
    context: Context,
) -> (
    mpsc::Receiver<io::Result<Bytes>>,
    std::thread::JoinHandle<Result<(), ContextError>>,
) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let handle = std::thread::spawn(move || {
        let writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        let result = write_tar(&context, writer);
        if let Err(e) = &result {
            // Abort the request body so the engine never builds from a cut-short context.
            let _ = sender.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    (receiver, handle)
}

fn write_tar(context: &Context, writer: ChannelWriter) -> Result<(), ContextError> {
    let mut tar = tar::Builder::new(writer);
    for entry in &context.entries {
        append_entry(&mut tar, &context.dir, entry)?;
    }
    let extra = match &context.dockerfile {
        DockerfileSource::InContext(_) => None,
        DockerfileSource::Outside(path) => {
            Some(fs::read(path).map_err(|source| ContextError::Dockerfile {
                path: path.clone(),
                source,
            })?)
        }
        DockerfileSource::Inline(text) => Some(text.as_bytes().to_vec()),
    };
    let send_err = |e: io::Error| ContextError::Send(e.to_string());
    if let Some(content) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            context.dockerfile.name_in_context(),
            content.as_slice(),
        )
        .map_err(send_err)?;
    }
    let mut writer = tar.into_inner().map_err(send_err)?;
    writer.flush().map_err(send_err)
}

fn append_entry(
    tar: &mut tar::Builder<ChannelWriter>,
    root: &Path,
    entry: &ContextEntry,
) -> Result<(), ContextError> {
    let path = root.join(&entry.rel);
    let walk_err = |source| ContextError::Walk {
        path: path.clone(),
        source,
    };
    let meta = fs::symlink_metadata(&path).map_err(walk_err)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    // Owners as the Docker CLI sends them: root's, whoever owns the files here.
    header.set_uid(0);
    header.set_gid(0);
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    let sent = match entry.kind {
        EntryKind::Directory => {
            header.set_size(0);
            tar.append_data(&mut header, format!("{}/", entry.rel), io::empty())
        }
        EntryKind::Symlink => {
            let target = fs::read_link(&path).map_err(walk_err)?;
            header.set_size(0);
            tar.append_link(&mut header, &entry.rel, target)
        }
        EntryKind::File => {
            let file = fs::File::open(&path).map_err(walk_err)?;
            // A file that shrinks while it is read fails the append rather than padding silently.
            tar.append_data(&mut header, &entry.rel, file)
        }
    };
    sent.map_err(|e| ContextError::Send(format!("{}: {e}", entry.rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ExcludeNames(Vec<&'static str>, bool);

    impl Exclusions for ExcludeNames {
        fn excluded(&self, rel: &str, _: bool) -> bool {
            self.0.contains(&rel)
        }
        fn may_reinclude_under(&self, _: &str) -> bool {
            self.1
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/deep")).unwrap();
        fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join(".dockerignore"), "node_modules\nDockerfile\n").unwrap();
        fs::write(root.join("src/main.c"), "int main(){}\n").unwrap();
        fs::write(root.join("src/deep/x.h"), "").unwrap();
        fs::write(root.join("node_modules/pkg/index.js"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("src/link")).unwrap();
        dir
    }

    fn rels(entries: &[ContextEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.rel.as_str()).collect()
    }

    #[test]
    fn excluded_directories_are_skipped_whole_and_the_dockerfile_always_goes_in() {
        let dir = tree();
        let ignore = ExcludeNames(vec!["node_modules", "Dockerfile", ".dockerignore"], false);
        let entries = walk(dir.path(), &ignore, &["Dockerfile", ".dockerignore"]).unwrap();
        assert_eq!(
            rels(&entries),
            [
                ".dockerignore",
                "Dockerfile",
                "src",
                "src/deep",
                "src/deep/x.h",
                "src/link",
                "src/main.c"
            ]
        );
    }

    #[test]
    fn an_excluded_directory_with_possible_exceptions_is_walked() {
        let dir = tree();
        let ignore = ExcludeNames(vec!["node_modules"], true);
        let entries = walk(dir.path(), &ignore, &[]).unwrap();
        assert!(rels(&entries).contains(&"node_modules/pkg/index.js"));
        assert!(!rels(&entries).contains(&"node_modules"));
    }

    #[test]
    fn symlinks_are_entries_not_followed() {
        let dir = tree();
        let entries = walk(dir.path(), &NothingExcluded, &[]).unwrap();
        let link = entries.iter().find(|e| e.rel == "src/link").unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
    }

    #[test]
    fn dockerfile_location_decides_its_name_in_the_tar() {
        let ctx = Path::new("/p/app");
        assert_eq!(
            DockerfileSource::of(ctx, None, None),
            DockerfileSource::InContext("Dockerfile".into())
        );
        assert_eq!(
            DockerfileSource::of(ctx, Some("docker/Dockerfile.dev"), None),
            DockerfileSource::InContext("docker/Dockerfile.dev".into())
        );
        assert_eq!(
            DockerfileSource::of(ctx, Some("/p/app/./sub/../Dockerfile"), None),
            DockerfileSource::InContext("Dockerfile".into())
        );
        let outside = DockerfileSource::of(ctx, Some("../Dockerfile"), None);
        assert_eq!(outside, DockerfileSource::Outside("/p/Dockerfile".into()));
        assert_eq!(outside.name_in_context(), OUTSIDE_DOCKERFILE);
        let inline = DockerfileSource::of(ctx, Some("Dockerfile"), Some("FROM scratch"));
        assert_eq!(inline.name_in_context(), INLINE_DOCKERFILE);
    }

    #[test]
    fn dockerignore_exceptions_reach_into_excluded_directories() {
        let dir = tree();
        fs::write(dir.path().join("node_modules/pkg/LICENSE"), "").unwrap();
        let ignore = ignore_file("node_modules\n!node_modules/pkg/LICENSE\n**/*.h\n").unwrap();
        let entries = walk(dir.path(), ignore.as_ref(), &[]).unwrap();
        let found = rels(&entries);
        assert!(found.contains(&"node_modules/pkg/LICENSE"), "{found:?}");
        assert!(!found.contains(&"node_modules/pkg/index.js"), "{found:?}");
        assert!(!found.contains(&"src/deep/x.h"), "{found:?}");
        assert!(found.contains(&"src/main.c"), "{found:?}");
        assert!(ignore_file("!\n").is_err());
    }

    #[tokio::test]
    async fn the_tar_holds_the_entries_with_root_owners_and_the_reserved_dockerfile() {
        let dir = tree();
        let entries = walk(dir.path(), &NothingExcluded, &[]).unwrap();
        let context = Context {
            dir: dir.path().to_path_buf(),
            entries,
            dockerfile: DockerfileSource::Inline("FROM busybox\n".into()),
        };
        let (mut chunks, writer) = stream(context);
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            tar_bytes.extend_from_slice(&chunk.unwrap());
        }
        writer.join().unwrap().unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "src/link" {
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("/etc/passwd")
                );
            }
            seen.push(path);
        }
        assert!(seen.contains(&"src/main.c".to_string()), "{seen:?}");
        assert!(seen.contains(&"node_modules/pkg/index.js".to_string()));
        assert_eq!(seen.last().map(String::as_str), Some(INLINE_DOCKERFILE));
    }
}
