//! Instruction flags (`COPY --from=build --chown=app`): split off the front of the arguments,
//! then checked against the flags the instruction accepts, with Docker's errors.

use std::collections::BTreeMap;

use super::ErrorKind;

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--link`, `--link=true|false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--mount=…`, any number of times.
    Strings,
}

/// Splits leading `--flag[=value]` words off `args`: the rest of the line and the flag words.
/// Flag words may be quoted or contain `\`-escapes; a bare `--` ends the flags.
pub fn extract(args: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = args.chars().collect();
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while pos < chars.len() && chars[pos].is_whitespace() {
            pos += 1;
        }
        let starts_flag = chars.get(pos) == Some(&'-') && chars.get(pos + 1) == Some(&'-');
        if !starts_flag {
            return (chars[pos..].iter().collect(), words);
        }
        let (word, end) = flag_word(&chars, pos);
        if word == "--" {
            return (
                chars[end..]
                    .iter()
                    .collect::<String>()
                    .trim_start()
                    .to_string(),
                words,
            );
        }
        words.push(word);
        pos = end;
    }
}

/// One flag word starting at `start`: up to unquoted white space, quotes removed, `\` escaping.
fn flag_word(chars: &[char], start: usize) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut pos = start;
    while pos < chars.len() {
        let c = chars[pos];
        pos += 1;
        match quote {
            None if c.is_whitespace() => return (word, pos - 1),
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ if c == '\\' => {
                if let Some(&escaped) = chars.get(pos) {
                    word.push(escaped);
                    pos += 1;
                }
            }
            _ => word.push(c),
        }
    }
    (word, pos)
}

/// The flags of one instruction after checking.
#[derive(Debug, Default)]
pub struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Checks flag words against the accepted flags.
    pub fn parse(
        words: &[String],
        accepted: &[(&'static str, FlagKind)],
    ) -> Result<Flags, ErrorKind> {
        let mut flags = Flags::default();
        for word in words {
            let body = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(key, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                return Err(ErrorKind::UnknownFlag(name.to_string()));
            };
            let seen = flags.values.entry(key).or_default();
            if !seen.is_empty() && kind != FlagKind::Strings {
                return Err(ErrorKind::DuplicateFlag(name.to_string()));
            }
            seen.push(flag_value(name, kind, value)?);
        }
        Ok(flags)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }
}

fn flag_value(name: &str, kind: FlagKind, value: Option<&str>) -> Result<String, ErrorKind> {
    match (kind, value) {
        (FlagKind::Bool, None) => Ok("true".into()),
        (FlagKind::Bool, Some("")) | (_, None) => {
            Err(ErrorKind::MissingFlagValue(name.to_string()))
        }
        (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
            lower @ ("true" | "false") => Ok(lower.to_string()),
            _ => Err(ErrorKind::NotBoolean {
                flag: name.to_string(),
                value: v.to_string(),
            }),
        },
        (_, Some(v)) => Ok(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extracted(args: &str) -> (String, Vec<String>) {
        extract(args)
    }

    #[test]
    fn flags_are_split_off_the_front_only() {
        assert_eq!(
            extracted("--from=build --chown=1:1 src /dst"),
            (
                "src /dst".into(),
                vec!["--from=build".into(), "--chown=1:1".into()]
            )
        );
        assert_eq!(
            extracted("src --from=x /dst"),
            ("src --from=x /dst".into(), vec![])
        );
        assert_eq!(extracted("-x y"), ("-x y".into(), vec![]));
        assert_eq!(
            extracted("--link -- --weird /dst"),
            ("--weird /dst".into(), vec!["--link".into()])
        );
        assert_eq!(extracted("--link"), (String::new(), vec!["--link".into()]));
    }

    #[test]
    fn flag_words_lose_quotes_and_escapes() {
        assert_eq!(
            extracted("--mount=type=cache,target=\"/a b\" --x='y z' --e=a\\ b cmd").1,
            ["--mount=type=cache,target=/a b", "--x=y z", "--e=a b"]
        );
    }

    #[test]
    fn accepted_flags_parse_and_others_fail_like_docker() {
        let accepted = [
            ("from", FlagKind::String),
            ("link", FlagKind::Bool),
            ("mount", FlagKind::Strings),
        ];
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flags = Flags::parse(
            &words(&["--from=a", "--link", "--mount=x", "--mount=y"]),
            &accepted,
        )
        .unwrap();
        assert_eq!(flags.string("from").as_deref(), Some("a"));
        assert!(flags.bool("link"));
        assert_eq!(flags.strings("mount"), ["x", "y"]);
        assert!(!Flags::parse(&words(&["--link=FALSE"]), &accepted)
            .unwrap()
            .bool("link"));

        let error = |w: &[&str]| Flags::parse(&words(w), &accepted).unwrap_err().to_string();
        assert_eq!(error(&["--frm=a"]), "unknown flag: frm");
        assert_eq!(
            error(&["--from=a", "--from=b"]),
            "duplicate flag specified: from"
        );
        assert_eq!(error(&["--from"]), "missing a value on flag: from");
        assert_eq!(error(&["--link="]), "missing a value on flag: link");
        assert_eq!(
            error(&["--link=yes"]),
            "expecting boolean value for flag link, not: yes"
        );
    }
}
