//! What the node puts on every workspace container so one tenant cannot starve the others: a
//! process limit (a fork bomb ends at it, not at the node's `kernel.pid_max`), a root disk size (a
//! disk filler ends at its quota, not when the shared pool is full), network limits, and the
//! bridge's per-NIC filtering (no MAC/IP spoofing, no traffic to other workspaces' ports).
//!
//! Pure: [`Hardening`] turns the operator's settings and the default profile's devices into the
//! instance config and devices LXD gets at create and copy; [`crate::lxd`] sends them.

use serde_json::{json, Map, Value};

use crate::provider::ProviderError;

/// Default `limits.processes`: generous for builds and dev servers (threads count too), far below
/// a node's `kernel.pid_max` times the workspaces it holds.
pub const DEFAULT_PROCESSES: u32 = 2000;
/// Default root disk size cap of a workspace.
pub const DEFAULT_DISK: &str = "20GB";
/// Default bandwidth each way for one workspace.
pub const DEFAULT_BANDWIDTH: &str = "500Mbit";

/// The hardening every workspace gets on this node (`nexus agent --workspace-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// `limits.processes` (tasks, threads included); 0: none.
    pub processes: u32,
    /// Largest root disk a workspace gets (`20GB`); the server's size applies when smaller. Empty:
    /// none (the pool's size is the limit).
    pub disk: String,
    /// Bandwidth into the workspace (`500Mbit`); empty: none.
    pub ingress: String,
    /// Bandwidth out of the workspace; empty: none. Needs the kernel's `act_police` module; where it
    /// is missing LXD cannot start a NIC with it, and [`crate::lxd`] drops it (with a warning).
    pub egress: String,
    /// MAC and IPv4 filtering (no spoofing) and port isolation (no traffic to other workspaces).
    pub isolate: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            processes: DEFAULT_PROCESSES,
            disk: DEFAULT_DISK.into(),
            ingress: DEFAULT_BANDWIDTH.into(),
            egress: DEFAULT_BANDWIDTH.into(),
            isolate: true,
        }
    }
}

impl Hardening {
    /// No hardening at all (what the fake and old tests assume).
    pub fn none() -> Self {
        Hardening { processes: 0, disk: String::new(), ingress: String::new(), egress: String::new(), isolate: false }
    }

    /// Refuses settings LXD would refuse later, so a bad flag stops the agent at start.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if !self.disk.is_empty() {
            disk_bytes(&self.disk, "disk")?;
        }
        for (field, rate) in [("ingress", &self.ingress), ("egress", &self.egress)] {
            if !rate.is_empty() && !is_bit_rate(rate) {
                return Err(ProviderError::InvalidSpec {
                    field,
                    message: format!("{rate:?} is not a bit rate"),
                    hint: "use a rate such as `500Mbit` or `1Gbit` (units: kbit, Mbit, Gbit)".into(),
                });
            }
        }
        Ok(())
    }

    /// The root disk size for a workspace that asked for `asked` (the server's `--max-disk`):
    /// the smaller of that and this node's cap; empty when neither sets one.
    pub fn disk_size(&self, asked: &str) -> Result<String, ProviderError> {
        let asked = asked.trim();
        Ok(match (asked.is_empty(), self.disk.is_empty()) {
            (true, true) => String::new(),
            (true, false) => self.disk.clone(),
            (false, true) => asked.to_string(),
            (false, false) => {
                if disk_bytes(asked, "disk")? < disk_bytes(&self.disk, "disk")? {
                    asked.to_string()
                } else {
                    self.disk.clone()
                }
            }
        })
    }

    /// Instance config keys for a workspace (empty value: unset, so a copy drops the source's).
    pub fn config(&self) -> Vec<(String, String)> {
        let processes = if self.processes > 0 { self.processes.to_string() } else { String::new() };
        vec![("limits.processes".into(), processes)]
    }

    /// The `root` and `eth0` devices of a workspace: the default profile's, with the disk size,
    /// bandwidth and filtering added. `profile` is the profile's `devices` object; a device the
    /// profile lacks is left out (LXD then refuses or uses what it has, as before).
    pub fn devices(&self, profile: &Value, disk: &str, egress: bool) -> Map<String, Value> {
        let mut devices = Map::new();
        if let Some(root) = profile.as_object().and_then(|d| d.values().find(|d| is_root_disk(d))) {
            let name = device_name(profile, root);
            let mut root = root.clone();
            if !disk.is_empty() {
                root["size"] = disk.into();
            }
            devices.insert(name, root);
        }
        if let Some(nic) = profile.get("eth0").filter(|d| d["type"] == "nic") {
            let mut nic = nic.clone();
            if !self.ingress.is_empty() {
                nic["limits.ingress"] = self.ingress.clone().into();
            }
            if !self.egress.is_empty() && egress {
                nic["limits.egress"] = self.egress.clone().into();
            }
            if self.isolate {
                // Without a static address, LXD filters IPv4 against the DHCP lease it hands out.
                // No `security.ipv6_filtering`: the bridge has no IPv6 (`ipv6.address: none`), and
                // LXD then fails the NIC's start on the missing ip6tables chain.
                nic["security.mac_filtering"] = "true".into();
                nic["security.ipv4_filtering"] = "true".into();
                nic["security.port_isolation"] = "true".into();
            }
            devices.insert("eth0".into(), nic);
        }
        devices
    }
}

