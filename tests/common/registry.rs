//! A real registry for tests: Debian's `docker-registry` on a free loopback port with a config of
//! our own (no auth, temporary storage), plus images to push into it: a busybox image built from
//! the host's busybox-static with umoci and pushed with skopeo, and hand-made layer tars (for
//! hostile-layer tests) written with `TarBuilder`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A free TCP port on 127.0.0.1 (nobody listens on it once this returns).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().unwrap().port()
}

fn unique_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A running `docker-registry`, killed (by PID) and removed on drop.
pub struct TestRegistry {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl TestRegistry {
    /// Starts a registry with the extra YAML `extra_config` appended (e.g. an `auth:` section).
    pub fn start() -> TestRegistry {
        Self::start_with("")
    }

    pub fn start_with(extra_config: &str) -> TestRegistry {
        let dir = unique_dir("berth-test-registry");
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-{}\n{extra_config}",
                storage.display(),
                rand::random::<u64>()
            );
            let cfg = dir.join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start /usr/bin/docker-registry (package docker-registry)");
            let mut reg = TestRegistry {
                port,
                dir: dir.clone(),
                child,
            };
            if reg.wait_ready(Duration::from_secs(15)) {
                return reg;
            }
            last_err = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            // Keep the dir for the next attempt: forget this instance without running Drop.
            std::mem::forget(reg);
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("docker-registry did not come up: {last_err}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(status) = http_status(self.port, "/v2/") {
                if status == 200 || status == 401 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Builds (once per registry) the busybox image and pushes it as `repo:tag` (OCI manifest).
    /// Returns `127.0.0.1:PORT/repo:tag`.
    pub fn push_busybox(&self, repo: &str, tag: &str) -> String {
        let layout = self.busybox_layout();
        self.push_layout(&layout, "busybox", repo, tag, None)
    }

    /// The same image pushed with a Docker schema 2 manifest.
    pub fn push_busybox_docker_v2(&self, repo: &str, tag: &str) -> String {
        let layout = self.busybox_layout();
        self.push_layout(&layout, "busybox", repo, tag, Some("v2s2"))
    }

    /// The OCI layout (`<dir>:busybox`) the busybox image is built in; tests may `umoci unpack` it.
    pub fn busybox_layout(&self) -> PathBuf {
        let layout = self.dir.join("busybox-oci");
        if !layout.join("index.json").exists() {
            build_busybox_layout(&layout, &self.dir.join("busybox-bundle"));
        }
        layout
    }

    /// `skopeo copy oci:<layout>:<src_tag> docker://127.0.0.1:PORT/<repo>:<tag>`.
    pub fn push_layout(
        &self,
        layout: &Path,
        src_tag: &str,
        repo: &str,
        tag: &str,
        format: Option<&str>,
    ) -> String {
        let dest = format!("{}/{repo}:{tag}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            "--quiet",
        ]);
        if let Some(f) = format {
            cmd.args(["--format", f]);
        }
        cmd.arg(format!("oci:{}:{src_tag}", layout.display()))
            .arg(format!("docker://{dest}"));
        run(&mut cmd);
        dest
    }

    /// Pushes an image made of the given uncompressed layer tars (gzip-compressed on the way),
    /// with correct digests and DiffIDs and `CMD ["sh"]`. Returns the reference.
    pub fn push_layers(&self, repo: &str, tag: &str, layers: &[Vec<u8>]) -> String {
        self.push_image(repo, tag, &ImageSpec::gzip(layers))
    }

    /// Pushes an image described by `spec` (compression, DiffIDs that may lie).
    pub fn push_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> String {
        let layout = unique_dir_in(&self.dir, "layout");
        write_oci_layout_spec(&layout, "img", spec);
        if spec.gzip {
            self.push_layout(&layout, "img", repo, tag, None)
        } else {
            // skopeo compresses layers for registries; push the layout's blobs as they are.
            self.push_layout_raw(&layout, repo, tag)
        }
    }

    /// Pushes an OCI layout's single image with the distribution API directly (monolithic blob
    /// uploads, then the manifest bytes unchanged).
    pub fn push_layout_raw(&self, layout: &Path, repo: &str, tag: &str) -> String {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let md = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let blob = |d: &str| {
            std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let manifest_bytes = blob(&md);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
        for l in manifest["layers"].as_array().unwrap() {
            digests.push(l["digest"].as_str().unwrap().to_string());
        }
        for d in digests {
            let (status, headers, _) = http_request(
                self.port,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                b"",
            );
            assert_eq!(status, 202, "start upload");
            let loc = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.clone())
                .expect("upload location");
            let path = match loc.find("/v2/") {
                Some(i) => loc[i..].to_string(),
                None => loc,
            };
            let sep = if path.contains('?') { '&' } else { '?' };
            let (status, _, body) = http_request(
                self.port,
                "PUT",
                &format!("{path}{sep}digest={d}"),
                &[("Content-Type", "application/octet-stream")],
                &blob(&d),
            );
            assert_eq!(
                status,
                201,
                "upload {d}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let (status, _, body) = http_request(
            self.port,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &manifest_bytes,
        );
        assert_eq!(
            status,
            201,
            "put manifest: {}",
            String::from_utf8_lossy(&body)
        );
        format!("{}/{repo}:{tag}", self.host())
    }

    /// Path of a blob's bytes in the registry's storage (to corrupt it on purpose).
    pub fn blob_data_path(&self, digest_hex: &str) -> PathBuf {
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&digest_hex[..2])
            .join(digest_hex)
            .join("data")
    }

