//! Dockerfile text → logical lines: parser directives, comments, line continuations and the
//! bodies of heredocs, each logical line with the 1-based line it starts on.
//!
//! The rules are Docker's, including the odd ones files depend on: directives are only looked for
//! before anything else (a comment, a blank line or an instruction ends them); a comment line or
//! a blank line inside a continuation is skipped without ending the instruction; continuation
//! lines keep their leading white space; an escaped escape character at the end of a line is not
//! a continuation.

use super::words::Lexer;
use super::{arguments, flags, DockerfileError, ErrorKind, Heredoc};

/// One instruction's text after continuations are joined, comments dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line the instruction starts on.
    pub number: usize,
    pub text: String,
    /// Bodies of the heredocs the line opens, in order (tabs not yet stripped for `<<-`).
    pub heredocs: Vec<Heredoc>,
    /// A blank line sat inside the continuation: allowed, but Docker warns about it.
    pub empty_continuation: bool,
}

/// The parser directives at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
}

#[derive(Debug)]
pub struct Split {
    pub directives: Directives,
    pub lines: Vec<LogicalLine>,
}

/// Splits a Dockerfile into logical lines.
pub fn split(text: &str) -> Result<Split, DockerfileError> {
    split_from(text, DirectiveScan::new('\\'))
}

/// Splits text where directives are not looked for (an ONBUILD trigger), with a known escape.
pub fn split_with_escape(text: &str, escape: char) -> Result<Split, DockerfileError> {
    let mut scan = DirectiveScan::new(escape);
    scan.done = true;
    split_from(text, scan)
}

fn split_from(text: &str, directives: DirectiveScan) -> Result<Split, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        raw: text.split_inclusive('\n').collect(),
        next: 0,
        directives,
    };
    let mut lines = Vec::new();
    while let Some(line) = reader.logical_line()? {
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(DockerfileError::at(
            reader.next.max(1),
            ErrorKind::NoInstructions,
        ));
    }
    Ok(Split {
        directives: Directives {
            escape: reader.directives.escape,
            syntax: reader.directives.syntax,
        },
        lines,
    })
}

/// Looks for `# key=value` directives until the first line that is not one.
struct DirectiveScan {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl DirectiveScan {
    fn new(escape: char) -> DirectiveScan {
        DirectiveScan {
            escape,
            syntax: None,
            seen: Vec::new(),
            done: false,
        }
    }

    fn consider(&mut self, line: &str) -> Result<(), ErrorKind> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        // `check` configures BuildKit's linter, which berth does not have; it is accepted so that
        // an `escape` after it still counts.
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(ErrorKind::DuplicateDirective(key));
        }
        match key.as_str() {
            "escape" if value == "\\" || value == "`" => {
                self.escape = value.chars().next().unwrap_or('\\')
            }
            "escape" => return Err(ErrorKind::InvalidEscape(value.to_string())),
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        self.seen.push(key);
        Ok(())
    }
}

/// `#\s*name\s*=\s*value\s*` with a name of letters and digits starting with a letter.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_len..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((name, value))
}

struct Reader<'a> {
    raw: Vec<&'a str>,
    /// Index of the next raw line (= number of lines consumed).
    next: usize,
    directives: DirectiveScan,
}

impl<'a> Reader<'a> {
    fn take(&mut self) -> Option<&'a str> {
        let line = self.raw.get(self.next).copied();
        if line.is_some() {
            self.next += 1;
        }
        line
    }

    fn error(&self, kind: ErrorKind) -> DockerfileError {
        DockerfileError::at(self.next, kind)
    }

    /// The next instruction, or None at the end of the file.
    fn logical_line(&mut self) -> Result<Option<LogicalLine>, DockerfileError> {
        loop {
            let Some(raw) = self.take() else {
                return Ok(None);
            };
            let trimmed = trim_newline(raw).trim_start();
            self.directives
                .consider(trimmed)
                .map_err(|kind| self.error(kind))?;
            let number = self.next;
            let first = if trimmed.starts_with('#') {
                ""
            } else {
                trimmed
            };
            let (mut text, mut complete) = continuation(first, self.directives.escape);
            if complete && text.is_empty() {
                continue;
            }
            let mut empty_continuation = false;
            while !complete {
                let Some(raw) = self.take() else { break };
                let line = trim_newline(raw);
                if line.trim_start().starts_with('#') {
                    continue;
                }
                if line.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, done) = continuation(line, self.directives.escape);
                text.push_str(&part);
                complete = done;
            }
            let heredocs = self.heredoc_bodies(&text, number)?;
            return Ok(Some(LogicalLine {
                number,
                text,
                heredocs,
                empty_continuation,
            }));
        }
    }

    /// Reads the bodies of the heredocs `text` opens from the lines that follow it.
    fn heredoc_bodies(
        &mut self,
        text: &str,
        number: usize,
    ) -> Result<Vec<Heredoc>, DockerfileError> {
        if !may_hold_heredocs(text) {
            return Ok(Vec::new());
        }
        let mut heredocs = heredocs_in(text).map_err(|kind| DockerfileError::at(number, kind))?;
        for heredoc in &mut heredocs {
            loop {
                let Some(raw) = self.take() else {
                    return Err(DockerfileError::at(number, ErrorKind::UnterminatedHeredoc));
                };
                let mut candidate = trim_newline(raw);
                if heredoc.strip_tabs {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == heredoc.name {
                    break;
                }
                heredoc.content.push_str(raw);
            }
        }
        Ok(heredocs)
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a trailing continuation marker (the escape character, then only spaces and tabs);
/// the flag says whether the instruction ends on this line. An escaped escape character does not
/// continue the line.
fn continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line.to_string(), true);
    };
    if before.ends_with(escape) {
        return (line.to_string(), true);
    }
    (before.to_string(), false)
}

