//! The container log (Docker's `json-file` driver): its line format and its rotation
//! (`max-size`, `max-file`). The shim writes it through [`LogFile`]; the engine's `logs` reads
//! the files [`Rotation::files_oldest_first`] names.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of `<id>-json.log`: `{"log":"hi\n","stream":"stdout","time":"…"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JsonLogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// When the log file is rotated: Docker's `max-size` and `max-file` log options. Without a
/// `max-size` the log grows without bound, as Docker's json-file log does by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Rotate before a write once the file holds this many bytes.
    pub max_size: Option<u64>,
    /// How many files are kept, the one being written included (at least 1: then the full
    /// file is dropped and a new one started).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_size: None,
            max_files: 1,
        }
    }
}

/// The options Docker's json-file driver accepts (`daemon/logger/jsonfilelog`).
const KNOWN_OPTIONS: &[&str] = &[
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];

/// Upper bound on `max-file`: each rotation renames every kept file, and `logs` opens them all.
const MAX_FILES_LIMIT: u32 = 1000;

impl Rotation {
    /// The rotation a container's `LogConfig.Config` asks for; an option the json-file driver
    /// does not know, or a value it cannot use, is an error in Docker's words.
    pub fn from_options(options: &HashMap<String, String>) -> Result<Self, String> {
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        if let Some(unknown) = keys.iter().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
            return Err(format!(
                "unknown log opt '{unknown}' for json-file log driver"
            ));
        }
        let max_size = match options.get("max-size") {
            None => None,
            Some(text) => match decimal_size(text) {
                Some(0) => return Err("max-size must be a positive number".into()),
                Some(n) => Some(n),
                None => {
                    return Err(format!(
                        "invalid max-size {text:?}: a size such as 10m or 500k is expected"
                    ))
                }
            },
        };
        let max_files = match options.get("max-file") {
            None => 1,
            Some(text) => match text.trim().parse::<i64>() {
                Ok(n) if n < 1 => return Err("max-file cannot be less than 1".into()),
                Ok(n) if n > i64::from(MAX_FILES_LIMIT) => {
                    return Err(format!("max-file cannot be more than {MAX_FILES_LIMIT}"))
                }
                Ok(n) => n as u32,
                Err(_) => {
                    return Err(format!(
                        "invalid max-file {text:?}: a whole number of files is expected"
                    ))
                }
            },
        };
        if let Some(text) = options.get("compress") {
            if !matches!(text.as_str(), "true" | "false" | "1" | "0" | "") {
                return Err(format!(
                    "invalid compress {text:?}: true or false is expected"
                ));
            }
        }
        Ok(Self {
            max_size,
            max_files,
        })
    }

    /// Where the log's files are, the oldest first and the one being written last (a rotated
    /// one may not be there yet).
    pub fn files_oldest_first(&self, path: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..self.max_files)
            .rev()
            .map(|n| rotated_path(path, n))
            .collect();
        files.push(path.to_path_buf());
        files
    }

    /// Whether the shim ever replaces the file at the log's path.
    pub fn rotates(&self) -> bool {
        self.max_size.is_some()
    }
}

/// `<log>.<n>`: the n-th newest rotated file.
fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The renames of one rotation, in order: each kept file one number up (the oldest is
/// overwritten), then the current file to `.1`. None when only one file is kept.
fn rotation_renames(path: &Path, max_files: u32) -> Vec<(PathBuf, PathBuf)> {
    if max_files < 2 {
        return Vec::new();
    }
    let mut renames: Vec<(PathBuf, PathBuf)> = (1..max_files - 1)
        .rev()
        .map(|n| (rotated_path(path, n), rotated_path(path, n + 1)))
        .collect();
    renames.push((path.to_path_buf(), rotated_path(path, 1)));
    renames
}

/// Docker's `units.FromHumanSize`: decimal units (`10m` is 10,000,000 bytes), an optional
/// `i` and `b` after the unit.
fn decimal_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..digits_end].parse().ok()?;
    let unit = t[digits_end..].trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// The log file the shim appends to, rotated as the container's [`Rotation`] says.
pub struct LogFile {
    file: File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
}

