//! Getting runtimes onto the node: one HTTP client that trusts the node's CA certificates and gives
//! up quickly when a source cannot be reached, digests of every download checked against what the
//! source publishes, and unpacking into a scratch directory that becomes a store entry only once it
//! is complete.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use nexus_types::diagnostics::error_chain;
use sha2::{Digest as _, Sha224, Sha256, Sha512};
use tokio::io::AsyncWriteExt;

use crate::network::Network;
use crate::provision::{failure, ProvisionFailure};

/// A source that does not accept the connection within this long is unreachable, not slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for metadata requests (package documents, version lists).
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
/// A download that receives nothing for this long is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed.
#[derive(Debug)]
pub(super) enum HttpError {
    /// The source answered 404: it does not have the thing asked for.
    NotFound,
    /// Anything else, already worded for people.
    Failed(ProvisionFailure),
}

/// The digests of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hashes {
    pub(super) sha512: Vec<u8>,
    pub(super) sha256: Vec<u8>,
    pub(super) sha224: Vec<u8>,
}

impl Hashes {
    pub(super) fn of(bytes: &[u8]) -> Self {
        Hashes {
            sha512: Sha512::digest(bytes).to_vec(),
            sha256: Sha256::digest(bytes).to_vec(),
            sha224: Sha224::digest(bytes).to_vec(),
        }
    }

    /// Whether a corepack-style `<algorithm>.<hex>` matches; `None` for algorithms not computed.
    pub(super) fn matches_corepack(&self, expected: &str) -> Option<bool> {
        let (algorithm, hex) = expected.split_once('.')?;
        let actual = match algorithm {
            "sha512" => &self.sha512,
            "sha256" => &self.sha256,
            "sha224" => &self.sha224,
            _ => return None,
        };
        Some(hex_of(actual).eq_ignore_ascii_case(hex.trim()))
    }
}

/// What a download must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expected {
    /// npm's `dist.integrity`: `sha512-<base64>` (several space-separated entries allowed).
    Integrity(String),
    /// A hex sha256 (nodejs.org's SHASUMS256.txt, PyPI's `digests.sha256`).
    Sha256(String),
}

impl Expected {
    /// Whether `hashes` satisfy it; `Err` names what cannot be checked.
    pub(super) fn check(&self, hashes: &Hashes) -> Result<bool, String> {
        match self {
            Expected::Integrity(integrity) => {
                let wanted: Vec<&str> =
                    integrity.split_whitespace().filter_map(|e| e.strip_prefix("sha512-")).collect();
                if wanted.is_empty() {
                    return Err(format!("its integrity `{integrity}` has no sha512 digest"));
                }
                let actual = base64::engine::general_purpose::STANDARD.encode(&hashes.sha512);
                Ok(wanted.iter().any(|w| w.trim_end_matches('=') == actual.trim_end_matches('=')))
            }
            Expected::Sha256(hex) => Ok(hex_of(&hashes.sha256).eq_ignore_ascii_case(hex.trim())),
        }
    }
}

pub(super) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store's HTTP client.
#[derive(Debug)]
pub(super) struct Fetcher {
    client: Result<reqwest::Client, String>,
}

impl Fetcher {
    /// A client trusting the web PKI and the node's extra CA certificates (those it pushes into
    /// workspaces), using the agent's proxy variables.
    pub(super) fn new(network: &Network) -> Self {
        let certs = network.read_certificates();
        let build = |with_extra: bool| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .user_agent(concat!("nexus-agent/", env!("CARGO_PKG_VERSION"), " (runtime store)"));
            if with_extra {
                for cert in &certs {
                    match reqwest::Certificate::from_pem_bundle(cert.pem.as_bytes()) {
                        Ok(list) => {
                            for c in list {
                                builder = builder.add_root_certificate(c);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(certificate = %cert.name, error = %error_chain(&e), "the runtime store cannot use this CA certificate")
                        }
                    }
                }
            }
            builder.build()
        };
        let client = build(true)
            .or_else(|e| {
                tracing::warn!(error = %error_chain(&e), "the node's CA certificates do not load for runtime downloads; using only the built-in roots");
                build(false)
            })
            .map_err(|e| error_chain(&e));
        Fetcher { client }
    }

    fn client(&self, url: &str) -> Result<&reqwest::Client, HttpError> {
        self.client.as_ref().map_err(|e| {
            HttpError::Failed(failure(
                format!("the agent cannot make HTTP requests to fetch runtimes ({url}): {e}"),
                "check the agent's TLS set-up and its CA certificates (--ca-certificates)",
            ))
        })
    }

    /// The body of `url` (a small document).
    pub(super) async fn get(&self, url: &str, accept: &str) -> Result<Vec<u8>, HttpError> {
        let resp = self
            .client(url)?
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        let resp = ok_status(url, resp)?;
        Ok(resp.bytes().await.map_err(|e| unreachable(url, &e))?.to_vec())
    }

