//! The walk over an upper directory that emits its tar: one directory at a time through file
//! descriptors (`openat` with `O_NOFOLLOW`, `fstatat` with `AT_SYMLINK_NOFOLLOW`), so a symlink
//! the container planted is recorded as a symlink and never followed, and names sorted
//! bytewise so the same tree always gives the same tar.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};

use super::tar::{self, Header, Kind};
use super::{LayerError, Result};

/// The prefix of overlayfs' private attributes: markers of the upper layer, not file content.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Markers of content that stays in the lower layers (a renamed directory, a metadata-only
/// copy-up): an upper directory holding them is not a complete diff.
const INDIRECT_XATTRS: &[&str] = &["trusted.overlay.redirect", "trusted.overlay.metacopy"];
/// Docker's (and the OCI layer spec's) whiteout names.
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Bounds shared with the unpacker: a tree it would refuse is refused here first.
const MAX_DEPTH: usize = 512;
const MAX_PATH_BYTES: usize = 4096;
/// Names plus values of one file's xattrs (Linux caps one value at 64 KiB).
const MAX_XATTR_BYTES: usize = 256 << 10;

/// What the walk wrote.
#[derive(Debug, Default, Clone)]
pub struct WalkStats {
    pub entries: u64,
    /// Bytes of regular-file content (what `docker images` counts for the layer).
    pub content_bytes: u64,
    /// Excluded mount-point stubs found empty and left out, relative paths.
    pub skipped_stubs: Vec<Vec<u8>>,
    /// Directories that carry overlayfs-private xattrs besides the opaque marker, and files
    /// that do: relative paths (the caller moving the tree into the snapshot store strips them).
    pub overlay_private: Vec<Vec<u8>>,
}

pub struct Walker<'w> {
    out: &'w mut dyn Write,
    exclude: HashSet<Vec<u8>>,
    /// First path seen of every inode with more than one link: later ones become hard links.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: WalkStats,
    buf: Vec<u8>,
}

fn io_at(path: &[u8]) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: String::from_utf8_lossy(path).into_owned(),
        source,
    }
}

