//! The one-line installer: the script at `GET /install.sh` and the CLI binaries it downloads from
//! `GET /download/nexus-<os>-<arch>` (and `.sha256`), so a designer installs from the server alone.
//!
//! What is served: the server's own executable for the platform it runs on (it is the CLI too), plus
//! every file named exactly `nexus-<os>-<arch>` in `--binaries-dir`; a file there wins over the
//! server's own executable, so an operator can serve a release build from a debug server.
//!
//! Checksums are computed once per process by streaming each file (`nexus server` does it at start;
//! apps injected by tests on first use), never per download, and files are streamed to clients from
//! disk rather than held in memory. The pure parts (file names, the script's baked-in defaults, the
//! URL the client used) are here and unit-tested; `http.rs` turns them into responses.
//!
//! What the published checksum proves, and what it does not: it comes from this server over the
//! same connection as the binary and the script, so it catches a download cut off or corrupted on
//! the way, not one changed on purpose by someone on the path (who can change the checksum and the
//! script too). Only https from a server the user trusts covers that; the script refuses plain http
//! to another machine unless run with `--insecure` (issue 10, item 6).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::error::ServerError;

/// The installer script; [`render_script`] fills in its defaults before it is served.
pub(crate) const SCRIPT_TEMPLATE: &str = include_str!("../../../installer/install.sh");

/// The template line the server replaces with the URL the script was downloaded from.
const SERVED_FROM_LINE: &str = "SERVED_FROM=\"\"";
/// The template line the server replaces with its version.
const VERSION_LINE: &str = "INSTALLER_VERSION=\"dev\"";

/// Operating systems the CLI is built for, as download names spell them.
pub(crate) const OSES: [&str; 2] = ["linux", "darwin"];
/// CPU architectures the CLI is built for, as download names spell them.
pub(crate) const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// An OS and CPU the CLI can be built for, e.g. `linux-amd64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Platform {
    /// One of [`OSES`].
    pub os: &'static str,
    /// One of [`ARCHES`].
    pub arch: &'static str,
}

impl Platform {
    /// The platform this process runs on, if the CLI has downloads for it.
    pub(crate) fn host() -> Option<Platform> {
        let os = match std::env::consts::OS {
            "linux" => "linux",
            "macos" => "darwin",
            _ => return None,
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            _ => return None,
        };
        Some(Platform { os, arch })
    }

    /// `nexus-linux-amd64` → linux/amd64; anything else → `None`.
    pub(crate) fn from_file_name(name: &str) -> Option<Platform> {
        let (os, arch) = name.strip_prefix("nexus-")?.split_once('-')?;
        let os = OSES.into_iter().find(|o| *o == os)?;
        let arch = ARCHES.into_iter().find(|a| *a == arch)?;
        Some(Platform { os, arch })
    }

    /// The download's file name, `nexus-<os>-<arch>`.
    pub(crate) fn file_name(&self) -> String {
        format!("nexus-{}-{}", self.os, self.arch)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.os, self.arch)
    }
}

/// What a `/download/{file}` request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Download {
    /// `nexus-<os>-<arch>`: the binary.
    Binary(Platform),
    /// `nexus-<os>-<arch>.sha256`: its checksum in `sha256sum` format.
    Checksum(Platform),
}

impl Download {
    /// Parses a download file name; `None` when it names no platform the CLI is built for.
    pub(crate) fn parse(file: &str) -> Option<Download> {
        match file.strip_suffix(".sha256") {
            Some(binary) => Platform::from_file_name(binary).map(Download::Checksum),
            None => Platform::from_file_name(file).map(Download::Binary),
        }
    }
}

/// One servable binary, checksummed.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    /// Which platform it runs on.
    pub platform: Platform,
    /// What to open when serving it (`/proc/self/exe` for the server's own executable on Linux, so
    /// the running image is served even if the file on disk is replaced).
    pub path: PathBuf,
    /// Where it came from, for logs.
    pub source: String,
    /// Size in bytes when it was checksummed.
    pub len: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

impl Binary {
    /// The `.sha256` body: `<hex>  nexus-<os>-<arch>\n`, what `sha256sum` prints.
    pub(crate) fn checksum_line(&self) -> String {
        format!("{}  {}\n", self.sha256, self.platform.file_name())
    }
}

/// The binaries this server hands out, by platform.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    binaries: BTreeMap<Platform, Binary>,
}

fn io_error(path: &Path, source: std::io::Error) -> ServerError {
    ServerError::Io { path: path.display().to_string(), source }
}

/// SHA-256 of a file, read in chunks (binaries are tens of MB).
fn sha256_file(path: &Path) -> Result<(String, u64), ServerError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, len))
}

