//! OCI distribution client: token auth, manifests and indexes, streamed verified blobs.
//!
//! Only the protocol lives here: the caller (`image.rs`) decides what to fetch and verifies
//! content against digests as it streams it into the content store. Every manifest request
//! carries an `Accept` header listing all four manifest media types (registry 2.8 otherwise
//! down-converts to schema 1). Plain HTTP is used only for loopback registries and those the
//! engine is configured to trust as insecure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, MediaType, Os, SCHEMA_VERSION};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use thiserror::Error;

use super::reference::ImageReference;
use super::EngineSettings;

/// Docker schema 2 media types. oci-spec has no variants for them: they parse (and must be
/// matched) as `MediaType::Other(..)`.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A manifest is small; the spec asks registries to accept at least 4 MB.
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("registry {host} is unreachable: {source}; check that it is running and the address is right")]
    Unreachable {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "image {image} not found on registry {registry}: manifest unknown; check the name and tag"
    )]
    ManifestUnknown { image: String, registry: String },
    #[error("registry {registry} refused access to {image} ({status}): {detail}")]
    Unauthorized {
        image: String,
        registry: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry} answered {status} for {url}: {body}")]
    Status {
        registry: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("token endpoint {realm} failed: {detail}")]
    Token { realm: String, detail: String },
    #[error("invalid manifest {reference} from {registry}: {detail}")]
    InvalidManifest {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("reading from registry {host}: {source}")]
    Transfer {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build an http client: {0}")]
    Client(#[source] reqwest::Error),
}

type Result<T> = std::result::Result<T, RegistryError>;

/// A parsed manifest document: an image manifest or an index (OCI) / manifest list (Docker).
/// Both Docker schema 2 shapes are the OCI shapes with other media types, so oci-spec's types
/// read them as they are.
#[derive(Debug, Clone)]
pub enum Manifest {
    // Boxed: oci-spec's documents are hundreds of bytes each.
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Parses manifest bytes, deciding index vs. image by media type (header, then body).
///
/// Descriptor digests are checked for syntax by oci-spec here; callers still check that they
/// are sha256 (`is_valid_digest`) before using one in a path, as oci-spec admits any
/// registered or unregistered algorithm.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<Manifest, String> {
    // Only the fields that decide which oci-spec type to parse into; the document itself is
    // then parsed by oci-spec.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if probe.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "schema version {} is not supported (only schema 2 / OCI)",
            probe.schema_version
        ));
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| c.starts_with("application/vnd."));
    if let (Some(body), Some(header)) = (&probe.media_type, &ct) {
        if body != header {
            return Err(format!(
                "media type {body} in the body disagrees with Content-Type {header}"
            ));
        }
    }
    let media = probe.media_type.or(ct).map(|m| MediaType::from(m.as_str()));
    let is_index = match &media {
        Some(MediaType::ImageIndex) => true,
        Some(MediaType::ImageManifest) => false,
        Some(MediaType::Other(m)) if m == MEDIA_DOCKER_LIST => true,
        Some(MediaType::Other(m)) if m == MEDIA_DOCKER_MANIFEST => false,
        Some(other) => return Err(format!("unsupported manifest media type {other}")),
        None => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(|i| Manifest::Index(Box::new(i)))
            .map_err(|e| format!("bad index: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(|e| format!("bad manifest: {e}"))
    }
}

/// The linux/amd64 entry of an index, skipping attestation manifests.
pub fn select_platform(index: &ImageIndex) -> Option<&Descriptor> {
    index.manifests().iter().find(|d| {
        let attestation = d
            .annotations()
            .as_ref()
            .and_then(|a| a.get("vnd.docker.reference.type"))
            .is_some_and(|t| t == "attestation-manifest");
        !attestation
            && d.platform()
                .as_ref()
                .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
    })
}

/// True when the registry host is on loopback: such registries may be plain HTTP.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A fetched manifest: the exact bytes (digests are over these, never a re-serialisation).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest` as the registry announced it (checked against the bytes).
    pub header_digest: Option<String>,
}

