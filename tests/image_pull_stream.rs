//! The streaming, parallel pull: layers of any compression (gzip, zstd, several zstd frames) give
//! the tree umoci unpacks from the same image; pulls of two images sharing a layer fetch it once;
//! a download cut off midway leaves the store clean and a retry succeeds.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use berth::engine::image::{ImageError, ImageRecord, ImageStore};
use berth::engine::reference::ImageReference;
use berth::engine::wire::ProgressMessage;
use berth::engine::{EngineRoots, EngineSettings};
use common::registry::{sha256_hex, TarBuilder, TestRegistry};
use sha2::{Digest, Sha256};

struct Roots {
    dir: tempfile::TempDir,
    roots: EngineRoots,
}

fn roots() -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
    Roots { dir, roots }
}

async fn pull(
    store: &ImageStore,
    reference: &str,
) -> (Result<ImageRecord, ImageError>, Vec<ProgressMessage>) {
    let r = ImageReference::parse(reference).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let res = store.pull(&r, &EngineSettings::default(), tx).await;
    let mut msgs = Vec::new();
    while let Ok(m) = rx.try_recv() {
        msgs.push(m);
    }
    (res, msgs)
}

fn entries(p: &Path) -> Vec<String> {
    match std::fs::read_dir(p) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing of a failed pull is left: no blob, no half-written ingest file, no snapshot.
fn assert_store_clean(r: &Roots) {
    let blobs = entries(&r.roots.content_dir().join("blobs/sha256"));
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
    let ingest = entries(&r.roots.content_dir().join("ingest"));
    assert!(ingest.is_empty(), "ingest left: {ingest:?}");
    let snaps = entries(&r.roots.snapshots_dir());
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
}

/// Type, mode, owner, link target and content digest of every path under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let owner = format!("{:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
            let desc = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                format!("dir {owner}")
            } else if ft.is_char_device() {
                format!("chr {owner} {}", md.rdev())
            } else {
                let content = std::fs::read(&p).unwrap();
                format!("file {owner} {}", hex::encode(Sha256::digest(&content)))
            };
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), desc);
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// What a container would see of `rec`: its snapshots stacked read-only with overlayfs.
fn merged_tree(store: &ImageStore, rec: &ImageRecord, scratch: &Path) -> BTreeMap<String, String> {
    let lowers = store.lower_dirs(rec).unwrap();
    let target = scratch.join(format!("merged-{}", &rec.id[7..19]));
    std::fs::create_dir_all(&target).unwrap();
    let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("ro,lowerdir={}", lowerdir.join(":")))
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "mount overlay of {lowerdir:?}");
    let t = tree(&target);
    let status = Command::new("umount").arg(&target).status().unwrap();
    assert!(status.success());
    t
}

fn umoci_tree(layout: &Path, tag: &str, scratch: &Path) -> BTreeMap<String, String> {
    let bundle = scratch.join(format!("umoci-{tag}"));
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle)
        .output()
        .expect("run umoci (package umoci)");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tree(&bundle.join("rootfs"))
}

#[derive(Clone, Copy)]
enum Packing {
    Gzip,
    /// One zstd frame (the `zstd` CLI: an implementation independent of berth's decoder).
    Zstd,
    /// The tar split in two, each half its own zstd frame, concatenated.
    ZstdFrames,
}

