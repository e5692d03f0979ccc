//! The node's network inside every workspace: the CA certificates the node trusts beyond the
//! distribution's, and the proxy and registry settings of the agent's own environment.
//!
//! Applied at every ensure (create and start), not baked into the image: on some nodes the CA file is
//! made afresh at each boot, so an image, a template or an old container can carry a stale one. One
//! `exec` as root copies the certificates to [`CONTAINER_CA_DIR`], runs `update-ca-certificates` only
//! when they changed (it costs a second or two; the comparison costs nothing) and writes
//! [`PROFILE_PATH`]. Setup steps, services and SSH sessions all run login shells, which read
//! `/etc/profile.d`; the agent's own `git clone` (not a login shell) uses the system bundle, which is
//! why provisioning clones only after this step.

use std::path::{Path, PathBuf};

use crate::provider::Provider;
use crate::provision::{failure, provider_failure, script, ProvisionFailure};

/// Where the node's extra CA certificates live on Debian and Ubuntu (`update-ca-certificates`).
pub const DEFAULT_CA_DIR: &str = "/usr/local/share/ca-certificates";
/// `$0` of the script that installs the certificates and the profile.
pub(crate) const STEP_NETWORK: &str = "nexus-network";
/// The profile script with the network variables.
pub(crate) const PROFILE_PATH: &str = "/etc/profile.d/nexus-network.sh";
/// Where the node's certificates go inside the workspace (a directory of its own, so replacing them
/// never touches certificates the image brought).
pub(crate) const CONTAINER_CA_DIR: &str = "/usr/local/share/ca-certificates/nexus";
/// The system bundle `update-ca-certificates` writes; every variable points at it.
pub(crate) const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The agent's state inside the workspace: the image's bundle before the node's certificates were
/// added, and the log of the last background `update-ca-certificates`.
pub(crate) const STATE_DIR: &str = "/var/lib/nexus";

