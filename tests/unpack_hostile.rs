//! Hostile layers (engine-anchors.md §4.3, U1–U16): each is refused or confined, and a sentinel
//! directory next to the snapshot root is never touched.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth::engine::unpack::{unpack_layer, UnpackError, UnpackLimits};
use common::registry::TarBuilder;

/// A snapshot root and, beside it, a sentinel directory an escape would write into.
struct Arena {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<String, (u32, u64, u64)>,
}

fn snapshot(dir: &Path) -> BTreeMap<String, (u32, u64, u64)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (md.mode(), md.nlink(), md.len()),
        );
    }
    let md = std::fs::symlink_metadata(dir).unwrap();
    out.insert(".".into(), (md.mode(), md.nlink(), md.len()));
    out
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(outside.join("secret"), b"host secret").unwrap();
        std::fs::set_permissions(
            outside.join("secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let before = snapshot(&outside);
        Arena {
            _dir: dir,
            base,
            root,
            outside,
            before,
        }
    }

    fn unpack(&self, tar: &[u8]) -> Result<(), UnpackError> {
        self.unpack_with(tar, &UnpackLimits::default())
    }

    fn unpack_with(&self, tar: &[u8], limits: &UnpackLimits) -> Result<(), UnpackError> {
        unpack_layer(tar, &self.root, limits).map(|_| ())
    }

    /// Absolute name of a path in the sentinel directory (an attacker knowing the host layout).
    fn outside_abs(&self, name: &str) -> String {
        self.outside.join(name).display().to_string()
    }

    /// Nothing outside the root changed: the sentinel dir is as it was and nothing new appeared
    /// next to the root.
    fn assert_confined(&self) {
        assert_eq!(
            snapshot(&self.outside),
            self.before,
            "sentinel directory changed"
        );
        assert_eq!(
            std::fs::read(self.outside.join("secret")).unwrap(),
            b"host secret"
        );
        let mut names: Vec<String> = std::fs::read_dir(&self.base)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "root"],
            "something was created beside the root"
        );
    }
}

fn expect_hostile(r: Result<(), UnpackError>, want: &str) {
    match r {
        Err(e @ UnpackError::Hostile { .. }) => {
            let t = e.to_string();
            assert!(t.contains("hostile layer") && t.contains(want), "{t}");
        }
        other => panic!("expected a hostile-layer error mentioning {want:?}, got {other:?}"),
    }
}

#[test]
fn u1_dotdot_and_absolute_names_are_refused() {
    for name in [
        "../outside/pwned",
        "./../outside/pwned",
        "a/../../outside/pwned",
    ] {
        let a = Arena::new();
        let tar = TarBuilder::new().file(name, 0o644, b"x").finish();
        expect_hostile(a.unpack(&tar), "'..'");
        a.assert_confined();
    }
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file(&a.outside_abs("pwned"), 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "absolute");
    a.assert_confined();
    // The same through a PAX path and a GNU long name.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .pax(&[("path", b"../outside/pwned")])
        .file("innocent", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "'..'");
    a.assert_confined();
    let a = Arena::new();
    let mut long = b"../outside/pwned".to_vec();
    long.push(0);
    let tar = TarBuilder::new()
        .entry(b'L', "././@LongLink", "", 0o644, &long)
        .file("innocent", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "'..'");
    a.assert_confined();
}

