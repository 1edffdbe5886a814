//! COPY and ADD: the step's image is mounted as an overlay (its layers' snapshots as lower dirs,
//! a fresh upper) in a private mount namespace that only one short-lived thread lives in, the
//! selected sources are written as a tar, and berth's hardened extractor applies that tar at the
//! destination resolved inside the image's root. The thread's exit takes the namespace and its
//! mounts with it, so nothing leaks even when the copy fails half way; the upper directory is
//! then the new layer.

use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use thiserror::Error;

use super::context::{self, ContextError, Scope, Source};
use crate::engine::runtime::in_root::{ContainerRoot, KernelFs};
use crate::engine::runtime::user;
use crate::engine::unpack::{apply_tar, decompressed, UnpackError, UnpackLimits};

#[derive(Debug, Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] ContextError),
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    MultipleToFile,
    #[error("--chown={spec}: {reason}")]
    Chown { spec: String, reason: String },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing to {dest}: {source}")]
    Apply {
        dest: String,
        #[source]
        source: UnpackError,
    },
    #[error("destination {dest}: {reason}")]
    Destination { dest: String, reason: String },
    #[error("the copy thread ended without an answer")]
    Thread,
}

type Result<T> = std::result::Result<T, CopyError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CopyError {
    let what = what.into();
    move |source| CopyError::Io { what, source }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> CopyError {
    let what = what.into();
    move |source| CopyError::Sys { what, source }
}

/// Where COPY takes its sources from.
#[derive(Debug, Clone)]
pub enum SourceRoot {
    /// The build context directory.
    Context(PathBuf),
    /// `--from`: an image (a stage's result), by its layers' snapshot dirs, topmost first.
    Image(Vec<PathBuf>),
}

/// One COPY/ADD step, fully substituted.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// A fresh directory for this step (`build/<id>/steps/<n>`).
    pub step_dir: PathBuf,
    /// The step image's layers' snapshot dirs, topmost first.
    pub lowers: Vec<PathBuf>,
    pub from: SourceRoot,
    pub patterns: Vec<String>,
    pub dest: String,
    pub workdir: String,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    /// ADD: local tar archives are extracted at the destination.
    pub add: bool,
}

/// Where the sources land: a directory in the image's root, and for a single file copied to
/// a file name, that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub dir: String,
    pub file_name: Option<String>,
}

/// Docker's destination rules: relative to WORKDIR; a trailing `/` (or an existing directory)
/// means "into"; several sources need a directory written with its `/`.
pub fn destination(
    dest: &str,
    workdir: &str,
    sources: &[Source],
    is_dir_in_image: bool,
) -> Result<Destination> {
    let into = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let absolute = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    let clean = context::clean_components(&absolute).unwrap_or_default();
    let dir = format!("/{}", clean.join("/"));
    if sources.len() > 1 && !into && !is_dir_in_image {
        return Err(CopyError::MultipleToFile);
    }
    let single_file = sources.len() == 1 && !sources[0].is_dir;
    match clean.split_last() {
        Some((name, parent)) if single_file && !into && !is_dir_in_image => Ok(Destination {
            dir: format!("/{}", parent.join("/")),
            file_name: Some(name.clone()),
        }),
        _ => Ok(Destination {
            dir,
            file_name: None,
        }),
    }
}

/// `http://` and `https://` sources: berth's builder is offline-only for now.
pub fn is_remote_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Runs the copy on a thread of its own (it changes its mount namespace and working directory)
/// and returns the upper directory holding the diff. Blocking.
pub fn copy_layer(plan: CopyPlan) -> Result<PathBuf> {
    let handle = std::thread::Builder::new()
        .name("berth-build-copy".into())
        .spawn(move || in_private_namespace(&plan))
        .map_err(io("spawn the copy thread"))?;
    handle.join().map_err(|_| CopyError::Thread)?
}

fn in_private_namespace(plan: &CopyPlan) -> Result<PathBuf> {
    // CLONE_FS first: a thread shares its fs struct (cwd, root) with the process, and the
    // kernel refuses CLONE_NEWNS to a task that shares it.
    nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare the copy thread's mount namespace"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the copy thread's mounts private"))?;
    let merged = mount_overlay(&plan.step_dir, &plan.lowers, true)?;
    let result = copy_in(plan, &merged);
    // The namespace dies with the thread anyway; unmounting now makes the upper directory
    // quiescent before the caller moves it into the snapshot store.
    let _ = nix::mount::umount2(&plan.step_dir.join("src/merged"), MntFlags::MNT_DETACH);
    unmount_when_idle(&merged)?;
    result.map(|_| plan.step_dir.join("upper"))
}