impl Catalog {
    /// Finds and checksums the server's own executable and the `nexus-<os>-<arch>` files in
    /// `binaries_dir`. Blocking: reads every file once. A missing or unreadable `binaries_dir` is an
    /// error (the operator asked for it); an unreadable own executable is only logged.
    pub(crate) fn scan(binaries_dir: Option<&Path>) -> Result<Catalog, ServerError> {
        let mut binaries = BTreeMap::new();
        if let Some(platform) = Platform::host() {
            match std::env::current_exe() {
                Ok(exe) => {
                    // The running image, even if a rebuild has replaced the file since start.
                    let proc_exe = Path::new("/proc/self/exe");
                    let path = if proc_exe.exists() { proc_exe.to_path_buf() } else { exe.clone() };
                    match sha256_file(&path) {
                        Ok((sha256, len)) => {
                            let source = exe.display().to_string();
                            binaries.insert(platform, Binary { platform, path, source, len, sha256 });
                        }
                        Err(e) => {
                            tracing::warn!(error = %nexus_types::diagnostics::error_chain(&e), "cannot serve the server's own executable")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot find the server's own executable to serve"),
            }
        }
        if let Some(dir) = binaries_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error(dir, e))?;
                let name = entry.file_name();
                let Some(platform) = name.to_str().and_then(Platform::from_file_name) else {
                    tracing::debug!(file = ?name, "not a `nexus-<os>-<arch>` file; not served");
                    continue;
                };
                let path = entry.path();
                // Follows symlinks, so the directory can link to build outputs.
                if !std::fs::metadata(&path).map_err(|e| io_error(&path, e))?.is_file() {
                    continue;
                }
                let (sha256, len) = sha256_file(&path)?;
                let source = path.display().to_string();
                if let Some(own) = binaries.insert(platform, Binary { platform, path, source, len, sha256 }) {
                    tracing::info!(%platform, instead_of = %own.source, "serving the --binaries-dir build");
                }
            }
        }
        Ok(Catalog { binaries })
    }

    /// The binary for `platform`, if this server has one.
    pub(crate) fn get(&self, platform: Platform) -> Option<&Binary> {
        self.binaries.get(&platform)
    }