/// A client for one repository on one registry.
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    /// `host:port` for error messages.
    authority: String,
    registry: String,
    repository: String,
    image: String,
    token: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl RegistryClient {
    pub fn new(reference: &ImageReference, settings: &EngineSettings) -> Result<Self> {
        let host = reference.api_host().to_string();
        let plain = is_loopback_registry(&host)
            || settings
                .insecure_registries
                .iter()
                .any(|r| r == &reference.registry || r == &host);
        let scheme = if plain { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| {
            RegistryError::InvalidManifest {
                reference: reference.to_string(),
                registry: host.clone(),
                detail: format!("bad registry address: {e}"),
            }
        })?;
        let authority = format!(
            "{}:{}",
            base.host_str().unwrap_or(&host),
            base.port_or_known_default().unwrap_or(443)
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            // A stalled registry must not hang a pull forever; a slow one is fine.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::Client)?;
        Ok(RegistryClient {
            http,
            base,
            authority,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            image: reference.to_string(),
            token: Mutex::new(None),
        })
    }

    /// `host:port` the client talks to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    fn url(&self, kind: &str, reference: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{}/{kind}/{reference}", self.repository));
        u
    }

    fn send_err(&self, e: reqwest::Error) -> RegistryError {
        if e.is_connect() || e.is_timeout() {
            RegistryError::Unreachable {
                host: self.authority.clone(),
                source: e,
            }
        } else {
            RegistryError::Transfer {
                host: self.authority.clone(),
                source: e,
            }
        }
    }

    /// GET with the current token; on a 401 challenge, fetch a token and retry once.
    async fn get(&self, url: Url, accept: Option<&str>) -> Result<Response> {
        let mut retried = false;
        loop {
            let mut req = self.http.get(url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            let token = self.token.lock().map(|t| t.clone()).unwrap_or(None);
            if let Some(t) = token {
                req = req.header(AUTHORIZATION, t);
            }
            let resp = req.send().await.map_err(|e| self.send_err(e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.authenticate(resp.headers()).await?;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<()> {
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            image: self.image.clone(),
            registry: self.registry.clone(),
            status: 401,
            detail,
        };
        let header = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("no WWW-Authenticate challenge".into()))?;
        let (scheme, params) = parse_challenge(header)
            .ok_or_else(|| unauthorized(format!("bad challenge {header:?}")))?;
        if scheme != "bearer" {
            return Err(unauthorized(format!(
                "the registry wants {scheme} credentials; berth pulls anonymously"
            )));
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| unauthorized("challenge without realm".into()))?;
        let token_err = |detail: String| RegistryError::Token {
            realm: realm.clone(),
            detail,
        };
        let mut url = Url::parse(realm).map_err(|e| token_err(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            let scope = params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
            q.append_pair("scope", &scope);
        }
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| token_err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(token_err(format!("status {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| token_err(e.to_string()))?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| token_err(format!("bad token reply: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("reply has no token".into()))?;
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(format!("Bearer {token}"));
        }
        Ok(())
    }

    async fn status_error(&self, url: &Url, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        if status == 401 || status == 403 {
            return RegistryError::Unauthorized {
                image: self.image.clone(),
                registry: self.registry.clone(),
                status,
                detail: body,
            };
        }
        RegistryError::Status {
            registry: self.registry.clone(),
            url: url.to_string(),
            status,
            body,
        }
    }

    /// Fetches a manifest or index by tag or digest, capped at `MAX_MANIFEST_BYTES`.
    pub async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = self.url("manifests", reference);
        let mut resp = self.get(url.clone(), Some(ACCEPT_MANIFESTS)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestUnknown {
                image: self.image.clone(),
                registry: self.registry.clone(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&url, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.send_err(e))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(RegistryError::InvalidManifest {
                    reference: reference.to_string(),
                    registry: self.registry.clone(),
                    detail: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
                });
            }
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            header_digest,
        })
    }

    /// Starts a blob download; the caller streams `chunk()`s and verifies the digest.
    pub async fn blob(&self, digest: &str) -> Result<Response> {
        let url = self.url("blobs", digest);
        let resp = self.get(url.clone(), None).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(&url, resp).await);
        }
        Ok(resp)
    }

    /// Reads the next chunk of a blob response, mapping transport errors.
    pub async fn next_chunk(&self, resp: &mut Response) -> Result<Option<bytes::Bytes>> {
        resp.chunk().await.map_err(|e| self.send_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
    }

    #[test]
    fn only_loopback_is_plain_http() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }

    #[test]
    fn docker_hub_maps_to_its_api_host_and_only_loopback_or_listed_is_http() {
        let settings = EngineSettings {
            insecure_registries: vec!["build.lan:5000".into()],
        };
        let c =
            |r: &str| RegistryClient::new(&ImageReference::parse(r).unwrap(), &settings).unwrap();
        let hub = c("busybox");
        assert_eq!(hub.authority(), "registry-1.docker.io:443");
        assert_eq!(hub.base.scheme(), "https");
        assert_eq!(
            hub.url("manifests", "latest").as_str(),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
        assert_eq!(c("127.0.0.1:5000/x").base.scheme(), "http");
        assert_eq!(c("build.lan:5000/x").base.scheme(), "http");
        assert_eq!(c("other.lan:5000/x").base.scheme(), "https");
        assert_eq!(c("localhost/x").authority(), "localhost:80");
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn index_picks_linux_amd64_and_skips_attestations() {
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{a}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{b}","size":1,"platform":{{"architecture":"amd64","os":"linux"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
          {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{c}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Manifest::Index(i) = parse_manifest(idx.as_bytes(), None).unwrap() else {
            panic!("expected an index")
        };
        assert_eq!(select_platform(&i).unwrap().digest().as_ref(), c);
    }

    /// Docker schema 2 documents as Docker Hub serves them (buildx attestation entries with
    /// `unknown/unknown` platforms, `os.version`, foreign layers) parse into oci-spec types.
    #[test]
    fn docker_schema2_list_and_manifest_parse() {
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_DOCKER_LIST}","manifests":[
          {{"mediaType":"{MEDIA_DOCKER_MANIFEST}","digest":"{a}","size":527,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{b}"}}}},
          {{"mediaType":"{MEDIA_DOCKER_MANIFEST}","digest":"{b}","size":527,"platform":{{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5206"}}}},
          {{"mediaType":"{MEDIA_DOCKER_MANIFEST}","digest":"{c}","size":527,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Manifest::Index(i) =
            parse_manifest(list.as_bytes(), Some(&format!("{MEDIA_DOCKER_LIST}; q=1"))).unwrap()
        else {
            panic!("expected a manifest list")
        };
        assert_eq!(
            i.media_type(),
            &Some(MediaType::Other(MEDIA_DOCKER_LIST.into()))
        );
        assert_eq!(select_platform(&i).unwrap().digest().as_ref(), c);

        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_DOCKER_MANIFEST}",
          "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1470,"digest":"{a}"}},
          "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"{b}"}},
                    {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":3,"digest":"{c}","urls":["https://example.com/x"]}}]}}"#
        );
        let Manifest::Image(m) = parse_manifest(manifest.as_bytes(), None).unwrap() else {
            panic!("expected a manifest")
        };
        assert_eq!(m.layers().len(), 2);
        assert_eq!(
            m.layers()[0].media_type().as_ref(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(m.config().size(), 1470);
    }

    #[test]
    fn schema1_and_mismatched_media_types_are_refused() {
        let e = parse_manifest(br#"{"schemaVersion":1}"#, None).unwrap_err();
        assert!(e.contains("schema version 1"), "{e}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[]}}"#,
            digest('a')
        );
        let e = parse_manifest(m.as_bytes(), Some(MEDIA_DOCKER_LIST)).unwrap_err();
        assert!(e.contains("disagrees"), "{e}");
        assert!(matches!(
            parse_manifest(m.as_bytes(), Some(MediaType::ImageManifest.as_ref())).unwrap(),
            Manifest::Image(_)
        ));
        let e = parse_manifest(
            m.replace("image.manifest.v1", "image.config.v1").as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(
            e.contains("unsupported manifest media type application/vnd.oci.image.config.v1+json"),
            "{e}"
        );
    }

    #[test]
    fn descriptors_with_malformed_digests_are_refused() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:../../etc","size":1},"layers":[]}"#;
        let e = parse_manifest(m.as_bytes(), None).unwrap_err();
        assert!(e.starts_with("bad manifest: "), "{e}");
    }
}
