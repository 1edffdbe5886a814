//! Property test of the extractor: random sequences of entries built from escape-prone pieces
//! (`..`, absolute names, symlinks to `/`, `..` and a host directory, hardlinks, whiteouts,
//! type changes) never panic and never touch anything outside the snapshot root, and random
//! byte corruption of a valid archive is an error or a confined success, never an escape.
//!
//! Each case unpacks from a thread of its own that has `chroot`ed into the case's temp dir
//! (after `unshare(CLONE_FS)`, so the rest of the process keeps its root). An escape, wherever
//! it aims (`/`, `..`, an absolute host path, a symlink to any of them), can then only land in
//! that temp dir, where the test sees it — not in a host directory no one checks.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth::engine::unpack::{unpack_layer, UnpackError, UnpackLimits};
use common::registry::TarBuilder;
use proptest::prelude::*;

/// Unpacks `tar` into `<jail>/root` from a thread whose root directory is `jail`.
fn unpack_jailed(jail: &Path, tar: Vec<u8>) -> Result<(), UnpackError> {
    let jail = jail.to_path_buf();
    std::thread::spawn(move || {
        // The thread gets its own root and cwd; the test harness's other threads keep theirs.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).expect("unshare(CLONE_FS)");
        nix::unistd::chroot(&jail).expect("chroot into the case's temp dir");
        nix::unistd::chdir("/").expect("chdir /");
        unpack_layer(&tar[..], Path::new("/root"), &UnpackLimits::default()).map(drop)
    })
    .join()
    .expect("unpack thread panicked")
}

/// Every name in the jail (the case's temp dir) outside `root/`, with its metadata.
fn outside_root(jail: &Path) -> BTreeMap<String, (u32, u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![jail.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path == jail.join("root") {
                continue;
            }
            let md = std::fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(jail).unwrap().display().to_string();
            out.insert(rel, (md.mode(), md.len(), md.mtime()));
        }
    }
    out
}

/// The harness can fail: a write aimed at the host's `/` from the jailed thread lands in the
/// jail, and `outside_root` reports it.
#[test]
fn the_jail_catches_a_write_to_the_host_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let jail = dir.path().to_path_buf();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
        nix::unistd::chroot(&jail).unwrap();
        std::fs::write("/escaped", b"x").unwrap();
    })
    .join()
    .unwrap();
    let seen: Vec<String> = outside_root(dir.path()).into_keys().collect();
    assert_eq!(seen, ["escaped"]);
    // The chroot stayed in that thread.
    assert!(Path::new("/proc/self/status").exists());
}

#[derive(Debug, Clone)]
enum Op {
    Dir(String, u32),
    File(String, Vec<u8>),
    Symlink(String, String),
    Hardlink(String, String),
}

fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("l".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just("".to_string()),
    ]
}

fn path(outside: String) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(path_piece(), 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(parts, abs, host)| {
            let p = parts.join("/");
            if host {
                format!("{outside}/{p}")
            } else if abs {
                format!("/{p}")
            } else {
                p
            }
        })
}

fn op(outside: String) -> impl Strategy<Value = Op> {
    let o = outside.clone();
    prop_oneof![
        (
            path(o.clone()),
            prop_oneof![Just(0o755u32), Just(0o777), Just(0o1777)]
        )
            .prop_map(|(p, m)| Op::Dir(p, m)),
        (path(o.clone()), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(p, d)| Op::File(p, d)),
        (
            path(o.clone()),
            prop_oneof![
                Just("/".to_string()),
                Just("..".to_string()),
                Just("../..".to_string()),
                Just(o.clone()),
                Just("a".to_string())
            ]
        )
            .prop_map(|(p, t)| Op::Symlink(p, t)),
        (path(o.clone()), path(o)).prop_map(|(p, t)| Op::Hardlink(p, t)),
    ]
}

fn build(ops: &[Op]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for op in ops {
        match op {
            Op::Dir(p, m) if p.len() <= 100 => {
                t.dir(p, *m);
            }
            Op::File(p, d) if p.len() <= 100 => {
                t.file(p, 0o644, d);
            }
            Op::Symlink(p, target) if p.len() <= 100 && target.len() <= 100 => {
                t.symlink(p, target);
            }
            Op::Hardlink(p, target) if p.len() <= 100 && target.len() <= 100 => {
                t.hardlink(p, target);
            }
            _ => {}
        }
    }
    t.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_entries_never_escape(seed_ops in prop::collection::vec(op("@OUT@".into()), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let jail = dir.path();
        std::fs::create_dir(jail.join("root")).unwrap();
        std::fs::create_dir(jail.join("outside")).unwrap();
        std::fs::write(jail.join("outside/a"), b"host").unwrap();
        let before = outside_root(jail);
        // Seen from inside the jail, the host directory an attacker aims at is /outside.
        let out = "/outside";
        let ops: Vec<Op> = seed_ops
            .into_iter()
            .map(|o| match o {
                Op::Dir(p, m) => Op::Dir(p.replace("@OUT@", out), m),
                Op::File(p, d) => Op::File(p.replace("@OUT@", out), d),
                Op::Symlink(p, t) => Op::Symlink(p.replace("@OUT@", out), t.replace("@OUT@", out)),
                Op::Hardlink(p, t) => Op::Hardlink(p.replace("@OUT@", out), t.replace("@OUT@", out)),
            })
            .collect();
        let _ = unpack_jailed(jail, build(&ops));
        prop_assert_eq!(outside_root(jail), before);
        prop_assert_eq!(std::fs::read(jail.join("outside/a")).unwrap(), b"host".to_vec());
    }

    #[test]
    fn corrupted_archives_are_errors_or_confined(flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut tar = TarBuilder::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
            .symlink("bin", "usr/bin")
            .pax(&[("path", b"long/name/file")])
            .file("x", 0o644, &[1u8; 700])
            .hardlink("etc/hl", "etc/passwd")
            .finish();
        for (pos, byte) in flips {
            let i = pos % tar.len();
            tar[i] = byte;
        }
        let _ = unpack_jailed(dir.path(), tar);
        prop_assert_eq!(outside_root(dir.path()), BTreeMap::new());
    }
}
