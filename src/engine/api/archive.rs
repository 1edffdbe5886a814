//! The tar streams of Docker's archive API (`PUT /containers/{id}/archive`), as a client builds
//! them: one regular file per call is all berth's compose client sends (a `configs`/`secrets`
//! entry with inline `content` or from an `environment` variable).

/// A ustar archive holding one regular file `name` (relative, `/`-separated) with the given
/// content, permission bits, owner and modification time (Unix seconds): what Docker extracts
/// with those attributes.
pub fn single_file_tar(
    name: &str,
    content: &[u8],
    mode: u32,
    (uid, gid): (u32, u32),
    mtime: u64,
) -> Vec<u8> {
    let mut header = [0u8; 512];
    // Names over 100 bytes go in ustar's 155-byte prefix, split at a `/`.
    let (prefix, short) = match name.len() {
        0..=100 => ("", name),
        _ => name
            .char_indices()
            .filter(|(i, c)| *c == '/' && name.len() - i - 1 <= 100 && *i <= 155)
            .map(|(i, _)| (&name[..i], &name[i + 1..]))
            .next()
            .unwrap_or(("", name)),
    };
    put(&mut header[0..100], short.as_bytes());
    octal(&mut header[100..108], u64::from(mode & 0o7777));
    octal(&mut header[108..116], u64::from(uid));
    octal(&mut header[116..124], u64::from(gid));
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], mtime);
    header[156] = b'0';
    put(&mut header[257..263], b"ustar\0");
    put(&mut header[263..265], b"00");
    put(&mut header[345..500], prefix.as_bytes());
    // The checksum is computed with its own field as spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    octal(&mut header[148..155], u64::from(sum));
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    // End of archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    out
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
}