impl LogFile {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = open_for_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            rotation,
        })
    }

    /// Append one line for `bytes` of `stream` (`stdout`/`stderr`), stamped now; the file is
    /// rotated first when it is full.
    pub fn write_line(&mut self, stream: &str, bytes: &[u8]) {
        let line = JsonLogLine {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let Ok(mut json) = serde_json::to_vec(&line) else {
            return;
        };
        json.push(b'\n');
        if self.rotation.max_size.is_some_and(|max| self.size >= max) {
            // A rotation that fails (a full disk) keeps writing to the file it has.
            let _ = self.rotate();
        }
        // A full disk loses log lines, never the container.
        if self.file.write_all(&json).is_ok() {
            self.size += json.len() as u64;
        }
    }

    /// Renames the kept files one up and starts a new file. With one file kept, the full one
    /// is unlinked rather than truncated: a reader that has it open still reads its end.
    fn rotate(&mut self) -> std::io::Result<()> {
        for (from, to) in rotation_renames(&self.path, self.rotation.max_files) {
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.rotation.max_files < 2 {
            std::fs::remove_file(&self.path)?;
        }
        self.file = open_for_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Makes an empty log (when the container is created), as the shim will open it.
pub fn create_empty(path: &Path) -> std::io::Result<()> {
    open_for_append(path).map(drop)
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_read_as_docker_reads_them() {
        assert_eq!(
            Rotation::from_options(&HashMap::new()),
            Ok(Rotation::default())
        );
        let r = Rotation::from_options(&options(&[("max-size", "10m"), ("max-file", "3")]));
        assert_eq!(
            r,
            Ok(Rotation {
                max_size: Some(10_000_000),
                max_files: 3
            })
        );
        for (text, bytes) in [("500k", 500_000), ("1.5MB", 1_500_000), ("2g", 2e9 as u64)] {
            let r = Rotation::from_options(&options(&[("max-size", text)])).unwrap();
            assert_eq!(r.max_size, Some(bytes), "{text}");
        }
        let accepted = options(&[("compress", "true"), ("tag", "{{.Name}}")]);
        assert!(Rotation::from_options(&accepted).is_ok());
    }

    #[test]
    fn bad_options_are_named() {
        let err = |pairs: &[(&str, &str)]| Rotation::from_options(&options(pairs)).unwrap_err();
        assert_eq!(
            err(&[("max-buffer", "1")]),
            "unknown log opt 'max-buffer' for json-file log driver"
        );
        assert_eq!(
            err(&[("max-size", "0")]),
            "max-size must be a positive number"
        );
        assert!(err(&[("max-size", "ten")]).contains("invalid max-size \"ten\""));
        assert_eq!(err(&[("max-file", "0")]), "max-file cannot be less than 1");
        assert!(err(&[("max-file", "x")]).contains("invalid max-file \"x\""));
        assert!(err(&[("max-file", "100000")]).contains("cannot be more than"));
    }

    #[test]
    fn a_rotation_moves_every_kept_file_one_up() {
        let p = Path::new("/c/x-json.log");
        assert!(rotation_renames(p, 1).is_empty());
        let renames: Vec<(String, String)> = rotation_renames(p, 3)
            .into_iter()
            .map(|(a, b)| (a.display().to_string(), b.display().to_string()))
            .collect();
        assert_eq!(
            renames,
            [
                ("/c/x-json.log.1".into(), "/c/x-json.log.2".into()),
                ("/c/x-json.log".into(), "/c/x-json.log.1".into()),
            ]
        );
    }

    fn lines_of(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<JsonLogLine>(l).unwrap().log)
            .collect()
    }

    #[test]
    fn a_full_log_is_rotated_and_the_oldest_file_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        // Each line is about 80 bytes: two fit under the limit, the third rotates.
        let rotation = Rotation {
            max_size: Some(150),
            max_files: 2,
        };
        let mut log = LogFile::open(&path, rotation).unwrap();
        for n in 1..=7 {
            log.write_line("stdout", format!("line {n}\n").as_bytes());
        }
        assert_eq!(lines_of(&path), ["line 7\n"]);
        assert_eq!(lines_of(&rotated_path(&path, 1)), ["line 5\n", "line 6\n"]);
        assert!(!rotated_path(&path, 2).exists(), "only max-file files kept");
        assert_eq!(
            rotation.files_oldest_first(&path),
            [rotated_path(&path, 1), path.clone()]
        );
    }

    #[test]
    fn one_kept_file_starts_over_while_an_open_reader_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let rotation = Rotation {
            max_size: Some(100),
            max_files: 1,
        };
        let mut log = LogFile::open(&path, rotation).unwrap();
        log.write_line("stdout", b"old\n");
        let mut reader = File::open(&path).unwrap();
        log.write_line("stdout", b"older\n");
        log.write_line("stdout", b"new\n");
        assert_eq!(lines_of(&path), ["new\n"]);
        let mut old = String::new();
        std::io::Read::read_to_string(&mut reader, &mut old).unwrap();
        assert!(old.contains("\"older\\n\""), "{old}");
        assert_eq!(rotation.files_oldest_first(&path), vec![path]);
    }
}
