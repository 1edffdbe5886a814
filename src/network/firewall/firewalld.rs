//! firewalld: the bridge goes into the `trusted` zone (target ACCEPT) for the runtime only, as
//! Docker puts its bridges in its `docker` zone. firewalld owns its `inet firewalld` table, so
//! `firewall-cmd` is the only way in; without it (or with firewalld stopped) there is nothing to do.

use super::{run_checked, Result, Runner};

pub const ZONE: &str = "trusted";
const PROGRAM: &str = "firewall-cmd";

fn running(runner: &mut dyn Runner) -> Result<bool> {
    if !runner.installed(PROGRAM) {
        return Ok(false);
    }
    Ok(runner.run(PROGRAM, &["--state".to_string()])?.success)
}

/// Whether the bridge is in the zone (`--query-interface` answers with its exit status).
fn has_interface(runner: &mut dyn Runner, bridge: &str) -> Result<bool> {
    let args = [
        format!("--zone={ZONE}"),
        format!("--query-interface={bridge}"),
    ];
    Ok(runner.run(PROGRAM, &args)?.success)
}

pub fn ensure(runner: &mut dyn Runner, bridge: &str) -> Result<()> {
    if !running(runner)? || has_interface(runner, bridge)? {
        return Ok(());
    }
    let args = [
        format!("--zone={ZONE}"),
        format!("--add-interface={bridge}"),
    ];
    run_checked(runner, PROGRAM, &args).map(|_| ())
}

pub fn remove(runner: &mut dyn Runner, bridge: &str) -> Result<()> {
    if !running(runner)? || !has_interface(runner, bridge)? {
        return Ok(());
    }
    let args = [
        format!("--zone={ZONE}"),
        format!("--remove-interface={bridge}"),
    ];
    run_checked(runner, PROGRAM, &args).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeRunner;
    use super::*;

    #[test]
    fn a_running_firewalld_gets_the_bridge_once_and_gives_it_back() {
        let mut r = FakeRunner::with(&[PROGRAM]);
        r.answer(
            "firewall-cmd --zone=trusted --query-interface=br-x",
            false,
            "no",
        );
        ensure(&mut r, "br-x").unwrap();
        assert_eq!(
            r.changes(),
            ["firewall-cmd --zone=trusted --add-interface=br-x"]
        );

        // Already there (a restart): nothing added; removal takes it out.
        let mut r = FakeRunner::with(&[PROGRAM]);
        ensure(&mut r, "br-x").unwrap();
        remove(&mut r, "br-x").unwrap();
        assert_eq!(
            r.changes(),
            ["firewall-cmd --zone=trusted --remove-interface=br-x"]
        );
    }

    #[test]
    fn stopped_or_absent_firewalld_is_left_alone() {
        let mut r = FakeRunner::with(&[PROGRAM]);
        r.answer("firewall-cmd --state", false, "not running");
        ensure(&mut r, "br-x").unwrap();
        remove(&mut r, "br-x").unwrap();
        assert_eq!(r.ran, ["firewall-cmd --state", "firewall-cmd --state"]);

        let mut r = FakeRunner::with(&[]);
        ensure(&mut r, "br-x").unwrap();
        assert!(r.ran.is_empty());
    }
}
