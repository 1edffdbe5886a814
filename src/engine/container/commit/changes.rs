//! `docker commit --change`: the Dockerfile instructions a commit may apply to the new image's
//! config (Docker's `validCommitCommands`: CMD ENTRYPOINT ENV EXPOSE LABEL ONBUILD STOPSIGNAL
//! USER VOLUME WORKDIR), parsed by a small parser of their own: one instruction per line, JSON
//! or shell form where Docker allows both, `key=value` pairs with quotes for ENV and LABEL.

use indexmap::IndexMap;

/// The runnable defaults a commit writes, as the container had them, then changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitConfig {
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: IndexMap<String, String>,
    pub stop_signal: Option<String>,
    pub on_build: Vec<String>,
}

/// Applies each change line (empty lines ignored) in order; the error names the bad line.
pub fn apply_changes(config: &mut CommitConfig, lines: &[String]) -> Result<(), String> {
    for line in lines.iter().flat_map(|l| l.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        apply_line(config, line).map_err(|e| format!("invalid change {line:?}: {e}"))?;
    }
    Ok(())
}

fn apply_line(config: &mut CommitConfig, line: &str) -> Result<(), String> {
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let need = |what: &str| -> Result<(), String> {
        if rest.is_empty() {
            Err(format!("{what} requires at least one argument"))
        } else {
            Ok(())
        }
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command_form(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(command_form(rest)),
        "ENV" => {
            need("ENV")?;
            for (k, v) in pairs(rest, "ENV")? {
                config
                    .env
                    .retain(|e| e.split('=').next() != Some(k.as_str()));
                config.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            need("LABEL")?;
            for (k, v) in pairs(rest, "LABEL")? {
                config.labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            need("EXPOSE")?;
            for port in words(rest)? {
                let port = if port.contains('/') {
                    port.to_ascii_lowercase()
                } else {
                    format!("{port}/tcp")
                };
                if !config.exposed_ports.contains(&port) {
                    config.exposed_ports.push(port);
                }
            }
        }
        "VOLUME" => {
            need("VOLUME")?;
            let list = json_list(rest).map_or_else(|| words(rest), Ok)?;
            for v in list {
                if !config.volumes.contains(&v) {
                    config.volumes.push(v);
                }
            }
        }
        "USER" => {
            need("USER")?;
            config.user = rest.to_string();
        }
        "WORKDIR" => {
            need("WORKDIR")?;
            config.working_dir = workdir(&config.working_dir, rest);
        }
        "STOPSIGNAL" => {
            need("STOPSIGNAL")?;
            config.stop_signal = Some(rest.to_string());
        }
        "ONBUILD" => {
            need("ONBUILD")?;
            config.on_build.push(rest.to_string());
        }
        other => return Err(format!("{other} is not a valid change command")),
    }
    Ok(())
}

/// `["prog","arg"]` as given, anything else the shell form `/bin/sh -c <text>`.
fn command_form(rest: &str) -> Vec<String> {
    json_list(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_list(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// A relative WORKDIR goes below the current one, as in a Dockerfile.
fn workdir(current: &str, given: &str) -> String {
    if given.starts_with('/') {
        return given.to_string();
    }
    let base = if current.is_empty() { "/" } else { current };
    format!("{}/{given}", base.trim_end_matches('/'))
}

/// Words split on blanks, with `"…"`/`'…'` quoting and `\` escapes (outside single quotes).
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                word.push(chars.next().ok_or("a trailing backslash")?);
                in_word = true;
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("an unterminated quote".into());
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// `k=v k2="v 2"`, or the old single-pair form `key value with spaces`.
fn pairs(rest: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{what} {rest} needs a value"))?;
        let value = words(value.trim())?.join(" ");
        return Ok(vec![(key.to_string(), value)]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{what} names must be followed by =value: {w:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(lines: &[&str]) -> Result<CommitConfig, String> {
        let mut c = CommitConfig {
            env: vec!["PATH=/bin".into(), "A=old".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        };
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &lines).map(|()| c)
    }

    #[test]
    fn cmd_and_entrypoint_take_json_or_shell_form() {
        let c = changed(&[r#"CMD ["echo", "hi"]"#, "ENTRYPOINT exec app --flag"]).unwrap();
        assert_eq!(c.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(
            c.entrypoint,
            Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                "exec app --flag".to_string()
            ])
        );
    }

    #[test]
    fn env_and_label_pairs_replace_and_quote() {
        let c = changed(&[
            r#"ENV A=new B="two words" C=x\ y"#,
            "env D some value",
            r#"LABEL org.x="1" y=2"#,
        ])
        .unwrap();
        assert_eq!(
            c.env,
            ["PATH=/bin", "A=new", "B=two words", "C=x y", "D=some value"]
        );
        assert_eq!(c.labels.get("org.x").map(String::as_str), Some("1"));
        assert_eq!(c.labels.get("y").map(String::as_str), Some("2"));
    }

    #[test]
    fn expose_volume_user_workdir_stopsignal_onbuild() {
        let c = changed(&[
            "EXPOSE 80 53/UDP 80",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "USER app:app",
            "WORKDIR sub",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD RUN make",
        ])
        .unwrap();
        assert_eq!(c.exposed_ports, ["80/tcp", "53/udp"]);
        assert_eq!(c.volumes, ["/data", "/logs", "/cache"]);
        assert_eq!(c.user, "app:app");
        assert_eq!(c.working_dir, "/srv/sub");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.on_build, ["RUN make"]);
    }

    #[test]
    fn bad_changes_are_refused_with_the_line() {
        let e = changed(&["RUN rm -rf /"]).unwrap_err();
        assert_eq!(
            e,
            r#"invalid change "RUN rm -rf /": RUN is not a valid change command"#
        );
        let e = changed(&["ENV"]).unwrap_err();
        assert!(e.contains("ENV requires at least one argument"), "{e}");
        let e = changed(&[r#"LABEL a="open"#]).unwrap_err();
        assert!(e.contains("unterminated quote"), "{e}");
        let e = changed(&["ENV =x"]).unwrap_err();
        assert!(e.contains("must be followed by =value"), "{e}");
    }
}
