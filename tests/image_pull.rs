//! Pulling from a real registry (Debian's docker-registry on loopback) into a temporary data root.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::engine::image::ImageStore;
use berth::engine::reference::ImageReference;
use berth::engine::wire::ProgressMessage;
use berth::engine::{EngineRoots, EngineSettings};
use common::registry::{free_port, TarBuilder, TestRegistry};

struct Roots {
    _dir: tempfile::TempDir,
    roots: EngineRoots,
}

fn roots() -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let roots = EngineRoots::new(dir.path().join("data"), dir.path().join("run"));
    Roots { _dir: dir, roots }
}

async fn pull(
    store: &ImageStore,
    reference: &str,
) -> (
    Result<berth::engine::image::ImageRecord, berth::engine::image::ImageError>,
    Vec<ProgressMessage>,
) {
    let r = ImageReference::parse(reference).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    let res = store.pull(&r, &EngineSettings::default(), tx).await;
    let mut msgs = Vec::new();
    while let Ok(m) = rx.try_recv() {
        msgs.push(m);
    }
    (res, msgs)
}

fn statuses(msgs: &[ProgressMessage]) -> Vec<String> {
    msgs.iter().filter_map(|m| m.status.clone()).collect()
}

/// type, mode, uid, gid, symlink target, content size — for every path under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = md.file_type();
            let desc = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                format!("dir {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid())
            } else {
                format!(
                    "file {:o} {}:{} {} bytes",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    md.len()
                )
            };
            out.insert(rel, desc);
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn dir_entries(p: &Path) -> Vec<String> {
    match std::fs::read_dir(p) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn blobs(roots: &EngineRoots) -> Vec<String> {
    dir_entries(&roots.content_dir().join("blobs/sha256"))
}

#[tokio::test]
async fn pull_busybox_matches_umoci_and_second_pull_reuses() {
    let reg = TestRegistry::start();
    let reference = reg.push_busybox("test/busybox", "v1");
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();

    let (res, msgs) = pull(&store, &reference).await;
    let rec = res.unwrap_or_else(|e| panic!("pull failed: {e}"));
    let st = statuses(&msgs);
    assert_eq!(st[0], "Pulling from test/busybox");
    assert_eq!(msgs[0].id.as_deref(), Some("v1"));
    for want in [
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(st.iter().any(|s| s == want), "missing {want:?} in {st:?}");
    }
    assert!(msgs
        .iter()
        .any(|m| m.status.as_deref() == Some("Downloading")
            && m.progress_detail
                .as_ref()
                .is_some_and(|d| d.total.is_some())));
    assert!(
        st.iter().any(|s| s.starts_with("Digest: sha256:")),
        "{st:?}"
    );
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Downloaded newer image for {reference}")
    );
    assert_eq!(rec.config.cmd, Some(vec!["sh".to_string()]));
    // Size as `docker images` shows it: unpacked content, not the compressed download.
    let busybox_len = std::fs::metadata("/bin/busybox").unwrap().len() as i64;
    assert!(
        rec.size >= busybox_len && rec.size < busybox_len + 4096,
        "{}",
        rec.size
    );
    assert!(rec.size > rec.layers[0].size as i64);
    assert_eq!(rec.repo_tags, vec![reference.clone()]);

    // The snapshot is what umoci (the oracle) unpacks from the same image.
    let lowers = store.lower_dirs(&rec).unwrap();
    assert_eq!(lowers.len(), 1);
    let bundle = r._dir.path().join("oracle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:busybox", reg.busybox_layout().display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = tree(&lowers[0]);
    let oracle = tree(&bundle.join("rootfs"));
    assert!(
        ours.contains_key("bin/busybox") && ours["bin/sh"] == "link -> busybox",
        "{ours:?}"
    );
    assert_eq!(ours["tmp"], "dir 1777 0:0");
    assert_eq!(ours, oracle, "our snapshot differs from umoci's unpack");

    // Resolution: by name, by normalised name, by id and id prefix.
    let id_hex = rec.id.strip_prefix("sha256:").unwrap();
    for name in [reference.as_str(), &rec.id, &id_hex[..12]] {
        assert_eq!(
            store.resolve(name).map(|r| r.id),
            Some(rec.id.clone()),
            "{name}"
        );
    }
    assert!(store.resolve(&reference.replace(":v1", ":v2")).is_none());
    let digest_ref = &rec.repo_digests[0];
    assert_eq!(
        store.resolve(digest_ref).map(|r| r.id),
        Some(rec.id.clone())
    );

    // Second pull: nothing downloaded, "up to date".
    let blobs_before = blobs(&r.roots);
    let (res, msgs) = pull(&store, &reference).await;
    res.unwrap();
    let st = statuses(&msgs);
    assert!(st.iter().any(|s| s == "Already exists"), "{st:?}");
    assert!(!st.iter().any(|s| s == "Downloading"), "{st:?}");
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Image is up to date for {reference}")
    );
    assert_eq!(blobs(&r.roots), blobs_before);

    // Records survive a restart of the store.
    drop(store);
    let store = ImageStore::open(&r.roots).unwrap();
    let again = store.resolve(&reference).expect("image known after reopen");
    assert_eq!(again.id, rec.id);
    assert_eq!(store.list().len(), 1);
    let insp = store.inspect(&again);
    assert_eq!(insp.root_fs.layers, rec.diff_ids);
    assert_eq!(store.summary(&again).repo_tags, vec![reference.clone()]);
}

