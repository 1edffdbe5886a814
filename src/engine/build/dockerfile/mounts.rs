//! `RUN --mount=…` values (comma-separated `key=value` fields, as BuildKit reads them). berth
//! runs cache mounts; every other mount type is a clear "not supported yet" error rather than a
//! silently different build.

use super::{CacheMount, CacheSharing, ErrorKind, RunMount};

/// Parses one `--mount` value.
pub fn parse(value: &str) -> Result<RunMount, ErrorKind> {
    let fields = csv_fields(value).map_err(ErrorKind::InvalidMount)?;
    let kind = mount_type(&fields)?;
    if kind != "cache" {
        return Err(ErrorKind::Unsupported(format!("RUN --mount=type={kind}")));
    }
    let mut mount = CacheMount {
        target: String::new(),
        id: String::new(),
        sharing: CacheSharing::Shared,
        readonly: false,
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    for field in &fields {
        cache_field(&mut mount, field, value)?;
    }
    if mount.target.is_empty() {
        return Err(ErrorKind::InvalidMount(format!(
            "{value:?} has no target (the path inside the container)"
        )));
    }
    if mount.id.is_empty() {
        // BuildKit's default: one cache per target path.
        mount.id = mount.target.clone();
    }
    Ok(RunMount::Cache(mount))
}

/// The `type=` field; BuildKit's default is a bind mount.
fn mount_type(fields: &[String]) -> Result<String, ErrorKind> {
    let kind = fields
        .iter()
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("type"))
        .map_or("bind".to_string(), |(_, v)| v.to_ascii_lowercase());
    match kind.as_str() {
        "bind" | "cache" | "tmpfs" | "secret" | "ssh" => Ok(kind),
        _ => Err(ErrorKind::InvalidMount(format!(
            "unsupported mount type {kind:?}"
        ))),
    }
}

fn cache_field(mount: &mut CacheMount, field: &str, whole: &str) -> Result<(), ErrorKind> {
    let (key, value) = match field.split_once('=') {
        Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
        None => (field.to_ascii_lowercase(), None),
    };
    let invalid = |what: String| ErrorKind::InvalidMount(format!("{what} in {whole:?}"));
    match (key.as_str(), value) {
        ("type", _) => {}
        ("readonly" | "ro", v) => mount.readonly = flag_bool(v).map_err(invalid)?,
        ("readwrite" | "rw", v) => mount.readonly = !flag_bool(v).map_err(invalid)?,
        ("target" | "dst" | "destination", Some(v)) => mount.target = v.to_string(),
        ("id", Some(v)) => mount.id = v.to_string(),
        ("sharing", Some(v)) => mount.sharing = sharing(v).map_err(invalid)?,
        ("mode", Some(v)) => {
            mount.mode = u32::from_str_radix(v, 8)
                .map_err(|_| invalid(format!("invalid mode {v:?} (octal expected)")))?
        }
        ("uid", Some(v)) => mount.uid = number(v).map_err(invalid)?,
        ("gid", Some(v)) => mount.gid = number(v).map_err(invalid)?,
        ("from" | "source" | "src", Some(_)) => {
            return Err(ErrorKind::Unsupported(format!(
                "RUN --mount=type=cache with {key}= (a cache seeded from another image)"
            )))
        }
        (_, Some(_)) => return Err(invalid(format!("unexpected key '{key}'"))),
        (_, None) => {
            return Err(invalid(format!(
                "invalid field '{field}' must be a key=value pair"
            )))
        }
    }
    Ok(())
}

fn flag_bool(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("invalid boolean {other:?}")),
    }
}

fn sharing(value: &str) -> Result<CacheSharing, String> {
    match value.to_ascii_lowercase().as_str() {
        "shared" => Ok(CacheSharing::Shared),
        "private" => Ok(CacheSharing::Private),
        "locked" => Ok(CacheSharing::Locked),
        _ => Err(format!("unsupported sharing value {value:?}")),
    }
}

fn number(value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("invalid number {value:?}"))
}

/// Splits a CSV record the way Go's encoding/csv does for one line: commas separate fields, a
/// field starting with `"` is quoted and `""` inside it is one quote.
fn csv_fields(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in {value:?}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("extraneous text after a quoted field in {value:?}"));
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                field.push(c);
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(value: &str) -> CacheMount {
        match parse(value).unwrap() {
            RunMount::Cache(c) => c,
        }
    }

    #[test]
    fn cache_mounts_take_buildkits_fields_and_defaults() {
        let plain = cache("type=cache,target=/root/.cache");
        assert_eq!(plain.target, "/root/.cache");
        assert_eq!(plain.id, "/root/.cache");
        assert_eq!(plain.sharing, CacheSharing::Shared);
        assert_eq!(
            (plain.mode, plain.uid, plain.gid, plain.readonly),
            (0o755, 0, 0, false)
        );

        let full = cache(
            "type=cache,dst=/var/cache/apt,id=apt,sharing=locked,mode=0700,uid=1000,gid=100,ro",
        );
        assert_eq!(full.id, "apt");
        assert_eq!(full.sharing, CacheSharing::Locked);
        assert_eq!(
            (full.mode, full.uid, full.gid, full.readonly),
            (0o700, 1000, 100, true)
        );
        assert!(!cache("TYPE=cache,Target=/x,readonly=false").readonly);
        assert_eq!(cache("type=cache,\"target=/a,b\"").target, "/a,b");
    }

    #[test]
    fn other_mount_types_are_not_supported_yet() {
        for (value, what) in [
            ("target=/src", "bind"),
            ("type=bind,source=.,target=/src", "bind"),
            ("type=secret,id=npmrc", "secret"),
            ("type=ssh", "ssh"),
            ("type=tmpfs,target=/tmp", "tmpfs"),
        ] {
            assert_eq!(
                parse(value).unwrap_err().to_string(),
                format!("RUN --mount=type={what} is not supported yet")
            );
        }
        assert!(parse("type=cache,target=/x,from=builder")
            .unwrap_err()
            .to_string()
            .contains("not supported yet"));
    }

    #[test]
    fn malformed_mounts_say_what_is_wrong() {
        let error = |v: &str| parse(v).unwrap_err().to_string();
        assert!(error("type=volume,target=/x").contains("unsupported mount type \"volume\""));
        assert!(error("type=cache").contains("has no target"));
        assert!(error("type=cache,target=/x,sharing=all").contains("unsupported sharing value"));
        assert!(error("type=cache,target=/x,mode=9").contains("octal"));
        assert!(error("type=cache,target=/x,color=red").contains("unexpected key 'color'"));
        assert!(error("type=cache,target=/x,bogus").contains("must be a key=value pair"));
        assert!(error("type=cache,\"target=/x").contains("unterminated quote"));
    }
}