/// How long an unmount waits for a busy overlay before it detaches it lazily.
const UNMOUNT_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Unmounts the copy overlay. The copy's files were opened close-on-exec in the process-wide
/// fd table, so a shim that another engine thread forks at that moment holds copies of them
/// until its exec, and the unmount finds the mount busy (EBUSY). That lasts microseconds: wait
/// for it, and detach lazily if it does not end, since everything the copy wrote is in `upper/`.
fn unmount_when_idle(merged: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + UNMOUNT_BUSY_WAIT;
    loop {
        match nix::mount::umount2(merged, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(nix::errno::Errno::EBUSY) => {
                return nix::mount::umount2(merged, MntFlags::MNT_DETACH)
                    .map_err(sys("detach the busy copy overlay"));
            }
            other => return other.map_err(sys("unmount the copy overlay")),
        }
    }
}

/// Mounts an overlay of `lowers` under `dir` (`l/<i>` links keep the options short), writable
/// with `upper/` + `work/`, or read-only; returns the mount point.
fn mount_overlay(dir: &Path, lowers: &[PathBuf], writable: bool) -> Result<PathBuf> {
    let links = dir.join("l");
    for sub in ["l", "upper", "work", "merged", "empty"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(io(format!("create {sub} in {}", dir.display())))?;
    }
    let mut lower: Vec<String> = Vec::new();
    for (i, l) in lowers.iter().enumerate() {
        std::os::unix::fs::symlink(l, links.join(i.to_string()))
            .map_err(io(format!("link lower dir {}", l.display())))?;
        lower.push(format!("l/{i}"));
    }
    // overlayfs needs one lower dir with an upper and two without: the empty dir is both.
    lower.push("empty".into());
    let mut data = format!("lowerdir={}", lower.join(":"));
    if writable {
        data.push_str(",upperdir=upper,workdir=work,index=off");
    }
    std::env::set_current_dir(dir).map_err(io(format!("chdir {}", dir.display())))?;
    let flags = if writable {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    nix::mount::mount(
        Some("overlay"),
        "merged",
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(sys(format!("mount the overlay in {}", dir.display())))?;
    Ok(dir.join("merged"))
}

/// Selects the sources, resolves the destination in the mounted root and applies them.
fn copy_in(plan: &CopyPlan, merged: &Path) -> Result<()> {
    let (root, scope) = match &plan.from {
        SourceRoot::Context(dir) => (dir.clone(), Scope::Context),
        SourceRoot::Image(lowers) => (
            mount_overlay(&plan.step_dir.join("src"), lowers, false)?,
            Scope::Image,
        ),
    };
    let mut selected: Vec<(Source, String)> = Vec::new();
    for p in &plan.patterns {
        for s in context::select(&root, p, scope)? {
            selected.push((s, p.clone()));
        }
    }
    let sources: Vec<Source> = selected.iter().map(|(s, _)| s.clone()).collect();
    let in_root = ContainerRoot::at(merged).map_err(|e| CopyError::Destination {
        dest: plan.dest.clone(),
        reason: e.to_string(),
    })?;
    let probe = destination(&plan.dest, &plan.workdir, &sources, false)?;
    let existing_dir = probe.file_name.is_some()
        && in_root
            .open_path(&plan.dest_path(&probe), libc::O_DIRECTORY, KernelFs::Refuse)
            .is_ok();
    let dest = destination(&plan.dest, &plan.workdir, &sources, existing_dir)?;
    let owner = owner(merged, plan.chown.as_deref())?;
    let dir_fd = in_root
        .mkdir_all(&dest.dir, 0o755, KernelFs::Refuse)
        .map_err(|e| CopyError::Destination {
            dest: dest.dir.clone(),
            reason: e.to_string(),
        })?;
    let real = std::fs::read_link(format!("/proc/thread-self/fd/{}", dir_fd.as_raw_fd()))
        .map_err(io("locate the destination directory"))?;
    let writer = TarPlan {
        root: &root,
        scope,
        owner,
        chmod: plan.chmod,
        file_name: dest.file_name.as_deref(),
    };
    for (src, pattern) in &selected {
        if plan.add && !src.is_dir && is_archive(&root.join(&src.rel))? {
            extract_archive(&root.join(&src.rel), &real, &dest.dir)?;
            continue;
        }
        let tar_path = plan.step_dir.join("copy.tar");
        writer.write(src, pattern, &tar_path)?;
        apply(&tar_path, &real, &dest.dir)?;
    }
    Ok(())
}

impl CopyPlan {
    /// The destination as a path in the root (before deciding whether it is a directory).
    fn dest_path(&self, d: &Destination) -> String {
        match &d.file_name {
            Some(name) => format!("{}/{name}", d.dir.trim_end_matches('/')),
            None => d.dir.clone(),
        }
    }
}

/// `--chown`: names resolve in the image's /etc/passwd and /etc/group; a user alone gives the
/// group of the same number, as Docker documents.
fn owner(root: &Path, chown: Option<&str>) -> Result<(u32, u32)> {
    let Some(spec) = chown else {
        return Ok((0, 0));
    };
    let bad = |reason: String| CopyError::Chown {
        spec: spec.to_string(),
        reason,
    };
    let resolved = user::resolve(root, spec).map_err(|e| bad(e.to_string()))?;
    if spec.contains(':') {
        Ok((resolved.uid, resolved.gid))
    } else {
        Ok((resolved.uid, resolved.uid))
    }
}

/// How selected sources become tar entries.
struct TarPlan<'a> {
    root: &'a Path,
    scope: Scope,
    owner: (u32, u32),
    chmod: Option<u32>,
    /// A single file copied to this name.
    file_name: Option<&'a str>,
}

impl TarPlan<'_> {
    fn write(&self, src: &Source, pattern: &str, out: &Path) -> Result<()> {
        let file = std::fs::File::create(out).map_err(io(format!("create {}", out.display())))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(file));
        for entry in context::walk(self.root, src, pattern, self.scope)? {
            let name = if src.is_dir {
                entry.rel.clone()
            } else {
                let base = src.rel.file_name().map(PathBuf::from).unwrap_or_default();
                self.file_name.map(PathBuf::from).unwrap_or(base)
            };
            self.append(
                &mut b,
                &context::entry_path(self.root, src, &entry),
                &name,
                &entry.meta,
            )?;
        }
        b.into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .map_err(io("write the copy tar"))
    }

    fn append<W: std::io::Write>(
        &self,
        b: &mut tar::Builder<W>,
        path: &Path,
        name: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_uid(self.owner.0 as u64);
        h.set_gid(self.owner.1 as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_mode(self.chmod.unwrap_or(meta.mode() & 0o7777));
        let ft = meta.file_type();
        let failed = io(format!("add {} to the copy", path.display()));
        if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = std::fs::read_link(path).map_err(io("read a symlink"))?;
            b.append_link(&mut h, name, target).map_err(failed)
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, name, std::io::empty())
                .map_err(failed)
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
            b.append_data(&mut h, name, f.take(meta.len()))
                .map_err(failed)
        } else {
            // Sockets, fifos and devices in a context are not content: Docker skips them too.
            Ok(())
        }
    }
}

