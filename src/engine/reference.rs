//! Image references (`busybox`, `localhost:5000/app:1.0`, `repo@sha256:…`), parsed and validated
//! before any part of them is used in a path or a URL.
//!
//! Normalisation follows Docker's: a name without a registry part lives on `docker.io`, a one-part
//! Docker Hub name lives under `library/`, and a reference with neither tag nor digest means
//! `:latest`. So `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;

use thiserror::Error;

/// The registry names without a registry part resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's distribution API actually answers.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `docker.io` when the name has no registry part.
    pub registry: String,
    /// `library/busybox` for Docker Hub official images.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`, validated.
    pub digest: Option<String>,
}

/// True when `digest` is `sha256:` followed by exactly 64 lowercase hex digits: the only form we
/// ever turn into a path component (CVE-2014-9358). Deliberately ours rather than
/// `oci_spec::image::Digest`: that type accepts any algorithm (`foo:bar`), while the content and
/// snapshot stores are sha256-only; it is applied to oci-spec digests after parsing.
pub fn is_valid_digest(digest: &str) -> bool {
    match digest.strip_prefix("sha256:") {
        Some(hex) => is_sha256_hex(hex),
        None => false,
    }
}

/// True for exactly 64 lowercase hex digits.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One path component of a repository: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A registry host, optionally with a port: letters, digits, `.`, `-`, and an IPv6 literal in
/// brackets. Nothing that could be a path separator.
fn is_valid_registry(r: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((h, tail)) = rest.split_once(']') else {
            return false;
        };
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (
            !h.is_empty() && h.bytes().all(|c| c.is_ascii_hexdigit() || c == b':'),
            port,
        )
    } else {
        let (h, port) = match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        };
        let ok = !h.is_empty()
            && !h.starts_with('.')
            && !h.ends_with('.')
            && !h.contains("..")
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
        (ok, port)
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

impl ImageReference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        if s.len() > 4096 || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid("contains control characters or spaces"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !is_valid_digest(d) {
                    return Err(invalid(
                        "digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if last_slash.is_none_or(|sl| i > sl) => {
                let tag = &name_tag[i + 1..];
                if !is_valid_tag(tag) {
                    return Err(invalid("tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
                }
                (&name_tag[..i], Some(tag.to_string()))
            }
            _ => (name_tag, None),
        };
        let (registry, remainder) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_valid_registry(first) {
                    return Err(invalid("bad registry host"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if remainder.is_empty() || remainder.len() > 255 {
            return Err(invalid("repository name must be 1 to 255 characters"));
        }
        if !remainder.split('/').all(is_valid_path_component) {
            return Err(invalid(
                "repository name must be lowercase path components of letters, digits and separators",
            ));
        }
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `host:port` the distribution API answers on (Docker Hub's API host differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// `docker.io/library/busybox` — the fully qualified name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `busybox` for `docker.io/library/busybox`, `user/app` for Docker Hub user images, the full
    /// name otherwise: how Docker shows names.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The tag or digest the registry is asked for.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `docker.io/library/busybox:latest` (or `…@sha256:…`): the normalised form.
    pub fn normalized(&self) -> String {
        self.to_string()
    }

    /// `busybox:latest`, `127.0.0.1:5000/x:1`: Docker's familiar form, as `docker images` shows.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_names_are_normalised() {
        let r = ImageReference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = ImageReference::parse("user/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.0");
        assert_eq!(r.familiar(), "user/app:1.0");
        let r = ImageReference::parse("index.docker.io/library/busybox:1").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1");
    }

    #[test]
    fn registries_with_ports_keep_their_host() {
        let r = ImageReference::parse("127.0.0.1:5000/x/y:tag").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.familiar(), "127.0.0.1:5000/x/y:tag");
        let r = ImageReference::parse("localhost/app").unwrap();
        assert_eq!(r.to_string(), "localhost/app:latest");
        let r = ImageReference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = ImageReference::parse("[::1]:5000/app:v1").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn digests_are_kept_and_mean_no_default_tag() {
        let r = ImageReference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_ref(), D);
        let r = ImageReference::parse(&format!("h:1/busybox:1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
    }

    #[test]
    fn path_escapes_and_bad_syntax_are_rejected() {
        for bad in [
            "",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "UPPER",
            "a:b:c",
            "busybox@sha256:abc",
            "busybox@sha256:../../../../etc/passwd",
            "busybox@md5:0123",
            "a\0b",
            "a b",
            "busybox:../x",
            "busybox:/x",
            "host:port/x",
            "-a",
            "a-",
            "a/b/",
            "/a",
            "..:5000/x",
        ] {
            let e = ImageReference::parse(bad);
            assert!(e.is_err(), "{bad:?} should be rejected, got {e:?}");
        }
        let e = ImageReference::parse("a/../b").unwrap_err();
        assert!(e.to_string().contains("invalid reference format"), "{e}");
    }
}
