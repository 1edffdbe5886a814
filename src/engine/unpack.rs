//! Layer extraction on fd-relative primitives: whiteouts become overlay whiteouts, nothing is ever
//! written outside the snapshot root.
//!
//! The tar parser is our own and only parses headers (ustar, GNU long names, PAX); extraction never
//! goes through a path string: every directory is reached one component at a time with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, files
//! are created with `O_EXCL | O_NOFOLLOW`, and ownership, modes and times are set through fds or
//! with `AT_SYMLINK_NOFOLLOW`. A layer that tries to leave the root (`..`, absolute names, a
//! symlinked parent, a hardlink to outside) is an error, not something we clean up silently —
//! real image builders never produce one. See `engine-anchors.md` §4.3 (U1–U19).

use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use indexmap::IndexMap;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

mod decompress;
pub use decompress::{decompressed, Compression};

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error(
        "hostile layer: entry {path:?} {reason}; refused, nothing was written outside the snapshot"
    )]
    Hostile { path: String, reason: String },
    #[error("malformed layer tar: {0}")]
    Malformed(String),
    #[error("layer exceeds a safety limit: {0}")]
    Limit(String),
    /// The cap on file content, kept apart: the caller may have lowered it to the free space.
    #[error("layer exceeds a safety limit: more than {limit} bytes of file content")]
    ContentLimit { limit: u64 },
    #[error("unsupported layer content: {0}")]
    Unsupported(String),
    #[error("unpacking {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("reading layer stream: {0}")]
    Read(#[source] io::Error),
    /// An entry would change a directory into a non-directory or the reverse, and
    /// [`ApplyOptions::no_overwrite_dir_non_dir`] forbids it.
    #[error("cannot overwrite {existing} {path:?} with {with}")]
    TypeChange {
        path: String,
        existing: &'static str,
        with: &'static str,
    },
}

type Result<T> = std::result::Result<T, UnpackError>;

/// Caps that keep a hostile layer from exhausting memory, inodes or disk (U9, U10, U15).
#[derive(Debug, Clone)]
pub struct UnpackLimits {
    pub max_entries: u64,
    /// One PAX extended header or GNU long name.
    pub max_header_bytes: u64,
    /// All PAX/GNU headers folded into one entry: repeated `x` headers before one file would
    /// otherwise accumulate without bound (each is read whole into memory).
    pub max_entry_header_bytes: u64,
    /// All PAX/GNU headers of a layer (they are parsed, not stored, so this bounds work).
    pub max_layer_header_bytes: u64,
    /// Names and values of the xattrs kept for one entry (Linux caps one value at 64 KiB).
    pub max_entry_xattr_bytes: usize,
    /// Directory attributes are kept until the end of the layer: how many, and how many bytes
    /// (paths and xattrs).
    pub max_pending_dirs: usize,
    pub max_pending_dir_bytes: usize,
    /// Bytes hashed after the end-of-archive marker (tar writers pad to at most 10 KiB).
    pub max_trailing_bytes: u64,
    pub max_path_bytes: usize,
    pub max_depth: usize,
    /// Uncompressed bytes of file content.
    pub max_total_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_entries: 1_000_000,
            max_header_bytes: 1 << 20,
            max_entry_header_bytes: 2 << 20,
            max_layer_header_bytes: 256 << 20,
            max_entry_xattr_bytes: 256 << 10,
            max_pending_dirs: 1_000_000,
            max_pending_dir_bytes: 256 << 20,
            max_trailing_bytes: 1 << 20,
            max_path_bytes: 4096,
            max_depth: 512,
            max_total_bytes: 256 << 30,
        }
    }
}

/// `path` with its first component `from` replaced by `to` (see [`ApplyOptions::rebase`]).
fn rebase(path: &[u8], from: &str, to: &str) -> Result<Vec<u8>> {
    let mut rest = path;
    while let Some(r) = rest.strip_prefix(b"./") {
        rest = r;
    }
    let under = if from == "." || rest == b"." {
        Some(rest)
    } else if rest.strip_suffix(b"/").unwrap_or(rest) == from.as_bytes() {
        Some(&b""[..])
    } else {
        rest.strip_prefix(from.as_bytes())
            .and_then(|r| r.strip_prefix(b"/"))
    };
    let Some(under) = under.map(|u| if u == b"." { &b""[..] } else { u }) else {
        return Err(UnpackError::Malformed(format!(
            "entry {} is not under {from:?}, the copied path",
            show(path)
        )));
    };
    let mut out = to.as_bytes().to_vec();
    if !under.is_empty() {
        out.push(b'/');
        out.extend_from_slice(under);
    }
    Ok(out)
}

#[derive(Debug, Clone, Default)]
pub struct UnpackStats {
    /// `sha256:` of the uncompressed tar stream (to compare with the config's DiffID).
    pub diff_id: String,
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Decompresses (gzip or zstd, sniffed from the magic bytes, not trusted from the media type),
/// hashes the uncompressed stream for the DiffID, and applies the tar to `dest`, an empty
/// directory.
pub fn unpack_layer(reader: impl Read, dest: &Path, limits: &UnpackLimits) -> Result<UnpackStats> {
    let stream = decompress::decompressed(reader).map_err(UnpackError::Read)?;
    let mut hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
    };
    let mut stats = apply_tar(&mut hashing, dest, limits)?;
    // The DiffID covers the whole stream, including padding after the end-of-archive blocks;
    // that padding is bounded, or a layer could make us hash an endless stream of zeros.
    let trailing = io::copy(
        &mut (&mut hashing).take(limits.max_trailing_bytes + 1),
        &mut io::sink(),
    )
    .map_err(UnpackError::Read)?;
    if trailing > limits.max_trailing_bytes {
        return Err(UnpackError::Limit(format!(
            "more than {} bytes after the end-of-archive marker",
            limits.max_trailing_bytes
        )));
    }
    stats.diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    Ok(stats)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Tar header parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Entry {
    kind: u8,
    path: Vec<u8>,
    link: Vec<u8>,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    dev_major: u32,
    dev_minor: u32,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Metadata that PAX (`x`) and GNU (`L`, `K`) headers carry for the next entry.
#[derive(Debug, Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn cstr_field(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Octal (NUL/space padded) or GNU base-256 numeric field.
fn parse_numeric(field: &[u8], what: &str) -> Result<u64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first == 0xff {
                return Err(UnpackError::Malformed(format!("negative {what}")));
            }
            let mut v: u64 = (first & 0x7f) as u64;
            for &b in &field[1..] {
                if v > (u64::MAX >> 8) {
                    return Err(UnpackError::Malformed(format!("{what} overflows")));
                }
                v = (v << 8) | b as u64;
            }
            return Ok(v);
        }
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&s).map_err(|_| UnpackError::Malformed(format!("bad {what}")))?;
    u64::from_str_radix(s, 8).map_err(|_| UnpackError::Malformed(format!("bad octal {what} {s:?}")))
}

