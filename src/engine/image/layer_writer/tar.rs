//! Tar headers as Docker's layer writer (Go's `archive/tar` in PAX format) produces them: a
//! ustar block per entry, preceded by a PAX extended header for whatever ustar cannot hold —
//! names and link targets too long for its 100 (+155 prefix) bytes, ids, sizes and times too
//! large for its octal fields, and extended attributes (`SCHILY.xattr.<name>`).

/// The largest value a ustar octal field of `width` bytes holds (one byte is the terminator).
fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width - 1))) - 1
}

/// What an entry is, with the data its kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64 },
    HardLink { target: Vec<u8> },
    Symlink { target: Vec<u8> },
    Dir,
    Char { major: u64, minor: u64 },
    Block { major: u64, minor: u64 },
    Fifo,
}

impl Kind {
    fn type_flag(&self) -> u8 {
        match self {
            Kind::File { .. } => b'0',
            Kind::HardLink { .. } => b'1',
            Kind::Symlink { .. } => b'2',
            Kind::Char { .. } => b'3',
            Kind::Block { .. } => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }

    fn link(&self) -> &[u8] {
        match self {
            Kind::HardLink { target } | Kind::Symlink { target } => target,
            _ => b"",
        }
    }

    /// Bytes of data following the header.
    pub fn data_size(&self) -> u64 {
        match self {
            Kind::File { size } => *size,
            _ => 0,
        }
    }

    fn device(&self) -> (u64, u64) {
        match self {
            Kind::Char { major, minor } | Kind::Block { major, minor } => (*major, *minor),
            _ => (0, 0),
        }
    }
}

/// One member of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Relative, `/`-separated, directories ending in `/`.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Whole seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, sorted by name so the same file always gives the same bytes.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Zero bytes that pad `size` bytes of data to whole 512-byte blocks.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Two zero blocks: the end of the archive.
pub const END_OF_ARCHIVE: [u8; 1024] = [0; 1024];

/// The header blocks of `h`: a PAX extended header when needed, then the ustar header.
pub fn encode(h: &Header) -> Vec<u8> {
    let split = ustar_split(&h.path);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if split.is_none() {
        pax.push(("path".into(), h.path.clone()));
    }
    let link = h.kind.link();
    if link.len() > 100 {
        pax.push(("linkpath".into(), link.to_vec()));
    }
    let number = |key: &str, value: u64, width: usize, pax: &mut Vec<(String, Vec<u8>)>| {
        if value > octal_max(width) {
            pax.push((key.into(), value.to_string().into_bytes()));
        }
    };
    number("uid", h.uid.into(), 8, &mut pax);
    number("gid", h.gid.into(), 8, &mut pax);
    number("size", h.kind.data_size(), 12, &mut pax);
    if h.mtime < 0 || h.mtime as u64 > octal_max(12) {
        pax.push(("mtime".into(), h.mtime.to_string().into_bytes()));
    }
    for (name, value) in &h.xattrs {
        pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
    }
    let mut out = Vec::with_capacity(1024);
    if !pax.is_empty() {
        let records = pax_records(&pax);
        let base = h.path.rsplit(|&b| b == b'/').find(|c| !c.is_empty());
        let mut name = b"PaxHeaders.0/".to_vec();
        name.extend_from_slice(&base.unwrap_or(b"x")[..base.map_or(1, |b| b.len().min(80))]);
        let pax_header = Header {
            path: name,
            kind: Kind::File {
                size: records.len() as u64,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: h.mtime.clamp(0, octal_max(12) as i64),
            xattrs: Vec::new(),
        };
        out.extend_from_slice(&ustar_block(
            &pax_header,
            b'x',
            ustar_split(&pax_header.path),
        ));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    out.extend_from_slice(&ustar_block(h, h.kind.type_flag(), split));
    out
}

/// `(prefix, name)` as ustar holds a path: whole when it fits 100 bytes, else split at a `/`
/// into at most 155 + 100 bytes; `None` when neither fits.
fn ustar_split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    // A directory's trailing slash belongs to the name, so never split there.
    let search_end = path.len() - 1;
    (0..search_end)
        .filter(|&i| path[i] == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0)
        .map(|i| (&path[..i], &path[i + 1..]))
        .next()
}

/// PAX records, `"<length> <key>=<value>\n"`, where the length counts the whole record, its
/// own digits included.
fn pax_records(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        let body_len = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The 512-byte ustar header; fields too large are capped (their true value is in PAX).
fn ustar_block(h: &Header, type_flag: u8, split: Option<(&[u8], &[u8])>) -> [u8; 512] {
    let mut b = [0u8; 512];
    let (prefix, name) = split.unwrap_or((b"", &h.path[..h.path.len().min(100)]));
    put(&mut b[0..100], name);
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], u64::from(h.uid).min(octal_max(8)));
    octal(&mut b[116..124], u64::from(h.gid).min(octal_max(8)));
    octal(&mut b[124..136], h.kind.data_size().min(octal_max(12)));
    octal(
        &mut b[136..148],
        h.mtime.clamp(0, octal_max(12) as i64) as u64,
    );
    b[156] = type_flag;
    let link = h.kind.link();
    put(&mut b[157..257], &link[..link.len().min(100)]);
    put(&mut b[257..263], b"ustar\0");
    put(&mut b[263..265], b"00");
    let (major, minor) = h.kind.device();
    if matches!(h.kind, Kind::Char { .. } | Kind::Block { .. }) {
        octal(&mut b[329..337], major.min(octal_max(8)));
        octal(&mut b[337..345], minor.min(octal_max(8)));
    }
    put(&mut b[345..500], prefix);
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// A NUL-terminated, zero-padded octal number filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    put(field, digits.as_bytes());
    field[field.len() - 1] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Header {
        Header {
            path: path.as_bytes().to_vec(),
            kind: Kind::File { size },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn a_short_plain_entry_is_one_ustar_block_with_a_valid_checksum() {
        let block = encode(&file("etc/hello", 3));
        assert_eq!(block.len(), 512);
        assert_eq!(&block[0..9], b"etc/hello");
        assert_eq!(&block[124..136], b"00000000003\0");
        let mut copy = block.clone();
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|x| u32::from(*x)).sum();
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn long_names_use_the_ustar_prefix_then_pax() {
        let mid = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let block = encode(&file(&mid, 0));
        assert_eq!(block.len(), 512, "fits prefix + name");
        assert_eq!(&block[345..465], "d".repeat(120).as_bytes());
        let long = format!("{}/{}", "d".repeat(200), "f".repeat(120));
        let blocks = encode(&file(&long, 0));
        assert_eq!(blocks[156], b'x');
        let text = String::from_utf8_lossy(&blocks[512..1024]);
        assert!(text.contains(&format!(" path={long}\n")), "{text}");
    }

    #[test]
    fn pax_carries_large_ids_sizes_and_xattrs() {
        let mut h = file("big", 9 << 30);
        h.uid = 5_000_000;
        h.xattrs = vec![("user.k".into(), b"v\0w".to_vec())];
        let blocks = encode(&h);
        let records = &blocks[512..1024];
        let text = String::from_utf8_lossy(records);
        assert!(text.contains(" uid=5000000\n"), "{text}");
        assert!(text.contains(&format!(" size={}\n", 9u64 << 30)), "{text}");
        assert!(records.windows(20).any(|w| w == b"SCHILY.xattr.user.k="));
    }

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        let r = pax_records(&[("path".into(), b"a".repeat(90))]);
        let len: usize = String::from_utf8_lossy(&r)
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }
}
