//! Bringing a dead or hung LXD daemon back (`nexus node restart-lxd`, the agent's default restart
//! command), including the part LXD 5.0 gets wrong on this setup: after the daemon died, starting
//! it again fails to bring up the bridge ("Failed clearing firewall: … CHAIN_DEL failed (Device or
//! resource busy): chain lxd_acl_nexusbr0") because the old ACL chain is still jumped to from
//! INPUT/FORWARD/OUTPUT, and every workspace start then fails with "Network nexusbr0 unavailable".
//! Deleting those jump rules and the chain first lets LXD build them afresh.

use nexus_cli::system::System;

use crate::error::{Error, Result};
use crate::init::BRIDGE;

/// What a restart did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restarted {
    /// Stale firewall rules and chains removed before the start.
    pub cleared: Vec<String>,
    /// How the daemon was started (`systemctl restart lxd`, or the daemon spawned directly).
    pub started_with: String,
}

/// The chain LXD makes for the bridge's ACLs.
fn acl_chain(bridge: &str) -> String {
    format!("lxd_acl_{bridge}")
}

/// Deletes the rules that jump to the bridge's ACL chain, then the chain, in iptables and
/// ip6tables; returns what it removed. Nothing to remove is no error.
pub fn clear_stale_acl_chains(sys: &dyn System, bridge: &str) -> Vec<String> {
    let chain = acl_chain(bridge);
    let mut cleared = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        let Ok(listed) = sys.run(&[tool, "-t", "filter", "-S"], None) else { continue };
        if !listed.ok() {
            continue;
        }
        for rule in listed.stdout.lines().filter(|l| l.starts_with("-A ") && l.ends_with(&format!("-j {chain}"))) {
            let Some(words) = shlex::split(&rule[3..]) else { continue };
            let mut argv = vec![tool, "-t", "filter", "-D"];
            argv.extend(words.iter().map(String::as_str));
            if sys.run(&argv, None).is_ok_and(|o| o.ok()) {
                cleared.push(format!("{tool}: {rule}"));
            }
        }
        if listed.stdout.lines().any(|l| l == format!("-N {chain}")) {
            let _ = sys.run(&[tool, "-t", "filter", "-F", &chain], None);
            if sys.run(&[tool, "-t", "filter", "-X", &chain], None).is_ok_and(|o| o.ok()) {
                cleared.push(format!("{tool}: chain {chain}"));
            }
        }
    }
    cleared
}

/// Stops LXD (where systemd runs it), clears the stale firewall state, starts it again and waits
/// until it answers.
pub fn restart(sys: &dyn System) -> Result<Restarted> {
    let systemd = sys.run(&["test", "-d", "/run/systemd/system"], None).is_ok_and(|o| o.ok());
    if systemd {
        let _ = sys.run(&["systemctl", "stop", "lxd.service"], None);
    } else if sys.run(&["lxd", "waitready", "--timeout=1"], None).is_ok_and(|o| o.ok()) {
        // Running and answering: a restart is not what it needs.
        return Ok(Restarted { cleared: Vec::new(), started_with: "nothing (LXD answers)".into() });
    }
    let cleared = clear_stale_acl_chains(sys, BRIDGE);
    let started_with = if systemd {
        let out = sys.run(&["systemctl", "start", "lxd.socket", "lxd.service"], None);
        if !out.as_ref().is_ok_and(|o| o.ok()) {
            return Err(Error::new("`systemctl start lxd` failed", "read `journalctl -u lxd -n 50`"));
        }
        "systemctl start lxd".to_string()
    } else {
        crate::init::spawn_daemon(sys)?;
        "lxd --group root (spawned)".to_string()
    };
    if !sys.run(&["lxd", "waitready", "--timeout=60"], None).is_ok_and(|o| o.ok()) {
        return Err(Error::new(
            "LXD did not answer within 60 s of being started",
            "read /var/log/lxd/lxd.log, then run `sudo nexus node init`",
        ));
    }
    Ok(Restarted { cleared, started_with })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_cli::system::FakeSystem;

    const RULES: &str = "-P INPUT ACCEPT\n-N lxd_acl_nexusbr0\n\
        -A INPUT -i nexusbr0 -m comment --comment \"generated for LXD network nexusbr0\" -j lxd_acl_nexusbr0\n\
        -A FORWARD -i eth0 -j ACCEPT\n\
        -A OUTPUT -o nexusbr0 -m comment --comment \"generated for LXD network nexusbr0\" -j lxd_acl_nexusbr0\n";

    #[test]
    fn the_jumps_to_the_acl_chain_go_first_then_the_chain_and_nothing_else() {
        let sys = FakeSystem::default().on("iptables -t filter -S", 0, RULES).on(
            "ip6tables -t filter -S",
            0,
            "-P INPUT ACCEPT\n",
        );
        let cleared = clear_stale_acl_chains(&sys, "nexusbr0");
        assert_eq!(cleared.len(), 3, "{cleared:?}");
        let calls = sys.calls();
        let deletes: Vec<&String> = calls.iter().filter(|c| c.contains(" -D ") || c.contains(" -X ")).collect();
        assert_eq!(
            deletes,
            [
                "iptables -t filter -D INPUT -i nexusbr0 -m comment --comment generated for LXD network nexusbr0 -j lxd_acl_nexusbr0",
                "iptables -t filter -D OUTPUT -o nexusbr0 -m comment --comment generated for LXD network nexusbr0 -j lxd_acl_nexusbr0",
                "iptables -t filter -X lxd_acl_nexusbr0",
            ]
        );
        assert!(!calls.iter().any(|c| c.contains("FORWARD -i eth0")), "other rules are left alone");
    }
}
