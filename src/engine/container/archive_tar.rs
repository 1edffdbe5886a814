//! `GET /containers/{id}/archive`: a container path written as a tar stream while it is walked.
//!
//! The walk is fd-relative from the located path: each child is opened by its single name
//! beneath its parent's fd with `O_PATH | O_NOFOLLOW` and no symlink resolution, checked with
//! `fstat`, and only then opened again for reading through that same inode, so a container
//! swapping a file for a symlink or a device mid-walk cannot make the engine read elsewhere.
//! Symlinks are stored, never followed; device nodes and FIFOs become headers and are never
//! opened; procfs and sysfs mounts inside the tree are listed but not descended into. Nothing is
//! buffered beyond one chunk: the output is a `Write` the caller streams.
//!
//! Names are written verbatim (GNU long-name records when over 100 bytes), not through the tar
//! crate's path normalisation: Docker names a directory's contents `./a`, and the Docker CLI
//! renames entries by replacing that leading `.`.

use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::archive_root::{fstat, io_err, on_kernel_fs, read_link, reopen, ArchiveError, Located};

type Result<T> = std::result::Result<T, ArchiveError>;

/// Directory levels below the copied path; deeper trees are refused rather than recursed into
/// without bound (each level holds an fd).
const MAX_DEPTH: usize = 256;

/// Writes `found` as a tar named `name` (`.` for a directory's contents, Docker's `/.`), and
/// everything below it, to `out`.
pub fn write_tree(out: impl Write, found: &Located, name: &str) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut walk = Walk { tar: &mut tar };
    walk.entry(&found.fd, &found.stat, name, 0)?;
    tar.finish().map_err(io_err("finish the archive"))
}

/// `value` cut to the field, NUL-padded.
fn copy_field(field: &mut [u8], value: &str) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

struct Walk<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
}

