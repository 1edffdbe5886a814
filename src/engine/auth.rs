//! Registry credentials as the Docker ecosystem keeps them, and the `X-Registry-Auth` header.
//!
//! The CLI resolves credentials (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`:
//! `credHelpers`, then `credsStore`, then `auths`) and sends them to the engine per request in
//! `X-Registry-Auth` (base64url JSON `AuthConfig`), exactly as the Docker CLI does; the engine
//! uses them for that request only and never stores them. `berth login`/`logout` write the same
//! file (mode 0600) or the configured helper, so docker and berth share one login.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::reference::DOCKER_HUB;

/// The key Docker uses for Docker Hub in `config.json` and with credential helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// The username a credential helper returns when the secret is an identity (refresh) token.
const TOKEN_USERNAME: &str = "<token>";
/// A helper's answer is a small JSON document; a bigger one is refused.
const MAX_HELPER_OUTPUT: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid docker config file: {detail}; fix or remove it")]
    Parse { path: PathBuf, detail: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper docker-credential-{helper} {action} failed: {detail}; check that it is installed and on PATH")]
    Helper {
        helper: String,
        action: String,
        detail: String,
    },
    #[error("invalid X-Registry-Auth header: {0}")]
    Header(String),
    #[error("no home directory to find .docker/config.json in; set DOCKER_CONFIG")]
    NoHome,
}

type Result<T> = std::result::Result<T, AuthError>;

/// Docker's `AuthConfig` (API type `registry.AuthConfig`), the `X-Registry-Auth` payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(user:password)`, as config.json stores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    /// A refresh token (OAuth2) used instead of a password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    /// A bearer token sent to the registry as it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

impl AuthConfig {
    /// Username and password, from the fields or the `auth` pair.
    pub fn basic(&self) -> Option<(String, String)> {
        if !self.username.is_empty() && !self.password.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        let decoded = STANDARD.decode(self.auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.basic().is_none() && self.identitytoken.is_empty() && self.registrytoken.is_empty()
    }

    /// The `X-Registry-Auth` value (base64url with padding, as the Docker CLI encodes it).
    pub fn to_header(&self) -> String {
        URL_SAFE.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes `X-Registry-Auth`; padded or not (clients differ). An empty or `{}` header is no
    /// credentials, as in dockerd.
    pub fn from_header(value: &str) -> Result<Option<AuthConfig>> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(value))
            .map_err(|e| AuthError::Header(format!("not base64: {e}")))?;
        let config: AuthConfig = serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Header(format!("not an AuthConfig JSON: {e}")))?;
        Ok(Some(config).filter(|c| !c.is_empty()))
    }
}

/// The key credentials for `registry` (an image reference's registry part) are stored under.
pub fn server_key(registry: &str) -> String {
    if registry == DOCKER_HUB || registry == "index.docker.io" || registry == "registry-1.docker.io"
    {
        DOCKER_HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host:5000/v2/` → `host:5000`: config.json keys come with or without a scheme and
/// path (older docker wrote `https://host/v1/`).
pub fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k);
    if host == "index.docker.io" || host == "registry-1.docker.io" || host == DOCKER_HUB {
        DOCKER_HUB.to_string()
    } else {
        host.to_string()
    }
}

/// The parts of config.json berth reads; everything else is kept as it was when writing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DockerConfig {
    /// The whole document, so that writing keeps keys berth does not know.
    raw: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    identitytoken: String,
}