fn checksum_ok(h: &[u8; 512]) -> Result<bool> {
    let stored = parse_numeric(&h[148..156], "checksum")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += (b as i8) as i64;
    }
    Ok(stored == unsigned || stored as i64 == signed)
}

fn parse_pax(data: &[u8], pending: &mut Pending, limits: &UnpackLimits) -> Result<()> {
    let mut rest = data;
    // Writers may pad the header's data with NULs.
    while !rest.is_empty() && !rest.iter().all(|&b| b == 0) {
        let (key, value, after) = next_pax_record(rest)?;
        rest = after;
        apply_pax_record(pending, key, value, limits)?;
    }
    Ok(())
}

/// Splits `<len> <key>=<value>\n` off the front of a PAX header: `(key, value, rest)`.
fn next_pax_record(rest: &[u8]) -> Result<(&str, &[u8], &[u8])> {
    let sp = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| UnpackError::Malformed("pax record without length".into()))?;
    let len: usize = std::str::from_utf8(&rest[..sp])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| UnpackError::Malformed("bad pax record length".into()))?;
    if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
        return Err(UnpackError::Malformed(
            "pax record length out of bounds".into(),
        ));
    }
    let record = &rest[sp + 1..len - 1];
    let eq = record
        .iter()
        .position(|&b| b == b'=')
        .ok_or_else(|| UnpackError::Malformed("pax record without '='".into()))?;
    let key = std::str::from_utf8(&record[..eq])
        .map_err(|_| UnpackError::Malformed("non-utf8 pax key".into()))?;
    Ok((key, &record[eq + 1..], &rest[len..]))
}

/// What one PAX record says about the next entry.
fn apply_pax_record(
    pending: &mut Pending,
    key: &str,
    value: &[u8],
    limits: &UnpackLimits,
) -> Result<()> {
    let text = || {
        std::str::from_utf8(value)
            .map_err(|_| UnpackError::Malformed(format!("non-utf8 pax value for {key}")))
    };
    let int = |what: &str| -> Result<u64> {
        text()?
            .parse()
            .map_err(|_| UnpackError::Malformed(format!("bad pax {what}")))
    };
    let id = |what: &str| -> Result<u32> {
        int(what)?
            .try_into()
            .map_err(|_| UnpackError::Malformed(format!("{what} out of range")))
    };
    match key {
        "path" | "linkpath" => {
            if value.contains(&0) {
                return Err(UnpackError::Malformed(format!("NUL in pax {key}")));
            }
            if key == "path" {
                pending.path = Some(value.to_vec());
            } else {
                pending.link = Some(value.to_vec());
            }
        }
        "size" => pending.size = Some(int("size")?),
        "uid" => pending.uid = Some(id("uid")?),
        "gid" => pending.gid = Some(id("gid")?),
        "mtime" => {
            let t = text()?;
            let secs = t.split('.').next().unwrap_or("0");
            pending.mtime = Some(
                secs.parse()
                    .map_err(|_| UnpackError::Malformed("bad pax mtime".into()))?,
            );
        }
        k if k.starts_with("GNU.sparse.") => {
            return Err(UnpackError::Unsupported(
                "GNU sparse files (pax GNU.sparse.*) are refused".into(),
            ));
        }
        k if k.starts_with("SCHILY.xattr.") => {
            keep_xattr(pending, &k["SCHILY.xattr.".len()..], value, limits)?;
        }
        _ => {}
    }
    Ok(())
}

/// Keeps one PAX xattr for the next entry: only those we would apply (others are dropped at
/// once, not carried), a repeated name replaces the earlier value, and the total is capped.
fn keep_xattr(
    pending: &mut Pending,
    name: &str,
    value: &[u8],
    limits: &UnpackLimits,
) -> Result<()> {
    if !xattr_allowed(name) {
        return Ok(());
    }
    pending.xattrs.retain(|(k, _)| k != name);
    pending.xattrs.push((name.to_string(), value.to_vec()));
    let total: usize = pending.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > limits.max_entry_xattr_bytes {
        return Err(UnpackError::Limit(format!(
            "more than {} bytes of xattrs on one entry",
            limits.max_entry_xattr_bytes
        )));
    }
    Ok(())
}

struct TarStream<'a, R: Read> {
    r: &'a mut R,
    limits: &'a UnpackLimits,
    entries: u64,
    /// PAX/GNU header bytes read so far in the layer and for the entry being assembled.
    layer_header_bytes: u64,
    entry_header_bytes: u64,
}

