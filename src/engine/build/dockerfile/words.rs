//! Docker's shell-like word lexer: variable substitution, quotes, escapes and word splitting.
//!
//! Docker does not run a shell to expand `$VAR` in Dockerfile instructions; it has its own small
//! lexer, and Dockerfiles in the wild depend on its exact quirks (unset variables expand to
//! nothing, single quotes are literal, inside double quotes only `"`, `$` and the escape character
//! can be escaped, an escape character at the very end is dropped, and only characters that came
//! out of a substitution or unquoted text split words). This module reproduces those rules.

use super::{patterns, ErrorKind};

/// Looks a variable up: `None` when it is not set (which differs from set-but-empty for
/// `${v-w}`, `${v+w}` and `${v?msg}`).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How the lexer treats quotes, escapes and unset variables.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output (used to find heredoc words on an instruction line).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Quotes are ordinary characters (heredoc bodies: quotes belong to the file's content).
    pub literal_quotes: bool,
    /// An unset variable stays as written instead of expanding to nothing.
    pub keep_unset: bool,
}

impl Lexer {
    /// The lexer Docker applies to instruction arguments.
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            literal_quotes: false,
            keep_unset: false,
        }
    }

    /// `text` with variables substituted and quotes removed, as one string (spaces kept).
    pub fn expand_word(&self, text: &str, lookup: Lookup) -> Result<String, ErrorKind> {
        Ok(self.process(text, lookup)?.0)
    }

    /// `text` with variables substituted, then split into words at unquoted white space.
    pub fn expand_words(&self, text: &str, lookup: Lookup) -> Result<Vec<String>, ErrorKind> {
        Ok(self.process(text, lookup)?.1)
    }

    fn process(&self, text: &str, lookup: Lookup) -> Result<(String, Vec<String>), ErrorKind> {
        let mut scan = Scan {
            chars: text.chars().collect(),
            pos: 0,
            lexer: *self,
            lookup,
            depth: 0,
        };
        scan.until(None).map_err(|message| ErrorKind::Substitution {
            text: shortened(text),
            message,
        })
    }
}

