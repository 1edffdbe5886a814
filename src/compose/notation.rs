//! Compose's scalar notations, shared by the loader stages, the model and the plan: YAML 1.1
//! booleans, durations, byte sizes, shell words and the short volume syntax. Pure text functions
//! with no dependency on the rest of the loader, so every stage can use them without a cycle.

pub fn cast_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" | "yes" | "y" | "on" | "Yes" | "YES" | "On" | "ON" => Some(true),
        "false" | "False" | "FALSE" | "no" | "n" | "off" | "No" | "NO" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// POSIX-shell-like word splitting for string `command`/`entrypoint` (quotes and backslashes).
pub fn shell_split(input: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(x) => cur.push(x),
                    None => cur.push('\\'),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Go-style duration text (`1m30s`, `500ms`) from compose's duration syntax.
pub fn parse_duration(t: &str) -> Option<std::time::Duration> {
    let t = t.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<u64>() {
        // A bare number is seconds in compose files.
        return Some(std::time::Duration::from_secs(n));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// A duration as Go prints it (`1m0s`, `1h30m0s`, `1.5s`, `500ms`), which is what docker compose
/// config prints.
pub fn format_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        if nanos.is_multiple_of(1_000_000) {
            return format!("{}ms", nanos / 1_000_000);
        }
        if nanos.is_multiple_of(1_000) {
            return format!("{}µs", nanos / 1_000);
        }
        return format!("{nanos}ns");
    }
    let h = nanos / 3_600_000_000_000;
    let m = (nanos / 60_000_000_000) % 60;
    let sn = nanos % 60_000_000_000;
    let secs = if sn.is_multiple_of(1_000_000_000) {
        format!("{}s", sn / 1_000_000_000)
    } else {
        let t = format!("{:.9}", sn as f64 / 1e9);
        format!("{}s", t.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// Byte sizes (`1gb`, `512m`, `1024`) as an integer count of bytes.
pub fn parse_bytes(t: &str) -> Option<i64> {
    let t = t.trim().to_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..digits_end].parse().ok()?;
    let unit = t[digits_end..].trim();
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    Some((n * mult) as i64)
}

/// Split a short volume spec on `:` the way docker does, keeping Windows drive letters and
/// named pipes whole.
pub fn split_volume_spec(spec: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ':' {
            // `C:\` or `C:/` at the start of a part is a drive letter, not a separator.
            let drive = cur.len() == 1
                && cur.chars().all(|x| x.is_ascii_alphabetic())
                && matches!(chars.get(i + 1), Some('\\') | Some('/'));
            if !drive {
                parts.push(std::mem::take(&mut cur));
                i += 1;
                continue;
            }
        }
        cur.push(c);
        i += 1;
    }
    parts.push(cur);
    parts
}
