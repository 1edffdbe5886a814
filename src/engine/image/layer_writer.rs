//! An overlay upper directory → an OCI layer (`tar+gzip`), as Docker's overlay2 driver diffs a
//! container: overlay whiteouts (char 0/0) become `.wh.<name>` files, a directory marked
//! `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry after it, a second name of an inode
//! becomes a tar hard link, symlinks stay symlinks, xattrs are kept except overlayfs' own
//! `trusted.overlay.*`, and owner, mode and mtime come from the files. Names are sorted, so the
//! same tree gives the same digest. Mount-point stubs the caller names (`/etc/hosts`, `/dev`,
//! bind targets a runtime created) are left out when they are empty.
//!
//! The tar is written by [`walk`] straight into [`gzip`]'s parallel compressor, which hashes
//! both streams as they pass: one read of the tree gives the blob, its digest and its DiffID.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod gzip;
mod tar;
mod walk;

pub use gzip::{Digests, BLOCK_BYTES};
pub use walk::{OPAQUE_MARKER, WHITEOUT_PREFIX};

#[derive(Debug, Error)]
pub enum LayerError {
    #[error("reading {path:?} of the layer: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the layer exceeds a limit: {0}")]
    Limit(String),
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
    /// A renamed directory (`redirect_dir`) or a metadata-only copy-up (`metacopy`) keeps its
    /// content in the lower layers: the upper directory alone is not the change.
    #[error(
        "{path:?} carries the overlayfs {xattr} marker: the container's overlay ran with \
         redirect_dir or metacopy on, so its upper directory is not a complete diff; mount with \
         redirect_dir=off,metacopy=off (the overlay module parameters) to commit it"
    )]
    OverlayIndirection { path: String, xattr: String },
}

type Result<T> = std::result::Result<T, LayerError>;

/// What [`write_layer`] produced.
#[derive(Debug, Clone)]
pub struct LayerSummary {
    pub digests: Digests,
    /// Tar entries written (0: the directory held nothing but left-out stubs).
    pub entries: u64,
    /// Bytes of regular-file content.
    pub content_bytes: u64,
    /// The excluded stubs found empty and left out (relative paths).
    pub skipped_stubs: Vec<PathBuf>,
    /// Files carrying overlayfs-private xattrs besides the opaque marker (relative paths).
    pub overlay_private: Vec<PathBuf>,
}