#[test]
fn u2_u3_writes_through_symlinked_parents_are_refused() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("l", &a.outside.display().to_string())
        .file("l/pwned", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();

    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("l", "/")
        .file("l/etc/shadow", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();

    // mkdir through a symlink to the parent of the root (RUSTSEC-2021-0080).
    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("l", "..")
        .dir("l/x/", 0o755)
        .file("l/x/y/file", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();
}

/// The extractor reuses the previous entry's parent directory: a directory replaced by a
/// symlink between two entries in it must not be written through (nor into the old directory).
#[test]
fn a_directory_replaced_by_a_symlink_midway_is_not_written_through() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .dir("d/", 0o755)
        .file("d/one", 0o644, b"x")
        .symlink("d", &a.outside.display().to_string())
        .file("d/two", 0o644, b"x")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();

    // Replaced by a file of the same name, then a file under it: refused as malformed, not
    // written into the removed directory.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .dir("d/", 0o755)
        .file("d/one", 0o644, b"x")
        .file("d", 0o644, b"now a file")
        .file("d/two", 0o644, b"x")
        .finish();
    assert!(a.unpack(&tar).is_err(), "d/two under the file d");
    a.assert_confined();
}

#[test]
fn u4_directory_entry_over_symlink_never_chmods_the_target() {
    for name in ["d", "d/", "d/."] {
        let a = Arena::new();
        let tar = TarBuilder::new()
            .symlink("d", &a.outside.display().to_string())
            .dir(name, 0o777)
            .finish();
        let r = a.unpack(&tar);
        // Either refused or confined: the symlink is replaced by a real directory in the root.
        if r.is_ok() {
            let md = std::fs::symlink_metadata(a.root.join("d")).unwrap();
            assert!(
                md.is_dir(),
                "{name}: the symlink was replaced by a directory"
            );
            assert_eq!(md.mode() & 0o7777, 0o777);
        }
        assert_eq!(
            std::fs::metadata(&a.outside).unwrap().mode() & 0o7777,
            0o700,
            "{name}: outside dir was chmodded"
        );
        a.assert_confined();
    }
}

#[test]
fn u5_hardlinks_out_of_the_layer_are_refused() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .hardlink("h", "../outside/secret")
        .finish();
    expect_hostile(a.unpack(&tar), "'..'");
    a.assert_confined();

    let a = Arena::new();
    let tar = TarBuilder::new()
        .hardlink("h", &a.outside_abs("secret"))
        .finish();
    expect_hostile(a.unpack(&tar), "absolute");
    a.assert_confined();

    // Through a symlinked directory inside the layer.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("o", &a.outside.display().to_string())
        .hardlink("h", "o/secret")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();
}

#[test]
fn u6_regular_entry_after_hardlink_replaces_the_link() {
    // RUSTSEC-2018-0002: writing "h" must not write through to the file "h" links to.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file("target", 0o644, b"original")
        .hardlink("h", "target")
        .file("h", 0o644, b"replaced")
        .finish();
    a.unpack(&tar).unwrap();
    assert_eq!(std::fs::read(a.root.join("target")).unwrap(), b"original");
    assert_eq!(std::fs::read(a.root.join("h")).unwrap(), b"replaced");
    assert_eq!(std::fs::metadata(a.root.join("target")).unwrap().nlink(), 1);
    // A hardlink inside the layer works and shares the inode.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file("bin/busybox", 0o755, b"ELF")
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("bin/ash", "./bin/busybox")
        .finish();
    a.unpack(&tar).unwrap();
    let i1 = std::fs::metadata(a.root.join("bin/busybox")).unwrap().ino();
    assert_eq!(std::fs::metadata(a.root.join("bin/sh")).unwrap().ino(), i1);
    assert_eq!(std::fs::metadata(a.root.join("bin/ash")).unwrap().ino(), i1);
    a.assert_confined();
}

