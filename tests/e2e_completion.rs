//! `berth completion SHELL` and `berth manpage`, as a user installs them: the bash script is
//! sourced and asked to complete a word, the man pages are written to a directory and, where
//! `man` is installed, looked up through MANPATH. No engine and no root needed.

use std::path::Path;
use std::process::{Command, Output};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("run berth")
}

fn stdout_of(args: &[&str]) -> String {
    let out = berth(args);
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sources the bash script and runs its completion function as bash's `complete -F` would, for
/// the command line `words` with the cursor on the last word; returns the offered words.
fn bash_completions(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; _berth berth '{}' '{prev}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[cword],
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_is_valid_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("berth.bash");
    std::fs::write(&script, stdout_of(&["completion", "bash"])).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let offered = bash_completions(&script, &["berth", "u"]);
    for word in ["up", "unpause"] {
        assert!(offered.iter().any(|w| w == word), "{word} in {offered:?}");
    }
    assert!(!offered.iter().any(|w| w == "down"), "{offered:?}");

    let offered = bash_completions(&script, &["berth", "up", "--de"]);
    assert_eq!(offered, ["--detach"]);
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = stdout_of(&["completion", shell]);
        assert!(script.contains("up"), "{shell}: {script}");
        assert!(script.contains("unpause"), "{shell}: {script}");
        // Syntax-checked only where the shell exists; the content check above always runs.
        if installed(shell) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("berth.{shell}"));
            std::fs::write(&file, &script).unwrap();
            let check = Command::new(shell).arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{shell} -n failed");
        }
    }
}

#[test]
fn an_unknown_shell_is_refused_with_the_choices() {
    let out = berth(&["completion", "tcsh"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    for shell in ["bash", "fish", "zsh"] {
        assert!(err.contains(shell), "{err}");
    }
}

#[test]
fn manpage_prints_berth_1_and_writes_one_page_per_subcommand() {
    let page = stdout_of(&["manpage"]);
    assert!(page.contains(".TH berth 1"), "{page}");
    assert!(page.contains("berth\\-up(1)"), "{page}");

    let root = tempfile::tempdir().unwrap();
    let man1 = root.path().join("man1");
    stdout_of(&["manpage", "--dir", man1.to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(man1.join(name)).expect(name);
    assert!(read("berth.1").starts_with(".ie"));
    let up = read("berth-up.1");
    assert!(up.contains(".TH berth-up 1"), "{up}");
    assert!(up.contains("\\-\\-detach"), "{up}");
    assert!(read("berth-image-save.1").contains("tar archive"));

    if installed("man") {
        let found = Command::new("man")
            .args(["-w", "berth-up"])
            .env("MANPATH", root.path())
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&found.stdout);
        assert_eq!(path.trim(), man1.join("berth-up.1").to_str().unwrap());
    }
}