/// Heredocs belong to RUN, COPY and ADD (also as ONBUILD triggers) in shell form only.
fn may_hold_heredocs(text: &str) -> bool {
    let (keyword, rest) = arguments::split_keyword(text);
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("onbuild") {
        arguments::split_keyword(rest)
    } else {
        (keyword, rest)
    };
    let keyword = keyword.to_ascii_lowercase();
    if !matches!(keyword.as_str(), "run" | "copy" | "add") {
        return false;
    }
    let (args, _) = flags::extract(rest);
    arguments::json_array(&args).is_none()
}

/// The heredocs a line opens: words like `<<EOF`, `<<-EOF`, `3<<'EOF'` (lexed with quotes and
/// escapes kept, so a quoted `"<<EOF"` is not one).
pub fn heredocs_in(text: &str) -> Result<Vec<Heredoc>, ErrorKind> {
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        keep_unset: true,
        ..Lexer::new('\\')
    };
    let none = |_: &str| None;
    // A line the lexer cannot split (an unbalanced quote) opens no heredoc, as in Docker.
    let words = lexer.expand_words(text, &none).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        if let Some(heredoc) = heredoc_word(&word)? {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// `[digits]<<[-]word` → the heredoc it opens (body empty); None for any other word.
pub fn heredoc_word(word: &str) -> Result<Option<Heredoc>, ErrorKind> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None;
    let unquoted = Lexer {
        keep_unset: true,
        ..Lexer::new('\\')
    };
    let names = unquoted.expand_words(rest, &none)?;
    let [name] = names.as_slice() else {
        return Ok(None);
    };
    let quoted = Lexer {
        raw_quotes: true,
        ..unquoted
    };
    let raw = quoted.expand_words(rest, &none)?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        // Any quoting of the delimiter makes the body literal.
        expand: raw.first().is_some_and(|r| quotes(r) == quotes(name)),
        strip_tabs,
        file_descriptor: word[..digits].parse().ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(usize, String)> {
        split(text)
            .unwrap()
            .lines
            .into_iter()
            .map(|l| (l.number, l.text))
            .collect()
    }

    fn error(text: &str) -> String {
        let e = split(text).unwrap_err();
        format!("{}: {}", e.line.unwrap_or(0), e.kind)
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_lines_counted() {
        let lines = texts("# a comment\n\nFROM x\n   # indented comment\n  RUN a\n\n");
        assert_eq!(lines, [(3, "FROM x".into()), (5, "RUN a".into())]);
    }

    #[test]
    fn continuations_join_lines_and_skip_comments_and_blank_lines_inside() {
        let text = "FROM x\nRUN a \\\n  b \\\n# comment\n\n   \\\n  c\nCMD d\n";
        assert_eq!(
            texts(text),
            [
                (1, "FROM x".into()),
                (2, "RUN a   b      c".into()),
                (8, "CMD d".into())
            ]
        );
        // Trailing spaces after the marker, CRLF endings, and an escaped escape.
        assert_eq!(
            texts("RUN a \\  \r\n b\r\nRUN c \\\\\nRUN d\\"),
            [
                (1, "RUN a  b".into()),
                (3, "RUN c \\\\".into()),
                (4, "RUN d".into())
            ]
        );
        let lines = split("RUN a \\\n\n  b\nRUN c \\\n# note\n d\n")
            .unwrap()
            .lines;
        assert_eq!(
            lines
                .iter()
                .map(|l| l.empty_continuation)
                .collect::<Vec<_>>(),
            [true, false]
        );
        // A line that is only the marker continues too.
        assert_eq!(texts("\\\nFROM x"), [(1, "FROM x".into())]);
    }

    #[test]
    fn directives_are_read_only_at_the_top() {
        let split_text = "# syntax=docker/dockerfile:1\n#escape = `\nFROM x\nRUN a `\n b\n";
        let top = split(split_text).unwrap();
        assert_eq!(top.directives.escape, '`');
        assert_eq!(
            top.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(top.lines[1].text, "RUN a  b");
        // After a comment, a blank line or an instruction, `# escape=` is just a comment.
        for late in [
            "# hello\n# escape=`\nFROM x\n",
            "\n# escape=`\nFROM x\n",
            "FROM x\n# escape=`\n",
            "# unknown=1\n# escape=`\nFROM x\n",
        ] {
            assert_eq!(split(late).unwrap().directives.escape, '\\', "{late}");
        }
        // `check` is a directive too, so an escape after it still counts.
        assert_eq!(
            split("# check=skip=all\n# escape=`\nFROM x")
                .unwrap()
                .directives
                .escape,
            '`'
        );
        // Directive names are case-insensitive.
        assert_eq!(split("# ESCAPE=`\nFROM x").unwrap().directives.escape, '`');
    }

    #[test]
    fn bad_directives_are_errors_with_their_line() {
        assert_eq!(
            error("# escape=x\nFROM a"),
            "1: invalid escape token 'x' does not match ` or \\"
        );
        assert_eq!(
            error("# escape=`\n# escape=\\\nFROM a"),
            "2: only one escape parser directive can be used"
        );
    }

    #[test]
    fn empty_files_have_no_instructions() {
        assert_eq!(error(""), "1: file with no instructions");
        assert_eq!(error("# only\n\n  \n"), "3: file with no instructions");
    }

    #[test]
    fn heredoc_bodies_are_read_after_the_line() {
        let split = split("FROM x\nRUN <<EOF\necho hi\n  EOF\nEOF\nRUN b\n").unwrap();
        let run = &split.lines[1];
        assert_eq!(run.number, 2);
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert_eq!(run.heredocs[0].content, "echo hi\n  EOF\n");
        assert!(run.heredocs[0].expand);
        assert_eq!(split.lines[2].number, 6);
    }

    #[test]
    fn several_heredocs_are_read_in_order() {
        let text = "COPY <<A <<'B' /dst/\na1\nA\nb1 $x\nB\n";
        let split = split(text).unwrap();
        let docs = &split.lines[0].heredocs;
        assert_eq!(
            docs.iter()
                .map(|d| (d.name.as_str(), d.content.as_str(), d.expand))
                .collect::<Vec<_>>(),
            [("A", "a1\n", true), ("B", "b1 $x\n", false)]
        );
    }

    #[test]
    fn tab_stripping_heredocs_match_an_indented_terminator() {
        let split = split("RUN <<-EOT\n\techo a\n\tEOT\n").unwrap();
        let doc = &split.lines[0].heredocs[0];
        assert!(doc.strip_tabs);
        assert_eq!(doc.content, "\techo a\n");
    }

    #[test]
    fn heredocs_only_open_in_shell_form_run_copy_add() {
        let lines = split("CMD <<EOF\nRUN [\"<<EOF\"]\nRUN echo \"<<EOF\"\n")
            .unwrap()
            .lines;
        assert!(lines.iter().all(|l| l.heredocs.is_empty()));
        assert_eq!(lines.len(), 3);
        let onbuild = split("ONBUILD RUN <<EOF\nx\nEOF\n").unwrap().lines;
        assert_eq!(onbuild[0].heredocs[0].content, "x\n");
    }

    #[test]
    fn an_unterminated_heredoc_is_an_error_at_its_instruction() {
        assert_eq!(
            error("FROM x\nRUN <<EOF\necho\n"),
            "2: unterminated heredoc"
        );
    }

    #[test]
    fn heredoc_words_follow_dockers_pattern() {
        let doc = heredoc_word("3<<-\"E\"OF").unwrap().unwrap();
        assert_eq!(
            (
                doc.name.as_str(),
                doc.expand,
                doc.strip_tabs,
                doc.file_descriptor
            ),
            ("EOF", false, true, Some(3))
        );
        assert!(!heredoc_word("<<'EOF'").unwrap().unwrap().expand);
        assert!(heredoc_word("<<EOF").unwrap().unwrap().expand);
        for not in ["<<", "a<<EOF", "<<<EOF", "echo", "<<-"] {
            assert_eq!(heredoc_word(not).unwrap(), None, "{not}");
        }
    }
}