#[test]
fn u7_whiteout_under_symlinked_parent_is_refused() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("p", &a.outside.display().to_string())
        .file("p/.wh.secret", 0o644, b"")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();
    let a = Arena::new();
    let tar = TarBuilder::new()
        .symlink("p", &a.outside.display().to_string())
        .file("p/.wh..wh..opq", 0o644, b"")
        .finish();
    expect_hostile(a.unpack(&tar), "symlink");
    a.assert_confined();
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    let path = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[test]
fn u8_whiteouts_empty_names_and_ordering() {
    let a = Arena::new();
    let tar = TarBuilder::new().file("d/.wh.", 0o644, b"").finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(e.to_string().contains("invalid whiteout"), "{e}");

    // Opaque marker after its siblings, whiteout after a same-layer entry: both entries survive.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .dir("d/", 0o755)
        .file("d/new", 0o644, b"new")
        .file("d/.wh..wh..opq", 0o644, b"")
        .file("x", 0o644, b"mine")
        .file(".wh.x", 0o644, b"")
        .file(".wh.lower", 0o644, b"")
        .finish();
    a.unpack(&tar).unwrap();
    assert_eq!(
        xattr(&a.root.join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(a.root.join("d/new")).unwrap(), b"new");
    assert_eq!(std::fs::read(a.root.join("x")).unwrap(), b"mine");
    let wh = std::fs::symlink_metadata(a.root.join("lower")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!a.root.join(".wh.lower").exists() && !a.root.join("d/.wh..wh..opq").exists());
    // A later real entry replaces a whiteout of the same layer.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file(".wh.y", 0o644, b"")
        .file("y", 0o644, b"back")
        .finish();
    a.unpack(&tar).unwrap();
    assert_eq!(std::fs::read(a.root.join("y")).unwrap(), b"back");
}

#[test]
fn u9_u10_u15_caps_on_headers_entries_and_bytes() {
    let a = Arena::new();
    let big = vec![b'a'; (1 << 20) + 10];
    let tar = TarBuilder::new()
        .pax(&[("comment", &big)])
        .file("f", 0o644, b"x")
        .finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(
        matches!(e, UnpackError::Limit(_)) && e.to_string().contains("pax header"),
        "{e}"
    );

    let a = Arena::new();
    let tar = TarBuilder::new()
        .entry(b'L', "././@LongLink", "", 0o644, &vec![b'a'; 2 << 20])
        .file("f", 0o644, b"x")
        .finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(matches!(e, UnpackError::Limit(_)), "{e}");

    let limits = UnpackLimits {
        max_entries: 3,
        max_total_bytes: 1000,
        ..Default::default()
    };
    let a = Arena::new();
    let mut t = TarBuilder::new();
    for i in 0..5 {
        t.file(&format!("f{i}"), 0o644, b"x");
    }
    let e = a.unpack_with(&t.finish(), &limits).unwrap_err();
    assert!(e.to_string().contains("more than 3 entries"), "{e}");
    let a = Arena::new();
    let tar = TarBuilder::new().file("big", 0o644, &[0u8; 2000]).finish();
    let e = a.unpack_with(&tar, &limits).unwrap_err();
    assert!(e.to_string().contains("more than 1000 bytes"), "{e}");

    // A gzip bomb hits the same byte cap after decompression.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file("zeros", 0o644, &vec![0u8; 1 << 20])
        .finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 10_000);
    let e = a.unpack_with(&gz, &limits).unwrap_err();
    assert!(e.to_string().contains("more than 1000 bytes"), "{e}");

    // Sparse files are refused.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .entry(b'S', "sparse", "", 0o644, b"")
        .finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(e.to_string().contains("sparse"), "{e}");
    a.assert_confined();
}

#[test]
fn u11_inconsistent_sizes_and_truncation_are_refused() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .pax(&[("size", b"600")])
        .file("f", 0o644, b"hello")
        .finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(e.to_string().contains("disagrees"), "{e}");

    let a = Arena::new();
    let full = TarBuilder::new().file("f", 0o644, &[7u8; 4000]).finish();
    let e = a.unpack(&full[..2048]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");

    let a = Arena::new();
    let mut bad = TarBuilder::new().file("f", 0o644, b"x").finish();
    bad[0] ^= 1; // breaks the header checksum
    let e = a.unpack(&bad).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");

    // A symlink that declares data would desynchronise readers.
    let a = Arena::new();
    let tar = TarBuilder::new()
        .entry(b'2', "l", "t", 0o777, &[1u8; 512])
        .finish();
    let e = a.unpack(&tar).unwrap_err();
    assert!(e.to_string().contains("declares 512 data bytes"), "{e}");
    a.assert_confined();
}

