//! berth's accept rules in the iptables `filter` table: chain `BERTH-FORWARD`, jumped to from the
//! top of `FORWARD`, one set of rules per network tagged `berth:<bridge>` (the parent module says
//! why). Decisions read `iptables-save` output and return the commands to run, which go to the
//! kernel as one `iptables-restore --noflush` per backend: one process instead of one per
//! command, and one atomic commit, so a `kill -9` of the engine leaves either all of a network's
//! change or none of it (either way the next ensure, reading the table first, completes it).

use super::{run_checked, run_checked_with_input, FirewallError, Result, Runner};

pub const CHAIN: &str = "BERTH-FORWARD";

/// Which kernel side an iptables binary drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables-nft: the rules live in nf_tables tables (`ip filter`).
    Nft,
    /// iptables-legacy: x_tables.
    Legacy,
}

/// The tools of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub backend: Backend,
    pub iptables: &'static str,
    pub save: &'static str,
    /// `iptables-restore` of the backend; `None` where it may predate `-w` (before 1.6.2).
    pub restore: Option<&'static str>,
}

const NFT_TOOL: Tool = Tool {
    backend: Backend::Nft,
    iptables: "iptables-nft",
    save: "iptables-nft-save",
    restore: Some("iptables-nft-restore"),
};
const LEGACY_TOOL: Tool = Tool {
    backend: Backend::Legacy,
    iptables: "iptables-legacy",
    save: "iptables-legacy-save",
    restore: Some("iptables-legacy-restore"),
};
/// iptables before 1.8 has only the legacy backend and no suffixed names.
const PLAIN_LEGACY_TOOL: Tool = Tool {
    backend: Backend::Legacy,
    iptables: "iptables",
    save: "iptables-save",
    restore: None,
};

/// The `*filter` section of `iptables-save`.
#[derive(Debug, Default, PartialEq)]
pub struct FilterTable {
    /// Whether the table exists at all (the backend is in use).
    pub present: bool,
    pub chains: Vec<String>,
    /// (chain, the rule's arguments after `-A <chain>`).
    pub rules: Vec<(String, Vec<String>)>,
}

impl FilterTable {
    fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Vec<String>> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _)| c == chain)
            .map(|(_, r)| r)
    }
}

/// Parse the `*filter` section of `iptables-save` output (other tables are ignored).
pub fn parse_save(text: &str) -> FilterTable {
    let mut table = FilterTable::default();
    let mut in_filter = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            in_filter = name == "filter";
            table.present |= in_filter;
        } else if line == "COMMIT" {
            in_filter = false;
        } else if !in_filter {
            continue;
        } else if let Some(decl) = line.strip_prefix(':') {
            if let Some(name) = decl.split_whitespace().next() {
                table.chains.push(name.to_string());
            }
        } else if line.starts_with("-A ") {
            let mut words = tokenize(line).into_iter().skip(1);
            if let Some(chain) = words.next() {
                table.rules.push((chain, words.collect()));
            }
        }
    }
    table
}

