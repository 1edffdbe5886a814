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

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::auth::AuthConfig;
use super::reference::ImageReference;
use super::EngineSettings;

/// Docker schema 2 media types. oci-spec has no variants for them: they parse (and must be
/// matched) as `MediaType::Other(..)`.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A manifest is small; the spec asks registries to accept at least 4 MB.
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;
/// A token reply is a small JSON document (a JWT and a few fields).
pub const MAX_TOKEN_BYTES: usize = 1 << 20;
/// What is read of an error reply: its start is shown, the rest is not worth downloading.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// Redirects followed for one request (reqwest's default).
const MAX_REDIRECTS: usize = 10;

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
    #[error(
        "{} for {registry}: the registry refused access to {image}: {detail}; {}",
        status_text(*status),
        login_hint(*with_credentials, registry)
    )]
    Unauthorized {
        image: String,
        registry: String,
        status: u16,
        detail: String,
        /// Whether credentials were sent (a wrong password) or not (a login is missing).
        with_credentials: bool,
    },
    #[error("registry {registry} answered {status} for {url}: {body}")]
    Status {
        registry: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("token endpoint {realm} of {registry} failed: {detail}")]
    Token {
        realm: String,
        registry: String,
        detail: String,
    },
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
    #[error("registry {host}: {detail}")]
    Redirect { host: String, detail: String },
    #[error("upload to registry {registry} failed: {detail}")]
    Upload { registry: String, detail: String },
    #[error("cannot build an http client: {0}")]
    Client(#[source] reqwest::Error),
}

type Result<T> = std::result::Result<T, RegistryError>;

fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_string()
}

fn login_hint(with_credentials: bool, registry: &str) -> String {
    if with_credentials {
        format!("check the username and password (berth login {registry})")
    } else {
        format!("no credentials were sent: log in with `berth login {registry}`")
    }
}

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
    /// The `Authorization` value in use (Basic, or a Bearer token for this repository's scope).
    token: Mutex<Option<String>>,
    /// Credentials for this request only (from `X-Registry-Auth` or the CLI's config).
    credentials: Option<AuthConfig>,
    /// Actions asked of a token endpoint: `pull`, or `pull,push` for a push.
    actions: &'static str,
    /// Other repositories the token should cover (`pull`), for cross-repository mounts.
    extra_scopes: Vec<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// What starting a blob upload led to.
#[derive(Debug)]
pub enum UploadStart {
    /// The registry mounted the blob from another repository: nothing to upload.
    Mounted,
    /// An upload session: PATCH/PUT to this URL.
    Session(Url),
}

/// Why a redirect from the chain `previous` (oldest first) to `next` must not be followed, if it
/// must not: a registry reached over https never hands the request (and its token) to plain
/// http, and only http(s) is followed. `Authorization` is never sent to another host either:
/// reqwest drops it when a redirect changes host or port, whatever the policy.
pub fn redirect_refusal(previous: &[Url], next: &Url) -> Option<String> {
    let from = previous.last().map(Url::as_str).unwrap_or("?");
    if previous.len() >= MAX_REDIRECTS {
        return Some(format!(
            "more than {MAX_REDIRECTS} redirects (last to {next})"
        ));
    }
    if !matches!(next.scheme(), "http" | "https") {
        return Some(format!(
            "refused redirect from {from} to {next}: not http(s)"
        ));
    }
    if next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https") {
        return Some(format!(
            "refused redirect from {from} to {next}: it downgrades https to plain http"
        ));
    }
    None
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        match redirect_refusal(attempt.previous(), attempt.url()) {
            Some(reason) => attempt.error(reason),
            None => attempt.follow(),
        }
    })
}

/// A response body read up to a limit.
struct CappedBody {
    bytes: Vec<u8>,
    /// False when the body was longer than the limit: the rest was never downloaded.
    complete: bool,
}