#[test]
fn u12_setuid_and_ownership_are_kept_symlinks_verbatim() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file("bin/su", 0o4755, b"ELF")
        .dir("tmp/", 0o1777)
        .symlink("abs", "/etc/passwd")
        .symlink("rel", "../../../../etc/shadow")
        .finish();
    a.unpack(&tar).unwrap();
    assert_eq!(
        std::fs::metadata(a.root.join("bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(a.root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(a.root.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(a.root.join("rel")).unwrap(),
        Path::new("../../../../etc/shadow")
    );
    a.assert_confined();
}

#[test]
fn u13_only_capability_and_user_xattrs_are_applied() {
    let a = Arena::new();
    // VFS_CAP_REVISION_2 with cap_net_raw permitted + effective.
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let tar = TarBuilder::new()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:shadow_t:s0",
            ),
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.security.capability", &cap),
        ])
        .file("bin/ping", 0o755, b"ELF")
        .finish();
    a.unpack(&tar).unwrap();
    let f = a.root.join("bin/ping");
    assert_eq!(xattr(&f, "user.note").as_deref(), Some(&b"hello"[..]));
    assert_eq!(xattr(&f, "security.capability").as_deref(), Some(&cap[..]));
    assert_eq!(xattr(&f, "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&f, "trusted.overlay.opaque"), None);
    assert_ne!(
        xattr(&f, "security.selinux").as_deref(),
        Some(&b"system_u:object_r:shadow_t:s0"[..])
    );
}

#[test]
fn u14_duplicates_and_type_changes_last_one_wins_root_is_kept() {
    let a = Arena::new();
    let tar = TarBuilder::new()
        .file("a", 0o644, b"first")
        .dir("a/", 0o755)
        .file("a/child", 0o644, b"c")
        .file("a", 0o600, b"last")
        .dir("d/", 0o700)
        .dir("d/", 0o750)
        .dir(".", 0o700)
        .dir("./", 0o700)
        .finish();
    a.unpack(&tar).unwrap();
    let md = std::fs::symlink_metadata(a.root.join("a")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(a.root.join("a")).unwrap(), b"last");
    assert_eq!(
        std::fs::metadata(a.root.join("d")).unwrap().mode() & 0o7777,
        0o750
    );
    // The root's own attributes are not the layer's to set.
    assert_eq!(std::fs::metadata(&a.root).unwrap().mode() & 0o7777, 0o755);
    // A non-directory entry naming the root is refused.
    let a = Arena::new();
    let tar = TarBuilder::new().file("./", 0o644, b"x").finish();
    expect_hostile(a.unpack(&tar), "layer root");
    a.assert_confined();
}

/// Peak resident memory of this process since the last reset, in bytes.
fn peak_rss_after_reset() -> impl FnOnce() -> u64 {
    // "5" resets VmHWM to the current RSS (proc(5), /proc/pid/clear_refs).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

/// `chunk` `times` times over, as a reader.
struct Repeat {
    chunk: Vec<u8>,
    times: usize,
    pos: usize,
}

impl Repeat {
    fn new(chunk: Vec<u8>, times: usize) -> Repeat {
        Repeat {
            chunk,
            times,
            pos: 0,
        }
    }
}

impl std::io::Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.times == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.chunk.len() {
            self.pos = 0;
            self.times -= 1;
        }
        Ok(n)
    }
}

#[test]
fn repeated_pax_xattr_headers_are_capped_and_memory_stays_bounded() {
    // The reported attack: ~1600 PAX headers of ~1 MiB each before one file, every one adding
    // a `SCHILY.xattr` (1.65 MB once gzipped); it grew the engine to 1.68 GB. The stream is
    // generated as it is read, so the test itself holds one header, not 1.6 GB.
    let one = TarBuilder::new()
        .pax(&[(
            "SCHILY.xattr.security.selinux",
            &vec![b'v'; (1 << 20) - 100],
        )])
        .raw(b"")
        .finish();
    let one = one[..one.len() - 1024].to_vec();
    let tail = TarBuilder::new().file("victim", 0o644, b"x").finish();
    let stream = std::io::Read::chain(Repeat::new(one, 1600), &tail[..]);
    let a = Arena::new();
    let peak = peak_rss_after_reset();
    let e = unpack_layer(stream, &a.root, &UnpackLimits::default())
        .map(drop)
        .unwrap_err();
    let grown = peak();
    assert!(matches!(e, UnpackError::Limit(_)), "{e}");
    assert!(
        e.to_string()
            .contains("extended headers of more than 2097152 bytes for one entry"),
        "{e}"
    );
    assert!(grown < 256 << 20, "peak RSS {grown} bytes");
    a.assert_confined();

    // The same key repeated keeps one value; xattrs we would not apply are not kept at all.
    let limits = UnpackLimits {
        max_entry_xattr_bytes: 100,
        ..Default::default()
    };
    let a = Arena::new();
    let mut t = TarBuilder::new();
    t.pax(&[
        ("SCHILY.xattr.user.same", &[b'a'; 60]),
        ("SCHILY.xattr.user.same", &[b'b'; 60]),
        ("SCHILY.xattr.trusted.overlay.redirect", &[b'c'; 500]),
    ]);
    t.file("f", 0o644, b"x");
    a.unpack_with(&t.finish(), &limits).unwrap();
    assert_eq!(
        xattr(&a.root.join("f"), "user.same").as_deref(),
        Some(&[b'b'; 60][..])
    );
    let a = Arena::new();
    let mut t = TarBuilder::new();
    t.pax(&[
        ("SCHILY.xattr.user.one", &[b'a'; 60]),
        ("SCHILY.xattr.user.two", &[b'b'; 60]),
    ]);
    t.file("f", 0o644, b"x");
    let e = a.unpack_with(&t.finish(), &limits).unwrap_err();
    assert!(
        e.to_string()
            .contains("more than 100 bytes of xattrs on one entry"),
        "{e}"
    );
    assert!(!a.root.join("f").exists());
}