/// Split a saved rule into arguments: whitespace-separated, `"…"` quoted (comments are).
fn tokenize(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if quoted => current.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

/// The tag on every rule of a network.
pub fn comment(bridge: &str) -> String {
    format!("berth:{bridge}")
}

/// A network's rules, as arguments after `-A BERTH-FORWARD`, in `iptables-save`'s own order (so
/// that they compare equal to what it prints).
pub fn wanted_rules(bridge: &str, internal: bool) -> Vec<Vec<String>> {
    let tag = [
        "-m",
        "comment",
        "--comment",
        &comment(bridge),
        "-j",
        "ACCEPT",
    ];
    let rule = |head: &[&str]| -> Vec<String> {
        head.iter()
            .chain(tag.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let mut rules = vec![rule(&["-i", bridge, "-o", bridge])];
    if !internal {
        rules.push(rule(&["-i", bridge, "!", "-o", bridge]));
        rules.push(rule(&[
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
        ]));
    }
    rules
}

fn jump() -> Vec<String> {
    vec!["-j".into(), CHAIN.into()]
}

fn args(words: &[&str], rest: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|s| s.to_string())
        .chain(rest.iter().cloned())
        .collect()
}

/// The commands that bring `table` to having the chain, the jump at the top of `FORWARD` and
/// each of the network's rules exactly once; nothing when all is there.
pub fn plan_ensure(table: &FilterTable, bridge: &str, internal: bool) -> Vec<Vec<String>> {
    let mut plan = Vec::new();
    if !table.chains.iter().any(|c| c == CHAIN) {
        plan.push(args(&["-N", CHAIN], &[]));
    }
    if !table.rules_of("FORWARD").any(|r| *r == jump()) {
        plan.push(args(&["-I", "FORWARD", "1"], &jump()));
    }
    for rule in wanted_rules(bridge, internal) {
        if !table.rules_of(CHAIN).any(|r| *r == rule) {
            plan.push(args(&["-A", CHAIN], &rule));
        }
    }
    plan
}

/// The commands that delete every rule tagged for `bridge` (whatever its form), and the chain
/// and its jumps when no other network's rule is left in it.
pub fn plan_remove(table: &FilterTable, bridge: &str) -> Vec<Vec<String>> {
    let tag = comment(bridge);
    let is_ours = |r: &Vec<String>| r.windows(2).any(|w| w[0] == "--comment" && w[1] == tag);
    let mut plan: Vec<Vec<String>> = table
        .rules_of(CHAIN)
        .filter(|r| is_ours(r))
        .map(|r| args(&["-D", CHAIN], r))
        .collect();
    let others_left = table.rules_of(CHAIN).any(|r| !is_ours(r));
    if table.chains.iter().any(|c| c == CHAIN) && !others_left {
        for _ in table.rules_of("FORWARD").filter(|r| **r == jump()) {
            plan.push(args(&["-D", "FORWARD"], &jump()));
        }
        plan.push(args(&["-X", CHAIN], &[]));
    }
    plan
}

/// The `iptables-restore` input that runs `plan` on the `filter` table in one commit. `-N`
/// rather than a `:CHAIN` line: with `--noflush`, declaring a chain that exists flushes it.
pub fn restore_script(plan: &[Vec<String>]) -> String {
    let mut script = String::from("*filter\n");
    for command in plan {
        let words: Vec<String> = command.iter().map(|w| restore_quote(w)).collect();
        script.push_str(&words.join(" "));
        script.push('\n');
    }
    script.push_str("COMMIT\n");
    script
}

/// A word as `iptables-restore` reads it back: quoted when it holds blanks or quotes.
fn restore_quote(word: &str) -> String {
    if !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        return word.to_string();
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The backend of the multi-call binary `iptables` resolves to, when its name says it: one
/// process less than asking `iptables --version`.
pub fn backend_of_binary(name: &str) -> Option<Backend> {
    match name {
        "xtables-nft-multi" => Some(Backend::Nft),
        "xtables-legacy-multi" => Some(Backend::Legacy),
        _ => None,
    }
}

/// The backend `iptables` itself drives, from `iptables --version` (`… (nf_tables)` or
/// `… (legacy)`; before 1.8 there is no suffix and only legacy).
pub fn default_backend(version: &str) -> Backend {
    if version.contains("nf_tables") {
        Backend::Nft
    } else {
        Backend::Legacy
    }
}

/// The installed tools, each with its `filter` table, and the backend `iptables` drives.
struct Survey {
    found: Vec<(Tool, FilterTable)>,
    default: Option<Backend>,
}

/// `strict`: a failing `iptables-save` of the default backend is an error (for `ensure`, which
/// would otherwise leave traffic dropped); for `remove`, a table nobody can read holds nothing
/// to remove.
fn survey(runner: &mut dyn Runner, strict: bool) -> Result<Survey> {
    let mut tools: Vec<Tool> = [NFT_TOOL, LEGACY_TOOL]
        .into_iter()
        .filter(|t| runner.installed(t.iptables) && runner.installed(t.save))
        .collect();
    // `remove` reads every table it can and needs the default backend only to find an old,
    // unsuffixed iptables: one process less on every network removal.
    let default = if (strict || tools.is_empty()) && runner.installed("iptables") {
        Some(
            match runner
                .resolved_name("iptables")
                .as_deref()
                .and_then(backend_of_binary)
            {
                Some(backend) => backend,
                None => {
                    default_backend(&runner.run("iptables", &["--version".to_string()])?.stdout)
                }
            },
        )
    } else {
        None
    };
    if tools.is_empty() && default == Some(Backend::Legacy) && runner.installed("iptables-save") {
        tools.push(PLAIN_LEGACY_TOOL);
    }
    let mut found = Vec::new();
    for tool in tools {
        let must_read = strict && Some(tool.backend) == default;
        if tool.backend == Backend::Legacy && !must_read && !runner.legacy_filter_loaded() {
            // No legacy `filter` table: its save would print none, so it is not in use.
            continue;
        }
        // Without `-t`: `-t filter` would load (so create) a legacy table nobody uses.
        if must_read {
            let out = run_checked(runner, tool.save, &[])?;
            found.push((tool, parse_save(&out.stdout)));
        } else {
            // The other backend may be installed on a kernel that lacks it (no x_tables):
            // then it is not in use, and nothing of it can drop anything.
            let out = runner.run(tool.save, &[])?;
            if out.success {
                found.push((tool, parse_save(&out.stdout)));
            }
        }
    }
    Ok(Survey { found, default })
}

fn apply(runner: &mut dyn Runner, tool: &Tool, plan: Vec<Vec<String>>) -> Result<()> {
    if plan.is_empty() {
        return Ok(());
    }
    if let Some(restore) = tool.restore.filter(|r| runner.installed(r)) {
        // `-w`: wait for the xtables lock rather than fail beside another iptables user.
        let args = ["-w", "--noflush"].map(String::from);
        return run_checked_with_input(runner, restore, &args, &restore_script(&plan)).map(|_| ());
    }
    for command in plan {
        // `-w`: wait for the xtables lock rather than fail beside another iptables user.
        run_checked(runner, tool.iptables, &args(&["-w"], &command))?;
    }
    Ok(())
}

/// The commands that take out a network's rules, the jump and the chain, on a table where
/// nothing else of berth's is left: they all fail (so none applies) if anything else is there.
pub fn plan_remove_alone(bridge: &str, internal: bool) -> Vec<Vec<String>> {
    let mut plan: Vec<Vec<String>> = wanted_rules(bridge, internal)
        .iter()
        .map(|r| args(&["-D", CHAIN], r))
        .collect();
    plan.push(args(&["-D", "FORWARD"], &jump()));
    plan.push(args(&["-X", CHAIN], &[]));
    plan
}

/// The one backend to touch when no table has to be read first to know it: `iptables` drives
/// nf_tables (by its binary's name: no process), its restore is installed and no legacy
/// `filter` table is loaded that could drop or hold berth's rules.
fn sole_nft_backend(runner: &dyn Runner) -> Option<Tool> {
    let default = runner
        .resolved_name("iptables")
        .as_deref()
        .and_then(backend_of_binary);
    let usable = default == Some(Backend::Nft)
        && [NFT_TOOL.iptables, NFT_TOOL.save]
            .into_iter()
            .chain(NFT_TOOL.restore)
            .all(|p| runner.installed(p))
        && !runner.legacy_filter_loaded();
    usable.then_some(NFT_TOOL)
}

/// Runs `plan` in one restore without reading the table first; false when that cannot be done
/// or the kernel refused it (then nothing of it applied: one commit).
fn try_blind(runner: &mut dyn Runner, plan: &[Vec<String>]) -> bool {
    let Some(tool) = sole_nft_backend(runner) else {
        return false;
    };
    let restore = tool.restore.expect("checked by sole_nft_backend");
    let args = ["-w", "--noflush"].map(String::from);
    runner
        .run_with_input(restore, &args, &restore_script(plan))
        .is_ok_and(|out| out.success)
}

/// [`ensure`] for a network just made by an engine that has no other: first, without reading
/// the table, the whole setup as on an empty one — it applies only if the chain did not exist
/// (`-N` fails otherwise), and then leaves exactly the chain, one jump and the rules. One
/// process instead of two; anything else falls back to [`ensure`].
pub fn ensure_alone(runner: &mut dyn Runner, bridge: &str, internal: bool) -> Result<()> {
    if try_blind(
        runner,
        &plan_ensure(&FilterTable::default(), bridge, internal),
    ) {
        return Ok(());
    }
    ensure(runner, bridge, internal)
}

/// [`remove`] for the last network of an engine: first, without reading the table, the
/// network's rules, one jump and the chain — it applies only if the chain ends empty and
/// unreferenced (`-X` fails otherwise), so nothing of berth's is left. Else [`remove`].
pub fn remove_alone(runner: &mut dyn Runner, bridge: &str, internal: bool) -> Result<()> {
    if try_blind(runner, &plan_remove_alone(bridge, internal)) {
        return Ok(());
    }
    remove(runner, bridge)
}

/// Add the network's accepts to every backend in use, and to the default one.
pub fn ensure(runner: &mut dyn Runner, bridge: &str, internal: bool) -> Result<()> {
    let Survey { found, default } = survey(runner, true)?;
    for (tool, table) in found {
        if table.present || Some(tool.backend) == default {
            apply(runner, &tool, plan_ensure(&table, bridge, internal))?;
        }
    }
    Ok(())
}

/// Take the network's accepts out of every backend that has a `filter` table.
pub fn remove(runner: &mut dyn Runner, bridge: &str) -> Result<()> {
    let found = survey(runner, false)?.found;
    let mut first_err: Option<FirewallError> = None;
    for (tool, table) in found.into_iter().filter(|(_, t)| t.present) {
        if let Err(e) = apply(runner, &tool, plan_remove(&table, bridge)) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeRunner;
    use super::*;

    /// What iptables-nft-save 1.8.9 printed on a host after `dockerd` 28 started and berth set
    /// up `br-aaa` (trimmed to the filter table).
    const DOCKER_AND_BERTH: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:BERTH-FORWARD - [0:0]
:DOCKER - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j BERTH-FORWARD
-A FORWARD -j DOCKER-FORWARD
-A BERTH-FORWARD -i br-aaa -o br-aaa -m comment --comment "berth:br-aaa" -j ACCEPT
-A BERTH-FORWARD -i br-aaa ! -o br-aaa -m comment --comment "berth:br-aaa" -j ACCEPT
-A BERTH-FORWARD -o br-aaa -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "berth:br-aaa" -j ACCEPT
-A DOCKER-FORWARD -i docker0 -j ACCEPT
COMMIT
"#;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_reads_only_the_filter_table_and_unquotes_comments() {
        let t = parse_save(DOCKER_AND_BERTH);
        assert!(t.present);
        assert_eq!(
            t.chains,
            [
                "INPUT",
                "FORWARD",
                "OUTPUT",
                CHAIN,
                "DOCKER",
                "DOCKER-FORWARD",
                "DOCKER-USER"
            ]
        );
        assert!(!t
            .rules
            .iter()
            .any(|(_, r)| r.contains(&"MASQUERADE".into())));
        assert_eq!(t.rules_of(CHAIN).next().unwrap()[7], "berth:br-aaa");
        assert_eq!(
            tokenize(r#"-A X -m comment --comment "a \"b\" c" -j ACCEPT"#)[5],
            r#"a "b" c"#
        );
        assert!(!parse_save("").present);
    }

    #[test]
    fn ensure_on_an_empty_table_makes_chain_jump_and_three_rules() {
        let plan = plan_ensure(&FilterTable::default(), "br-x", false);
        assert_eq!(plan[0], cmd(&["-N", CHAIN]));
        assert_eq!(plan[1], cmd(&["-I", "FORWARD", "1", "-j", CHAIN]));
        assert_eq!(plan.len(), 5);
        assert!(plan[2..].iter().all(|c| c[..2] == cmd(&["-A", CHAIN])
            && c.ends_with(&cmd(&["--comment", "berth:br-x", "-j", "ACCEPT"]))));
    }

    #[test]
    fn ensure_when_everything_is_there_does_nothing() {
        assert_eq!(
            plan_ensure(&parse_save(DOCKER_AND_BERTH), "br-aaa", false),
            Vec::<Vec<String>>::new()
        );
    }

    #[test]
    fn ensure_repairs_only_what_is_missing() {
        // A firewall reload dropped the jump and one rule.
        let text = DOCKER_AND_BERTH
            .replace("-A FORWARD -j BERTH-FORWARD\n", "")
            .replace(
                "-A BERTH-FORWARD -i br-aaa ! -o br-aaa -m comment --comment \"berth:br-aaa\" -j ACCEPT\n",
                "",
            );
        let plan = plan_ensure(&parse_save(&text), "br-aaa", false);
        assert_eq!(
            plan,
            vec![
                cmd(&["-I", "FORWARD", "1", "-j", CHAIN]),
                args(&["-A", CHAIN], &wanted_rules("br-aaa", false)[1]),
            ]
        );
    }

    #[test]
    fn internal_networks_accept_only_inside_traffic() {
        let rules = wanted_rules("br-i", true);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0][..4], cmd(&["-i", "br-i", "-o", "br-i"]));
    }

    #[test]
    fn remove_deletes_exactly_the_networks_rules_and_keeps_the_chain_for_others() {
        let text = DOCKER_AND_BERTH.replace(
            "-A DOCKER-FORWARD",
            "-A BERTH-FORWARD -i br-bbb -o br-bbb -m comment --comment \"berth:br-bbb\" -j ACCEPT\n-A DOCKER-FORWARD",
        );
        let plan = plan_remove(&parse_save(&text), "br-aaa");
        assert_eq!(plan.len(), 3);
        assert!(plan.iter().all(|c| c[..2] == cmd(&["-D", CHAIN])));
        assert_eq!(plan[0][2..], wanted_rules("br-aaa", false)[0][..]);
    }

    #[test]
    fn remove_of_the_last_network_drops_every_jump_and_the_chain() {
        let text = DOCKER_AND_BERTH.replace(
            "-A FORWARD -j DOCKER-FORWARD",
            "-A FORWARD -j DOCKER-FORWARD\n-A FORWARD -j BERTH-FORWARD",
        );
        let plan = plan_remove(&parse_save(&text), "br-aaa");
        assert_eq!(plan.len(), 6);
        assert_eq!(plan[3], cmd(&["-D", "FORWARD", "-j", CHAIN]));
        assert_eq!(plan[4], cmd(&["-D", "FORWARD", "-j", CHAIN]));
        assert_eq!(plan[5], cmd(&["-X", CHAIN]));
    }

    #[test]
    fn remove_when_nothing_is_there_does_nothing() {
        assert!(plan_remove(&parse_save(DOCKER_AND_BERTH), "br-zzz").is_empty());
        assert!(plan_remove(&FilterTable::default(), "br-zzz").is_empty());
    }

    #[test]
    fn ensure_uses_backends_in_use_and_the_default_one() {
        let mut r = FakeRunner::with(&[
            "iptables",
            "iptables-nft",
            "iptables-nft-save",
            "iptables-legacy",
            "iptables-legacy-save",
        ]);
        r.answer("iptables --version", true, "iptables v1.8.9 (nf_tables)\n");
        // Legacy is in use (Docker on an old setup left its table), nft has no table yet.
        r.answer(
            "iptables-legacy-save",
            true,
            "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
        );
        ensure(&mut r, "br-x", false).unwrap();
        let changes = r.changes();
        assert_eq!(changes.len(), 10, "{changes:#?}");
        assert_eq!(
            changes
                .iter()
                .filter(|c| c.starts_with("iptables-nft -w"))
                .count(),
            5
        );
        assert_eq!(
            changes
                .iter()
                .filter(|c| c.starts_with("iptables-legacy -w"))
                .count(),
            5
        );
    }

    #[test]
    fn ensure_skips_an_unused_legacy_backend_and_a_host_without_iptables() {
        let mut r = FakeRunner::with(&[
            "iptables",
            "iptables-nft",
            "iptables-nft-save",
            "iptables-legacy",
            "iptables-legacy-save",
        ]);
        r.answer("iptables --version", true, "iptables v1.8.9 (nf_tables)\n");
        ensure(&mut r, "br-x", false).unwrap();
        assert!(r.changes().iter().all(|c| c.starts_with("iptables-nft ")));

        let mut none = FakeRunner::with(&[]);
        ensure(&mut none, "br-x", false).unwrap();
        assert!(none.ran.is_empty());
    }

    #[test]
    fn a_backend_the_kernel_lacks_is_not_in_use() {
        let mut r = FakeRunner::with(&[
            "iptables",
            "iptables-nft",
            "iptables-nft-save",
            "iptables-legacy",
            "iptables-legacy-save",
        ]);
        r.answer("iptables --version", true, "iptables v1.8.9 (nf_tables)\n");
        r.answer("iptables-legacy-save", false, "");
        ensure(&mut r, "br-x", false).unwrap();
        remove(&mut r, "br-x").unwrap();
        assert!(r.changes().iter().all(|c| c.starts_with("iptables-nft ")));
    }

    #[test]
    fn a_failing_command_is_an_error_naming_it() {
        let mut r = FakeRunner::with(&["iptables", "iptables-nft", "iptables-nft-save"]);
        r.answer("iptables --version", true, "iptables v1.8.9 (nf_tables)\n");
        r.answer("iptables-nft -w -N BERTH-FORWARD", false, "");
        let e = ensure(&mut r, "br-x", false).unwrap_err().to_string();
        assert!(e.contains("iptables-nft -w -N BERTH-FORWARD"), "{e}");
    }

    #[test]
    fn remove_touches_only_backends_with_a_table() {
        let mut r = FakeRunner::with(&[
            "iptables",
            "iptables-nft",
            "iptables-nft-save",
            "iptables-legacy",
            "iptables-legacy-save",
        ]);
        r.answer("iptables --version", true, "iptables v1.8.9 (nf_tables)\n");
        r.answer("iptables-nft-save", true, DOCKER_AND_BERTH);
        remove(&mut r, "br-aaa").unwrap();
        let changes = r.changes();
        assert_eq!(changes.len(), 5, "{changes:#?}");
        assert!(changes.iter().all(|c| c.starts_with("iptables-nft -w -")));
    }

    #[test]
    fn remove_asks_for_the_default_backend_only_without_suffixed_tools() {
        let modern = ["iptables", "iptables-nft", "iptables-nft-save"];
        let mut r = FakeRunner::with(&modern);
        r.answer("iptables-nft-save", true, DOCKER_AND_BERTH);
        remove(&mut r, "br-aaa").unwrap();
        assert!(
            !r.ran.iter().any(|c| c.contains("--version")),
            "{:#?}",
            r.ran
        );
        assert_eq!(r.changes().len(), 5);

        // iptables before 1.8: only `iptables-save` reads the table, if `iptables` is legacy.
        let mut r = FakeRunner::with(&["iptables", "iptables-save"]);
        r.answer("iptables --version", true, "iptables v1.6.1\n");
        r.answer("iptables-save", true, DOCKER_AND_BERTH);
        remove(&mut r, "br-aaa").unwrap();
        let changes = r.changes();
        assert_eq!(changes.len(), 5, "{changes:#?}");
        assert!(changes.iter().all(|c| c.starts_with("iptables -w -")));
    }

    /// A host as Debian 12 sets it up: every tool, `iptables` an alternative for iptables-nft.
    fn modern_host() -> FakeRunner {
        let mut r = FakeRunner::with(&[
            "iptables",
            "iptables-nft",
            "iptables-nft-save",
            "iptables-nft-restore",
            "iptables-legacy",
            "iptables-legacy-save",
            "iptables-legacy-restore",
        ]);
        r.resolved.insert("iptables", "xtables-nft-multi");
        r.legacy_unloaded = true;
        r
    }

    #[test]
    fn the_restore_script_runs_the_plan_in_one_commit_with_words_quoted() {
        let plan = vec![
            cmd(&["-N", CHAIN]),
            cmd(&[
                "-A",
                CHAIN,
                "-m",
                "comment",
                "--comment",
                "a \"b\"",
                "-j",
                "ACCEPT",
            ]),
        ];
        assert_eq!(
            restore_script(&plan),
            "*filter\n-N BERTH-FORWARD\n-A BERTH-FORWARD -m comment --comment \"a \\\"b\\\"\" -j ACCEPT\nCOMMIT\n"
        );
        // What the script quotes, `iptables-save` gives back as the same word.
        let line = restore_script(&plan).lines().nth(2).unwrap().to_string();
        assert_eq!(tokenize(&line)[5], "a \"b\"");
    }

    #[test]
    fn a_network_costs_one_save_and_one_restore_per_backend_in_use() {
        let mut r = modern_host();
        ensure(&mut r, "br-x", false).unwrap();
        assert_eq!(
            r.ran,
            ["iptables-nft-save", "iptables-nft-restore -w --noflush"]
        );
        let script: Vec<&str> = r.inputs[0].lines().collect();
        assert_eq!(script.len(), 7, "{script:#?}");
        assert_eq!(
            script[1..3],
            ["-N BERTH-FORWARD", "-I FORWARD 1 -j BERTH-FORWARD"]
        );

        let mut r = modern_host();
        r.answer("iptables-nft-save", true, DOCKER_AND_BERTH);
        remove(&mut r, "br-aaa").unwrap();
        assert_eq!(
            r.ran,
            ["iptables-nft-save", "iptables-nft-restore -w --noflush"]
        );
        assert_eq!(
            r.inputs[0].lines().filter(|l| l.starts_with("-D ")).count(),
            4
        );
        assert!(r.inputs[0].ends_with("-X BERTH-FORWARD\nCOMMIT\n"));
    }

    #[test]
    fn nothing_to_change_runs_no_restore() {
        let mut r = modern_host();
        r.answer("iptables-nft-save", true, DOCKER_AND_BERTH);
        ensure(&mut r, "br-aaa", false).unwrap();
        assert_eq!(r.ran, ["iptables-nft-save"]);
    }

    #[test]
    fn a_loaded_legacy_table_is_read_and_a_legacy_default_always_is() {
        let mut r = modern_host();
        r.legacy_unloaded = false;
        r.answer(
            "iptables-legacy-save",
            true,
            "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
        );
        ensure(&mut r, "br-x", false).unwrap();
        assert!(r
            .ran
            .contains(&"iptables-legacy-restore -w --noflush".to_string()));

        let mut r = modern_host();
        r.resolved.insert("iptables", "xtables-legacy-multi");
        ensure(&mut r, "br-x", false).unwrap();
        assert_eq!(
            r.ran,
            [
                "iptables-nft-save",
                "iptables-legacy-save",
                "iptables-legacy-restore -w --noflush"
            ]
        );
    }

    #[test]
    fn a_failing_restore_is_an_error_naming_its_input() {
        let mut r = modern_host();
        r.answer("iptables-nft-restore -w --noflush", false, "");
        let e = ensure(&mut r, "br-x", false).unwrap_err().to_string();
        assert!(e.contains("iptables-nft-restore -w --noflush"), "{e}");
        assert!(e.contains("-N BERTH-FORWARD; -I FORWARD 1"), "{e}");
    }

    #[test]
    fn the_default_backend_is_read_from_the_binary_name_when_it_tells() {
        assert_eq!(backend_of_binary("xtables-nft-multi"), Some(Backend::Nft));
        assert_eq!(
            backend_of_binary("xtables-legacy-multi"),
            Some(Backend::Legacy)
        );
        assert_eq!(backend_of_binary("iptables"), None);
    }

    #[test]
    fn a_new_sole_network_takes_one_restore_and_a_refused_one_falls_back() {
        let mut r = modern_host();
        ensure_alone(&mut r, "br-x", false).unwrap();
        assert_eq!(r.ran, ["iptables-nft-restore -w --noflush"]);
        assert_eq!(
            r.inputs[0],
            restore_script(&plan_ensure(&FilterTable::default(), "br-x", false))
        );

        // Another engine's network made the chain: -N fails, the table is read and completed.
        let mut r = modern_host();
        r.answer("iptables-nft-restore -w --noflush", false, "");
        r.answer("iptables-nft-save", true, DOCKER_AND_BERTH);
        ensure_alone(&mut r, "br-x", false).unwrap_err();
        assert_eq!(r.ran[1], "iptables-nft-save");
        assert!(!r.inputs[1].contains("-N "), "{}", r.inputs[1]);
    }

    #[test]
    fn the_last_network_goes_in_one_restore_and_falls_back_when_refused() {
        let mut r = modern_host();
        remove_alone(&mut r, "br-aaa", false).unwrap();
        assert_eq!(r.ran, ["iptables-nft-restore -w --noflush"]);
        let script: Vec<&str> = r.inputs[0].lines().collect();
        assert_eq!(script.len(), 7, "{script:#?}");
        assert_eq!(
            script[4..6],
            ["-D FORWARD -j BERTH-FORWARD", "-X BERTH-FORWARD"]
        );

        let mut r = modern_host();
        r.answer("iptables-nft-restore -w --noflush", false, "");
        remove_alone(&mut r, "br-aaa", true).unwrap();
        assert_eq!(r.ran[1], "iptables-nft-save");
    }

    #[test]
    fn no_blind_restore_where_a_table_must_be_read() {
        // A legacy table loaded, or a default backend known only by asking: the full survey.
        let mut r = modern_host();
        r.legacy_unloaded = false;
        ensure_alone(&mut r, "br-x", false).unwrap();
        assert_eq!(r.ran[0], "iptables-nft-save");
        let mut r = modern_host();
        r.resolved.clear();
        remove_alone(&mut r, "br-x", false).unwrap();
        assert!(r.ran[0].ends_with("-save"), "{:#?}", r.ran);
    }
}