/// Where credentials for one registry come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Helper(String),
    File,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn dir() -> Result<PathBuf> {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        dirs::home_dir()
            .map(|h| h.join(".docker"))
            .ok_or(AuthError::NoHome)
    }

    pub fn path() -> Result<PathBuf> {
        Ok(Self::dir()?.join("config.json"))
    }

    /// The config file, or an empty one when there is none.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AuthError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|detail| AuthError::Parse {
            path: path.into(),
            detail,
        })
    }

    pub fn parse(text: &str) -> std::result::Result<DockerConfig, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match value {
            serde_json::Value::Object(raw) => Ok(DockerConfig { raw }),
            _ => Err("the top level is not a JSON object".into()),
        }
    }

    fn auths(&self) -> BTreeMap<String, AuthEntry> {
        self.raw
            .get("auths")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default()
    }

    /// Which store holds `registry`'s credentials: its `credHelpers` entry, else `credsStore`,
    /// else the file itself (docker's order).
    pub fn source_for(&self, registry: &str) -> CredentialSource {
        let wanted = normalize_key(registry);
        let helper = self
            .raw
            .get("credHelpers")
            .and_then(|h| h.as_object())
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| normalize_key(k) == wanted)
                    .and_then(|(_, v)| v.as_str())
            })
            .or_else(|| self.raw.get("credsStore").and_then(|s| s.as_str()))
            .filter(|s| !s.is_empty());
        match helper {
            Some(h) => CredentialSource::Helper(h.to_string()),
            None => CredentialSource::File,
        }
    }

    /// The `auths` entry for `registry`, whatever form its key was written in.
    pub fn file_entry(&self, registry: &str) -> Option<AuthConfig> {
        let wanted = normalize_key(registry);
        let auths = self.auths();
        let (_, entry) = auths.iter().find(|(k, _)| normalize_key(k) == wanted)?;
        let config = AuthConfig {
            auth: entry.auth.clone(),
            identitytoken: entry.identitytoken.clone(),
            serveraddress: server_key(registry),
            ..Default::default()
        };
        Some(config).filter(|c| !c.is_empty())
    }

    /// Stores `auth` for `registry` in `auths` (replacing any entry under another key form).
    pub fn set_file_entry(&mut self, registry: &str, auth: &AuthConfig) {
        let wanted = normalize_key(registry);
        let mut auths = self.auths_object();
        auths.retain(|k, _| normalize_key(k) != wanted);
        let entry = match auth.basic() {
            Some((u, p)) => AuthEntry {
                auth: STANDARD.encode(format!("{u}:{p}")),
                identitytoken: auth.identitytoken.clone(),
            },
            None => AuthEntry {
                auth: String::new(),
                identitytoken: auth.identitytoken.clone(),
            },
        };
        auths.insert(
            server_key(registry),
            serde_json::to_value(entry).unwrap_or_default(),
        );
        self.raw
            .insert("auths".into(), serde_json::Value::Object(auths));
    }

    /// Removes `registry` from `auths`; true when there was an entry.
    pub fn remove_file_entry(&mut self, registry: &str) -> bool {
        let wanted = normalize_key(registry);
        let mut auths = self.auths_object();
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != wanted);
        let removed = auths.len() != before;
        self.raw
            .insert("auths".into(), serde_json::Value::Object(auths));
        removed
    }

    /// An `auths` entry with only the key (helper-stored credentials leave one, as docker does).
    pub fn mark_helper_login(&mut self, registry: &str) {
        let mut auths = self.auths_object();
        auths
            .entry(server_key(registry))
            .or_insert_with(|| serde_json::json!({}));
        self.raw
            .insert("auths".into(), serde_json::Value::Object(auths));
    }

    fn auths_object(&self) -> serde_json::Map<String, serde_json::Value> {
        self.raw
            .get("auths")
            .and_then(|a| a.as_object())
            .cloned()
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.raw).unwrap_or_default()
    }

    /// Writes the file with mode 0600 (it holds secrets), atomically via a temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| AuthError::Write {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(self.to_json().as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// A credential helper's `get` answer.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HelperCredentials {
    #[serde(default, rename = "ServerURL")]
    server_url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; stdout on success, or the