impl<R: Read> TarStream<'_, R> {
    /// Reads one 512-byte block; `Ok(false)` at a clean end of stream.
    fn block(&mut self, buf: &mut [u8; 512]) -> Result<bool> {
        let mut got = 0;
        while got < 512 {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(UnpackError::Malformed("truncated tar header".into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UnpackError::Read(e)),
            }
        }
        Ok(true)
    }

    fn read_data(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > self.limits.max_header_bytes {
            return Err(UnpackError::Limit(format!(
                "{what} header of {size} bytes (limit {})",
                self.limits.max_header_bytes
            )));
        }
        // Checked before the allocation: the caps bound memory, not just what is kept.
        self.entry_header_bytes += size;
        self.layer_header_bytes += size;
        if self.entry_header_bytes > self.limits.max_entry_header_bytes {
            return Err(UnpackError::Limit(format!(
                "extended headers of more than {} bytes for one entry",
                self.limits.max_entry_header_bytes
            )));
        }
        if self.layer_header_bytes > self.limits.max_layer_header_bytes {
            return Err(UnpackError::Limit(format!(
                "extended headers of more than {} bytes in the layer",
                self.limits.max_layer_header_bytes
            )));
        }
        let mut buf = vec![0u8; size as usize];
        self.r.read_exact(&mut buf).map_err(truncated)?;
        self.skip_padding(size)?;
        Ok(buf)
    }

    fn skip_padding(&mut self, size: u64) -> Result<()> {
        let pad = (512 - size % 512) % 512;
        if pad > 0 {
            let mut p = [0u8; 512];
            self.r
                .read_exact(&mut p[..pad as usize])
                .map_err(truncated)?;
        }
        Ok(())
    }

    /// The next file-system entry, with PAX/GNU metadata folded in; `None` at end of archive.
    fn next(&mut self) -> Result<Option<Entry>> {
        let mut pending = Pending::default();
        self.entry_header_bytes = 0;
        let mut hdr = [0u8; 512];
        loop {
            if !self.block(&mut hdr)? {
                if pending.path.is_some() || pending.size.is_some() || pending.link.is_some() {
                    return Err(UnpackError::Malformed(
                        "archive ends after an extended header".into(),
                    ));
                }
                return Ok(None);
            }
            if hdr.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            if !checksum_ok(&hdr)? {
                return Err(UnpackError::Malformed("header checksum mismatch".into()));
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(UnpackError::Limit(format!(
                    "more than {} entries",
                    self.limits.max_entries
                )));
            }
            let kind = hdr[156];
            let header_size = parse_numeric(&hdr[124..136], "size")?;
            if self.absorb_extension(kind, header_size, &mut pending)? {
                continue;
            }
            return entry_from_header(&hdr, kind, header_size, &mut pending).map(Some);
        }
    }

    /// PAX and GNU long-name headers describe the entry that follows: fold them into `pending`.
    /// Returns whether `kind` was such a header.
    fn absorb_extension(&mut self, kind: u8, size: u64, pending: &mut Pending) -> Result<bool> {
        match kind {
            b'x' => {
                let data = self.read_data(size, "pax")?;
                parse_pax(&data, pending, self.limits)?;
            }
            b'g' => {
                // Global headers only carry defaults we do not use.
                self.read_data(size, "pax global")?;
            }
            b'L' | b'K' => {
                let data = self.read_data(size, "gnu long name")?;
                let name = cstr_field(&data).to_vec();
                if kind == b'L' {
                    pending.path = Some(name);
                } else {
                    pending.link = Some(name);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The entry a ustar (or v7) header describes, with what earlier extension headers said taking
/// precedence over the header's own fields.
fn entry_from_header(
    hdr: &[u8; 512],
    kind: u8,
    header_size: u64,
    pending: &mut Pending,
) -> Result<Entry> {
    // TARmageddon / RUSTSEC-2026-0068: a PAX size that disagrees with a non-zero ustar size
    // would desynchronise us from other readers; refuse instead of picking one.
    let size = match pending.size {
        Some(p) if header_size != 0 && p != header_size => {
            return Err(UnpackError::Malformed(format!(
                "pax size {p} disagrees with header size {header_size}"
            )))
        }
        Some(p) => p,
        None => header_size,
    };
    let id = |field: &[u8], what: &str| -> Result<u32> {
        parse_numeric(field, what)?
            .try_into()
            .map_err(|_| UnpackError::Malformed(format!("{what} out of range")))
    };
    Ok(Entry {
        kind,
        path: pending.path.take().unwrap_or_else(|| ustar_path(hdr)),
        link: pending
            .link
            .take()
            .unwrap_or_else(|| cstr_field(&hdr[157..257]).to_vec()),
        size,
        mode: (parse_numeric(&hdr[100..108], "mode")? & 0o7777) as u32,
        uid: match pending.uid {
            Some(u) => u,
            None => id(&hdr[108..116], "uid")?,
        },
        gid: match pending.gid {
            Some(g) => g,
            None => id(&hdr[116..124], "gid")?,
        },
        mtime: match pending.mtime {
            Some(m) => m,
            None => parse_numeric(&hdr[136..148], "mtime")? as i64,
        },
        dev_major: parse_numeric(&hdr[329..337], "devmajor")? as u32,
        dev_minor: parse_numeric(&hdr[337..345], "devminor")? as u32,
        xattrs: std::mem::take(&mut pending.xattrs),
    })
}

/// The header's name, joined to its ustar prefix when the header has one.
fn ustar_path(hdr: &[u8; 512]) -> Vec<u8> {
    let name = cstr_field(&hdr[0..100]);
    if &hdr[257..263] != b"ustar\0" {
        return name.to_vec();
    }
    let prefix = cstr_field(&hdr[345..500]);
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut p = prefix.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn truncated(e: io::Error) -> UnpackError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        UnpackError::Malformed("truncated tar stream".into())
    } else {
        UnpackError::Read(e)
    }
}

// ---------------------------------------------------------------------------------------------
// fd-relative file-system primitives
// ---------------------------------------------------------------------------------------------

const RESOLVE_STRICT: u64 = libc::RESOLVE_IN_ROOT
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

/// Like [`RESOLVE_STRICT`] but crossing mount points: a live sync into a running container may
/// land in a volume mounted below its target. The root is the container's own root, so every
/// mount reached is one the container itself sees.
const RESOLVE_STRICT_ACROSS_MOUNTS: u64 = RESOLVE_STRICT & !libc::RESOLVE_NO_XDEV;

/// Whether `fd` is on procfs, sysfs or a cgroup file system.
fn on_kernel_fs(fd: &OwnedFd) -> bool {
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    // SAFETY: statfs is plain data; the pointer is valid for the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    let magic = st.f_type;
    magic == libc::PROC_SUPER_MAGIC
        || magic == SYSFS_MAGIC
        || magic == CGROUP_SUPER_MAGIC
        || magic == CGROUP2_SUPER_MAGIC
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: stat is plain data, the pointer is valid for the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r == 0 {
        Ok(Some(st))
    } else {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        }
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn timespec(secs: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

const ALLOWED_XATTR_PREFIX: &str = "user.";
const ALLOWED_XATTR: &str = "security.capability";

/// Only `security.capability` (file capabilities, e.g. ping) and `user.*`: a layer must not plant
/// `trusted.overlay.*` (redirects, opaque markers) or LSM labels (U13).
fn xattr_allowed(name: &str) -> bool {
    name == ALLOWED_XATTR || name.starts_with(ALLOWED_XATTR_PREFIX)
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Extractor<'a> {
    root: OwnedFd,
    limits: &'a UnpackLimits,
    options: ApplyOptions,
    /// Directory attributes applied after all entries, since creating children changes mtimes
    /// and a read-only mode must not block later entries. Keyed by path: last entry wins.
    dirs: IndexMap<Vec<u8>, DirMeta>,
    /// Bytes held by `dirs` (paths and xattrs), bounded by `max_pending_dir_bytes`.
    dir_bytes: usize,
    bytes: u64,
    /// The last entry's parent directory and its path, reused while entries stay in it (a tar
    /// lists a directory's files together): walking the path again took ~5 `openat2` per entry.
    parent: Option<(Vec<u8>, OwnedFd)>,
}

/// True when `cached` is `changed` or below it: an entry at `changed` may have replaced the
/// directory the cached descriptor names.
fn is_at_or_below(cached: &[u8], changed: &[u8]) -> bool {
    cached.starts_with(changed) && (cached.len() == changed.len() || cached[changed.len()] == b'/')
}

/// What one remembered directory costs in memory, roughly: path, xattrs and the record itself.
fn dir_cost(path: &[u8], meta: &DirMeta) -> usize {
    let xattrs: usize = meta.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum();
    path.len() + xattrs + std::mem::size_of::<DirMeta>()
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Splits an entry name into components, refusing anything that could leave the root.
fn split_path<'p>(raw: &'p [u8], limits: &UnpackLimits, what: &str) -> Result<Vec<&'p [u8]>> {
    let hostile = |reason: String| UnpackError::Hostile {
        path: show(raw),
        reason,
    };
    if raw.len() > limits.max_path_bytes {
        return Err(UnpackError::Limit(format!(
            "{what} of {} bytes (limit {})",
            raw.len(),
            limits.max_path_bytes
        )));
    }
    if raw.first() == Some(&b'/') {
        return Err(hostile(format!("has an absolute {what}")));
    }
    let mut comps = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(hostile(format!("has '..' in its {what}"))),
            c if c.len() > 255 => {
                return Err(UnpackError::Limit(format!(
                    "path component over 255 bytes in {}",
                    show(raw)
                )))
            }
            c => comps.push(c),
        }
    }
    if comps.len() > limits.max_depth {
        return Err(UnpackError::Limit(format!(
            "path deeper than {} components",
            limits.max_depth
        )));
    }
    Ok(comps)
}

fn cname(c: &[u8]) -> Result<CString> {
    CString::new(c).map_err(|_| UnpackError::Malformed("NUL in entry name".into()))
}

impl Extractor<'_> {
    fn openat2(&self, dir: RawFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let resolve = if self.options.cross_mounts {
            RESOLVE_STRICT_ACROSS_MOUNTS
        } else {
            RESOLVE_STRICT
        };
        crate::fs_at::openat2(dir, name, flags, mode, resolve)
    }

    fn io(path: &[u8]) -> impl FnOnce(io::Error) -> UnpackError + '_ {
        move |source| UnpackError::Io {
            path: show(path),
            source,
        }
    }

    /// Opens the directory at `comps` one component at a time, never following a symlink.
    /// Missing directories are created (0755) when `create` is set, as tar implies parents.
    fn open_dir(&self, comps: &[&[u8]], create: bool, entry: &[u8]) -> Result<OwnedFd> {
        let mut cur = self.root.try_clone().map_err(Self::io(entry))?;
        for (i, c) in comps.iter().enumerate() {
            let name = cname(c)?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            let next = match self.openat2(cur.as_raw_fd(), &name, flags, 0) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    // SAFETY: valid dirfd and NUL-terminated name.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
                    if r != 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(Self::io(entry)(e));
                        }
                    }
                    let fd = self
                        .openat2(cur.as_raw_fd(), &name, flags, 0)
                        .map_err(Self::io(entry))?;
                    // Implied parents get 0755 whatever the daemon's umask is.
                    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), 0o755) }).map_err(Self::io(entry))?;
                    if let Some((uid, gid)) = self.options.owner {
                        cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })
                            .map_err(Self::io(entry))?;
                    }
                    fd
                }
                Err(e) => {
                    let parent = show(&comps[..=i].join(&b'/'));
                    // O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR (or ELOOP): tell
                    // a symlinked parent (an escape attempt) from a plain file in the way.
                    let is_link = lstat_at(cur.as_raw_fd(), &name)
                        .ok()
                        .flatten()
                        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    if is_link {
                        return Err(UnpackError::Hostile {
                            path: show(entry),
                            reason: format!("goes through symlink {parent:?}"),
                        });
                    }
                    return Err(match e.raw_os_error() {
                        Some(libc::ELOOP) => UnpackError::Hostile {
                            path: show(entry),
                            reason: format!("goes through symlink {parent:?}"),
                        },
                        Some(libc::EXDEV) => UnpackError::Hostile {
                            path: show(entry),
                            reason: format!("resolves outside the root at {parent:?}"),
                        },
                        Some(libc::ENOTDIR) => UnpackError::Malformed(format!(
                            "entry {:?}: parent {parent:?} is not a directory",
                            show(entry)
                        )),
                        _ => Self::io(entry)(e),
                    });
                }
            };
            // Across mounts, a live tree's procfs, sysfs or cgroupfs is the kernel's: an
            // entry written there as root would reach the host (core_pattern, cgroup files).
            if self.options.cross_mounts && on_kernel_fs(&next) {
                return Err(UnpackError::Hostile {
                    path: show(entry),
                    reason: format!(
                        "goes into {:?}, a kernel file system (procfs, sysfs or cgroupfs)",
                        show(&comps[..=i].join(&b'/'))
                    ),
                });
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Clears whatever is at `name` so a new entry can take its place (last entry wins, U14).
    /// Returns true if a directory was kept (a directory entry over a directory merges).
    fn clear(&self, dir: RawFd, name: &CStr, keep_dir: bool, entry: &[u8]) -> Result<bool> {
        let Some(st) = lstat_at(dir, name).map_err(Self::io(entry))? else {
            return Ok(false);
        };
        if self.options.no_overwrite_dir_non_dir && is_dir(&st) != keep_dir {
            let kind = |dir: bool| if dir { "directory" } else { "non-directory" };
            return Err(UnpackError::TypeChange {
                path: show(entry),
                existing: kind(is_dir(&st)),
                with: kind(keep_dir),
            });
        }
        if is_dir(&st) {
            if keep_dir {
                return Ok(true);
            }
            self.remove_tree(dir, name, 0, entry)?;
        } else {
            // SAFETY: valid dirfd and name; unlinkat never follows the final symlink.
            cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map_err(Self::io(entry))?;
        }
        Ok(false)
    }

    fn remove_tree(&self, dir: RawFd, name: &CStr, depth: usize, entry: &[u8]) -> Result<()> {
        if depth > self.limits.max_depth {
            return Err(UnpackError::Limit(
                "directory tree too deep to replace".into(),
            ));
        }
        let fd = self
            .openat2(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
            .map_err(Self::io(entry))?;
        let mut children = Vec::new();
        // SAFETY: fdopendir takes ownership of the fd (we release it from OwnedFd).
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        let dirp = unsafe { libc::fdopendir(raw) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            unsafe { libc::close(raw) };
            return Err(Self::io(entry)(e));
        }
        loop {
            // SAFETY: dirp is a valid DIR* until closedir.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                break;
            }
            let n = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let b = n.to_bytes();
            if b != b"." && b != b".." {
                children.push(n.to_owned());
            }
        }
        // Keep an fd of our own to the directory for the *at calls below; close-on-exec, as
        // every fd of the daemon, so no child (a container's init) inherits it.
        let own = unsafe { libc::fcntl(libc::dirfd(dirp), libc::F_DUPFD_CLOEXEC, 0) };
        unsafe { libc::closedir(dirp) };
        cvt(own).map_err(Self::io(entry))?;
        // SAFETY: dup returned a fresh fd.
        let own = unsafe { OwnedFd::from_raw_fd(own) };
        for c in children {
            match lstat_at(own.as_raw_fd(), &c).map_err(Self::io(entry))? {
                Some(st) if is_dir(&st) => {
                    self.remove_tree(own.as_raw_fd(), &c, depth + 1, entry)?
                }
                Some(_) => cvt(unsafe { libc::unlinkat(own.as_raw_fd(), c.as_ptr(), 0) })
                    .map_err(Self::io(entry))?,
                None => {}
            }
        }
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) })
            .map_err(Self::io(entry))
    }

    fn set_xattrs(&self, fd: RawFd, xattrs: &[(String, Vec<u8>)], entry: &[u8]) -> Result<()> {
        for (k, v) in xattrs {
            if !xattr_allowed(k) {
                continue;
            }
            let key = CString::new(k.as_bytes())
                .map_err(|_| UnpackError::Malformed("NUL in xattr name".into()))?;
            // SAFETY: valid fd, key and value buffer.
            cvt(unsafe { libc::fsetxattr(fd, key.as_ptr(), v.as_ptr().cast(), v.len(), 0) })
                .map_err(Self::io(entry))?;
        }
        Ok(())
    }

    fn apply<R: Read>(&mut self, mut e: Entry, data: &mut R) -> Result<()> {
        if let Some((uid, gid)) = self.options.owner {
            (e.uid, e.gid) = (uid, gid);
        }
        if let Some((from, to)) = &self.options.rebase {
            e.path = rebase(&e.path, from, to)?;
            if e.kind == b'1' {
                e.link = rebase(&e.link, from, to)?;
            }
        }
        let comps = split_path(&e.path, self.limits, "path")?;
        let Some((last, parents)) = comps.split_last() else {
            // `.` or `/`: the snapshot root itself is never replaced (U14).
            if e.kind == b'5' {
                return Ok(());
            }
            return Err(UnpackError::Hostile {
                path: show(&e.path),
                reason: "would replace the layer root".into(),
            });
        };
        let pfd = self.parent_dir(parents, &e.path)?;
        let key = comps.join(&b'/');

        if let Some(target) = last.strip_prefix(b".wh.") {
            if self.options.whiteouts != Whiteouts::Plain {
                let whited_out = self.whiteout(pfd, target, &e);
                // It may have removed directories below this one: walk afresh after it.
                self.parent = None;
                return whited_out;
            }
        }
        let name = cname(last)?;
        if e.kind != b'5' {
            self.forget_dir(&key);
        }
        let changed = key.clone();
        let applied = self.apply_kind(pfd, &name, &comps, key, &e, data);
        if self
            .parent
            .as_ref()
            .is_some_and(|(cached, _)| is_at_or_below(cached, &changed))
        {
            self.parent = None;
        }
        applied
    }

    /// The directory at `parents`, from the cache when the previous entry was in it too.
    /// Never cached across mounts: a live tree can change under a held descriptor.
    fn parent_dir(&mut self, parents: &[&[u8]], entry: &[u8]) -> Result<RawFd> {
        if self.options.cross_mounts {
            self.parent = None;
        }
        let path = parents.join(&b'/');
        match &self.parent {
            Some((cached, fd)) if *cached == path => Ok(fd.as_raw_fd()),
            _ => {
                let fd = self.open_dir(parents, true, entry)?;
                let raw = fd.as_raw_fd();
                self.parent = Some((path, fd));
                Ok(raw)
            }
        }
    }

    fn apply_kind<R: Read>(
        &mut self,
        pfd: RawFd,
        name: &CStr,
        comps: &[&[u8]],
        key: Vec<u8>,
        e: &Entry,
        data: &mut R,
    ) -> Result<()> {
        match e.kind {
            b'0' | b'\0' | b'7' => self.write_file(pfd, name, e, data),
            b'5' => self.make_dir(pfd, name, key, e),
            b'1' => self.make_hardlink(pfd, name, comps, e),
            b'2' => {
                self.make_symlink(pfd, name, e)?;
                Self::set_owner_and_times_nofollow(pfd, name, e)
            }
            b'3' | b'4' | b'6' => {
                self.make_node(pfd, name, e)?;
                Self::set_owner_and_times_nofollow(pfd, name, e)
            }
            b'S' => Err(UnpackError::Unsupported(format!(
                "GNU sparse entry {} is refused",
                show(&e.path)
            ))),
            other => Err(UnpackError::Unsupported(format!(
                "entry {} has unsupported tar type {:?}",
                show(&e.path),
                other as char
            ))),
        }
    }

    /// A regular file: created fresh (never through an existing name), its content bounded by
    /// the layer's byte cap, then owner, mode, xattrs and times set on the open descriptor.
    fn write_file<R: Read>(
        &mut self,
        pfd: RawFd,
        name: &CStr,
        e: &Entry,
        data: &mut R,
    ) -> Result<()> {
        self.clear(pfd, name, false, &e.path)?;
        let file = self
            .openat2(
                pfd,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )
            .map_err(Self::io(&e.path))?;
        self.bytes += e.size;
        if self.bytes > self.limits.max_total_bytes {
            return Err(UnpackError::ContentLimit {
                limit: self.limits.max_total_bytes,
            });
        }
        let mut out = std::fs::File::from(file);
        let copied = io::copy(&mut data.take(e.size), &mut out).map_err(|err| {
            if err.kind() == io::ErrorKind::UnexpectedEof {
                UnpackError::Malformed("truncated tar stream".into())
            } else {
                Self::io(&e.path)(err)
            }
        })?;
        if copied != e.size {
            return Err(UnpackError::Malformed(format!(
                "truncated tar stream in {}",
                show(&e.path)
            )));
        }
        let fd = out.as_raw_fd();
        // chown before chmod: chown clears setuid/setgid, which images need (U12).
        cvt(unsafe { libc::fchown(fd, e.uid, e.gid) }).map_err(Self::io(&e.path))?;
        cvt(unsafe { libc::fchmod(fd, e.mode) }).map_err(Self::io(&e.path))?;
        self.set_xattrs(fd, &e.xattrs, &e.path)?;
        let ts = timespec(e.mtime);
        cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map_err(Self::io(&e.path))?;
        Ok(())
    }

    /// A directory: kept if one is already there (a later layer may re-list it), its attributes
    /// applied at the end by `finish_dirs`, once nothing else is written into it.
    fn make_dir(&mut self, pfd: RawFd, name: &CStr, key: Vec<u8>, e: &Entry) -> Result<()> {
        let kept = self.clear(pfd, name, true, &e.path)?;
        if !kept {
            cvt(unsafe { libc::mkdirat(pfd, name.as_ptr(), 0o700) }).map_err(Self::io(&e.path))?;
        }
        let meta = DirMeta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            xattrs: e.xattrs.clone(),
        };
        self.remember_dir(key, meta)
    }

    fn make_symlink(&mut self, pfd: RawFd, name: &CStr, e: &Entry) -> Result<()> {
        // Stored verbatim: absolute targets are legitimate inside the container; we never
        // follow them while extracting.
        self.clear(pfd, name, false, &e.path)?;
        let target = CString::new(e.link.clone())
            .map_err(|_| UnpackError::Malformed("NUL in symlink target".into()))?;
        cvt(unsafe { libc::symlinkat(target.as_ptr(), pfd, name.as_ptr()) })
            .map_err(Self::io(&e.path))?;
        Ok(())
    }

    /// A hardlink to an entry earlier in this layer, resolved inside the snapshot; never to a
    /// directory or the layer root.
    fn make_hardlink(&mut self, pfd: RawFd, name: &CStr, comps: &[&[u8]], e: &Entry) -> Result<()> {
        let not_in_layer = || {
            UnpackError::Malformed(format!(
                "hardlink {} points to {}, which is not in this layer",
                show(&e.path),
                show(&e.link)
            ))
        };
        let tcomps = split_path(&e.link, self.limits, "hardlink target")?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(UnpackError::Hostile {
                path: show(&e.path),
                reason: "hardlinks to the layer root".into(),
            });
        };
        if tcomps == comps {
            return Ok(());
        }
        let tdir = self
            .open_dir(tparents, false, &e.path)
            .map_err(|err| match err {
                UnpackError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    not_in_layer()
                }
                other => other,
            })?;
        let tname = cname(tlast)?;
        match lstat_at(tdir.as_raw_fd(), &tname).map_err(Self::io(&e.path))? {
            None => return Err(not_in_layer()),
            Some(st) if is_dir(&st) => {
                return Err(UnpackError::Hostile {
                    path: show(&e.path),
                    reason: "hardlinks to a directory".into(),
                })
            }
            Some(_) => {}
        }
        self.clear(pfd, name, false, &e.path)?;
        // Flags 0: a link to a symlink links the symlink itself, never its target.
        cvt(unsafe { libc::linkat(tdir.as_raw_fd(), tname.as_ptr(), pfd, name.as_ptr(), 0) })
            .map_err(Self::io(&e.path))?;
        // A hardlink shares the target's inode and metadata: nothing else to set.
        Ok(())
    }

    fn make_node(&mut self, pfd: RawFd, name: &CStr, e: &Entry) -> Result<()> {
        self.clear(pfd, name, false, &e.path)?;
        let fmt = match e.kind {
            b'3' => libc::S_IFCHR,
            b'4' => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        let dev = libc::makedev(e.dev_major, e.dev_minor);
        cvt(unsafe { libc::mknodat(pfd, name.as_ptr(), fmt | e.mode, dev) })
            .map_err(Self::io(&e.path))?;
        // We just created it as a non-symlink inside a directory only we write to.
        cvt(unsafe { libc::fchmodat(pfd, name.as_ptr(), e.mode, 0) }).map_err(Self::io(&e.path))?;
        Ok(())
    }

    /// Symlinks and device nodes: ownership and times without following.
    fn set_owner_and_times_nofollow(pfd: RawFd, name: &CStr, e: &Entry) -> Result<()> {
        cvt(unsafe { libc::fchownat(pfd, name.as_ptr(), e.uid, e.gid, libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(Self::io(&e.path))?;
        let ts = timespec(e.mtime);
        cvt(unsafe { libc::utimensat(pfd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(Self::io(&e.path))?;
        Ok(())
    }

    /// Keeps a directory's attributes for `finish_dirs`, within the count and byte caps.
    fn remember_dir(&mut self, key: Vec<u8>, meta: DirMeta) -> Result<()> {
        self.forget_dir(&key);
        self.dir_bytes += dir_cost(&key, &meta);
        self.dirs.insert(key, meta);
        if self.dirs.len() > self.limits.max_pending_dirs {
            return Err(UnpackError::Limit(format!(
                "more than {} directories",
                self.limits.max_pending_dirs
            )));
        }
        if self.dir_bytes > self.limits.max_pending_dir_bytes {
            return Err(UnpackError::Limit(format!(
                "directory paths and xattrs of more than {} bytes",
                self.limits.max_pending_dir_bytes
            )));
        }
        Ok(())
    }

    fn forget_dir(&mut self, key: &[u8]) {
        if let Some(old) = self.dirs.shift_remove(key) {
            self.dir_bytes -= dir_cost(key, &old);
        }
    }

    /// `.wh.<name>` hides `<name>` of lower layers: an overlay whiteout (char device 0/0);
    /// `.wh..wh..opq` hides all lower children of the directory: `trusted.overlay.opaque=y`.
    fn whiteout(&mut self, pfd: RawFd, target: &[u8], e: &Entry) -> Result<()> {
        if self.options.whiteouts == Whiteouts::Delete {
            return self.delete(pfd, target, e);
        }
        if target == b".wh..opq" {
            let key = c"trusted.overlay.opaque";
            cvt(unsafe { libc::fsetxattr(pfd, key.as_ptr(), b"y".as_ptr().cast(), 1, 0) })
                .map_err(Self::io(&e.path))?;
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(UnpackError::Malformed(format!(
                "invalid whiteout entry {}",
                show(&e.path)
            )));
        }
        if target.starts_with(b".wh.") {
            return Err(UnpackError::Malformed(format!(
                "whiteout of a whiteout name in {}",
                show(&e.path)
            )));
        }
        let name = cname(target)?;
        // An entry of this same layer survives a whiteout, whatever the order (layer.md).
        if lstat_at(pfd, &name).map_err(Self::io(&e.path))?.is_some() {
            return Ok(());
        }
        cvt(unsafe { libc::mknodat(pfd, name.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) })
            .map_err(Self::io(&e.path))?;
        cvt(unsafe { libc::fchownat(pfd, name.as_ptr(), e.uid, e.gid, libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(Self::io(&e.path))?;
        Ok(())
    }

    /// A live tree's whiteout: the named entry (a whole directory tree included) is removed,
    /// never followed; one that is already gone is fine (the change was seen twice).
    fn delete(&mut self, pfd: RawFd, target: &[u8], e: &Entry) -> Result<()> {
        if target.is_empty() || target == b"." || target == b".." || target.starts_with(b".wh.") {
            return Err(UnpackError::Malformed(format!(
                "invalid deletion entry {}",
                show(&e.path)
            )));
        }
        let name = cname(target)?;
        self.clear(pfd, &name, false, &e.path)?;
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            // Opened without following anything: a directory later replaced by a symlink is
            // skipped, never chmodded through (U4).
            let fd = match self.open_dir(&comps, false, path) {
                Ok(fd) => fd,
                Err(UnpackError::Hostile { .. }) | Err(UnpackError::Malformed(_)) => continue,
                Err(UnpackError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    continue
                }
                Err(other) => return Err(other),
            };
            let raw = fd.as_raw_fd();
            cvt(unsafe { libc::fchown(raw, meta.uid, meta.gid) }).map_err(Self::io(path))?;
            cvt(unsafe { libc::fchmod(raw, meta.mode) }).map_err(Self::io(path))?;
            self.set_xattrs(raw, &meta.xattrs, path)?;
            let ts = timespec(meta.mtime);
            cvt(unsafe { libc::futimens(raw, ts.as_ptr()) }).map_err(Self::io(path))?;
        }
        Ok(())
    }
}

/// One member of an archive read by [`walk_archive`]: never extracted, only streamed.
#[derive(Debug)]
pub struct ArchiveEntry {
    /// Normalised path components (no `.`, `..` or leading `/`; checked like layer entries).
    pub path: String,
    /// `b'0'` (file), `b'5'` (directory), `b'2'` (symlink), …
    pub kind: u8,
    pub link: String,
    pub size: u64,
}

/// Reads an uncompressed tar (an image archive, not a layer) member by member with the same
/// parser and caps as layers, handing each regular file's data to `f` as a bounded reader.
/// Names are checked like layer entries: `..` or an absolute name is a hostile archive.
pub fn walk_archive(
    reader: &mut impl Read,
    limits: &UnpackLimits,
    mut f: impl FnMut(&ArchiveEntry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut stream = TarStream {
        r: reader,
        limits,
        entries: 0,
        layer_header_bytes: 0,
        entry_header_bytes: 0,
    };
    while let Some(e) = stream.next()? {
        let comps = split_path(&e.path, limits, "name")?;
        let path = comps
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/");
        let carries_data = matches!(e.kind, b'0' | b'\0' | b'7');
        let entry = ArchiveEntry {
            path,
            kind: if e.kind == b'\0' || e.kind == b'7' {
                b'0'
            } else {
                e.kind
            },
            link: show(&e.link),
            size: if carries_data { e.size } else { 0 },
        };
        let mut body = (&mut *stream.r).take(entry.size);
        f(&entry, &mut body)?;
        io::copy(&mut body, &mut io::sink()).map_err(UnpackError::Read)?;
        if body.limit() != 0 {
            return Err(UnpackError::Malformed("truncated tar stream".into()));
        }
        if carries_data {
            stream.skip_padding(entry.size)?;
        }
    }
    Ok(())
}

/// What a `.wh.NAME` entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Whiteouts {
    /// An overlay whiteout (char device 0/0) for a layer directory that overlayfs will stack.
    #[default]
    Overlay,
    /// NAME is removed for real: the tree is live (a running container's files), and nothing
    /// stacks on it that would read a whiteout.
    Delete,
    /// `.wh.NAME` is an ordinary name: an upload from `docker cp` is not a layer (Docker's
    /// `Untar` gives the prefix no meaning either).
    Plain,
}

/// How [`apply_tar_at`] applies entries beyond the layer defaults.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub whiteouts: Whiteouts,
    /// Cross mount points below the root (still never a symlink nor a magic link).
    pub cross_mounts: bool,
    /// `(uid, gid)` for every entry and every directory created on the way, instead of the
    /// headers' (the archive's owner on the host says nothing about the container's users).
    pub owner: Option<(u32, u32)>,
    /// Refuse to replace a directory by a non-directory or the reverse (Docker's
    /// `noOverwriteDirNonDir`, which `docker cp` sets).
    pub no_overwrite_dir_non_dir: bool,
    /// Rename the archive's top entry `.0` to `.1` (`.` as `.0`: every entry goes under `.1`),
    /// as `docker cp` names a copy after its destination; entries outside it are refused.
    pub rebase: Option<(String, String)>,
}

/// Applies an uncompressed tar stream to `dest` (an existing, normally empty directory).
/// Reads up to the end-of-archive marker; the caller drains the rest for hashing.
pub fn apply_tar(
    reader: &mut impl Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats> {
    apply_tar_at(reader, open_root(dest)?, limits, ApplyOptions::default())
}

/// `dest` itself, opened without following a symlink at its last component.
fn open_root(dest: &Path) -> Result<OwnedFd> {
    let dest_c = CString::new(dest.as_os_str().as_encoded_bytes())
        .map_err(|_| UnpackError::Malformed("NUL in destination path".into()))?;
    // SAFETY: valid NUL-terminated path.
    let root = unsafe {
        libc::open(
            dest_c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    cvt(root).map_err(|source| UnpackError::Io {
        path: dest.display().to_string(),
        source,
    })?;
    // SAFETY: open returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(root) })
}

/// [`apply_tar`] into the directory `root` is open on, which the caller resolved (a magic link
/// such as `/proc/<pid>/root` cannot be opened with `O_NOFOLLOW`). Every entry resolves inside
/// `root`, never through a symlink.
pub fn apply_tar_at(
    reader: &mut impl Read,
    root: OwnedFd,
    limits: &UnpackLimits,
    options: ApplyOptions,
) -> Result<UnpackStats> {
    let mut ex = Extractor {
        root,
        limits,
        options,
        dirs: IndexMap::new(),
        dir_bytes: 0,
        bytes: 0,
        parent: None,
    };
    let mut stream = TarStream {
        r: reader,
        limits,
        entries: 0,
        layer_header_bytes: 0,
        entry_header_bytes: 0,
    };
    let mut count = 0;
    while let Some(e) = stream.next()? {
        count += 1;
        let size = e.size;
        let carries_data = matches!(e.kind, b'0' | b'\0' | b'7');
        if !carries_data && size != 0 && e.kind != b'S' {
            return Err(UnpackError::Malformed(format!(
                "entry {} of type {:?} declares {size} data bytes",
                show(&e.path),
                e.kind as char
            )));
        }
        let mut body = (&mut *stream.r).take(if carries_data { size } else { 0 });
        ex.apply(e, &mut body)?;
        // Entries that do not use their data (whiteouts, a hardlink onto itself) still own it.
        io::copy(&mut body, &mut io::sink()).map_err(UnpackError::Read)?;
        if body.limit() != 0 {
            return Err(UnpackError::Malformed("truncated tar stream".into()));
        }
        if carries_data {
            stream.skip_padding(size)?;
        }
    }
    ex.finish_dirs()?;
    Ok(UnpackStats {
        diff_id: String::new(),
        entries: count,
        bytes: ex.bytes,
    })
}

#[cfg(test)]
mod live_tree_tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_uid(4242);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn root_of(dir: &Path) -> OwnedFd {
        std::fs::File::open(dir).unwrap().into()
    }

    #[test]
    fn delete_mode_removes_what_a_whiteout_names_and_owner_overrides_the_headers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gone/deep")).unwrap();
        std::fs::write(dir.path().join("gone/deep/f"), "x").unwrap();
        std::fs::write(dir.path().join("old.txt"), "x").unwrap();
        let tar = tar_of(&[
            (".wh.gone", b""),
            (".wh.old.txt", b""),
            (".wh.never-there", b""),
            ("new/dir/file.txt", b"fresh"),
        ]);
        let options = ApplyOptions {
            whiteouts: Whiteouts::Delete,
            cross_mounts: true,
            owner: Some((1234, 5678)),
            ..ApplyOptions::default()
        };
        apply_tar_at(
            &mut tar.as_slice(),
            root_of(dir.path()),
            &UnpackLimits::default(),
            options,
        )
        .unwrap();
        assert!(!dir.path().join("gone").exists());
        assert!(!dir.path().join("old.txt").exists());
        assert!(!dir.path().join("never-there").exists(), "no whiteout node");
        let file = dir.path().join("new/dir/file.txt");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "fresh");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (1234, 5678, 0o640)
        );
        let parent = std::fs::metadata(dir.path().join("new")).unwrap();
        assert_eq!((parent.uid(), parent.gid()), (1234, 5678));
    }

    #[test]
    fn overlay_mode_still_writes_whiteout_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[(".wh.x", b"")]);
        apply_tar(&mut tar.as_slice(), dir.path(), &UnpackLimits::default()).unwrap();
        let meta = std::fs::symlink_metadata(dir.path().join("x")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &meta.file_type()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_parent_is_dropped_when_an_entry_replaces_it_or_an_ancestor() {
        assert!(is_at_or_below(b"a/b", b"a/b"));
        assert!(is_at_or_below(b"a/b/c", b"a"));
        assert!(
            !is_at_or_below(b"a/bc", b"a/b"),
            "a sibling with a longer name"
        );
        assert!(
            !is_at_or_below(b"a", b"a/b"),
            "a child does not replace its parent"
        );
    }

    #[test]
    fn rebase_renames_the_top_entry_or_puts_contents_under_a_name() {
        let r = |p: &str, from: &str, to: &str| {
            rebase(p.as_bytes(), from, to).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(r("app/", "app", "copy").unwrap(), "copy");
        assert_eq!(r("app/sub/f", "app", "copy").unwrap(), "copy/sub/f");
        assert_eq!(r("./", ".", "copy").unwrap(), "copy");
        assert_eq!(r("./sub/f", ".", "copy").unwrap(), "copy/sub/f");
        assert!(
            r("application/x", "app", "copy").is_err(),
            "a prefix is not the entry"
        );
    }

    fn tar_of(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o640);
                    b.append_data(&mut h, name, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    b.append_data(&mut h, name, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn upload_options_keep_whiteout_names_force_the_owner_and_guard_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let me = unsafe { (libc::geteuid(), libc::getegid()) };
        let options = ApplyOptions {
            owner: Some(me),
            whiteouts: Whiteouts::Plain,
            no_overwrite_dir_non_dir: true,
            ..ApplyOptions::default()
        };
        let open = || open_root(dir.path()).unwrap();
        let tar = tar_of(&[(".wh.x", Some("plain"))]);
        apply_tar_at(
            &mut tar.as_slice(),
            open(),
            &UnpackLimits::default(),
            options.clone(),
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join(".wh.x")).unwrap(), b"plain");
        let tar = tar_of(&[("d", Some("file over a dir"))]);
        let err = apply_tar_at(
            &mut tar.as_slice(),
            open(),
            &UnpackLimits::default(),
            options.clone(),
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::TypeChange { .. }), "{err}");
        assert!(dir.path().join("d").is_dir(), "the directory stays");
        let tar = tar_of(&[(".wh.x", None)]);
        let err = apply_tar_at(
            &mut tar.as_slice(),
            open(),
            &UnpackLimits::default(),
            options.clone(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot overwrite non-directory \".wh.x\" with directory"
        );
    }
}