/// The name `root` has in `profile` (usually `root`).
fn device_name(profile: &Value, device: &Value) -> String {
    profile
        .as_object()
        .and_then(|d| d.iter().find(|(_, v)| *v == device).map(|(k, _)| k.clone()))
        .unwrap_or_else(|| "root".into())
}

/// A disk device mounted at `/` with a pool: the root disk.
fn is_root_disk(d: &Value) -> bool {
    d["type"] == "disk" && d["path"] == "/" && d["pool"].is_string()
}

/// `500Mbit`, `1Gbit`, `100kbit` (LXD's bit-rate syntax; bytes per second are `MB`, ...).
fn is_bit_rate(s: &str) -> bool {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    !num.is_empty()
        && num.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(unit, "bit" | "kbit" | "Mbit" | "Gbit" | "Tbit" | "kB" | "MB" | "GB" | "TB")
}

/// Bytes of a disk size (`20GB`, `512MiB`, `1TB`); percentages make no sense for a disk.
pub(crate) fn disk_bytes(size: &str, field: &'static str) -> Result<u64, ProviderError> {
    let bad = || ProviderError::InvalidSpec {
        field,
        message: format!("{size:?} is not a disk size"),
        hint: "use a size such as `20GB` or `512GiB`".into(),
    };
    let s: String = size.chars().filter(|c| !c.is_whitespace()).collect();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let unit: u64 = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(bad()),
    };
    num.checked_mul(unit).filter(|b| *b > 0).ok_or_else(bad)
}

/// The default profile's devices as [`Hardening::devices`] reads them (for tests and hints).
pub fn profile_example() -> Value {
    json!({
        "root": {"path": "/", "pool": "nexus", "type": "disk"},
        "eth0": {"name": "eth0", "network": "nexusbr0", "type": "nic"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workspace_gets_a_process_limit_a_disk_size_and_a_filtered_limited_nic() {
        let h = Hardening::default();
        assert_eq!(h.config(), vec![("limits.processes".to_string(), "2000".to_string())]);
        let devices = h.devices(&profile_example(), "10GB", true);
        assert_eq!(devices["root"], json!({"path": "/", "pool": "nexus", "type": "disk", "size": "10GB"}));
        let nic = &devices["eth0"];
        assert_eq!(nic["network"], "nexusbr0");
        assert_eq!(nic["limits.ingress"], "500Mbit");
        assert_eq!(nic["limits.egress"], "500Mbit");
        for key in ["security.mac_filtering", "security.ipv4_filtering", "security.port_isolation"] {
            assert_eq!(nic[key], "true", "{key}");
        }
        // Where the kernel cannot police egress, the NIC goes without that one limit.
        assert!(h.devices(&profile_example(), "", false)["eth0"].get("limits.egress").is_none());
    }

    #[test]
    fn no_hardening_unsets_the_process_limit_and_adds_nothing() {
        let h = Hardening::none();
        assert_eq!(h.config(), vec![("limits.processes".to_string(), String::new())]);
        let devices = h.devices(&profile_example(), "", true);
        assert_eq!(devices["root"], profile_example()["root"]);
        assert_eq!(devices["eth0"], profile_example()["eth0"]);
    }

    #[test]
    fn the_disk_is_the_smaller_of_the_servers_and_the_nodes() {
        let h = Hardening { disk: "20GB".into(), ..Hardening::default() };
        assert_eq!(h.disk_size("").unwrap(), "20GB");
        assert_eq!(h.disk_size("10GB").unwrap(), "10GB");
        assert_eq!(h.disk_size("999999GB").unwrap(), "20GB");
        assert_eq!(h.disk_size("1TB").unwrap(), "20GB");
        assert_eq!(h.disk_size("5GiB").unwrap(), "5GiB");
        assert!(h.disk_size("50%").is_err());
        assert_eq!(Hardening::none().disk_size("").unwrap(), "");
        assert_eq!(Hardening::none().disk_size("8GB").unwrap(), "8GB");
    }

    #[test]
    fn bad_flags_are_refused_with_a_hint() {
        assert!(Hardening::default().validate().is_ok());
        let bad = Hardening { egress: "fast".into(), ..Hardening::default() };
        let e = bad.validate().unwrap_err();
        assert!(e.to_string().contains("bit rate"), "{e}");
        assert!(Hardening { disk: "lots".into(), ..Hardening::default() }.validate().is_err());
        assert_eq!(disk_bytes("2TiB", "disk").unwrap(), 2 << 40);
        assert_eq!(disk_bytes("1TB", "disk").unwrap(), 1_000_000_000_000);
    }
}