fn header_for(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// A ustar name field holds 100 bytes; longer names and link targets go in GNU records.
const NAME_FIELD: usize = 100;

impl<W: Write> Walk<'_, W> {
    /// One entry named `name` exactly as given (and a link target), with its data.
    fn append(
        &mut self,
        h: &mut tar::Header,
        name: &str,
        link: Option<&str>,
        data: impl Read,
    ) -> io::Result<()> {
        self.long_record(name, tar::EntryType::GNULongName)?;
        copy_field(&mut h.as_old_mut().name, name);
        if let Some(link) = link {
            self.long_record(link, tar::EntryType::GNULongLink)?;
            copy_field(&mut h.as_old_mut().linkname, link);
        }
        h.set_cksum();
        self.tar.append(h, data)
    }

    /// GNU's `././@LongLink` record carrying `value` whole, when it does not fit its field.
    fn long_record(&mut self, value: &str, kind: tar::EntryType) -> io::Result<()> {
        if value.len() <= NAME_FIELD {
            return Ok(());
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        copy_field(&mut h.as_old_mut().name, "././@LongLink");
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.tar.append(&h, data.as_slice())
    }

    fn entry(&mut self, fd: &OwnedFd, st: &libc::stat, name: &str, depth: usize) -> Result<()> {
        let written = io_err(format!("write {name} to the archive"));
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => self.directory(fd, st, name, depth),
            libc::S_IFREG => self.file(fd, st, name),
            libc::S_IFLNK => {
                let target = read_link(fd).map_err(io_err(format!("read link {name}")))?;
                let mut h = header_for(st, tar::EntryType::Symlink);
                self.append(&mut h, name, Some(&target), io::empty())
                    .map_err(written)
            }
            kind @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                let entry = match kind {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = header_for(st, entry);
                if kind != libc::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))
                        .and_then(|()| h.set_device_minor(libc::minor(st.st_rdev)))
                        .map_err(io_err(format!("device numbers of {name}")))?;
                }
                self.append(&mut h, name, None, io::empty())
                    .map_err(written)
            }
            // Sockets have no tar form; Docker's archiver skips them too.
            _ => Ok(()),
        }
    }

    /// A regular file: exactly the size from `fstat` is written, padded with zeros if the file
    /// shrank while being read, so the archive stays well-formed.
    fn file(&mut self, fd: &OwnedFd, st: &libc::stat, name: &str) -> Result<()> {
        let file = reopen(fd, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
            .map_err(io_err(format!("open {name}")))?;
        let size = st.st_size.max(0) as u64;
        let mut h = header_for(st, tar::EntryType::Regular);
        h.set_size(size);
        let body = std::fs::File::from(file)
            .take(size)
            .chain(io::repeat(0))
            .take(size);
        self.append(&mut h, name, None, body)
            .map_err(io_err(format!("write {name} to the archive")))
    }

    fn directory(&mut self, fd: &OwnedFd, st: &libc::stat, name: &str, depth: usize) -> Result<()> {
        let mut h = header_for(st, tar::EntryType::Directory);
        let dir_name = format!("{}/", name.trim_end_matches('/'));
        self.append(&mut h, &dir_name, None, io::empty())
            .map_err(io_err(format!("write {name} to the archive")))?;
        if on_kernel_fs(fd.as_raw_fd()) {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Err(ArchiveError::BadRequest(format!(
                "{name}: the tree is deeper than {MAX_DEPTH} directories"
            )));
        }
        let dir = reopen(fd, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(io_err(format!("open directory {name}")))?;
        for child in children(&dir).map_err(io_err(format!("list {name}")))? {
            let Some(child_fd) = open_child(&dir, &child)? else {
                continue; // gone since the listing
            };
            let child_st = fstat(child_fd.as_raw_fd()).map_err(io_err(format!("stat {name}")))?;
            let child_name = format!("{}/{}", name.trim_end_matches('/'), child.to_string_lossy());
            self.entry(&child_fd, &child_st, &child_name, depth + 1)?;
        }
        Ok(())
    }
}

/// The names in a directory, sorted (a stable archive for the same tree).
fn children(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let own = dir.try_clone()?;
    let mut listing = nix::dir::Dir::from_fd(own).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name: &CStr = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// One child by name, never through a symlink (a symlink child is opened as itself).
fn open_child(dir: &OwnedFd, name: &CStr) -> Result<Option<OwnedFd>> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    match crate::fs_at::openat2(dir.as_raw_fd(), name, flags, 0, resolve) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("open {}", name.to_string_lossy()))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::archive_root::{locate, ContainerPath};
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((path, kind, data));
        }
        out
    }

    #[test]
    fn a_tree_is_archived_with_symlinks_stored_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/sub")).unwrap();
        std::fs::write(dir.path().join("app/sub/f"), "hello").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("app/up")).unwrap();
        let root = reopen_dir(dir.path());
        let found = locate(&root, &ContainerPath::parse("/app").unwrap(), false, "c").unwrap();
        let mut out = Vec::new();
        write_tree(&mut out, &found, "app").unwrap();
        let entries = names(&out);
        let listed: Vec<_> = entries.iter().map(|(p, k, _)| (p.as_str(), *k)).collect();
        assert_eq!(
            listed,
            [
                ("app/", tar::EntryType::Directory),
                ("app/sub/", tar::EntryType::Directory),
                ("app/sub/f", tar::EntryType::Regular),
                ("app/up", tar::EntryType::Symlink),
            ]
        );
        assert_eq!(entries[2].2, b"hello");
        // A directory's contents are `./…`, verbatim, as Docker names them; long names whole.
        let long = "n".repeat(150);
        std::fs::write(dir.path().join("app/sub").join(&long), "x").unwrap();
        let mut out = Vec::new();
        write_tree(&mut out, &found, ".").unwrap();
        let listed: Vec<String> = names(&out).into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(
            listed,
            ["./", "./sub/", "./sub/f", &format!("./sub/{long}"), "./up"]
        );
    }

    fn reopen_dir(p: &std::path::Path) -> OwnedFd {
        std::fs::File::open(p).unwrap().into()
    }
}