fn apply(tar_path: &Path, real_dir: &Path, shown: &str) -> Result<()> {
    let mut f = std::fs::File::open(tar_path).map_err(io("open the copy tar"))?;
    apply_tar(&mut f, real_dir, &UnpackLimits::default()).map_err(|source| CopyError::Apply {
        dest: shown.to_string(),
        source,
    })?;
    Ok(())
}

/// A local file ADD extracts: a tar, plain or compressed as layers are (gzip, zstd).
fn is_archive(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(io("read an ADD source"))? {
            0 => break,
            k => n += k,
        }
    }
    let gzip = n >= 2 && head[..2] == [0x1f, 0x8b];
    let zstd = n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd];
    let tar = n == 512 && &head[257..262] == b"ustar";
    Ok(gzip || zstd || tar)
}

fn extract_archive(path: &Path, real_dir: &Path, shown: &str) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
    f.rewind().map_err(io("rewind an ADD source"))?;
    let mut stream = decompressed(f).map_err(io(format!("decompress {}", path.display())))?;
    apply_tar(&mut stream, real_dir, &UnpackLimits::default()).map_err(|source| {
        CopyError::Apply {
            dest: shown.to_string(),
            source,
        }
    })?;
    Ok(())
}

/// Makes the step directory readable only by root, as the snapshot store is: the upper
/// directory becomes a snapshot in place.
pub fn prepare_step_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("protect {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(rel: &str, is_dir: bool) -> Source {
        Source {
            rel: PathBuf::from(rel),
            is_dir,
        }
    }

    #[test]
    fn destinations_follow_dockers_rules() {
        let file = [src("a.c", false)];
        let d = destination("/app/x.c", "/", &file, false).unwrap();
        assert_eq!(
            (d.dir.as_str(), d.file_name.as_deref()),
            ("/app", Some("x.c"))
        );
        let d = destination("/app/", "/", &file, false).unwrap();
        assert_eq!((d.dir.as_str(), d.file_name), ("/app", None));
        let d = destination("/app", "/", &file, true).unwrap();
        assert_eq!(d.file_name, None);
        let d = destination(".", "/work", &file, false).unwrap();
        assert_eq!((d.dir.as_str(), d.file_name), ("/work", None));
        let d = destination("sub", "/work", &[src("dir", true)], false).unwrap();
        assert_eq!((d.dir.as_str(), d.file_name), ("/work/sub", None));
        let two = [src("a.c", false), src("b.c", false)];
        assert!(matches!(
            destination("/app", "/", &two, false),
            Err(CopyError::MultipleToFile)
        ));
        assert!(destination("/app/", "/", &two, false).is_ok());
    }

    #[test]
    fn archives_are_recognised_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        let txt = dir.path().join("x.tar");
        std::fs::write(&txt, "not a tar").unwrap();
        assert!(is_archive(&gz).unwrap());
        assert!(!is_archive(&txt).unwrap());
        assert!(is_remote_url("https://example.com/x.tgz"));
        assert!(!is_remote_url("x.tgz"));
    }
}
