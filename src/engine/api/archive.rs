//! The tar streams of Docker's archive API (`PUT /containers/{id}/archive`), as a client builds
//! them: one regular file per call is all berth's compose client sends (a `configs`/`secrets`
//! entry with inline `content` or from an `environment` variable).

/// The largest number a 7-digit octal ustar field holds (uid, gid).
const USTAR_ID_MAX: u32 = 0o7777777;

/// A ustar archive holding one regular file `name` (relative, `/`-separated) with the given
/// content, permission bits, owner and modification time (Unix seconds): what Docker extracts
/// with those attributes. What ustar cannot hold — a name that does not fit its 100 + 155
/// bytes, an owner beyond 7 octal digits — goes in a PAX extended header before the entry, as
/// Go's `archive/tar` (Docker's reader) and GNU tar expect, instead of being cut short.
pub fn single_file_tar(
    name: &str,
    content: &[u8],
    mode: u32,
    (uid, gid): (u32, u32),
    mtime: u64,
) -> Vec<u8> {
    let split = ustar_split(name);
    let mut pax = Vec::new();
    if split.is_none() {
        pax.push(("path", name.to_string()));
    }
    if uid > USTAR_ID_MAX {
        pax.push(("uid", uid.to_string()));
    }
    if gid > USTAR_ID_MAX {
        pax.push(("gid", gid.to_string()));
    }
    let (prefix, short) = split.unwrap_or(("", name));
    let mut out = Vec::new();
    if !pax.is_empty() {
        let records = pax_records(&pax);
        let pax_name = format!("PaxHeaders/{}", short.rsplit('/').next().unwrap_or(short));
        let entry = Entry {
            prefix: "",
            name: &pax_name,
            size: records.len() as u64,
            mode: 0o644,
            owner: (0, 0),
            mtime,
            kind: b'x',
        };
        append(&mut out, &header(&entry), &records);
    }
    let entry = Entry {
        prefix,
        name: short,
        size: content.len() as u64,
        mode: mode & 0o7777,
        owner: (uid.min(USTAR_ID_MAX), gid.min(USTAR_ID_MAX)),
        mtime,
        kind: b'0',
    };
    append(&mut out, &header(&entry), content);
    // End of archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    out
}

/// `(prefix, name)` as ustar holds a path: whole when it fits 100 bytes, else split at a `/`
/// into at most 155 + 100 bytes; `None` when neither fits.
fn ustar_split(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    name.char_indices()
        .filter(|(i, c)| *c == '/' && name.len() - i - 1 <= 100 && *i <= 155)
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .next()
}

/// PAX records, `"<length> <key>=<value>\n"`, where the length counts the whole record,
/// its own digits included.
fn pax_records(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while len != body.len() + len.to_string().len() {
            len = body.len() + len.to_string().len();
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

struct Entry<'a> {
    prefix: &'a str,
    name: &'a str,
    size: u64,
    mode: u32,
    owner: (u32, u32),
    mtime: u64,
    kind: u8,
}

fn header(e: &Entry) -> [u8; 512] {
    let mut header = [0u8; 512];
    put(&mut header[0..100], e.name.as_bytes());
    octal(&mut header[100..108], u64::from(e.mode));
    octal(&mut header[108..116], u64::from(e.owner.0));
    octal(&mut header[116..124], u64::from(e.owner.1));
    octal(&mut header[124..136], e.size);
    octal(&mut header[136..148], e.mtime);
    header[156] = e.kind;
    put(&mut header[257..263], b"ustar\0");
    put(&mut header[263..265], b"00");
    put(&mut header[345..500], e.prefix.as_bytes());
    // The checksum is computed with its own field as spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    octal(&mut header[148..155], u64::from(sum));
    header
}

/// A header block and its data, padded to whole blocks.
fn append(out: &mut Vec<u8>, header: &[u8; 512], data: &[u8]) {
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
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

    #[test]
    fn gnu_tar_reads_name_mode_owner_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("one.tar");
        std::fs::write(
            &tar,
            single_file_tar("run/secrets/token", b"s3cret\n", 0o440, (1000, 33), 0),
        )
        .unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.starts_with("-r--r----- 1000/33"), "{listing}");
        assert!(listing.contains(" 7 "), "{listing}");
        assert!(
            listing.trim_end().ends_with("run/secrets/token"),
            "{listing}"
        );
        let out = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"s3cret\n");
    }

    /// `tar -tv --numeric-owner` and the extracted content of one archive.
    fn gnu_tar_view(archive: Vec<u8>) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("one.tar");
        std::fs::write(&tar, archive).unwrap();
        let list = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&tar)
            .output()
            .unwrap();
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let content = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&list.stdout).into_owned(),
            content.stdout,
        )
    }

    #[test]
    fn a_name_ustar_cannot_hold_and_a_large_owner_arrive_whole() {
        // 120 bytes with no `/` to split at, under a directory: not 100 + 155.
        let long = format!("run/{}", "n".repeat(120));
        let (listing, content) = gnu_tar_view(single_file_tar(
            &long,
            b"x",
            0o600,
            (5_000_000, 4_000_000),
            0,
        ));
        assert!(listing.contains("5000000/4000000"), "{listing}");
        assert!(listing.trim_end().ends_with(&long), "{listing}");
        assert_eq!(listing.lines().count(), 1, "one file: {listing}");
        assert_eq!(content, b"x");
    }

    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        let records = pax_records(&[("path", "a".repeat(94))]);
        // " path=" + 94 + "\n" = 101 bytes, plus 3 digits: 104.
        assert!(records.starts_with(b"104 path="), "{records:?}");
        assert_eq!(records.len(), 104);
    }
}