    /// Downloads `url` into `to`, hashing it on the way.
    pub(super) async fn download(&self, url: &str, to: &Path) -> Result<Hashes, HttpError> {
        let resp = self.client(url)?.get(url).send().await.map_err(|e| unreachable(url, &e))?;
        let mut resp = ok_status(url, resp)?;
        let write_failed = |e: std::io::Error| {
            HttpError::Failed(failure(
                format!("cannot write {} into the runtime store: {e}", to.display()),
                "check the node's disk space and the runtime store's directory (--runtime-dir)",
            ))
        };
        let mut file = tokio::fs::File::create(to).await.map_err(write_failed)?;
        let (mut sha512, mut sha256, mut sha224) = (Sha512::new(), Sha256::new(), Sha224::new());
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(url, &e))? {
            sha512.update(&chunk);
            sha256.update(&chunk);
            sha224.update(&chunk);
            file.write_all(&chunk).await.map_err(write_failed)?;
        }
        file.flush().await.map_err(write_failed)?;
        Ok(Hashes {
            sha512: sha512.finalize().to_vec(),
            sha256: sha256.finalize().to_vec(),
            sha224: sha224.finalize().to_vec(),
        })
    }
}

fn ok_status(url: &str, resp: reqwest::Response) -> Result<reqwest::Response, HttpError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(HttpError::NotFound);
    }
    Err(HttpError::Failed(failure(
        format!("{url} answered HTTP {}", status.as_u16()),
        "the source refused the request: check that the configured URL is the registry's (--npm-registry, --node-source, --pypi-url) and that a proxy in between lets it through",
    )))
}

/// A request that did not get an answer: the cause, and where the node's network is configured.
fn unreachable(url: &str, e: &reqwest::Error) -> HttpError {
    let origin =
        reqwest::Url::parse(url).ok().map(|u| u.origin().ascii_serialization()).unwrap_or_else(|| url.to_string());
    let chain = error_chain(e);
    let tls = ["certificate", "UnknownIssuer", "tls"].iter().any(|n| chain.contains(n));
    let hint = if tls {
        format!(
            "{origin}'s TLS certificate is not trusted by the agent: add the CA that signs it (a TLS-inspecting proxy's, say) to the node's /usr/local/share/ca-certificates or the agent's --ca-certificates, then start the workspace again"
        )
    } else {
        format!(
            "the node cannot reach {origin}: check its DNS and outbound network, the proxy in the agent's environment (HTTPS_PROXY, NO_PROXY) and the CA certificates it trusts (--ca-certificates); or point the agent at a mirror (--npm-registry, --node-source, --pypi-url); then start the workspace again"
        )
    };
    let what = if e.is_timeout() { "timed out" } else { "failed" };
    HttpError::Failed(failure(format!("downloading {url} {what}: {chain}"), hint))
}

/// Unpacks a `.tar.gz` into `into` (which must not exist) and returns the directory it holds: the
/// archive's single top-level directory (`package/` in npm tarballs), or `into` itself.
pub(super) fn unpack_tar_gz(archive: &Path, into: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir(into)?;
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    // `unpack` skips entries that would land outside `into` (`..`, absolute paths) and refuses to
    // write through symlinked parents.
    tar.unpack(into)?;
    let entries: Vec<PathBuf> = std::fs::read_dir(into)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    match entries.as_slice() {
        [only] if only.is_dir() && !only.is_symlink() => Ok(only.clone()),
        _ => Ok(into.to_path_buf()),
    }
}

/// The files of a wheel (a zip) whose names end with one of `suffixes`, as (suffix, bytes).
pub(super) fn wheel_files(wheel: &Path, suffixes: &[&str]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(wheel)?).map_err(std::io::Error::other)?;
    let mut found = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(std::io::Error::other)?;
        let name = entry.name().to_string();
        if let Some(suffix) = suffixes.iter().find(|s| name.ends_with(*s)) {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            found.push((suffix.to_string(), bytes));
        }
    }
    Ok(found)
}

/// Makes everything under `dir` readable by everyone, and executable where its owner could execute
/// it: workspaces see the store as an unmapped user (`nobody`), through the "other" bits.
pub(super) fn open_up(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        for entry in std::fs::read_dir(dir)? {
            open_up(&entry?.path())?;
        }
    } else {
        let mode = if meta.permissions().mode() & 0o100 != 0 { 0o755 } else { 0o644 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_and_corepack_hashes() {
        let hashes = Hashes::of(b"hello");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&hashes.sha512);
        assert_eq!(Expected::Integrity(format!("sha512-{b64}")).check(&hashes), Ok(true));
        assert_eq!(Expected::Integrity(format!("sha1-abc sha512-{b64}")).check(&hashes), Ok(true));
        assert_eq!(Expected::Integrity("sha512-AAAA".into()).check(&hashes), Ok(false));
        assert!(Expected::Integrity("sha1-abc".into()).check(&hashes).is_err());
        let sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(Expected::Sha256(sha256.to_uppercase()).check(&hashes), Ok(true));
        assert_eq!(hashes.matches_corepack(&format!("sha256.{sha256}")), Some(true));
        assert_eq!(hashes.matches_corepack("sha512.00"), Some(false));
        assert_eq!(hashes.matches_corepack("sha1.00"), None);
    }

    #[test]
    fn unpacking_strips_the_top_directory_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tgz");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append_data(&mut header, "package/bin/tool.js", &b"x()"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let top = unpack_tar_gz(&archive, &dir.path().join("out")).unwrap();
        assert_eq!(top, dir.path().join("out/package"));
        open_up(&top).unwrap();
        let mode = std::fs::metadata(top.join("bin/tool.js")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by the workspace's unmapped user");

        // An entry pointing outside is skipped. (The builder itself refuses `..`, so write the
        // name into the header by hand.)
        let evil = dir.path().join("evil.tgz");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&evil).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..14].copy_from_slice(b"../escaped.txt");
        header.set_size(1);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        let _ = unpack_tar_gz(&evil, &dir.path().join("out2"));
        assert!(!dir.path().join("escaped.txt").exists());
    }
}