/// The text an error quotes: whole when short, else its start (a hostile file can be huge).
fn shortened(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Substitutes variables in one word with Docker's default lexer.
pub fn expand_word(text: &str, escape: char, lookup: Lookup) -> Result<String, ErrorKind> {
    Lexer::new(escape).expand_word(text, lookup)
}

/// Substitutes variables and splits into words with Docker's default lexer.
pub fn expand_words(text: &str, escape: char, lookup: Lookup) -> Result<Vec<String>, ErrorKind> {
    Lexer::new(escape).expand_words(text, lookup)
}

/// Collects words: characters from unquoted text and substitutions split at white space, quoted
/// and escaped characters never do. An empty quoted word (`""`) makes no word, as in Docker.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn push_splitting(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.push_raw(c);
        }
    }

    fn push_raw(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn push_str_splitting(&mut self, s: &str) {
        s.chars().for_each(|c| self.push_splitting(c));
    }

    fn push_str_raw(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// How deeply `${a:-${b:-…}}` may nest: the lexer recurses, and a Dockerfile sent to the engine
/// must not be able to overflow the daemon's stack.
const MAX_NESTING: usize = 64;

struct Scan<'a> {
    chars: Vec<char>,
    pos: usize,
    lexer: Lexer,
    lookup: Lookup<'a>,
    depth: usize,
}

type Step<T> = Result<T, String>;

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes up to `stop` (consumed) or the end; the joined text and the split words.
    fn until(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            let quoting = !self.lexer.literal_quotes && (c == '\'' || c == '"');
            if c == '$' {
                let value = self.dollar()?;
                words.push_str_splitting(&value);
                result.push_str(&value);
            } else if quoting {
                let value = if c == '\'' {
                    self.single_quoted()?
                } else {
                    self.double_quoted()?
                };
                words.push_str_raw(&value);
                result.push_str(&value);
            } else if !self.plain_char(&mut result, &mut words) {
                break;
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    /// One unquoted character, or an escape and the character it escapes. False when an escape
    /// character ends the text (Docker drops it).
    fn plain_char(&mut self, result: &mut String, words: &mut Words) -> bool {
        let Some(mut c) = self.next() else {
            return false;
        };
        if c == self.lexer.escape {
            if self.lexer.raw_escapes {
                words.push_raw(c);
                result.push(c);
            }
            match self.next() {
                Some(escaped) => c = escaped,
                None => return false,
            }
            words.push_raw(c);
        } else {
            words.push_splitting(c);
        }
        result.push(c);
        true
    }

    fn single_quoted(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(_) => self.double_quoted_char(&mut result),
            }
        }
    }

    /// Inside double quotes the escape character only escapes `"`, `$` and itself.
    fn double_quoted_char(&mut self, result: &mut String) {
        let Some(mut c) = self.next() else { return };
        if c == self.lexer.escape {
            if self.lexer.raw_escapes {
                result.push(c);
            }
            match self.peek() {
                None => return,
                Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                    self.pos += 1;
                    c = n;
                }
                Some(_) => {}
            }
        }
        result.push(c);
    }

    fn dollar(&mut self) -> Step<String> {
        self.pos += 1;
        if self.peek() == Some('{') {
            self.pos += 1;
            return self.braced();
        }
        let name = self.name();
        if name.is_empty() {
            return Ok("$".into());
        }
        match (self.lookup)(&name) {
            Some(value) => Ok(value),
            None if self.lexer.keep_unset => Ok(format!("${name}")),
            None => Ok(String::new()),
        }
    }

    fn braced(&mut self) -> Step<String> {
        if self.depth == MAX_NESTING {
            return Err("syntax error: substitutions nested too deeply".into());
        }
        self.depth += 1;
        let result = self.braced_body();
        self.depth -= 1;
        result
    }

    /// `${…}`: plain, or with one of the operators `:- - :+ + :? ?`.
    fn braced_body(&mut self) -> Step<String> {
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        if name.is_empty() {
            return Err("syntax error: bad substitution".into());
        }
        let value = (self.lookup)(&name);
        let operator = match self.next() {
            None => return Err("syntax error: missing '}'".into()),
            Some('}') => {
                return Ok(match value {
                    None if self.lexer.keep_unset => format!("${{{name}}}"),
                    value => value.unwrap_or_default(),
                })
            }
            Some(':') => {
                let modifier = self.next().unwrap_or(' ');
                if !matches!(modifier, '-' | '+' | '?') {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                format!(":{modifier}")
            }
            Some(c @ ('-' | '+' | '?')) => c.to_string(),
            Some(c @ ('#' | '%' | '/')) => return self.pattern_operator(&name, value, c),
            Some(c) => return Err(format!("unsupported modifier ({c}) in substitution")),
        };
        let word = self.operand(false)?;
        if value.is_none() && self.lexer.keep_unset {
            return Ok(format!("${{{name}{operator}{word}}}"));
        }
        apply_operator(&name, value, &operator, word)
    }

    /// The word after an operator, up to the closing brace; it may hold quotes and `$`s itself.
    fn operand(&mut self, pattern: bool) -> Step<String> {
        self.operand_until('}', pattern)
    }

    /// An operand up to `stop`. A pattern keeps its escape characters, so that `\*` stays a
    /// literal star for the pattern matcher.
    fn operand_until(&mut self, stop: char, pattern: bool) -> Step<String> {
        let raw_escapes = self.lexer.raw_escapes;
        self.lexer.raw_escapes |= pattern;
        let result = self.until(Some(stop));
        self.lexer.raw_escapes = raw_escapes;
        match result {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".into()),
            Err(e) => Err(e),
        }
    }

    /// `${v#p}` `${v##p}` `${v%p}` `${v%%p}` `${v/p/r}` `${v//p/r}`: trimming and replacing with
    /// shell patterns (BuildKit's Dockerfile 1.7 syntax).
    fn pattern_operator(&mut self, name: &str, value: Option<String>, op: char) -> Step<String> {
        let doubled = self.peek() == Some(op);
        if doubled {
            self.pos += 1;
        }
        let (pattern, replacement) = if op == '/' {
            let pattern = self.operand_until('/', true)?;
            (pattern, Some(self.operand(true)?))
        } else {
            (self.operand(true)?, None)
        };
        let written_op = if doubled {
            format!("{op}{op}")
        } else {
            op.to_string()
        };
        if value.is_none() && self.lexer.keep_unset {
            let tail = replacement.map(|r| format!("/{r}")).unwrap_or_default();
            return Ok(format!("${{{name}{written_op}{pattern}{tail}}}"));
        }
        let value = value.unwrap_or_default();
        let bad = |e: String| format!("invalid pattern ({pattern}) in substitution: {e}");
        match (op, replacement) {
            ('#', _) => patterns::trim_prefix(&value, &pattern, doubled).map_err(bad),
            ('%', _) => patterns::trim_suffix(&value, &pattern, doubled).map_err(bad),
            (_, replacement) => {
                let replacement = replacement.unwrap_or_default();
                patterns::replace(&value, &pattern, &replacement, doubled).map_err(bad)
            }
        }
    }

    /// A variable name: a run of digits (positional), one special parameter, or letters, digits
    /// and underscores.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.pos += 1;
                return c.to_string();
            }
            _ => {}
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }
}