#[tokio::test]
async fn docker_schema2_manifest_and_default_tag() {
    let reg = TestRegistry::start();
    let reference = reg.push_busybox_docker_v2("busybox", "latest");
    // The registry really serves a Docker schema 2 manifest.
    let (status, body) = reg.get(
        "/v2/busybox/manifests/latest",
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body)
        .contains("application/vnd.docker.distribution.manifest.v2+json"));
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let short = format!("{}/busybox", reg.host());
    let (res, _) = pull(&store, &short).await;
    let rec = res.unwrap_or_else(|e| panic!("pull failed: {e}"));
    assert_eq!(rec.repo_tags, vec![reference.clone()]);
    assert_eq!(store.resolve(&short).unwrap().id, rec.id);
    let lower = &store.lower_dirs(&rec).unwrap()[0];
    assert!(lower.join("bin/busybox").is_file());
}

#[tokio::test]
async fn unknown_image_names_image_and_registry() {
    let reg = TestRegistry::start();
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let reference = format!("{}/nosuch/image:1.0", reg.host());
    let (res, _) = pull(&store, &reference).await;
    let e = res.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("nosuch/image:1.0"), "{text}");
    assert!(text.contains(&reg.host()), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert_eq!(berth::engine::api::server::errors::image_status(&e), 404);
    assert!(blobs(&r.roots).is_empty());
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn unreachable_registry_names_host_and_port() {
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let port = free_port();
    let (res, _) = pull(&store, &format!("127.0.0.1:{port}/x/y:1")).await;
    let text = res.unwrap_err().to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(blobs(&r.roots).is_empty());
}

fn manifest_layer_digests(reg: &TestRegistry, repo: &str, tag: &str) -> Vec<String> {
    let (status, body) = reg.get(
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn corrupt_blob_is_refused_and_nothing_is_kept() {
    let reg = TestRegistry::start();
    let mut t = TarBuilder::new();
    t.dir("etc/", 0o755)
        .file("etc/hello", 0o644, &vec![b'x'; 100_000]);
    let reference = reg.push_layers("corrupt", "1", &[t.finish()]);
    let layers = manifest_layer_digests(&reg, "corrupt", "1");
    reg.corrupt_blob(&layers[0]);

    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let (res, _) = pull(&store, &reference).await;
    let text = res.unwrap_err().to_string();
    assert!(text.contains("digest mismatch"), "{text}");
    assert!(text.contains(&layers[0]), "{text}");
    assert!(blobs(&r.roots).is_empty(), "{:?}", blobs(&r.roots));
    assert!(dir_entries(&r.roots.content_dir().join("ingest")).is_empty());
    assert!(dir_entries(&r.roots.snapshots_dir()).is_empty());
    assert!(store.resolve(&reference).is_none());
}

#[tokio::test]
async fn multi_layer_image_with_whiteouts() {
    let reg = TestRegistry::start();
    let mut l1 = TarBuilder::new();
    l1.dir("etc/", 0o755)
        .file("etc/keep", 0o644, b"keep")
        .file("etc/gone", 0o644, b"gone")
        .dir("opaque/", 0o755)
        .file("opaque/old", 0o644, b"old");
    let mut l2 = TarBuilder::new();
    l2.file("etc/.wh.gone", 0o644, b"")
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", 0o644, b"")
        .file("opaque/new", 0o644, b"new");
    let reference = reg.push_layers("layers", "1", &[l1.finish(), l2.finish()]);
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let (res, _) = pull(&store, &reference).await;
    let rec = res.unwrap_or_else(|e| panic!("{e}"));
    let lowers: Vec<PathBuf> = store.lower_dirs(&rec).unwrap();
    assert_eq!(lowers.len(), 2);
    // Topmost first: the whiteout layer.
    let top = &lowers[0];
    let md = std::fs::symlink_metadata(top.join("etc/gone")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        md.file_type().is_char_device() && md.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    let opq = xattr_get(&top.join("opaque"), "trusted.overlay.opaque");
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));
    assert_eq!(std::fs::read(top.join("opaque/new")).unwrap(), b"new");
    assert_eq!(std::fs::read(lowers[1].join("etc/gone")).unwrap(), b"gone");
}

pub fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
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
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn snapshot_entries(roots: &EngineRoots) -> Vec<String> {
    dir_entries(&roots.snapshots_dir())
}

#[tokio::test]
async fn hostile_layers_fail_the_pull_and_leave_nothing() {
    let reg = TestRegistry::start();
    let r = roots();
    let outside = r._dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let store = ImageStore::open(&r.roots).unwrap();

    let mut dotdot = TarBuilder::new();
    dotdot
        .file("ok", 0o644, b"fine")
        .file("../../../outside/pwned", 0o644, b"x");
    let mut link = TarBuilder::new();
    link.symlink("l", &outside.display().to_string())
        .file("l/pwned", 0o644, b"x");
    let mut hard = TarBuilder::new();
    hard.hardlink("h", "../../../outside");
    for (name, tar, want) in [
        ("dotdot", dotdot.finish(), "'..'"),
        ("symlink", link.finish(), "symlink"),
        ("hardlink", hard.finish(), "'..'"),
    ] {
        let reference = reg.push_layers(&format!("hostile/{name}"), "1", &[tar]);
        let (res, _) = pull(&store, &reference).await;
        let e = res.unwrap_err();
        let text = e.to_string();
        assert!(e.is_hostile_layer(), "{name}: {text}");
        assert!(
            text.contains("hostile layer") && text.contains(want),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!("hostile/{name}")),
            "{name}: error names the image: {text}"
        );
        assert!(
            dir_entries(&outside).is_empty(),
            "{name}: wrote outside the root"
        );
        assert!(
            snapshot_entries(&r.roots).is_empty(),
            "{name}: {:?}",
            snapshot_entries(&r.roots)
        );
        assert!(blobs(&r.roots).is_empty(), "{name}: {:?}", blobs(&r.roots));
        assert!(store.resolve(&reference).is_none());
    }
}

#[tokio::test]
async fn lying_configs_are_refused() {
    use common::registry::ImageSpec;
    let reg = TestRegistry::start();
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let layer = TarBuilder::new().file("f", 0o644, b"data").finish();

    // DiffID that does not match the uncompressed layer (U16).
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let reference = reg.push_image(
        "lie/diffid",
        "1",
        &ImageSpec {
            layers: vec![layer.clone()],
            gzip: true,
            diff_ids: Some(vec![wrong.clone()]),
        },
    );
    let (res, _) = pull(&store, &reference).await;
    let text = res.unwrap_err().to_string();
    assert!(
        text.contains("does not match the config's diff_id") && text.contains(&wrong),
        "{text}"
    );
    assert!(snapshot_entries(&r.roots).is_empty());
    assert!(blobs(&r.roots).is_empty(), "{:?}", blobs(&r.roots));

    // More diff_ids than layers.
    let reference = reg.push_image(
        "lie/count",
        "1",
        &ImageSpec {
            layers: vec![layer.clone()],
            gzip: true,
            diff_ids: Some(vec![wrong.clone(), wrong.clone()]),
        },
    );
    let text = pull(&store, &reference).await.0.unwrap_err().to_string();
    assert!(text.contains("1 layers but 2 diff_ids"), "{text}");

    // A diff_id that would be a path escape if used as a snapshot name (U19).
    let reference = reg.push_image(
        "lie/syntax",
        "1",
        &ImageSpec {
            layers: vec![layer.clone()],
            gzip: true,
            diff_ids: Some(vec!["sha256:../../../x".into()]),
        },
    );
    let text = pull(&store, &reference).await.0.unwrap_err().to_string();
    assert!(text.contains("bad diff_id"), "{text}");
    assert!(snapshot_entries(&r.roots).is_empty());
    assert!(blobs(&r.roots).is_empty(), "{:?}", blobs(&r.roots));
}

#[tokio::test]
async fn uncompressed_layers_are_pulled() {
    use common::registry::ImageSpec;
    let reg = TestRegistry::start();
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let layer = TarBuilder::new()
        .dir("srv/", 0o755)
        .file("srv/index.html", 0o644, b"hi")
        .finish();
    let reference = reg.push_image(
        "plain/tar",
        "1",
        &ImageSpec {
            layers: vec![layer],
            gzip: false,
            diff_ids: None,
        },
    );
    let rec = pull(&store, &reference)
        .await
        .0
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rec.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    let lower = &store.lower_dirs(&rec).unwrap()[0];
    assert_eq!(std::fs::read(lower.join("srv/index.html")).unwrap(), b"hi");
}

#[test]
fn u19_references_that_could_escape_are_rejected() {
    for bad in [
        "busybox:..",
        "busybox@sha256:../../etc",
        "../busybox",
        "a/../../b:1",
        "busy\0box",
        "127.0.0.1:5000/x@sha256:ABCDEF",
    ] {
        let e = ImageReference::parse(bad).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid reference format"),
            "{bad:?}: {e}"
        );
    }
}