fn nix_at(path: &[u8]) -> impl FnOnce(nix::Error) -> LayerError + '_ {
    move |e| io_at(path)(io::Error::from(e))
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn file_type(st: &FileStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

impl<'w> Walker<'w> {
    /// `exclude`: relative paths (no leading `/`) to leave out when they are empty stubs.
    pub fn new(out: &'w mut dyn Write, exclude: HashSet<Vec<u8>>) -> Self {
        Walker {
            out,
            exclude,
            links: HashMap::new(),
            stats: WalkStats::default(),
            buf: vec![0; 256 << 10],
        }
    }

    /// Writes the entries of the tree under `root` (not `root` itself) and the end-of-archive
    /// blocks.
    pub fn run(mut self, root: &OwnedFd) -> Result<WalkStats> {
        self.walk_dir(root, b"", 0)?;
        self.out
            .write_all(&tar::END_OF_ARCHIVE)
            .map_err(LayerError::Write)?;
        Ok(self.stats)
    }

    fn walk_dir(&mut self, dir: &OwnedFd, rel: &[u8], depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(LayerError::Limit(format!(
                "{} is nested deeper than {MAX_DEPTH} directories",
                String::from_utf8_lossy(rel)
            )));
        }
        for name in sorted_names(dir, rel)? {
            let path = join(rel, name.as_bytes());
            if path.len() > MAX_PATH_BYTES {
                return Err(LayerError::Limit(format!(
                    "a path longer than {MAX_PATH_BYTES} bytes under {}",
                    String::from_utf8_lossy(rel)
                )));
            }
            let st = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(nix_at(&path))?;
            if self.exclude.contains(&path) && is_empty_stub(dir, &name, &st, &path)? {
                self.stats.skipped_stubs.push(path);
                continue;
            }
            self.entry(dir, &name, &path, &st, depth)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        path: &[u8],
        st: &FileStat,
        depth: usize,
    ) -> Result<()> {
        let xattrs = read_xattrs(dir, name, path)?;
        if let Some((key, _)) = xattrs
            .iter()
            .find(|(k, _)| INDIRECT_XATTRS.contains(&k.as_str()))
        {
            return Err(LayerError::OverlayIndirection {
                path: String::from_utf8_lossy(path).into_owned(),
                xattr: key.clone(),
            });
        }
        let opaque = xattrs
            .iter()
            .any(|(k, v)| k == OPAQUE_XATTR && v.as_slice() == b"y");
        if xattrs
            .iter()
            .any(|(k, _)| k.starts_with(OVERLAY_XATTR_PREFIX) && k != OPAQUE_XATTR)
        {
            self.stats.overlay_private.push(path.to_vec());
        }
        let kept: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.starts_with(OVERLAY_XATTR_PREFIX))
            .collect();
        let mut header = Header {
            path: path.to_vec(),
            kind: Kind::Dir,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            xattrs: kept,
        };
        match file_type(st) {
            libc::S_IFDIR => self.directory(dir, name, header, opaque, depth),
            libc::S_IFCHR if st.st_rdev == 0 => self.whiteout(header),
            libc::S_IFREG => self.regular(dir, name, header, st),
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(nix_at(path))?;
                header.kind = Kind::Symlink {
                    target: target.as_bytes().to_vec(),
                };
                self.linkable(header, st).map(drop)
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                let (major, minor) = (u64::from(major), u64::from(minor));
                header.kind = if file_type(st) == libc::S_IFCHR {
                    Kind::Char { major, minor }
                } else {
                    Kind::Block { major, minor }
                };
                self.linkable(header, st).map(drop)
            }
            libc::S_IFIFO => {
                header.kind = Kind::Fifo;
                self.linkable(header, st).map(drop)
            }
            // A socket is a live endpoint, not content; Docker leaves them out too.
            _ => Ok(()),
        }
    }

    fn emit(&mut self, header: &Header) -> Result<()> {
        self.stats.entries += 1;
        self.out
            .write_all(&tar::encode(header))
            .map_err(LayerError::Write)
    }

    /// The directory, then its opaque marker (so an extractor meets the directory first), then
    /// its children.
    fn directory(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        mut header: Header,
        opaque: bool,
        depth: usize,
    ) -> Result<()> {
        let path = header.path.clone();
        header.path.push(b'/');
        self.emit(&header)?;
        if opaque {
            // As Docker writes it: an empty file with the directory's owner, mode and time.
            let marker = Header {
                path: join(&path, OPAQUE_MARKER.as_bytes()),
                kind: Kind::File { size: 0 },
                xattrs: Vec::new(),
                ..header
            };
            self.emit(&marker)?;
        }
        let child = open_dir(dir, name).map_err(nix_at(&path))?;
        self.walk_dir(&child, &path, depth + 1)
    }

    /// An overlay whiteout (char device 0/0) hides the lower file: `.wh.<name>`, an empty file.
    /// Never a hard link, though overlayfs links every whiteout to one shared inode.
    fn whiteout(&mut self, header: Header) -> Result<()> {
        let (parent, base) = match header.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&header.path[..i], &header.path[i + 1..]),
            None => (&b""[..], &header.path[..]),
        };
        let mut marked = WHITEOUT_PREFIX.as_bytes().to_vec();
        marked.extend_from_slice(base);
        let whiteout = Header {
            path: join(parent, &marked),
            kind: Kind::File { size: 0 },
            mode: 0o600,
            xattrs: Vec::new(),
            ..header
        };
        self.emit(&whiteout)
    }

    /// A second name of an inode already written becomes a hard link to the first.
    fn linkable(&mut self, mut header: Header, st: &FileStat) -> Result<bool> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                header.kind = Kind::HardLink {
                    target: first.clone(),
                };
                header.xattrs.clear();
                self.emit(&header)?;
                return Ok(true);
            }
            self.links.insert(key, header.path.clone());
        }
        if !matches!(header.kind, Kind::File { .. }) {
            self.emit(&header)?;
        }
        Ok(false)
    }

    fn regular(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        mut header: Header,
        st: &FileStat,
    ) -> Result<()> {
        header.kind = Kind::File {
            size: st.st_size as u64,
        };
        if self.linkable(header.clone(), st)? {
            return Ok(());
        }
        let path = header.path.clone();
        let file = open_same_file(dir, name, st).map_err(io_at(&path))?;
        self.emit(&header)?;
        let size = st.st_size as u64;
        self.copy_content(std::fs::File::from(file), size, &path)?;
        self.stats.content_bytes += size;
        Ok(())
    }

    /// Exactly `size` bytes, as the header promised: a file that shrank while it was read is
    /// padded with zeros and one that grew is cut, so the tar stays well-formed.
    fn copy_content(&mut self, file: std::fs::File, size: u64, path: &[u8]) -> Result<()> {
        let mut reader = file.take(size);
        let mut done = 0u64;
        loop {
            let n = reader.read(&mut self.buf).map_err(io_at(path))?;
            if n == 0 {
                break;
            }
            self.out
                .write_all(&self.buf[..n])
                .map_err(LayerError::Write)?;
            done += n as u64;
        }
        let mut rest = (size - done) as usize + tar::padding(size);
        while rest > 0 {
            let n = rest.min(self.buf.len());
            self.buf[..n].fill(0);
            self.out
                .write_all(&self.buf[..n])
                .map_err(LayerError::Write)?;
            rest -= n;
        }
        Ok(())
    }
}

