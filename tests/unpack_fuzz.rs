//! Property test of the extractor: random sequences of entries built from escape-prone pieces
//! (`..`, absolute names, symlinks to `/`, `..` and a host directory, hardlinks, whiteouts,
//! type changes) never panic and never touch anything outside the snapshot root, and random
//! byte corruption of a valid archive is an error or a confined success, never an escape.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth::engine::unpack::{unpack_layer, UnpackLimits};
use common::registry::TarBuilder;
use proptest::prelude::*;

fn listing(dir: &Path) -> BTreeMap<String, (u32, u64, i64)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (md.mode(), md.len(), md.mtime()),
        );
    }
    out
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
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("a"), b"host").unwrap();
        let before = listing(&outside);
        let out = outside.display().to_string();
        let ops: Vec<Op> = seed_ops
            .into_iter()
            .map(|o| match o {
                Op::Dir(p, m) => Op::Dir(p.replace("@OUT@", &out), m),
                Op::File(p, d) => Op::File(p.replace("@OUT@", &out), d),
                Op::Symlink(p, t) => Op::Symlink(p.replace("@OUT@", &out), t.replace("@OUT@", &out)),
                Op::Hardlink(p, t) => Op::Hardlink(p.replace("@OUT@", &out), t.replace("@OUT@", &out)),
            })
            .collect();
        let tar = build(&ops);
        let _ = unpack_layer(&tar[..], &root, &UnpackLimits::default());
        prop_assert_eq!(listing(&outside), before);
        prop_assert_eq!(std::fs::read(outside.join("a")).unwrap(), b"host".to_vec());
        let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        prop_assert_eq!(names, vec!["outside".to_string(), "root".to_string()]);
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
        let _ = unpack_layer(&tar[..], &root, &UnpackLimits::default());
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        prop_assert_eq!(names, vec!["root".to_string()]);
    }
}