#[test]
fn header_bytes_per_layer_and_remembered_directories_are_capped() {
    let limits = UnpackLimits {
        max_layer_header_bytes: 4096,
        ..Default::default()
    };
    let a = Arena::new();
    let mut t = TarBuilder::new();
    for i in 0..20 {
        t.pax(&[("path", format!("{}/{i}", "d/".repeat(150)).as_bytes())]);
        t.file(&format!("short{i}"), 0o644, b"x");
    }
    let e = a.unpack_with(&t.finish(), &limits).unwrap_err();
    assert!(
        e.to_string()
            .contains("extended headers of more than 4096 bytes in the layer"),
        "{e}"
    );

    let limits = UnpackLimits {
        max_pending_dirs: 3,
        ..Default::default()
    };
    let a = Arena::new();
    let mut t = TarBuilder::new();
    for i in 0..5 {
        t.dir(&format!("d{i}"), 0o755);
    }
    let e = a.unpack_with(&t.finish(), &limits).unwrap_err();
    assert!(e.to_string().contains("more than 3 directories"), "{e}");
    // The same directory repeated is one directory, not five.
    let a = Arena::new();
    let mut t = TarBuilder::new();
    for _ in 0..5 {
        t.dir("same", 0o755);
    }
    a.unpack_with(&t.finish(), &limits).unwrap();

    // Directories with big xattrs: the bytes kept until the end of the layer are capped.
    let limits = UnpackLimits {
        max_pending_dir_bytes: 50_000,
        ..Default::default()
    };
    let a = Arena::new();
    let mut t = TarBuilder::new();
    for i in 0..10 {
        t.pax(&[("SCHILY.xattr.user.big", &[b'x'; 10_000])]);
        t.dir(&format!("d{i}"), 0o755);
    }
    let e = a.unpack_with(&t.finish(), &limits).unwrap_err();
    assert!(
        e.to_string()
            .contains("directory paths and xattrs of more than 50000 bytes"),
        "{e}"
    );
    a.assert_confined();
}

#[test]
fn bytes_after_the_end_of_archive_are_bounded() {
    // GNU tar pads to a 10 KiB record: accepted, and hashed into the DiffID.
    let a = Arena::new();
    let mut tar = TarBuilder::new().file("f", 0o644, b"x").finish();
    tar.resize(10240, 0);
    let stats = unpack_layer(&tar[..], &a.root, &UnpackLimits::default()).unwrap();
    assert_eq!(
        stats.diff_id,
        format!("sha256:{}", common::registry::sha256_hex(&tar))
    );
    // An endless stream after the marker (zeros compress to nothing) is refused once the cap is
    // reached instead of being hashed to the end.
    let a = Arena::new();
    let tar = TarBuilder::new().file("f", 0o644, b"x").finish();
    let endless = std::io::Read::chain(&tar[..], std::io::repeat(0));
    let e = unpack_layer(endless, &a.root, &UnpackLimits::default())
        .map(drop)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("more than 1048576 bytes after the end-of-archive marker"),
        "{e}"
    );
}