/// Opens the regular file `fstatat` described. A running container may have swapped it for
/// something else since: `O_NONBLOCK` keeps a FIFO put in its place from blocking the commit,
/// and the inode is checked to be the one described.
fn open_same_file(dir: &OwnedFd, name: &CStr, st: &FileStat) -> io::Result<OwnedFd> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let now = nix::sys::stat::fstat(&fd)?;
    if file_type(&now) != libc::S_IFREG || now.st_ino != st.st_ino || now.st_dev != st.st_dev {
        return Err(io::Error::other(
            "the file was replaced while the layer was being written",
        ));
    }
    Ok(fd)
}

fn open_dir(dir: &OwnedFd, name: &CStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names in `dir`, sorted bytewise (`.` and `..` left out).
fn sorted_names(dir: &OwnedFd, rel: &[u8]) -> Result<Vec<CString>> {
    let fd = dir.try_clone().map_err(io_at(rel))?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(nix_at(rel))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(nix_at(rel))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// An empty regular file or an empty directory: what a runtime leaves behind as a mount point.
fn is_empty_stub(dir: &OwnedFd, name: &CStr, st: &FileStat, path: &[u8]) -> Result<bool> {
    match file_type(st) {
        libc::S_IFREG => Ok(st.st_size == 0),
        libc::S_IFDIR => {
            let child = open_dir(dir, name).map_err(nix_at(path))?;
            Ok(sorted_names(&child, path)?.is_empty())
        }
        _ => Ok(false),
    }
}

/// The path of `name` in `dir` through procfs, for the `l*xattr` calls (which have no `*at`
/// form and must not follow a final symlink).
fn proc_path(dir: &OwnedFd, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("a directory entry name has no NUL")
}

/// Every extended attribute of `name`, sorted by attribute name.
fn read_xattrs(dir: &OwnedFd, name: &CStr, path: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let target = proc_path(dir, name);
    let list = xattr_call(path, |buf| unsafe {
        libc::llistxattr(target.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for key in list.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key).expect("split at NUL");
        let value = xattr_call(path, |buf| unsafe {
            libc::lgetxattr(
                target.as_ptr(),
                ckey.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })?;
        total += key.len() + value.len();
        if total > MAX_XATTR_BYTES {
            return Err(LayerError::Limit(format!(
                "{} has more than {MAX_XATTR_BYTES} bytes of extended attributes",
                String::from_utf8_lossy(path)
            )));
        }
        let key = String::from_utf8_lossy(key).into_owned();
        out.push((key, value));
    }
    out.sort();
    Ok(out)
}

/// Runs a size-then-fill xattr call, growing the buffer if the value grew in between.
fn xattr_call(path: &[u8], call: impl Fn(&mut [u8]) -> libc::ssize_t) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = call(&mut buf);
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < 2 * MAX_XATTR_BYTES => {
                let want = call(&mut []).max(0) as usize;
                buf.resize(want.max(buf.len() * 2), 0);
            }
            // No xattrs on this file system (tmpfs without user xattrs, …): nothing to keep.
            Some(libc::ENOTSUP) | Some(libc::ENODATA) => return Ok(Vec::new()),
            _ => return Err(io_at(path)(err)),
        }
    }
}

/// Relative, slash-joined forms of the caller's exclusions (`/etc/hosts` → `etc/hosts`).
pub fn exclusion_set(exclude: &[std::path::PathBuf]) -> HashSet<Vec<u8>> {
    exclude
        .iter()
        .map(|p| {
            let parts: Vec<&[u8]> = p
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(OsStr::as_bytes(n)),
                    _ => None,
                })
                .collect();
            parts.join(&b'/')
        })
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file a running container swaps for a FIFO between the look and the open must not hang
    /// the commit, nor be read as the file described.
    #[test]
    fn a_file_swapped_for_a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"data").unwrap();
        let dir = OwnedFd::from(std::fs::File::open(tmp.path()).unwrap());
        let st = fstatat(&dir, c"f", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert!(open_same_file(&dir, c"f", &st).is_ok());
        std::fs::remove_file(tmp.path().join("f")).unwrap();
        nix::unistd::mkfifo(&tmp.path().join("f"), Mode::from_bits_truncate(0o644)).unwrap();
        let err = open_same_file(&dir, c"f", &st).unwrap_err();
        assert!(err.to_string().contains("replaced"), "{err}");
    }

    #[test]
    fn exclusions_are_relative_slash_joined_paths() {
        let set = exclusion_set(&[
            "/etc/hosts".into(),
            "dev/shm/".into(),
            "/".into(),
            "./proc".into(),
        ]);
        let mut v: Vec<String> = set
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        v.sort();
        assert_eq!(v, ["dev/shm", "etc/hosts", "proc"]);
    }
}