#[tokio::test]
async fn many_layers_download_in_parallel_and_roll_back_together() {
    let reg = TestRegistry::start();
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let layers: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            TarBuilder::new()
                .file(&format!("layer{i}"), 0o644, &vec![b'0' + i as u8; 300_000])
                .finish()
        })
        .collect();
    let reference = reg.push_layers("many/layers", "1", &layers);
    let (res, msgs) = pull(&store, &reference).await;
    let rec = res.unwrap_or_else(|e| panic!("{e}"));
    let lowers = store.lower_dirs(&rec).unwrap();
    assert_eq!(lowers.len(), 6);
    for (n, dir) in lowers.iter().rev().enumerate() {
        assert_eq!(
            std::fs::read(dir.join(format!("layer{n}"))).unwrap()[0],
            b'0' + n as u8
        );
    }
    let complete = msgs
        .iter()
        .filter(|m| m.status.as_deref() == Some("Pull complete"))
        .count();
    assert_eq!(complete, 6);

    // The third of five layers is hostile: every blob and snapshot of the pull is rolled back.
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let mut bad = layers[..5].to_vec();
    bad[2] = TarBuilder::new().file("../../escape", 0o644, b"x").finish();
    let reference = reg.push_layers("many/bad", "1", &bad);
    let e = pull(&store, &reference).await.0.unwrap_err();
    assert!(e.is_hostile_layer(), "{e}");
    assert!(blobs(&r.roots).is_empty(), "{:?}", blobs(&r.roots));
    assert!(
        snapshot_entries(&r.roots).is_empty(),
        "{:?}",
        snapshot_entries(&r.roots)
    );
    assert!(dir_entries(&r.roots.content_dir().join("ingest")).is_empty());
}