    /// Flips bytes of a stored blob (same length), so the registry serves content that does not
    /// match its digest.
    pub fn corrupt_blob(&self, digest_hex: &str) {
        let p = self.blob_data_path(digest_hex);
        let mut b = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let n = b.len();
        for x in b[n / 2..].iter_mut().take(16) {
            *x ^= 0xff;
        }
        std::fs::write(&p, b).unwrap();
    }

    /// `GET` on the registry, returning status and body (for inspecting manifests in tests).
    pub fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        http_get(self.port, path, accept).expect("registry answers")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique_dir_in(parent: &Path, prefix: &str) -> PathBuf {
    let d = parent.join(format!("{prefix}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path, "*/*").map(|(s, _)| s)
}

/// A minimal HTTP/1.1 request on loopback (`Connection: close`): status, headers, body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to registry");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head")
        + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let hdrs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, hdrs, buf[head_end..].to_vec())
}

/// A minimal HTTP/1.0 GET on loopback (no client library needed for readiness checks).
pub fn http_get(port: u16, path: &str, accept: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body_at = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((status, buf[body_at..].to_vec()))
}

/// The rootfs of the busybox fixture image: `/bin/busybox` from the host's busybox-static, a
/// symlink per applet, `/etc/passwd`, `/etc/group`, `/tmp` (1777), `/var/www`, `/root`.
pub fn populate_busybox_rootfs(rootfs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (busybox-static)");
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = run(Command::new("/bin/busybox").arg("--list"));
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).unwrap();
        }
    }
    for d in [
        "etc", "tmp", "var/www", "root", "home", "usr/bin", "usr/sbin", "sbin", "dev", "proc",
        "sys",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(rootfs.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n").unwrap();
}

fn build_busybox_layout(layout: &Path, bundle: &Path) {
    let image = format!("{}:busybox", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(bundle));
    populate_busybox_rootfs(&bundle.join("rootfs"));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]));
    let _ = std::fs::remove_dir_all(bundle);
}

/// Writes an OCI image layout at `dir` with tag `tag`, one layer per tar (gzip-compressed when
/// `gzip`), a linux/amd64 config with correct DiffIDs and `CMD ["sh"]`.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], gzip: bool) {
    write_oci_layout_spec(
        dir,
        tag,
        &ImageSpec {
            layers: layers.to_vec(),
            gzip,
            diff_ids: None,
        },
    )
}

/// What `push_image` pushes.
pub struct ImageSpec {
    /// Uncompressed layer tars, bottom first.
    pub layers: Vec<Vec<u8>>,
    pub gzip: bool,
    /// DiffIDs to write in the config instead of the true ones (to test verification).
    pub diff_ids: Option<Vec<String>>,
}

impl ImageSpec {
    pub fn gzip(layers: &[Vec<u8>]) -> ImageSpec {
        ImageSpec {
            layers: layers.to_vec(),
            gzip: true,
            diff_ids: None,
        }
    }
}

pub fn write_oci_layout_spec(dir: &Path, tag: &str, spec: &ImageSpec) {
    let (layers, gzip) = (&spec.layers, spec.gzip);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let h = sha256_hex(bytes);
        std::fs::write(blobs.join(&h), bytes).unwrap();
        format!("sha256:{h}")
    };
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let (bytes, media) = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).unwrap();
            (
                enc.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let d = put(&bytes);
        layer_descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": bytes.len()}));
    }
    if let Some(d) = &spec.diff_ids {
        diff_ids = d.clone();
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = put(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": layer_descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
                       "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Writes tar archives byte by byte, including entries no well-behaved tool would produce
/// (`../` names, absolute names, hardlinks to outside, PAX headers of any content).
#[derive(Default)]
pub struct TarBuilder {
    buf: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A raw ustar header + data. `name` goes in the 100-byte name field (longer names need
    /// `pax`); `link` in the linkname field.
    pub fn entry(&mut self, kind: u8, name: &str, link: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry_sized(kind, name, link, mode, data, data.len() as u64)
    }

    /// Like `entry`, but the header declares `size` whatever the data length is.
    pub fn entry_sized(
        &mut self,
        kind: u8,
        name: &str,
        link: &str,
        mode: u32,
        data: &[u8],
        size: u64,
    ) -> &mut Self {
        assert!(
            name.len() <= 100 && link.len() <= 100,
            "use pax() for long names"
        );
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], v: u64| {
            let s = format!("{:0width$o}\0", v, width = field.len() - 1);
            field.copy_from_slice(s.as_bytes());
        };
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(b'5', name, "", mode, b"")
    }
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, "", mode, data)
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'2', name, target, 0o777, b"")
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'1', name, target, 0o644, b"")
    }

    /// A PAX extended header (`x`) applying `records` to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            // "<len> <key>=<value>\n", where len counts itself.
            let body_len = k.len() + v.len() + 3;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.entry(b'x', "PaxHeader", "", 0o644, &data)
    }

    /// Raw bytes appended as they are (for truncated or garbage archives).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The archive with its two zero end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut b = self.buf.clone();
        b.extend(std::iter::repeat_n(0u8, 1024));
        b
    }
}
