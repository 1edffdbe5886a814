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