/// Variables naming a CA bundle, for tools that do not read the system's (Node, pip, requests, git
/// built against other TLS libraries).
const BUNDLE_VARS: &[&str] =
    &["NODE_EXTRA_CA_CERTS", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GIT_SSL_CAINFO"];

/// Proxy variables: tools disagree on the case (curl reads only lower-case `http_proxy`), so a value
/// set in either case is exported in both.
const PROXY_VARS: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"];

/// Registry variables passed through as they are set for the agent.
const REGISTRY_VARS: &[&str] = &[
    "NPM_CONFIG_REGISTRY",
    "npm_config_registry",
    "YARN_NPM_REGISTRY_SERVER",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_INDEX",
];

/// Runs as root. `$1`: the certificates' directory ([`CONTAINER_CA_DIR`]), `$2`: a directory for
/// the agent's own state ([`STATE_DIR`]), `$3`: the system bundle ([`CA_BUNDLE`]), `$4`: the
/// profile's path ([`PROFILE_PATH`]), `$5`: its text; then pairs of certificate file name and PEM
/// text. Prints `updated` when the trust store changed, else `unchanged`.
///
/// `update-ca-certificates` costs one to three seconds in a booting container, on the way to the
/// clone; what TLS clients read is the bundle, so the script writes that at once (the image's
/// bundle, saved the first time, plus the node's certificates) and leaves the rest to
/// `update-ca-certificates` in the background: OpenSSL's hashed links and the hooks of
/// `/etc/ca-certificates/update.d` (Java's keystore). It rewrites the bundle with the same
/// certificates. Nothing here uses `/tmp`: a container that is still booting may mount a fresh one
/// over it, taking scratch files with it.
const NETWORK_SCRIPT: &str = r#"set -eu
dir=$1 state=$2 bundle=$3 path=$4 profile=$5
shift 5
new=$dir.nexus-new
rm -rf "$new"
mkdir -p "$new"
while [ $# -ge 2 ]; do
  printf '%s' "$2" > "$new/$1"
  shift 2
done
result=unchanged
if [ -z "$(ls -A "$new")" ] && [ ! -d "$dir" ]; then
  rmdir "$new"
elif diff -r "$new" "$dir" >/dev/null 2>&1; then
  rm -rf "$new"
else
  if ! command -v update-ca-certificates >/dev/null || [ ! -f "$bundle" ]; then
    rm -rf "$new"
    echo "update-ca-certificates or $bundle not found" >&2
    exit 4
  fi
  chmod 0755 "$new"
  find "$new" -type f -exec chmod 0644 {} +
  rm -rf "$dir"
  mv "$new" "$dir"
  mkdir -p "$state"
  [ -f "$state/bundle-base.crt" ] || cp "$bundle" "$state/bundle-base.crt"
  {
    cat "$state/bundle-base.crt"
    for f in "$dir"/*.crt; do
      if [ -f "$f" ]; then sed -e '$a\' "$f"; fi
    done
  } > "$bundle.nexus-tmp"
  mv -f "$bundle.nexus-tmp" "$bundle"
  # Its scratch files not in /tmp, which a booting container may mount over.
  TMPDIR=$state setsid sh -c 'update-ca-certificates > "$1" 2>&1' sh "$state/update-ca-certificates.log" </dev/null >/dev/null 2>&1 &
  result=updated
fi
if ! printf '%s' "$profile" | cmp -s - "$path"; then
  printf '%s' "$profile" > "$path.tmp"
  chmod 0644 "$path.tmp"
  mv -f "$path.tmp" "$path"
fi
echo "$result"
"#;

/// The node's network settings that workspaces get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// CA certificate files, or directories searched recursively for `*.crt` files (as
    /// `update-ca-certificates` does). Read at every ensure, so a file renewed on the node reaches
    /// the next workspace started. Default: [`DEFAULT_CA_DIR`].
    pub ca_certificates: Vec<PathBuf>,
    /// Variables exported in every workspace: the agent's proxies (in both cases) and registries.
    pub env: Vec<(String, String)>,
}

/// One certificate to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    /// File name in [`CONTAINER_CA_DIR`], ending in `.crt`.
    pub(crate) name: String,
    /// The PEM text.
    pub(crate) pem: String,
}

impl Network {
    /// The certificates in `ca_certificates` and the proxy and registry variables of this process's
    /// environment.
    pub fn from_env(ca_certificates: Vec<PathBuf>) -> Self {
        Network { ca_certificates, env: passed_env(|k| std::env::var(k).ok()) }
    }

    /// The proxy variables, for commands the agent runs outside a login shell (`git clone`).
    pub(crate) fn proxy_env(&self) -> Vec<(String, String)> {
        self.env.iter().filter(|(k, _)| PROXY_VARS.iter().any(|p| p.eq_ignore_ascii_case(k))).cloned().collect()
    }

    /// The certificates as they are on the node now; unreadable files and files without a PEM
    /// certificate are logged and left out (the workspace still comes up, and a TLS failure in it
    /// then says which CA to add).
    pub(crate) fn read_certificates(&self) -> Vec<Certificate> {
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        for root in &self.ca_certificates {
            if root.is_dir() {
                let mut files = Vec::new();
                walk_crt(root, &mut files);
                files.sort();
                for file in files {
                    let relative = file.strip_prefix(root).unwrap_or(&file).to_string_lossy().replace('/', "_");
                    found.push((relative, file));
                }
            } else {
                let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                found.push((name, root.clone()));
            }
        }
        let mut certs: Vec<Certificate> = Vec::new();
        for (name, path) in found {
            let pem = match std::fs::read_to_string(&path) {
                Ok(pem) => pem,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read a CA certificate for workspaces; skipping it");
                    continue;
                }
            };
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                tracing::warn!(file = %path.display(), "not a PEM certificate; skipping it for workspaces");
                continue;
            }
            let mut name = certificate_name(&name);
            let stem = name.trim_end_matches(".crt").to_string();
            let mut n = 1;
            while certs.iter().any(|c| c.name == name) {
                n += 1;
                name = format!("{stem}-{n}.crt");
            }
            certs.push(Certificate { name, pem });
        }
        certs
    }

    /// The text of [`PROFILE_PATH`].
    pub(crate) fn profile(&self) -> String {
        let mut s = String::from(
            "# Written by the Nexus agent at every start of this workspace: the node's CA certificates\n\
             # (in the system bundle) and its proxy and registry settings. Changes here are overwritten.\n",
        );
        for var in BUNDLE_VARS {
            s.push_str(&format!("export {var}={CA_BUNDLE}\n"));
        }
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", crate::services::shell_quote(v)));
        }
        s
    }
}

/// The variables to pass from an environment (`get` reads one): proxies in both cases (the
/// upper-case value wins when both are set), registries as they are.
fn passed_env(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in PROXY_VARS {
        let lower = var.to_ascii_lowercase();
        if let Some(value) = get(var).or_else(|| get(&lower)).filter(|v| !v.is_empty()) {
            env.push((var.to_string(), value.clone()));
            env.push((lower, value));
        }
    }
    for var in REGISTRY_VARS {
        if let Some(value) = get(var).filter(|v| !v.is_empty()) {
            env.push((var.to_string(), value));
        }
    }
    env
}

/// `*.crt` files under `dir`, following symlinks like `find -L`.
fn walk_crt(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_crt(&path, out);
        } else if path.is_file() && path.extension().is_some_and(|e| e == "crt") {
            out.push(path);
        }
    }
}

/// A file name `update-ca-certificates` picks up: safe characters only, ending in `.crt`.
fn certificate_name(name: &str) -> String {
    let stem = name.strip_suffix(".crt").or_else(|| name.strip_suffix(".pem")).unwrap_or(name);
    let clean: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let clean = clean.trim_start_matches('.');
    format!("{}.crt", if clean.is_empty() { "ca" } else { clean })
}

/// Installs the node's certificates and network variables in workspace `id`.
pub(crate) async fn apply<P: Provider>(provider: &P, id: &str, network: &Network) -> Result<(), ProvisionFailure> {
    let certs = network.read_certificates();
    let profile = network.profile();
    let mut args: Vec<&str> = vec![CONTAINER_CA_DIR, STATE_DIR, CA_BUNDLE, PROFILE_PATH, &profile];
    for c in &certs {
        args.push(&c.name);
        args.push(&c.pem);
    }
    let out = provider
        .exec(id, &script(NETWORK_SCRIPT, STEP_NETWORK, &args), None, &[], None)
        .await
        .map_err(|e| provider_failure("installing the node's CA certificates failed", &e))?;
    if out.code != 0 {
        let hint = if out.code == 4 {
            format!(
                "the image needs `update-ca-certificates` (Debian package ca-certificates) and valid PEM files in {}; check the files the agent is given (--ca-certificates), and {}",
                DEFAULT_CA_DIR,
                provider.exec_hint(id, "update-ca-certificates")
            )
        } else {
            format!("check the workspace's disk and /etc: {}", provider.exec_hint(id, "ls -la /etc/profile.d"))
        };
        return Err(failure(format!("installing the node's CA certificates failed: {}", out.last_stderr_line()), hint));
    }
    tracing::debug!(
        workspace = id,
        certificates = certs.len(),
        trust_store = out.stdout.trim(),
        "network settings applied"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_exported_in_both_cases_and_registries_as_they_are() {
        let env = passed_env(|k| match k {
            "https_proxy" => Some("http://proxy:3128".into()),
            "NO_PROXY" => Some("10.0.0.0/8,localhost".into()),
            "no_proxy" => Some("ignored".into()),
            "NPM_CONFIG_REGISTRY" => Some("https://npm.example/".into()),
            "HTTP_PROXY" => Some(String::new()),
            _ => None,
        });
        assert_eq!(
            env,
            [
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("https_proxy", "http://proxy:3128"),
                ("NO_PROXY", "10.0.0.0/8,localhost"),
                ("no_proxy", "10.0.0.0/8,localhost"),
                ("NPM_CONFIG_REGISTRY", "https://npm.example/"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let network = Network { ca_certificates: vec![], env };
        assert_eq!(network.proxy_env().len(), 4);
    }

    #[test]
    fn the_profile_points_every_tool_at_the_system_bundle() {
        let network = Network { ca_certificates: vec![], env: vec![("HTTPS_PROXY".into(), "http://p:1/'x".into())] };
        let profile = network.profile();
        for var in ["NODE_EXTRA_CA_CERTS", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GIT_SSL_CAINFO"] {
            assert!(profile.contains(&format!("export {var}=/etc/ssl/certs/ca-certificates.crt\n")), "{profile}");
        }
        assert!(profile.contains(r"export HTTPS_PROXY='http://p:1/'\''x'"), "{profile}");
    }

    #[test]
    fn certificates_are_found_like_update_ca_certificates_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::create_dir_all(dir.path().join("corp")).unwrap();
        std::fs::write(dir.path().join("a.crt"), pem).unwrap();
        std::fs::write(dir.path().join("corp/b c.crt"), pem).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("der.crt"), [0x30, 0x82]).unwrap();
        let single = dir.path().join("proxy.pem");
        std::fs::write(&single, pem).unwrap();
        let network = Network {
            ca_certificates: vec![dir.path().to_path_buf(), single, dir.path().join("missing.crt")],
            env: vec![],
        };
        let names: Vec<String> = network.read_certificates().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a.crt", "corp_b_c.crt", "proxy.crt"]);
        // The same file given twice keeps both names distinct.
        let twice = Network { ca_certificates: vec![dir.path().join("a.crt"), dir.path().join("a.crt")], env: vec![] };
        let names: Vec<String> = twice.read_certificates().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["a.crt", "a-2.crt"]);
    }

    #[test]
    fn the_script_updates_the_trust_store_only_when_the_certificates_change() {
        // Run the script for real with its paths in a scratch directory and an
        // `update-ca-certificates` that counts its runs.
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_str().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("update-ca-certificates"), format!("#!/bin/sh\necho run >> {r}/runs\n")).unwrap();
        std::fs::set_permissions(
            bin.join("update-ca-certificates"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let bundle = format!("{r}/bundle.crt");
        std::fs::write(&bundle, "DISTRO\n").unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let (cas, state, profile) = (format!("{r}/cas"), format!("{r}/state"), format!("{r}/nexus-network.sh"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh")
                .args(["-c", NETWORK_SCRIPT, STEP_NETWORK, &cas, &state, &bundle, &profile])
                .args(args)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let runs = |n: usize| {
            // The full update runs in the background.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let seen = std::fs::read_to_string(root.path().join("runs")).unwrap_or_default().lines().count();
                if seen == n || std::time::Instant::now() > deadline {
                    return seen;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        assert_eq!(run(&["P1"]), "unchanged", "no certificates and none before: nothing to do");
        assert!(!root.path().join("cas").exists());
        assert_eq!(run(&["P1", "a.crt", "A"]), "updated");
        assert_eq!(read(&bundle), "DISTRO\nA\n", "TLS clients see the certificate at once");
        assert_eq!(run(&["P1", "a.crt", "A"]), "unchanged");
        assert_eq!(runs(1), 1);
        assert_eq!(run(&["P2", "a.crt", "A2\n", "b.crt", "B"]), "updated", "a renewed certificate and a new one");
        assert_eq!(read(&bundle), "DISTRO\nA2\nB\n");
        assert_eq!(read(&format!("{cas}/a.crt")), "A2\n");
        assert_eq!(read(&profile), "P2");
        assert_eq!(run(&["P2"]), "updated", "removed certificates");
        assert!(!root.path().join("cas/a.crt").exists());
        assert_eq!(read(&bundle), "DISTRO\n");
        assert_eq!(runs(3), 3);
        assert!(!root.path().join("cas.nexus-new").exists());
    }
}
