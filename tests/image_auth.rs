//! Bearer-token auth without internet: the test registry is configured with `auth: token:` and a
//! tiny in-test token server hands out RS256 JWTs signed (with the `openssl` CLI) by a
//! self-signed certificate the registry trusts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use berth::engine::image::ImageStore;
use berth::engine::reference::ImageReference;
use berth::engine::{EngineRoots, EngineSettings};
use common::registry::{TarBuilder, TestRegistry};

fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64std(data: &[u8]) -> String {
    let mut s = b64url(data).replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new(common::precondition::tool("openssl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A JWT for `repo` with pull+push, signed by `key.pem`, carrying the cert in `x5c`.
fn make_token(dir: &Path, issuer: &str, service: &str, repo: &str) -> String {
    let cert_der = openssl(&[
        "x509",
        "-in",
        dir.join("cert.pem").to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [b64std(&cert_der)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": issuer, "sub": "", "aud": service, "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
        "jti": format!("{}", rand::random::<u64>()),
        "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}],
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let input_path = dir.join("input");
    std::fs::write(&input_path, &signing_input).unwrap();
    let sig = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        dir.join("key.pem").to_str().unwrap(),
        input_path.to_str().unwrap(),
    ]);
    format!("{signing_input}.{}", b64url(&sig))
}

/// Serves `{"token": …}` to every request and counts them; stops on drop.
struct TokenServer {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(token: String) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
                if line.starts_with("GET /token") {
                    h.fetch_add(1, Ordering::SeqCst);
                }
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 3600})
                        .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn pull_with_bearer_token_auth() {
    let keys = tempfile::tempdir().unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=berth-test-token",
        "-keyout",
        keys.path().join("key.pem").to_str().unwrap(),
        "-out",
        keys.path().join("cert.pem").to_str().unwrap(),
    ]);
    let (issuer, service, repo) = ("berth-test-issuer", "berth-test-registry", "auth/busybox");
    let token = make_token(keys.path(), issuer, service, repo);
    let server = TokenServer::start(token);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
        server.port,
        keys.path().join("cert.pem").display()
    );
    let reg = TestRegistry::start_with(&auth);
    // Anonymous access is refused with a Bearer challenge.
    let (status, _) = reg.get(&format!("/v2/{repo}/tags/list"), "*/*");
    assert_eq!(status, 401);

    let layer = TarBuilder::new()
        .file("hello", 0o644, b"authenticated")
        .finish();
    let reference = reg.push_layers(repo, "1", &[layer]);
    let hits_after_push = server.hits.load(Ordering::SeqCst);

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&EngineRoots::new(
        dir.path().join("d"),
        dir.path().join("r"),
    ))
    .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(1000);
    let rec = store
        .pull(
            &ImageReference::parse(&reference).unwrap(),
            &EngineSettings::default(),
            tx,
        )
        .await
        .unwrap_or_else(|e| panic!("pull with token auth failed: {e}"));
    assert!(
        server.hits.load(Ordering::SeqCst) > hits_after_push,
        "the token endpoint was used"
    );
    let lower = &store.lower_dirs(&rec).unwrap()[0];
    assert_eq!(
        std::fs::read(lower.join("hello")).unwrap(),
        b"authenticated"
    );

    // A repository the token does not grant: the registry refuses, the error says so.
    let (tx, _rx) = tokio::sync::mpsc::channel(1000);
    let other = format!("{}/auth/other:1", reg.host());
    let e = store
        .pull(
            &ImageReference::parse(&other).unwrap(),
            &EngineSettings::default(),
            tx,
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("refused access") && text.contains("auth/other"),
        "{text}"
    );
}