impl LayerSummary {
    /// True when the directory held no change at all.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

fn to_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Writes the layer of the tree under `upper` to `out`, gzip-compressed. `exclude` names
/// mount-point stubs (absolute as the container sees them, or relative to `upper`).
/// Blocking; reads `upper` without changing it.
pub fn write_layer(upper: &Path, exclude: &[PathBuf], out: &mut dyn Write) -> Result<LayerSummary> {
    let root = open_root(upper)?;
    let exclude = walk::exclusion_set(exclude);
    let (stats, digests) = gzip::compress_parallel(out, gzip::pool_size(), |tar| {
        walk::Walker::new(tar, exclude).run(&root)
    })?;
    Ok(LayerSummary {
        digests,
        entries: stats.entries,
        content_bytes: stats.content_bytes,
        skipped_stubs: stats.skipped_stubs.into_iter().map(to_path).collect(),
        overlay_private: stats.overlay_private.into_iter().map(to_path).collect(),
    })
}

fn open_root(upper: &Path) -> Result<OwnedFd> {
    let io_err = |source| LayerError::Io {
        path: upper.display().to_string(),
        source,
    };
    let dir = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(upper)
        .map_err(io_err)?;
    Ok(OwnedFd::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::process::Command;

    use crate::engine::unpack::{unpack_layer, UnpackLimits};

    fn c(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    fn set_xattr(p: &Path, key: &str, value: &[u8]) {
        let key = CString::new(key).unwrap();
        let r = unsafe {
            libc::lsetxattr(
                c(p).as_ptr(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(
            r,
            0,
            "setxattr {}: {}",
            p.display(),
            io::Error::last_os_error()
        );
    }

    fn mknod(p: &Path, kind: libc::mode_t, dev: libc::dev_t) {
        // overlayfs makes its whiteouts with no permission bits at all.
        let perm = if kind == libc::S_IFCHR && dev == 0 {
            0
        } else {
            0o644
        };
        let r = unsafe { libc::mknod(c(p).as_ptr(), kind | perm, dev) };
        assert_eq!(
            r,
            0,
            "mknod {}: {}",
            p.display(),
            io::Error::last_os_error()
        );
    }

    /// An upper directory as overlayfs leaves it after a container created, changed, linked
    /// and deleted files.
    fn upper_tree(root: &Path) {
        std::fs::create_dir_all(root.join("etc/app")).unwrap();
        std::fs::write(root.join("etc/app/conf"), b"key=value\n").unwrap();
        // chown clears setuid: owner first.
        std::os::unix::fs::lchown(root.join("etc/app/conf"), Some(1234), Some(5678)).unwrap();
        std::fs::set_permissions(
            root.join("etc/app/conf"),
            std::fs::Permissions::from_mode(0o4750),
        )
        .unwrap();
        std::fs::hard_link(root.join("etc/app/conf"), root.join("etc/conf-link")).unwrap();
        symlink("../nowhere/at/all", root.join("etc/dangling")).unwrap();
        set_xattr(&root.join("etc/app/conf"), "user.note", b"kept");
        // Deleted from the image: a whiteout; a whole directory replaced: opaque.
        mknod(&root.join("etc/removed"), libc::S_IFCHR, 0);
        std::fs::create_dir(root.join("var")).unwrap();
        set_xattr(&root.join("var"), "trusted.overlay.opaque", b"y");
        std::fs::write(root.join("var/fresh"), vec![7u8; 3 << 20]).unwrap();
        set_xattr(&root.join("etc"), "trusted.overlay.impure", b"y");
        mknod(&root.join("fifo"), libc::S_IFIFO, 0);
        mknod(&root.join("tty9"), libc::S_IFCHR, libc::makedev(4, 9));
        let long = root.join("d".repeat(150)).join("f".repeat(120));
        std::fs::create_dir_all(long.parent().unwrap()).unwrap();
        std::fs::write(&long, b"long").unwrap();
        // Runtime mount-point stubs: left out when empty, kept when not.
        std::fs::write(root.join("etc/hosts"), b"").unwrap();
        std::fs::create_dir(root.join("proc")).unwrap();
        std::fs::write(root.join("etc/hostname"), b"written by the app\n").unwrap();
    }

    fn exclusions() -> Vec<PathBuf> {
        ["/etc/hosts", "/proc", "etc/hostname", "/dev/shm"]
            .into_iter()
            .map(PathBuf::from)
            .collect()
    }

    /// Everything an image user could notice of a tree, by relative path.
    fn describe(root: &Path) -> BTreeMap<String, String> {
        use std::os::unix::fs::FileTypeExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let ft = m.file_type();
                let mut what = format!(
                    "mode={:o} uid={} gid={} rdev={}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.rdev()
                );
                if ft.is_dir() {
                    stack.push(p.clone());
                    let opaque = xattr(&p, "trusted.overlay.opaque");
                    what += &format!(" opaque={opaque:?}");
                } else if !(ft.is_char_device() && m.rdev() == 0) {
                    // A whiteout carries no time of its own in a layer (`.wh.` entries are
                    // markers): the extractor makes it now, so comparing times would race the
                    // clock's second.
                    what += &format!(" mtime={}", m.mtime());
                }
                if ft.is_file() {
                    let data = std::fs::read(&p).unwrap();
                    what += &format!(" sha={}", crate::engine::content::sha256_digest(&data));
                    what += &format!(" note={:?}", xattr(&p, "user.note"));
                    if m.nlink() > 1 {
                        let first = inodes.entry(m.ino()).or_insert(rel.clone());
                        what += &format!(" links={}", m.nlink());
                        if *first != rel {
                            out.insert(format!("{rel} (link)"), first.clone());
                        }
                    }
                }
                if ft.is_symlink() {
                    what += &format!(" -> {}", std::fs::read_link(&p).unwrap().display());
                }
                out.insert(rel, what);
            }
        }
        out
    }

    fn xattr(p: &Path, key: &str) -> Option<String> {
        let key = CString::new(key).unwrap();
        let mut buf = [0u8; 64];
        let n = unsafe {
            libc::lgetxattr(
                c(p).as_ptr(),
                key.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
    }

    fn layer_of(root: &Path) -> (Vec<u8>, LayerSummary) {
        let mut blob = Vec::new();
        let summary = write_layer(root, &exclusions(), &mut blob).unwrap();
        (blob, summary)
    }

    /// GNU tar, an independent reader, lists exactly the entries Docker would write.
    #[test]
    fn gnu_tar_lists_whiteouts_opaque_markers_links_and_no_empty_stubs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("upper");
        upper_tree(&root);
        let (blob, summary) = layer_of(&root);
        let file = tmp.path().join("layer.tar.gz");
        std::fs::write(&file, &blob).unwrap();
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().nth(5).unwrap())
            .collect();
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
        let long_dir = format!("{}/", "d".repeat(150));
        let expected = [
            long_dir.as_str(),
            long.as_str(),
            "etc/",
            "etc/app/",
            "etc/app/conf",
            "etc/conf-link",
            "etc/dangling",
            "etc/hostname",
            // Sorted by the name on disk, as Docker's walk does.
            "etc/.wh.removed",
            "fifo",
            "tty9",
            "var/",
            "var/.wh..wh..opq",
            "var/fresh",
        ];
        assert_eq!(names, expected, "{listing}");
        let line = |name: &str| {
            let l = listing.lines().find(|l| l.contains(name)).unwrap();
            l.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        assert!(
            line("etc/app/conf").starts_with("-rwsr-x--- 1234/5678 10 "),
            "{listing}"
        );
        assert!(
            line("etc/conf-link").contains("link to etc/app/conf"),
            "{listing}"
        );
        assert!(
            line("etc/dangling").contains("-> ../nowhere/at/all"),
            "{listing}"
        );
        assert!(line("tty9").starts_with("crw-r--r-- 0/0 4,9 "), "{listing}");
        assert!(line("fifo").starts_with("prw-r--r--"), "{listing}");
        assert_eq!(summary.entries, expected.len() as u64);
        assert_eq!(summary.content_bytes, 10 + (3 << 20) + 4 + 19);
        let mut stubs = summary.skipped_stubs.clone();
        stubs.sort();
        assert_eq!(stubs, [PathBuf::from("etc/hosts"), PathBuf::from("proc")]);
        assert_eq!(summary.overlay_private, [PathBuf::from("etc")]);
        // Several gzip members: the 3 MiB file spans blocks.
        assert!(
            summary.digests.size < 1 << 20,
            "compressed {}",
            summary.digests.size
        );
    }

    /// berth's own extractor rebuilds the upper tree from the layer: whiteouts, opaque
    /// directories, hard links, owners, modes, times, devices and kept xattrs.
    #[test]
    fn unpacking_the_layer_reproduces_the_upper_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("upper");
        upper_tree(&root);
        let (blob, summary) = layer_of(&root);
        let dest = tmp.path().join("unpacked");
        std::fs::create_dir(&dest).unwrap();
        let stats = unpack_layer(&blob[..], &dest, &UnpackLimits::default()).unwrap();
        assert_eq!(stats.diff_id, summary.digests.diff_id);
        let mut want = describe(&root);
        want.remove("etc/hosts");
        want.remove("proc");
        let got = describe(&dest);
        assert_eq!(got, want);
        assert_eq!(
            xattr(&dest.join("var"), "trusted.overlay.opaque").as_deref(),
            Some("y")
        );
        assert_eq!(xattr(&dest.join("etc"), "trusted.overlay.impure"), None);
    }

    #[test]
    fn the_same_tree_gives_the_same_digests_and_an_empty_one_no_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        upper_tree(&a);
        let (blob_a, sa) = layer_of(&a);
        let (blob_b, sb) = layer_of(&a);
        assert_eq!(blob_a, blob_b);
        assert_eq!(sa.digests, sb.digests);
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(empty.join("proc")).unwrap();
        std::fs::create_dir_all(empty.join("etc")).unwrap();
        let mut blob = Vec::new();
        let exclude = [PathBuf::from("/proc"), PathBuf::from("/etc")];
        let s = write_layer(&empty, &exclude, &mut blob).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn a_redirected_directory_is_refused_not_written_incomplete() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("upper");
        std::fs::create_dir_all(root.join("renamed")).unwrap();
        set_xattr(
            &root.join("renamed"),
            "trusted.overlay.redirect",
            b"/original",
        );
        let mut blob = Vec::new();
        let err = write_layer(&root, &[], &mut blob).unwrap_err();
        assert!(
            matches!(&err, LayerError::OverlayIndirection { path, .. } if path == "renamed"),
            "{err}"
        );
    }

    #[test]
    fn a_symlinked_root_is_refused_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let mut blob = Vec::new();
        let err = write_layer(&tmp.path().join("link"), &[], &mut blob).unwrap_err();
        assert!(matches!(err, LayerError::Io { .. }), "{err}");
    }
}