    /// `linux-amd64, darwin-arm64`, or `none`.
    pub(crate) fn platforms(&self) -> String {
        if self.binaries.is_empty() {
            return "none".into();
        }
        self.binaries.keys().map(Platform::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// The catalog of one server, built once: eagerly by [`Installer::catalog`] at start, or on first use.
#[derive(Debug)]
pub(crate) struct Installer {
    binaries_dir: Option<PathBuf>,
    catalog: tokio::sync::OnceCell<Arc<Catalog>>,
}

impl Installer {
    /// An installer serving the own executable and `binaries_dir`; nothing is read yet.
    pub(crate) fn new(binaries_dir: Option<PathBuf>) -> Self {
        Installer { binaries_dir, catalog: tokio::sync::OnceCell::new() }
    }

    /// The catalog, scanning (off the async threads) the first time; a failed scan is retried next time.
    pub(crate) async fn catalog(&self) -> Result<Arc<Catalog>, ServerError> {
        let catalog = self
            .catalog
            .get_or_try_init(|| async {
                let dir = self.binaries_dir.clone();
                let scanned = tokio::task::spawn_blocking(move || Catalog::scan(dir.as_deref()))
                    .await
                    .map_err(ServerError::Task)??;
                Ok::<_, ServerError>(Arc::new(scanned))
            })
            .await?;
        Ok(catalog.clone())
    }
}

/// The base URL the client reached this server at, from the `Host` header (and `X-Forwarded-Proto`
/// from a TLS proxy), always with a port so the CLI does not add its default 3001. `None` when the
/// header is missing or holds anything but a host name or IP and port: the value is pasted into a
/// shell script, so nothing that could break out of a quoted string gets through.
pub(crate) fn served_from(host: Option<&str>, forwarded_proto: Option<&str>) -> Option<String> {
    let host = host?.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || host.len() > 255 || !host.chars().all(allowed) {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 5 && s.chars().all(|c| c.is_ascii_digit());
    let has_port = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]` or `[::1]:3001`.
        let (inside, after) = rest.split_once(']')?;
        if inside.is_empty() || inside.contains(['[', ']']) {
            return None;
        }
        match after.strip_prefix(':') {
            Some(port) if digits(port) => true,
            None if after.is_empty() => false,
            _ => return None,
        }
    } else {
        if host.contains(['[', ']']) {
            return None;
        }
        match host.split_once(':') {
            Some((name, port)) if !name.is_empty() && digits(port) => true,
            Some(_) => return None,
            None => false,
        }
    };
    let https = forwarded_proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    let port = match (has_port, https) {
        (true, _) => "",
        (false, true) => ":443",
        (false, false) => ":80",
    };
    Some(format!("{scheme}://{host}{port}"))
}

/// The script as served: `served_from` becomes the default `--server` and download source, and the
/// version is what `--version` prints. `served_from` must come from [`served_from`] (no quotes).
pub(crate) fn render_script(served_from: Option<&str>, version: &str) -> String {
    let safe = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "-.:/[]+_".contains(c));
    let url = served_from.filter(|u| safe(u)).unwrap_or("");
    let version = if safe(version) { version } else { "unknown" };
    let mut out = String::with_capacity(SCRIPT_TEMPLATE.len() + 64);
    for line in SCRIPT_TEMPLATE.split_inclusive('\n') {
        match line.trim_end() {
            SERVED_FROM_LINE if !url.is_empty() => out.push_str(&format!("SERVED_FROM='{url}'\n")),
            VERSION_LINE => out.push_str(&format!("INSTALLER_VERSION='{version}'\n")),
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names() {
        let p = |os, arch| Platform { os, arch };
        assert_eq!(Download::parse("nexus-linux-amd64"), Some(Download::Binary(p("linux", "amd64"))));
        assert_eq!(Download::parse("nexus-darwin-arm64.sha256"), Some(Download::Checksum(p("darwin", "arm64"))));
        for bad in ["nexus-windows-amd64", "nexus-linux-x86_64", "nexus-linux", "linux-amd64", "nexus-linux-amd64.gz"] {
            assert_eq!(Download::parse(bad), None, "{bad}");
        }
        assert_eq!(p("linux", "arm64").file_name(), "nexus-linux-arm64");
        assert_eq!(p("linux", "arm64").to_string(), "linux-arm64");
    }

    #[test]
    fn served_from_keeps_what_the_client_used_and_refuses_the_rest() {
        assert_eq!(
            served_from(Some("staging.example.com:3001"), None).as_deref(),
            Some("http://staging.example.com:3001")
        );
        assert_eq!(served_from(Some("10.0.0.5:3001"), Some("http")).as_deref(), Some("http://10.0.0.5:3001"));
        assert_eq!(served_from(Some("[::1]:3001"), None).as_deref(), Some("http://[::1]:3001"));
        // Behind a TLS proxy the port is the scheme's, spelled out so the CLI doesn't add 3001.
        assert_eq!(
            served_from(Some("nexus.example.com"), Some("https")).as_deref(),
            Some("https://nexus.example.com:443")
        );
        assert_eq!(served_from(Some("nexus.example.com"), None).as_deref(), Some("http://nexus.example.com:80"));
        assert_eq!(served_from(Some("[::1]"), None).as_deref(), Some("http://[::1]:80"));
        for bad in [
            "",
            "evil';rm -rf ~;'",
            "host:port",
            "a:1:2",
            "::1",
            "[::1",
            "[::1]x",
            ":3001",
            "h$(id)",
            "h\"x",
            "h`id`",
            "h x",
            "[]:1",
        ] {
            assert_eq!(served_from(Some(bad), None), None, "{bad:?}");
        }
        assert_eq!(served_from(None, None), None);
    }

    #[test]
    fn the_template_has_each_placeholder_once() {
        assert_eq!(SCRIPT_TEMPLATE.lines().filter(|l| l.trim_end() == SERVED_FROM_LINE).count(), 1);
        assert_eq!(SCRIPT_TEMPLATE.lines().filter(|l| l.trim_end() == VERSION_LINE).count(), 1);
    }

    #[test]
    fn rendering_bakes_in_the_url_and_version() {
        let script = render_script(Some("http://staging.example.com:3001"), "1.2.3");
        assert!(script.contains("\nSERVED_FROM='http://staging.example.com:3001'\n"), "{script}");
        assert!(script.contains("\nINSTALLER_VERSION='1.2.3'\n"));
        assert!(!script.contains(SERVED_FROM_LINE) && !script.contains(VERSION_LINE));
        // Without a usable URL the script keeps its empty default and asks for `--server`.
        let script = render_script(None, "1.2.3");
        assert!(script.contains(&format!("\n{SERVED_FROM_LINE}\n")));
        let script = render_script(Some("http://x';id;'"), "1.2.3'");
        assert!(script.contains(&format!("\n{SERVED_FROM_LINE}\n")) && script.contains("INSTALLER_VERSION='unknown'"));
        assert!(script.starts_with("#!/usr/bin/env bash\n"));
    }

    #[test]
    fn scanning_serves_named_files_with_their_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nexus-darwin-arm64"), b"hello\n").unwrap();
        std::fs::write(dir.path().join("README"), b"not served").unwrap();
        std::fs::create_dir(dir.path().join("nexus-linux-arm64")).unwrap();
        let catalog = Catalog::scan(Some(dir.path())).unwrap();
        let mac = catalog.get(Platform { os: "darwin", arch: "arm64" }).expect("served");
        // `printf 'hello\n' | sha256sum`
        assert_eq!(mac.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(mac.len, 6);
        assert_eq!(
            mac.checksum_line(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  nexus-darwin-arm64\n"
        );
        assert!(catalog
            .get(Platform { os: "linux", arch: "arm64" })
            .is_none_or(|b| b.path != dir.path().join("nexus-linux-arm64")));
        if let Some(host) = Platform::host() {
            if host != mac.platform {
                assert!(catalog.get(host).is_some(), "the server's own executable is served");
                assert!(catalog.platforms().contains(&host.to_string()));
            }
        }
        assert!(Catalog::scan(Some(&dir.path().join("missing"))).is_err(), "a wrong --binaries-dir is an error");
    }
}