async fn read_capped(resp: &mut Response, limit: usize) -> reqwest::Result<CappedBody> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if bytes.len() + chunk.len() > limit {
            let room = limit - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody {
        bytes,
        complete: true,
    })
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
            .redirect(redirect_policy())
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
            credentials: None,
            actions: "pull",
            extra_scopes: Vec::new(),
        })
    }

    /// A client for the registry itself (no repository), as `login` uses to check credentials.
    pub fn for_registry(registry: &str, settings: &EngineSettings) -> Result<Self> {
        let reference = ImageReference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let mut client = Self::new(&reference, settings)?;
        client.image = registry.to_string();
        Ok(client)
    }

    /// Uses `credentials` for this client's requests (none: anonymous).
    pub fn with_credentials(mut self, credentials: Option<AuthConfig>) -> Self {
        self.credentials = credentials.filter(|c| !c.is_empty());
        if let Some(c) = &self.credentials {
            if !c.registrytoken.is_empty() {
                // A registry token is sent as it is, with no challenge round trip.
                self.token = Mutex::new(Some(format!("Bearer {}", c.registrytoken)));
            }
        }
        self
    }

    /// Asks token endpoints for push access too, and pull access to `mount_from` (other
    /// repositories of the same registry blobs may be mounted from).
    pub fn for_push(mut self, mount_from: &[String]) -> Self {
        self.actions = "pull,push";
        self.extra_scopes = mount_from
            .iter()
            .filter(|r| **r != self.repository)
            .map(|r| format!("repository:{r}:pull"))
            .collect();
        self
    }

    /// `host:port` the client talks to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn url(&self, kind: &str, reference: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{}/{kind}/{reference}", self.repository));
        u
    }

    fn send_err(&self, e: reqwest::Error) -> RegistryError {
        if e.is_redirect() {
            // The policy's reason is the error's source; reqwest's own text does not show it.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            return RegistryError::Redirect {
                host: self.authority.clone(),
                detail,
            };
        }
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

    /// True when `url` is on the registry itself: the `Authorization` header goes nowhere else
    /// (an upload `Location` may name another host).
    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Sends a request built by `build` with the current `Authorization`; on a 401 challenge,
    /// authenticates and retries once.
    async fn send(
        &self,
        url: &Url,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let mut retried = false;
        loop {
            let mut req = build(&self.http);
            let token = self.token.lock().map(|t| t.clone()).unwrap_or(None);
            if let Some(t) = token.filter(|_| self.same_origin(url)) {
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

    async fn get(&self, url: Url, accept: Option<&str>) -> Result<Response> {
        self.send(&url, |http| {
            let req = http.get(url.clone());
            match accept {
                Some(a) => req.header(ACCEPT, a),
                None => req,
            }
        })
        .await
    }

    fn unauthorized(&self, status: u16, detail: String) -> RegistryError {
        RegistryError::Unauthorized {
            image: self.image.clone(),
            registry: self.registry.clone(),
            status,
            detail,
            with_credentials: self.credentials.is_some(),
        }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<()> {
        let header = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.unauthorized(401, "no WWW-Authenticate challenge".into()))?;
        let (scheme, params) = parse_challenge(header)
            .ok_or_else(|| self.unauthorized(401, format!("bad challenge {header:?}")))?;
        let value = match scheme.as_str() {
            "basic" => {
                let (user, pass) = self
                    .credentials
                    .as_ref()
                    .and_then(AuthConfig::basic)
                    .ok_or_else(|| {
                        self.unauthorized(401, "the registry wants a username and password".into())
                    })?;
                format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
            }
            "bearer" => format!("Bearer {}", self.fetch_token(&params).await?),
            other => {
                return Err(self.unauthorized(
                    401,
                    format!(
                        "the registry wants {other} authentication, which berth does not speak"
                    ),
                ))
            }
        };
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(value);
        }
        Ok(())
    }

    /// The scopes a token is asked for: the challenge's, else this repository's with the
    /// client's actions, plus pull on mount sources.
    fn scopes(&self, challenge_scope: Option<&String>) -> Vec<String> {
        let own = format!("repository:{}:{}", self.repository, self.actions);
        let mut scopes = match challenge_scope {
            Some(s) if self.actions == "pull" => vec![s.clone()],
            // A login check asks for no repository (docker's login does the same).
            None if self.repository.is_empty() => vec![],
            _ => vec![own],
        };
        scopes.extend(self.extra_scopes.iter().cloned());
        scopes
    }

    /// A bearer token from the challenge's realm: with an identity (refresh) token through the
    /// OAuth2 POST, else a GET with Basic credentials when there are some, else anonymous.
    async fn fetch_token(&self, params: &HashMap<String, String>) -> Result<String> {
        let realm = params
            .get("realm")
            .ok_or_else(|| self.unauthorized(401, "challenge without realm".into()))?;
        let token_err = |detail: String| RegistryError::Token {
            realm: realm.clone(),
            registry: self.registry.clone(),
            detail,
        };
        let url = Url::parse(realm).map_err(|e| token_err(e.to_string()))?;
        let scopes = self.scopes(params.get("scope"));
        let service = params.get("service").cloned().unwrap_or_default();
        let creds = self.credentials.as_ref();
        let req = match creds.filter(|c| !c.identitytoken.is_empty()) {
            Some(c) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", c.identitytoken.clone()),
                    ("service", service),
                    ("client_id", "berth".to_string()),
                ];
                form.push(("scope", scopes.join(" ")));
                self.http.post(url).form(&form)
            }
            None => {
                let mut url = url;
                {
                    let mut q = url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", &service);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let req = self.http.get(url);
                match creds.and_then(AuthConfig::basic) {
                    Some((u, p)) => req.basic_auth(u, Some(p)),
                    None => req,
                }
            }
        };
        let mut resp = req.send().await.map_err(|e| token_err(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(
                status.as_u16(),
                format!("the token endpoint {realm} refused the credentials"),
            ));
        }
        if !status.is_success() {
            return Err(token_err(format!("status {status}")));
        }
        let reply = read_capped(&mut resp, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| token_err(e.to_string()))?;
        if !reply.complete {
            return Err(token_err(format!(
                "reply larger than {MAX_TOKEN_BYTES} bytes; refused"
            )));
        }
        let t: TokenResponse = serde_json::from_slice(&reply.bytes)
            .map_err(|e| token_err(format!("bad token reply: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("reply has no token".into()))
    }

    async fn status_error(&self, url: &Url, mut resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        // Only the start is shown: read no more than that, however long the reply claims to be.
        let body = read_capped(&mut resp, MAX_ERROR_BODY_BYTES)
            .await
            .map(|b| b.bytes)
            .unwrap_or_default();
        let body: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        if status == 401 || status == 403 {
            return self.unauthorized(status, body);
        }
        RegistryError::Status {
            registry: self.registry.clone(),
            url: url.to_string(),
            status,
            body,
        }
    }

    /// Checks that the registry accepts the credentials (`GET /v2/` and its challenge), as
    /// `docker login` does.
    pub async fn check_login(&self) -> Result<()> {
        let mut url = self.base.clone();
        url.set_path("/v2/");
        let resp = self.get(url.clone(), None).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.status_error(&url, resp).await)
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

    /// True when the repository already has the blob (`HEAD`): a push skips it.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        let url = self.url("blobs", digest);
        let resp = self.send(&url, |http| http.head(url.clone())).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&url, resp).await),
        }
    }

    fn session_url(&self, resp: &Response) -> Result<Url> {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Upload {
                registry: self.registry.clone(),
                detail: "upload reply without a Location".into(),
            })?;
        // Relative locations are relative to the registry.
        self.base.join(location).map_err(|e| RegistryError::Upload {
            registry: self.registry.clone(),
            detail: format!("bad upload Location {location:?}: {e}"),
        })
    }

    /// Starts an upload, first asking for a cross-repository mount of `digest` from `from`
    /// when given (the registry answers 201 when it mounted, 202 with a session otherwise).
    pub async fn start_upload(&self, digest: &str, from: Option<&str>) -> Result<UploadStart> {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{}/blobs/uploads/", self.repository));
        if let Some(from) = from.filter(|f| *f != self.repository) {
            url.query_pairs_mut()
                .append_pair("mount", digest)
                .append_pair("from", from);
        }
        let resp = self.send(&url, |http| http.post(url.clone())).await?;
        match resp.status() {
            StatusCode::CREATED if from.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => Ok(UploadStart::Session(self.session_url(&resp)?)),
            _ => Err(self.status_error(&url, resp).await),
        }
    }

    /// Sends one chunk at `offset` (`PATCH`); the session continues at the returned URL.
    pub async fn upload_chunk(
        &self,
        session: &Url,
        offset: u64,
        data: bytes::Bytes,
    ) -> Result<Url> {
        let end = offset + data.len() as u64 - 1;
        let resp = self
            .send(session, |http| {
                http.patch(session.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{end}"))
                    .body(data.clone())
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(session, resp).await);
        }
        self.session_url(&resp)
    }

    /// Completes an upload (`PUT ?digest=`), with `data` as the whole blob (monolithic) or
    /// empty after chunks.
    pub async fn finish_upload(
        &self,
        session: &Url,
        digest: &str,
        data: bytes::Bytes,
    ) -> Result<()> {
        let mut url = session.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send(&url, |http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&url, resp).await);
        }
        Ok(())
    }

    /// Puts a manifest under `reference` (a tag) with its media type; last in a push, so the
    /// tag never names a manifest whose blobs are missing.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let url = self.url("manifests", reference);
        let body = bytes::Bytes::from(bytes);
        let resp = self
            .send(&url, |http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&url, resp).await);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the test server answers: a status line and headers, then `body` `repeat` times.
    struct Reply {
        head: String,
        body: Vec<u8>,
        repeat: usize,
    }

    fn reply(status: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        Reply {
            head,
            body: body.to_vec(),
            repeat: 1,
        }
    }

    /// What a test server saw: request heads (lowercased) and body bytes it managed to send.
    #[derive(Default)]
    struct Seen {
        requests: Mutex<Vec<String>>,
        sent: AtomicU64,
    }

    /// A plain HTTP/1.1 server on `ip` (a loopback address) and a port the kernel picks,
    /// answering every request with `answer(path, head)`.
    async fn serve(
        ip: &str,
        answer: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> (u16, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let (answer, seen2) = (Arc::new(answer), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (answer, seen) = (answer.clone(), seen2.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    seen.requests.lock().unwrap().push(head.clone());
                    let r = answer(&path, &head);
                    if conn.write_all(r.head.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..r.repeat {
                        if conn.write_all(&r.body).await.is_err() {
                            return;
                        }
                        seen.sent.fetch_add(r.body.len() as u64, Ordering::Relaxed);
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
        (port, seen)
    }

    fn client(port: u16) -> RegistryClient {
        let reference = ImageReference::parse(&format!("127.0.0.1:{port}/repo:1")).unwrap();
        RegistryClient::new(&reference, &EngineSettings::default()).unwrap()
    }

    const BLOB: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    /// A registry whose token endpoint (same server, `/token`) grants `Bearer good` for Basic
    /// `ann:pw` or for any refresh-token POST, and whose `/v2/` wants that token.
    async fn token_registry() -> (u16, Arc<Seen>) {
        let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let p = port.clone();
        let basic = format!("authorization: basic {}", STANDARD.encode("ann:pw")).to_lowercase();
        let (n, seen) = serve("127.0.0.1", move |path, head| {
            if path.starts_with("/token") {
                let granted = head.starts_with("post ") || head.contains(&basic);
                return if granted {
                    reply("200 OK", &[], br#"{"access_token": "good"}"#)
                } else {
                    reply("401 Unauthorized", &[], b"bad credentials")
                };
            }
            if head.contains("authorization: bearer good") {
                return reply("200 OK", &[], b"{}");
            }
            let realm = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"reg\"",
                p.load(Ordering::SeqCst)
            );
            reply("401 Unauthorized", &[("WWW-Authenticate", realm)], b"")
        })
        .await;
        port.store(n, Ordering::SeqCst);
        (n, seen)
    }

    fn login_client(port: u16, creds: Option<AuthConfig>) -> RegistryClient {
        RegistryClient::for_registry(&format!("127.0.0.1:{port}"), &EngineSettings::default())
            .unwrap()
            .with_credentials(creds)
    }

    fn requests(seen: &Seen, prefix: &str) -> Vec<String> {
        let all = seen.requests.lock().unwrap();
        all.iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn bearer_tokens_are_fetched_with_basic_credentials_or_a_refresh_token() {
        let (port, seen) = token_registry().await;
        let basic = AuthConfig {
            username: "ann".into(),
            password: "pw".into(),
            ..Default::default()
        };
        login_client(port, Some(basic)).check_login().await.unwrap();
        assert_eq!(requests(&seen, "get /token?service=reg ").len(), 1);

        let refresh = AuthConfig {
            identitytoken: "rt-1".into(),
            ..Default::default()
        };
        login_client(port, Some(refresh))
            .check_login()
            .await
            .unwrap();
        let posts = requests(&seen, "post /token");
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert!(posts[0].contains("application/x-www-form-urlencoded"));
    }

    #[tokio::test]
    async fn refused_credentials_and_missing_ones_are_told_apart() {
        let (port, _seen) = token_registry().await;
        let wrong = AuthConfig {
            username: "ann".into(),
            password: "nope".into(),
            ..Default::default()
        };
        let e = login_client(port, Some(wrong))
            .check_login()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("401 Unauthorized for 127.0.0.1:{port}"))
                && e.contains("check the username and password"),
            "{e}"
        );
        let e = login_client(port, None)
            .check_login()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no credentials were sent"), "{e}");
    }

    #[tokio::test]
    async fn push_tokens_ask_for_push_and_mount_sources() {
        let (port, seen) = token_registry().await;
        let basic = AuthConfig {
            username: "ann".into(),
            password: "pw".into(),
            ..Default::default()
        };
        let c = client(port)
            .with_credentials(Some(basic))
            .for_push(&["base/img".to_string()]);
        // The registry answers 200 to the HEAD once the token is sent: the blob "exists".
        assert!(c.blob_exists(BLOB).await.unwrap());
        let gets = requests(&seen, "get /token");
        assert!(
            gets[0].contains(
                "scope=repository%3arepo%3apull%2cpush&scope=repository%3abase%2fimg%3apull"
            ),
            "{gets:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_never_carries_the_token() {
        // The blob store the registry redirects to, on another loopback address.
        let (store_port, store) = serve("127.0.0.2", |_, _| reply("200 OK", &[], b"blob")).await;
        let (port, registry) = serve("127.0.0.1", move |path, head| {
            if path.starts_with("/token") {
                return reply("200 OK", &[], br#"{"token":"secret-token"}"#);
            }
            if !head.contains("authorization: bearer secret-token") {
                let port = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: 127.0.0.1:"))
                    .unwrap_or("0")
                    .trim()
                    .to_string();
                let challenge =
                    format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\"");
                return reply("401 Unauthorized", &[("WWW-Authenticate", challenge)], b"");
            }
            let to = format!("http://127.0.0.2:{store_port}/data/blob");
            reply("307 Temporary Redirect", &[("Location", to)], b"")
        })
        .await;
        let c = client(port);
        let mut resp = c.blob(BLOB).await.unwrap();
        let body = c.next_chunk(&mut resp).await.unwrap().unwrap();
        assert_eq!(&body[..], b"blob");
        // The registry did get the token (so a leak would have been possible)...
        let reg = registry.requests.lock().unwrap().clone();
        assert!(
            reg.iter()
                .any(|h| h.contains("authorization: bearer secret-token")),
            "{reg:?}"
        );
        // ...and the other host never did.
        let st = store.requests.lock().unwrap().clone();
        assert_eq!(st.len(), 1, "{st:?}");
        assert!(!st[0].contains("authorization"), "{st:?}");
    }

    #[test]
    fn redirects_from_https_to_http_are_refused() {
        let u = |s: &str| Url::parse(s).unwrap();
        let chain = [u("https://registry.example/v2/r/blobs/x")];
        let why = redirect_refusal(&chain, &u("http://cdn.example/blob")).unwrap();
        assert!(why.contains("downgrades https to plain http"), "{why}");
        // A downgrade later in the chain counts too.
        let chain = [u("https://registry.example/a"), u("https://cdn.example/b")];
        assert!(redirect_refusal(&chain, &u("http://cdn.example/c")).is_some());
        assert!(redirect_refusal(&chain, &u("file:///etc/passwd")).is_some());
        // https to https elsewhere (a CDN) and http to http (loopback registries) are fine.
        assert_eq!(
            redirect_refusal(&chain, &u("https://s3.example/blob")),
            None
        );
        let plain = [u("http://127.0.0.1:5000/v2/r/blobs/x")];
        assert_eq!(
            redirect_refusal(&plain, &u("http://127.0.0.2:9000/blob")),
            None
        );
        let long: Vec<Url> = (0..MAX_REDIRECTS)
            .map(|i| u(&format!("https://h/{i}")))
            .collect();
        assert!(redirect_refusal(&long, &u("https://h/x"))
            .unwrap()
            .contains("more than 10"));
    }

    #[tokio::test]
    async fn a_refused_redirect_fails_the_request_with_the_reason() {
        // What reqwest does with the policy's refusal: here a redirect to a non-http scheme,
        // which the plain-http test server can produce.
        let (port, _) = serve("127.0.0.1", |_, _| {
            reply(
                "302 Found",
                &[("Location", "ftp://127.0.0.1/blob".into())],
                b"",
            )
        })
        .await;
        let e = client(port).blob(BLOB).await.map(drop).unwrap_err();
        assert!(e.to_string().contains("not http(s)"), "{e}");
    }

    #[tokio::test]
    async fn token_and_error_replies_are_read_with_a_cap() {
        let (port, _) = serve("127.0.0.1", |path, head| {
            if path.starts_with("/token") {
                return reply("200 OK", &[], &vec![b' '; MAX_TOKEN_BYTES + 1]);
            }
            let port = head
                .lines()
                .find_map(|l| l.strip_prefix("host: 127.0.0.1:"))
                .unwrap_or("0")
                .trim()
                .to_string();
            let challenge = format!("Bearer realm=\"http://127.0.0.1:{port}/token\"");
            reply("401 Unauthorized", &[("WWW-Authenticate", challenge)], b"")
        })
        .await;
        let e = client(port).blob(BLOB).await.map(drop).unwrap_err();
        assert!(
            e.to_string().contains("reply larger than 1048576 bytes"),
            "{e}"
        );

        // An error reply claiming 1 GiB: its start is shown, the rest is never downloaded.
        let (port, seen) = serve("127.0.0.1", |_, _| Reply {
            head: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1073741824\r\n\r\n".into(),
            body: vec![b'e'; 1 << 20],
            repeat: 1024,
        })
        .await;
        let e = client(port).blob(BLOB).await.map(drop).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("answered 500") && text.contains(&"e".repeat(300)),
            "{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = seen.sent.load(Ordering::Relaxed);
        assert!(sent < 64 << 20, "the server got {sent} bytes out");
    }

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
