//! Node init's isolation step: a network ACL on the workspaces' bridge so a workspace cannot reach
//! the node's own services or link-local metadata addresses.
//!
//! LXD 5.0 applies a bridge's ACL where the bridge meets the host (the node's INPUT and FORWARD),
//! so it covers traffic to the node and out of it; between two workspaces on the bridge the
//! agent's per-NIC `security.port_isolation` does the work. LXD processes reject rules before allow
//! rules, so what stays open on the bridge address is written as the ports not rejected: DNS (53),
//! DHCP (67), the staging demo's git daemon (9418) and the ephemeral range (32768 and up, where
//! test servers listen). Everything else the workspace sends leaves through NAT as before.

use nexus_cli::system::System;

use super::{Progress, BRIDGE};
use crate::error::Result;

/// The ACL's name.
pub(crate) const ACL: &str = "nexus-workspaces";
/// Marks the ACL as this version of the rules, so a changed rule set is rewritten.
const VERSION: &str = "nexus workspace isolation v1";

/// The ACL as `lxc network acl edit` reads it, for a bridge whose own address is `gateway`.
pub(crate) fn acl_yaml(gateway: &str) -> String {
    format!(
        "description: {VERSION}\n\
         egress:\n\
         - action: reject\n  destination: 169.254.0.0/16\n  state: enabled\n  description: cloud metadata and link-local\n\
         - action: reject\n  destination: {gateway}/32\n  protocol: tcp\n  destination_port: 1-52,54-9417,9419-32767\n  state: enabled\n  description: the node's own TCP services\n\
         - action: reject\n  destination: {gateway}/32\n  protocol: udp\n  destination_port: 1-52,54-66,68-32767\n  state: enabled\n  description: the node's own UDP services\n\
         ingress: []\n\
         config: {{}}\n"
    )
}

/// Creates or updates the ACL and attaches it to the bridge (traffic it does not reject is allowed).
pub(crate) fn ensure(sys: &dyn System, progress: &dyn Progress) -> Result<()> {
    let what = "workspace network isolation (bridge ACL)";
    progress.step(what);
    let gateway = sys
        .run(&["lxc", "network", "get", BRIDGE, "ipv4.address"], None)
        .ok()
        .filter(|o| o.ok())
        .map(|o| o.stdout.trim().split('/').next().unwrap_or("").to_string())
        .filter(|g| !g.is_empty());
    let Some(gateway) = gateway else {
        progress.warning(&format!("{BRIDGE} has no IPv4 address; workspaces are not isolated from the node"));
        return Ok(());
    };
    let current = sys.run(&["lxc", "network", "acl", "show", ACL], None).ok().filter(|o| o.ok());
    let attached = sys
        .run(&["lxc", "network", "get", BRIDGE, "security.acls"], None)
        .is_ok_and(|o| o.ok() && o.stdout.trim() == ACL);
    let want = acl_yaml(&gateway);
    let up_to_date = current.as_ref().is_some_and(|o| o.stdout.contains(VERSION) && o.stdout.contains(&gateway));
    if up_to_date && attached {
        progress.skipped(what);
        return Ok(());
    }
    if current.is_none() {
        sys.run(&["lxc", "network", "acl", "create", ACL], None).ok();
    }
    let steps: [(&[&str], Option<&str>); 2] = [
        (&["lxc", "network", "acl", "edit", ACL], Some(&want)),
        (
            &[
                "lxc",
                "network",
                "set",
                BRIDGE,
                &format!("security.acls={ACL}"),
                "security.acls.default.egress.action=allow",
                "security.acls.default.ingress.action=allow",
            ],
            None,
        ),
    ];
    for (argv, stdin) in steps {
        match sys.run(argv, stdin) {
            Ok(o) if o.ok() => {}
            Ok(o) => {
                progress.warning(&format!(
                    "`{}` failed ({}); workspaces are not isolated from the node",
                    argv.join(" "),
                    o.stderr.trim()
                ));
                return Ok(());
            }
            Err(e) => {
                progress.warning(&format!("`{}` failed ({e})", argv.join(" ")));
                return Ok(());
            }
        }
    }
    progress.done("workspaces cannot reach the node's services (beyond DHCP/DNS) or 169.254.0.0/16");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_cli::system::FakeSystem;

    struct Quiet;
    impl Progress for Quiet {
        fn step(&self, _: &str) {}
        fn skipped(&self, _: &str) {}
        fn done(&self, _: &str) {}
    }

    #[test]
    fn a_bridge_without_the_acl_gets_it_with_dns_and_dhcp_open() {
        let sys = FakeSystem::default()
            .on("lxc network get nexusbr0 ipv4.address", 0, "10.87.0.1/24\n")
            .on("lxc network acl show", 1, "")
            .on("lxc network get nexusbr0 security.acls", 0, "\n");
        ensure(&sys, &Quiet).unwrap();
        let calls = sys.calls();
        assert!(calls.contains(&"lxc network acl create nexus-workspaces".to_string()), "{calls:?}");
        assert!(calls.iter().any(|c| c.starts_with("lxc network set nexusbr0 security.acls=nexus-workspaces")));
        let stdin = nexus_types::diagnostics::lock(&sys.stdin);
        let yaml = stdin.get("lxc network acl edit nexus-workspaces").unwrap();
        assert!(yaml.contains("destination: 169.254.0.0/16"), "{yaml}");
        assert!(yaml.contains("destination: 10.87.0.1/32"), "{yaml}");
        assert!(yaml.contains("1-52,54-66,68-32767"), "DNS and DHCP stay open: {yaml}");
    }

    #[test]
    fn an_attached_current_acl_is_left_alone() {
        let sys = FakeSystem::default()
            .on("lxc network get nexusbr0 ipv4.address", 0, "10.87.0.1/24\n")
            .on("lxc network acl show", 0, &acl_yaml("10.87.0.1"))
            .on("lxc network get nexusbr0 security.acls", 0, "nexus-workspaces\n");
        ensure(&sys, &Quiet).unwrap();
        assert!(!sys.calls().iter().any(|c| c.contains("acl edit") || c.contains("network set")), "{:?}", sys.calls());
    }
}
