//! What Docker's archive endpoints say about a container path before the tar: the
//! `X-Docker-Container-Path-Stat` header, base64 of `{name, size, mode, mtime, linkTarget}`
//! where `mode` is Go's `os.FileMode` (type bits at the top, not Unix `S_IF*`). The Docker CLI
//! decides with it whether a copy lands in a directory or replaces a file, so the bits must be
//! Go's exactly. Pure: no file system here.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The header's name, as Docker sends and reads it.
pub const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

// Go's os.FileMode type and special bits (io/fs).
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_NAMED_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHAR_DEVICE: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

/// `types.ContainerPathStat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
    pub mtime: String,
    /// For a symlink: where it leads, as an absolute path inside the container.
    #[serde(rename = "linkTarget", default)]
    pub link_target: String,
}

/// Go's `os.FileMode` for a Unix `st_mode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => GO_DIR,
        libc::S_IFLNK => GO_SYMLINK,
        libc::S_IFBLK => GO_DEVICE,
        libc::S_IFCHR => GO_DEVICE | GO_CHAR_DEVICE,
        libc::S_IFIFO => GO_NAMED_PIPE,
        libc::S_IFSOCK => GO_SOCKET,
        _ => 0,
    };
    for (unix, go) in [
        (libc::S_ISUID, GO_SETUID),
        (libc::S_ISGID, GO_SETGID),
        (libc::S_ISVTX, GO_STICKY),
    ] {
        if st_mode & unix != 0 {
            mode |= go;
        }
    }
    mode
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & GO_DIR != 0
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & GO_SYMLINK != 0
    }

    /// The header value: base64 (standard alphabet, padded) of the JSON.
    pub fn header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// Reads a header value as [`header_value`](Self::header_value) writes it.
    pub fn from_header(value: &str) -> Option<PathStat> {
        let json = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// `mtime` for a stat's seconds and nanoseconds.
pub fn rfc3339(secs: i64, nanos: i64) -> String {
    chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_modes_become_gos_file_mode_bits() {
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(go_file_mode(libc::S_IFREG | 0o4755), (1 << 23) | 0o755);
        assert_eq!(
            go_file_mode(libc::S_IFDIR | 0o1777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }

    #[test]
    fn the_header_round_trips_with_dockers_field_names() {
        let stat = PathStat {
            name: "etc".into(),
            size: 4096,
            mode: go_file_mode(libc::S_IFDIR | 0o755),
            mtime: rfc3339(1_700_000_000, 5),
            link_target: String::new(),
        };
        let value = stat.header_value();
        let json = base64::engine::general_purpose::STANDARD
            .decode(&value)
            .unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(raw["name"], "etc");
        assert_eq!(raw["mode"], 2147484141u64);
        assert_eq!(raw["linkTarget"], "");
        assert_eq!(raw["mtime"], "2023-11-14T22:13:20.000000005Z");
        assert_eq!(PathStat::from_header(&value), Some(stat.clone()));
        assert!(stat.is_dir() && !stat.is_symlink());
    }
}
