//! Docker's detach keys: the key sequence that ends an attach to a TTY container without
//! stopping it (`ctrl-p,ctrl-q` unless the client names others with `detachKeys`).

use thiserror::Error;

/// Docker's default sequence.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid detach keys {0:?}: use a comma-separated list of ctrl-<letter or @[\\]^_> \
     and single characters"
)]
pub struct DetachKeysError(String);

/// The keys a client asked for (`detachKeys`, an exec's `DetachKeys`), Docker's default when it
/// named none.
pub fn parse_or_default(spec: Option<&str>) -> Result<Vec<u8>, DetachKeysError> {
    parse(spec.filter(|k| !k.is_empty()).unwrap_or(DEFAULT))
}

/// The bytes of a sequence such as `ctrl-p,ctrl-q` or `ctrl-a,x`: `ctrl-` with a letter or one
/// of `@[\]^_` is that control character, any other single character itself.
pub fn parse(spec: &str) -> Result<Vec<u8>, DetachKeysError> {
    let bad = || DetachKeysError(spec.to_string());
    let mut keys = Vec::new();
    for key in spec.split(',') {
        let key = key.trim();
        let byte = match key.strip_prefix("ctrl-") {
            Some(rest) if rest.len() == 1 => control_byte(rest.as_bytes()[0]).ok_or_else(bad)?,
            Some(_) => return Err(bad()),
            None if key.len() == 1 && key.is_ascii() => key.as_bytes()[0],
            None => return Err(bad()),
        };
        keys.push(byte);
    }
    Ok(keys)
}

fn control_byte(c: u8) -> Option<u8> {
    match c.to_ascii_lowercase() {
        c @ b'a'..=b'z' => Some(c - b'a' + 1),
        b'@' => Some(0),
        b'[' => Some(27),
        b'\\' => Some(28),
        b']' => Some(29),
        b'^' => Some(30),
        b'_' => Some(31),
        _ => None,
    }
}

/// What to do with a chunk of a client's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Pass these bytes on (the start of a sequence is held back until it is decided).
    Forward(Vec<u8>),
    /// The sequence was typed: pass these bytes (typed before it) on, then end the attach.
    Detach(Vec<u8>),
}

/// Watches a client's input for the detach sequence across chunk boundaries. A partial match
/// that the next byte breaks is passed on whole, so nothing typed is lost.
#[derive(Debug, Clone)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    pub fn feed(&mut self, input: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return Scan::Forward(out);
        }
        for &byte in input {
            if byte != self.keys[self.matched] {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if byte != self.keys[0] {
                    out.push(byte);
                    continue;
                }
            }
            self.matched += 1;
            if self.matched == self.keys.len() {
                self.matched = 0;
                return Scan::Detach(out);
            }
        }
        Scan::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_parse_as_docker_writes_them() {
        assert_eq!(parse(DEFAULT), Ok(vec![16, 17]));
        assert_eq!(parse("ctrl-a,x"), Ok(vec![1, b'x']));
        assert_eq!(
            parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_"),
            Ok(vec![0, 27, 28, 29, 30, 31])
        );
        assert_eq!(parse("ctrl-Z"), Ok(vec![26]));
        assert!(parse("ctrl-1").is_err());
        assert!(parse("ctrl-").is_err());
        assert!(parse("ab").is_err());
        assert!(parse("").is_err());
        assert!(parse("é").is_err());
    }

    #[test]
    fn the_sequence_detaches_even_split_across_chunks() {
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"ls\r\x10"), Scan::Forward(b"ls\r".to_vec()));
        assert_eq!(m.feed(b"\x11rest"), Scan::Detach(Vec::new()));
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"a\x10\x11b"), Scan::Detach(b"a".to_vec()));
    }

    #[test]
    fn a_broken_sequence_passes_every_byte_on() {
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"\x10x"), Scan::Forward(b"\x10x".to_vec()));
        // A repeated first key keeps the match alive.
        assert_eq!(m.feed(b"\x10\x10"), Scan::Forward(b"\x10".to_vec()));
        assert_eq!(m.feed(b"\x11"), Scan::Detach(Vec::new()));
        let mut none = DetachMatcher::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), Scan::Forward(b"\x10\x11".to_vec()));
    }
}