/// Bourne-shell parameter expansion: with `:` an empty value counts as unset.
fn apply_operator(name: &str, value: Option<String>, operator: &str, word: String) -> Step<String> {
    let colon = operator.starts_with(':');
    let unset = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    match operator.trim_start_matches(':') {
        "-" if unset => Ok(word),
        "-" => Ok(value.unwrap_or_default()),
        "+" if unset => Ok(String::new()),
        "+" => Ok(word),
        _ if !unset => Ok(value.unwrap_or_default()),
        _ => {
            let default = if value.is_none() {
                "is not allowed to be unset"
            } else {
                "is not allowed to be empty"
            };
            let message = if word.is_empty() { default } else { &word };
            Err(format!("{name}: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("NAME", "world"),
            ("EMPTY", ""),
            ("SPACED", "a b  c"),
            ("x", "lower"),
        ])
    }

    fn word(text: &str) -> String {
        let vars = vars();
        let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
        expand_word(text, '\\', &lookup).unwrap()
    }

    fn words(text: &str) -> Vec<String> {
        let vars = vars();
        let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
        expand_words(text, '\\', &lookup).unwrap()
    }

    fn error(text: &str) -> String {
        let vars = vars();
        let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
        expand_word(text, '\\', &lookup).unwrap_err().to_string()
    }

    #[test]
    fn plain_and_braced_variables_substitute_and_unset_ones_vanish() {
        assert_eq!(word("hello $NAME"), "hello world");
        assert_eq!(word("hello ${NAME}!"), "hello world!");
        assert_eq!(word("$NAME$NAME"), "worldworld");
        assert_eq!(word("a${UNSET}b$UNSET"), "ab");
        assert_eq!(word("${x}_$x"), "lower_lower");
        // A `$` not followed by a name stays literal.
        assert_eq!(word("cost: 5$ and $"), "cost: 5$ and $");
        assert_eq!(word("$/x"), "$/x");
        // Names stop at the first character that cannot be in a name.
        assert_eq!(word("$NAME.txt $NAME-1"), "world.txt world-1");
        // Positional parameters are a run of digits; special ones a single character.
        assert_eq!(word("$1x $12y $@z"), "x y z");
    }

    #[test]
    fn defaults_and_alternatives_follow_the_shell_rules() {
        assert_eq!(word("${UNSET:-dflt}"), "dflt");
        assert_eq!(word("${EMPTY:-dflt}"), "dflt");
        assert_eq!(word("${NAME:-dflt}"), "world");
        assert_eq!(word("${UNSET-dflt}"), "dflt");
        assert_eq!(word("${EMPTY-dflt}"), "");
        assert_eq!(word("${NAME:+alt}"), "alt");
        assert_eq!(word("${EMPTY:+alt}"), "");
        assert_eq!(word("${EMPTY+alt}"), "alt");
        assert_eq!(word("${UNSET+alt}"), "");
        assert_eq!(word("${NAME:?must be set}"), "world");
        assert_eq!(word("${EMPTY?must be set}"), "");
        // The operand is itself expanded and may be quoted.
        assert_eq!(word("${UNSET:-$NAME and ${x}}"), "world and lower");
        assert_eq!(word("${UNSET:-\"a }b\"}"), "a }b");
        assert_eq!(word("${UNSET:-${UNSET2:-deep}}"), "deep");
    }

    #[test]
    fn trimming_and_replacing_use_shell_patterns() {
        let vars = HashMap::from([("PWD", "/home"), ("FILE", "app.tar.gz"), ("P", "a-b-c")]);
        let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
        let word = |text: &str| expand_word(text, '\\', &lookup).unwrap();
        assert_eq!(word("${PWD#/}"), "home");
        assert_eq!(word("${PWD##/}"), "home");
        assert_eq!(word("${PWD#*}"), "/home");
        assert_eq!(word("${PWD##*}"), "");
        assert_eq!(word("${PWD%e}"), "/hom");
        assert_eq!(word("${PWD%%*}"), "");
        assert_eq!(word("${FILE%.*}"), "app.tar");
        assert_eq!(word("${FILE%%.*}"), "app");
        assert_eq!(word("${FILE#*.}"), "tar.gz");
        assert_eq!(word("${PWD/o/i}"), "/hime");
        assert_eq!(word("${P/-/_}"), "a_b-c");
        assert_eq!(word("${P//-/_}"), "a_b_c");
        assert_eq!(word("${P//-/}"), "abc");
        assert_eq!(word("${FILE%\\.gz}"), "app.tar");
        assert_eq!(word("${UNSET#x}"), "");
        assert_eq!(word("${PWD#${PWD}}"), "");
        assert!(expand_word("${PWD#[}", '\\', &lookup)
            .unwrap_err()
            .to_string()
            .ends_with("invalid pattern ([) in substitution: unterminated character class"));
    }

    #[test]
    fn required_variables_fail_with_the_message() {
        assert_eq!(
            error("${UNSET:?please set it}"),
            "failed to process \"${UNSET:?please set it}\": UNSET: please set it"
        );
        assert!(error("${EMPTY:?}").ends_with("EMPTY: is not allowed to be empty"));
        assert!(error("${UNSET?}").ends_with("UNSET: is not allowed to be unset"));
    }

    #[test]
    fn malformed_substitutions_are_errors() {
        assert!(error("${NAME").ends_with("syntax error: missing '}'"));
        assert!(error("${").ends_with("syntax error: missing '}'"));
        assert!(error("${}").ends_with("syntax error: bad substitution"));
        assert!(error("${:-x}").ends_with("syntax error: bad substitution"));
        assert!(error("${NAME:-x").ends_with("syntax error: missing '}'"));
        assert!(error("${NAME:=x}").ends_with("unsupported modifier (=) in substitution"));
        assert!(error("${NAME^x}").ends_with("unsupported modifier (^) in substitution"));
        assert!(error("'open").ends_with("looking for matching single-quote"));
        assert!(error("\"open").ends_with("looking for matching double-quote"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}x{}", "${U:-".repeat(100_000), "}".repeat(100_000));
        assert!(error(&deep).ends_with("substitutions nested too deeply"));
        let fine = format!("{}x{}", "${U:-".repeat(60), "}".repeat(60));
        assert_eq!(word(&fine), "x");
    }

    #[test]
    fn quotes_and_escapes_behave_as_in_docker() {
        assert_eq!(word("'$NAME'"), "$NAME");
        assert_eq!(word("\"$NAME\""), "world");
        assert_eq!(word("\\$NAME"), "$NAME");
        assert_eq!(word("a\\ b"), "a b");
        assert_eq!(word("\\n"), "n");
        // Inside double quotes only `"`, `$` and the escape character are escapable.
        assert_eq!(word(r#""a\"b\$c\\d\ne""#), r#"a"b$c\d\ne"#);
        // Single quotes cannot be escaped inside single quotes.
        assert_eq!(word(r"'a\'"), r"a\");
        // A trailing escape character is dropped.
        assert_eq!(word("abc\\"), "abc");
        assert_eq!(word("\"ab\\\"\""), "ab\"");
    }

    #[test]
    fn backtick_escape_replaces_backslash() {
        let lookup = |_: &str| None;
        assert_eq!(expand_word("a`$b\\c", '`', &lookup).unwrap(), "a$b\\c");
        assert_eq!(
            expand_word("\"C:\\dir`\"\"", '`', &lookup).unwrap(),
            "C:\\dir\""
        );
    }

    #[test]
    fn words_split_at_unquoted_and_substituted_white_space_only() {
        assert_eq!(words("80  443/tcp"), ["80", "443/tcp"]);
        assert_eq!(words("$SPACED"), ["a", "b", "c"]);
        assert_eq!(words("\"$SPACED\""), ["a b  c"]);
        assert_eq!(words("'x y' z"), ["x y", "z"]);
        assert_eq!(words("a\\ b c"), ["a b", "c"]);
        assert_eq!(words("pre$SPACED"), ["prea", "b", "c"]);
        assert_eq!(words("\"\" x"), ["x"]);
        assert!(words("$UNSET").is_empty());
    }

    #[test]
    fn raw_modes_keep_quotes_escapes_and_unset_variables() {
        let lexer = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            keep_unset: true,
            ..Lexer::new('\\')
        };
        let none = |_: &str| None;
        assert_eq!(
            lexer
                .expand_words(r#"cat <<"EOF" a\ b $X ${Y:-z}"#, &none)
                .unwrap(),
            ["cat", "<<\"EOF\"", "a\\ b", "$X", "${Y:-z}"]
        );
        let literal = Lexer {
            literal_quotes: true,
            ..Lexer::new('\\')
        };
        let some = |_: &str| Some("v".to_string());
        assert_eq!(
            literal.expand_word("say \"$A\" '${B}'", &some).unwrap(),
            "say \"v\" 'v'"
        );
    }
}