/// helper's message as the error.
fn run_helper(
    helper: &str,
    action: &str,
    input: &[u8],
) -> Result<std::result::Result<Vec<u8>, String>> {
    let fail = |detail: String| AuthError::Helper {
        helper: helper.into(),
        action: action.into(),
        detail,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.stdout.len() > MAX_HELPER_OUTPUT {
        return Err(fail(format!(
            "answer larger than {MAX_HELPER_OUTPUT} bytes"
        )));
    }
    if out.status.success() {
        Ok(Ok(out.stdout))
    } else {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok(Err(if msg.is_empty() { err } else { msg }))
    }
}

/// True for the message helpers print when they hold nothing for a server.
fn is_not_found(message: &str) -> bool {
    message.contains("credentials not found")
}

/// Credentials from a helper: `None` when it has none for `registry`.
pub fn helper_get(helper: &str, registry: &str) -> Result<Option<AuthConfig>> {
    let server = server_key(registry);
    let out = match run_helper(helper, "get", server.as_bytes())? {
        Ok(out) => out,
        Err(msg) if is_not_found(&msg) => return Ok(None),
        Err(detail) => {
            return Err(AuthError::Helper {
                helper: helper.into(),
                action: "get".into(),
                detail,
            })
        }
    };
    let creds: HelperCredentials = serde_json::from_slice(&out).map_err(|e| AuthError::Helper {
        helper: helper.into(),
        action: "get".into(),
        detail: format!("answer is not credentials JSON: {e}"),
    })?;
    let mut auth = AuthConfig {
        serveraddress: server,
        ..Default::default()
    };
    if creds.username == TOKEN_USERNAME {
        auth.identitytoken = creds.secret;
    } else {
        auth.username = creds.username;
        auth.password = creds.secret;
    }
    Ok(Some(auth).filter(|a| !a.is_empty()))
}

pub fn helper_store(helper: &str, registry: &str, auth: &AuthConfig) -> Result<()> {
    let (username, secret) = match auth.basic() {
        Some((u, p)) if auth.identitytoken.is_empty() => (u, p),
        _ => (TOKEN_USERNAME.to_string(), auth.identitytoken.clone()),
    };
    let body = HelperCredentials {
        server_url: server_key(registry),
        username,
        secret,
    };
    let input = serde_json::to_vec(&body).unwrap_or_default();
    run_helper(helper, "store", &input)?.map_err(|detail| AuthError::Helper {
        helper: helper.into(),
        action: "store".into(),
        detail,
    })?;
    Ok(())
}

/// Erases `registry` from a helper; true when it held something.
pub fn helper_erase(helper: &str, registry: &str) -> Result<bool> {
    match run_helper(helper, "erase", server_key(registry).as_bytes())? {
        Ok(_) => Ok(true),
        Err(msg) if is_not_found(&msg) => Ok(false),
        Err(detail) => Err(AuthError::Helper {
            helper: helper.into(),
            action: "erase".into(),
            detail,
        }),
    }
}

/// The credentials the CLI sends for `registry`, from the user's docker config; `None` means an
/// anonymous request.
pub fn resolve(registry: &str) -> Result<Option<AuthConfig>> {
    let path = DockerConfig::path()?;
    let config = DockerConfig::load(&path)?;
    match config.source_for(registry) {
        CredentialSource::Helper(h) => helper_get(&h, registry),
        CredentialSource::File => Ok(config.file_entry(registry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_accepts_unpadded_and_standard_base64() {
        let a = AuthConfig {
            username: "ann".into(),
            password: "s3cr?t>".into(),
            serveraddress: "127.0.0.1:5000".into(),
            ..Default::default()
        };
        let h = a.to_header();
        assert_eq!(AuthConfig::from_header(&h).unwrap(), Some(a.clone()));
        assert_eq!(
            AuthConfig::from_header(h.trim_end_matches('=')).unwrap(),
            Some(a.clone())
        );
        let std = STANDARD.encode(serde_json::to_vec(&a).unwrap());
        assert_eq!(AuthConfig::from_header(&std).unwrap(), Some(a));
        assert_eq!(AuthConfig::from_header("").unwrap(), None);
        assert_eq!(
            AuthConfig::from_header(&URL_SAFE.encode("{}")).unwrap(),
            None
        );
        assert!(AuthConfig::from_header("!!!").is_err());
    }

    #[test]
    fn auth_pair_is_decoded() {
        let a = AuthConfig {
            auth: STANDARD.encode("bob:pa:ss"),
            ..Default::default()
        };
        assert_eq!(a.basic(), Some(("bob".into(), "pa:ss".into())));
    }

    #[test]
    fn keys_match_in_any_form_and_hub_uses_its_v1_key() {
        let cfg = DockerConfig::parse(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"},
                          "http://127.0.0.1:5000/v2/": {"auth": "YTpi"},
                          "tok.example": {"identitytoken": "rt"}}}"#,
        )
        .unwrap();
        assert_eq!(cfg.file_entry("docker.io").unwrap().basic().unwrap().0, "u");
        assert_eq!(
            cfg.file_entry("127.0.0.1:5000").unwrap().basic().unwrap(),
            ("a".into(), "b".into())
        );
        assert_eq!(cfg.file_entry("tok.example").unwrap().identitytoken, "rt");
        assert_eq!(cfg.file_entry("other:5000"), None);
        assert_eq!(server_key("docker.io"), DOCKER_HUB_SERVER);
    }

    #[test]
    fn helpers_take_precedence_over_the_store_and_the_file() {
        let cfg = DockerConfig::parse(
            r#"{"credsStore": "desktop", "credHelpers": {"reg.example:443": "ecr"},
                "auths": {"reg.example:443": {"auth": "YTpi"}}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.source_for("reg.example:443"),
            CredentialSource::Helper("ecr".into())
        );
        assert_eq!(
            cfg.source_for("other"),
            CredentialSource::Helper("desktop".into())
        );
        let plain = DockerConfig::parse(r#"{"auths": {}}"#).unwrap();
        assert_eq!(plain.source_for("x"), CredentialSource::File);
    }

    #[test]
    fn writing_keeps_unknown_keys_and_replaces_other_key_forms() {
        let mut cfg = DockerConfig::parse(
            r#"{"psFormat": "table", "auths": {"https://h:5000": {"auth": "eDp5"}}}"#,
        )
        .unwrap();
        let a = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        cfg.set_file_entry("h:5000", &a);
        let back = DockerConfig::parse(&cfg.to_json()).unwrap();
        assert_eq!(back.raw["psFormat"], "table");
        assert_eq!(back.auths().len(), 1);
        assert_eq!(back.auths()["h:5000"].auth, STANDARD.encode("u:p"));
        assert!(cfg.remove_file_entry("https://h:5000/v2/"));
        assert!(!cfg.remove_file_entry("h:5000"));
        assert!(cfg.file_entry("h:5000").is_none());
    }
}