fn manifest_of(reg: &TestRegistry, repo: &str, tag: &str) -> (String, usize) {
    let (status, body) = reg.get(
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    (
        format!("sha256:{}", common::registry::sha256_hex(&body)),
        body.len(),
    )
}

#[tokio::test]
async fn index_selects_linux_amd64_and_digest_pulls_work() {
    let reg = TestRegistry::start();
    let amd = TarBuilder::new().file("arch", 0o644, b"amd64").finish();
    let arm = TarBuilder::new().file("arch", 0o644, b"arm64").finish();
    reg.push_layers("multi/app", "amd64", &[amd]);
    reg.push_layers("multi/app", "arm64", &[arm]);
    let (amd_digest, amd_size) = manifest_of(&reg, "multi/app", "amd64");
    let (arm_digest, arm_size) = manifest_of(&reg, "multi/app", "arm64");
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": oci, "digest": arm_digest, "size": arm_size,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": oci, "digest": arm_digest, "size": arm_size,
             "platform": {"architecture": "amd64", "os": "linux"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"mediaType": oci, "digest": amd_digest, "size": amd_size,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let body = serde_json::to_vec(&index).unwrap();
    let (status, _, resp) = common::registry::http_request(
        reg.port,
        "PUT",
        "/v2/multi/app/manifests/multi",
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        &body,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let index_digest = format!("sha256:{}", common::registry::sha256_hex(&body));

    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let reference = format!("{}/multi/app:multi", reg.host());
    let (res, msgs) = pull(&store, &reference).await;
    let rec = res.unwrap_or_else(|e| panic!("{e}"));
    let lower = &store.lower_dirs(&rec).unwrap()[0];
    assert_eq!(std::fs::read(lower.join("arch")).unwrap(), b"amd64");
    // The digest users see is the index's, as with Docker.
    assert!(statuses(&msgs).contains(&format!("Digest: {index_digest}")));
    assert_eq!(rec.manifest_digest, amd_digest);

    // Pull by digest: no tag, found again by name@digest.
    let r = roots();
    let store = ImageStore::open(&r.roots).unwrap();
    let by_digest = format!("{}/multi/app@{amd_digest}", reg.host());
    let rec = pull(&store, &by_digest)
        .await
        .0
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rec.repo_tags.is_empty());
    assert_eq!(rec.repo_digests, vec![by_digest.clone()]);
    assert_eq!(store.resolve(&by_digest).unwrap().id, rec.id);
    // Another digest of the same repository is another image.
    let other = format!("{}/multi/app@{arm_digest}", reg.host());
    let rec2 = pull(&store, &other).await.0.unwrap();
    assert_ne!(rec2.id, rec.id);
    assert_eq!(store.resolve(&by_digest).unwrap().id, rec.id);
}

/// A tmpfs of `size` mounted at `dir/data` for a data root with little room; unmounted on drop.
struct SmallDataRoot {
    dir: tempfile::TempDir,
    roots: EngineRoots,
}

impl SmallDataRoot {
    fn new(size: &str) -> SmallDataRoot {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &data,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .unwrap();
        let roots = EngineRoots::new(data, dir.path().join("run"));
        SmallDataRoot { dir, roots }
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.roots.data_root).unwrap();
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for SmallDataRoot {
    fn drop(&mut self) {
        // Before the TempDir field is dropped and removes the mount point.
        let _ = nix::mount::umount2(&self.roots.data_root, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_pull_that_cannot_fit_the_data_root_is_refused_with_the_free_space() {
    use common::registry::ImageSpec;
    let reg = TestRegistry::start();
    let small = SmallDataRoot::new("96m");
    let store = ImageStore::open(&small.roots).unwrap();
    let free_before = small.free();

    // 40 MiB that do not compress: 40 to download + 40 to unpack + the 64 MiB margin > 96 MiB.
    let mut noise = vec![0u8; 40 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    let big = TarBuilder::new().file("noise", 0o644, &noise).finish();
    let reference = reg.push_image(
        "space/big",
        "1",
        &ImageSpec {
            layers: vec![big],
            gzip: false,
            diff_ids: None,
        },
    );
    let text = pull(&store, &reference).await.0.unwrap_err().to_string();
    let root = small.roots.data_root.display().to_string();
    assert!(
        text.contains(&format!("not enough free space on {root} for")),
        "{text}"
    );
    assert!(
        text.contains("need about") && text.contains("are free"),
        "{text}"
    );
    // Refused before anything was fetched.
    assert!(blobs(&small.roots).is_empty(), "{:?}", blobs(&small.roots));
    assert!(snapshot_entries(&small.roots).is_empty());
    assert!(small.free() + (1 << 20) >= free_before);

    // A gzip bomb passes that check (its blob is small) and is stopped while unpacking, at the
    // free space less the margin, with the same kind of error.
    let script = "cd \"$1\" && truncate -s 200M zeros && tar --format=ustar -cf layer.tar zeros \
                  && gzip -1 -c layer.tar > layer.tar.gz && sha256sum layer.tar";
    let work = small.dir.path();
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff_id = format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );
    let gz = std::fs::read(work.join("layer.tar.gz")).unwrap();
    assert!(gz.len() < 1 << 20, "{}", gz.len());
    let reference = reg.push_image(
        "space/bomb",
        "1",
        &ImageSpec {
            layers: vec![gz],
            gzip: false,
            diff_ids: Some(vec![diff_id]),
        },
    );
    let text = pull(&store, &reference).await.0.unwrap_err().to_string();
    assert!(
        text.contains(&format!("not enough free space on {root} for"))
            && text.contains("unpacks to more than"),
        "{text}"
    );
    assert!(snapshot_entries(&small.roots).is_empty());
    assert!(blobs(&small.roots).is_empty(), "{:?}", blobs(&small.roots));
    assert!(small.free() + (1 << 20) >= free_before);

    // `docker import` of the same bomb is held to the same room.
    let file = std::fs::File::open(work.join("layer.tar.gz")).unwrap();
    let text = store.import(file, Some("bomb:1")).unwrap_err().to_string();
    assert!(
        text.contains(&format!("not enough free space on {root} for bomb:1"))
            && text.contains("unpacks to more than"),
        "{text}"
    );
    assert!(snapshot_entries(&small.roots).is_empty());
    assert!(blobs(&small.roots).is_empty(), "{:?}", blobs(&small.roots));
}