fn zstd_cli(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run zstd (package zstd)");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn pack(tar: &[u8], packing: Packing) -> (Vec<u8>, &'static str) {
    match packing {
        Packing::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).unwrap();
            (
                enc.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Packing::Zstd => (zstd_cli(tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
        Packing::ZstdFrames => {
            let (a, b) = tar.split_at(tar.len() / 2);
            (
                [zstd_cli(a), zstd_cli(b)].concat(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        }
    }
}

/// An OCI layout of one image with the given layers (bottom first), tagged `tag`; returns the
/// layers' blob digests.
fn write_layout(dir: &Path, tag: &str, layers: &[(Vec<u8>, Packing)]) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let h = sha256_hex(bytes);
        std::fs::write(blobs.join(&h), bytes).unwrap();
        format!("sha256:{h}")
    };
    let (mut descs, mut diff_ids, mut digests) = (Vec::new(), Vec::new(), Vec::new());
    for (tar, packing) in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let (blob, media) = pack(tar, *packing);
        let d = put(&blob);
        digests.push(d.clone());
        descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": blob.len()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(&config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest),
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// Bytes that do not compress (so sizes on the wire are what they say): xorshift64, cheap
/// enough for tens of megabytes in a debug build.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Three layers: files, a symlink, a whiteout and an opaque directory, a file replaced.
fn three_layers() -> Vec<Vec<u8>> {
    let base = TarBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/a", 0o644, b"alpha\n")
        .file("etc/gone", 0o600, b"deleted above\n")
        .dir("usr/", 0o755)
        .dir("usr/lib/", 0o755)
        .file("usr/lib/big", 0o755, &noise(3 << 20, 1))
        .file("usr/lib/old", 0o644, b"hidden by the opaque dir\n")
        .symlink("usr/link", "../etc/a")
        .finish();
    let middle = TarBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/b", 0o640, &b"beta ".repeat(50_000))
        .file("etc/.wh.gone", 0o644, b"")
        .finish();
    let top = TarBuilder::new()
        .dir("usr/", 0o755)
        .dir("usr/lib/", 0o750)
        .file("usr/lib/.wh..wh..opq", 0o644, b"")
        .file("usr/lib/new", 0o644, &noise(1 << 20, 2))
        .finish();
    vec![base, middle, top]
}

#[tokio::test]
async fn gzip_and_zstd_layers_unpack_to_the_tree_umoci_gives() {
    let reg = TestRegistry::start();
    let r = roots();
    let scratch = r.dir.path().join("scratch");
    let layers = three_layers();

    // The oracle: umoci's unpack of the gzip image.
    let gzip_layout = scratch.join("gzip-layout");
    let packed: Vec<_> = layers.iter().map(|l| (l.clone(), Packing::Gzip)).collect();
    let gzip_digests = write_layout(&gzip_layout, "img", &packed);
    let expected = umoci_tree(&gzip_layout, "img", &scratch);
    assert!(expected.contains_key("etc/b") && !expected.contains_key("etc/gone"));
    assert!(!expected.contains_key("usr/lib/old"), "{expected:?}");

    let store = ImageStore::open(&r.roots).unwrap();
    let gz = reg.push_layout_raw(&gzip_layout, "stream/gzip", "1");
    let rec = pull(&store, &gz).await.0.unwrap_or_else(|e| panic!("{e}"));
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    assert_eq!(rec.diff_ids, diff_ids);
    let pulled: Vec<&String> = rec.layers.iter().map(|l| &l.digest).collect();
    assert_eq!(pulled, gzip_digests.iter().collect::<Vec<_>>());
    assert_eq!(merged_tree(&store, &rec, &scratch), expected);

    // The same layers as zstd (one frame, then several) into a fresh store: the same tree.
    let r2 = roots();
    let store = ImageStore::open(&r2.roots).unwrap();
    let zstd_layout = scratch.join("zstd-layout");
    let packings = [Packing::Gzip, Packing::Zstd, Packing::ZstdFrames];
    let packed: Vec<_> = layers.iter().cloned().zip(packings).collect();
    write_layout(&zstd_layout, "img", &packed);
    let zs = reg.push_layout_raw(&zstd_layout, "stream/zstd", "1");
    let (res, msgs) = pull(&store, &zs).await;
    let rec = res.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rec.diff_ids, diff_ids,
        "the DiffIDs are of the uncompressed tars"
    );
    assert_eq!(
        rec.layers[2].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(merged_tree(&store, &rec, &scratch), expected);
    let complete = msgs
        .iter()
        .filter(|m| m.status.as_deref() == Some("Pull complete"))
        .count();
    assert_eq!(complete, 3);
}

#[tokio::test]
async fn two_pulls_sharing_a_layer_download_it_once() {
    let reg = TestRegistry::start();
    let r = roots();
    let base = TarBuilder::new()
        .file("shared", 0o644, &noise(8 << 20, 3))
        .finish();
    let one = TarBuilder::new().file("one", 0o644, b"1").finish();
    let two = TarBuilder::new().file("two", 0o644, b"2").finish();
    let a = reg.push_layers("share/a", "1", &[base.clone(), one]);
    let b = reg.push_layers("share/b", "1", &[base, two]);
    let store = ImageStore::open(&r.roots).unwrap();

    let ((ra, ma), (rb, mb)) = tokio::join!(pull(&store, &a), pull(&store, &b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let shared = &ra.layers[0].digest;
    assert_eq!(shared, &rb.layers[0].digest);
    let id = &shared[7..19];
    let downloaded = |msgs: &[ProgressMessage]| {
        msgs.iter().any(|m| {
            m.id.as_deref() == Some(id) && m.status.as_deref() == Some("Download complete")
        })
    };
    assert!(
        downloaded(&ma) != downloaded(&mb),
        "exactly one of the pulls downloads the shared layer"
    );
    let reused = if downloaded(&ma) { &mb } else { &ma };
    assert!(reused
        .iter()
        .any(|m| m.id.as_deref() == Some(id) && m.status.as_deref() == Some("Already exists")));
    for (rec, own) in [(&ra, "one"), (&rb, "two")] {
        let lowers = store.lower_dirs(rec).unwrap();
        assert!(lowers[0].join(own).is_file());
        assert_eq!(
            std::fs::metadata(lowers[1].join("shared")).unwrap().len(),
            8 << 20
        );
    }
}

/// A registry that dies midway through a large layer: the pull fails naming the registry,
/// leaves no blob, ingest file or snapshot, and a pull from a registry that works succeeds.
#[tokio::test]
async fn a_download_cut_off_midway_leaves_the_store_clean_and_a_retry_succeeds() {
    let layers = vec![
        TarBuilder::new().file("small", 0o644, b"s").finish(),
        TarBuilder::new()
            .file("large", 0o644, &noise(32 << 20, 4))
            .finish(),
    ];
    let reg = TestRegistry::start();
    let reference = reg.push_layers("cut/off", "1", &layers);
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let parsed = ImageReference::parse(&reference).unwrap();
    // A one-message channel: once a layer reports bytes, the pull waits for this test to read
    // on, which it does only after killing the registry.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let settings = EngineSettings::default();
    let pulling = store.pull(&parsed, &settings, tx);
    tokio::pin!(pulling);
    let mut registry = Some(reg);
    let mut cut_at = None;
    let result = loop {
        tokio::select! {
            res = &mut pulling => break res,
            Some(m) = rx.recv() => {
                let partial = m.progress_detail.as_ref().and_then(|d| Some((d.current?, d.total?)));
                if let (Some("Downloading"), Some((current, total))) = (m.status.as_deref(), partial) {
                    if current < total && registry.is_some() {
                        drop(registry.take()); // kills docker-registry
                        cut_at = Some((current, total));
                    }
                }
            }
        }
    };
    let (current, total) = cut_at.expect("the registry was stopped mid-download");
    assert!(total - current > 8 << 20, "cut at {current} of {total}");
    let text = result.expect_err("the download was cut off").to_string();
    assert!(
        text.contains("127.0.0.1") || text.contains("size mismatch"),
        "the error says what was cut off: {text}"
    );
    assert_store_clean(&r);
    assert!(store.resolve(&reference).is_none());

    let reg = TestRegistry::start();
    let again = reg.push_layers("cut/off", "1", &layers);
    let rec = pull(&store, &again)
        .await
        .0
        .unwrap_or_else(|e| panic!("retry: {e}"));
    let lowers = store.lower_dirs(&rec).unwrap();
    assert_eq!(
        std::fs::read(lowers[0].join("large")).unwrap(),
        noise(32 << 20, 4)
    );
}
