//! The user's own settings, `~/.nexus/config.yaml`: which server, who they are on GitHub, which SSH key and
//! editor to use.
//!
//! The file holds secrets (the server's API token and a GitHub token), so it is written atomically with
//! mode 0600 in a 0700 directory, and [`UserConfig::load`] reports when its permissions are too open.
//! Parsing is strict, like the project config: a typo is an error naming the file, line and column with
//! the nearest valid key, never a setting that is silently ignored.
//!
//! ```yaml
//! server: staging.example.com      # host, host:port or a URL; no default
//! server_port: 3001                # used when `server` names no port
//! api_token: nxt_...               # the coordination server's bearer token, from registration
//! github:
//!   username: alice
//!   auth_token: <token>
//!   host: github.com               # GitHub Enterprise host, or a full URL for a test server
//!   client_id: Iv1...              # OAuth app for the device flow (optional)
//! ssh:
//!   key_path: ~/.ssh/id_ed25519
//!   key_type: ed25519              # ed25519, ecdsa or rsa: used when Nexus generates the key
//! editor: cursor                   # cursor or code
//! forward_agent: false             # SSH agent forwarding into workspaces: opt-in, see below
//! ```

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Env var that points at a different config file (tests, several identities).
pub const CONFIG_ENV: &str = "NEXUS_CONFIG";
/// Where the config lives under `$HOME`.
pub const CONFIG_RELATIVE_PATH: &str = ".nexus/config.yaml";
/// The coordination server's REST port when the config names none.
pub const DEFAULT_SERVER_PORT: u16 = 3001;
/// GitHub's public host.
pub const DEFAULT_GITHUB_HOST: &str = "github.com";
/// The SSH key Nexus uses unless told otherwise.
pub const DEFAULT_KEY_PATH: &str = "~/.ssh/id_ed25519";

/// Mode of the config file: it holds tokens.
const FILE_MODE: u32 = 0o600;
/// Mode of `~/.nexus` when we create it.
const DIR_MODE: u32 = 0o700;

/// The whole `~/.nexus/config.yaml`. Every key is optional; a missing file means all defaults.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The coordination server: `host`, `host:port`, or `http(s)://host[:port]`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Port used when `server` names none. Default: 3001.
    #[serde(default = "default_server_port")]
    pub server_port: u16,
    /// The server's bearer token from registration. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    /// The user's GitHub identity.
    #[serde(default, deserialize_with = "nexus_project::mapping_or_empty")]
    pub github: GithubConfig,
    /// The user's SSH key.
    #[serde(default, deserialize_with = "nexus_project::mapping_or_empty")]
    pub ssh: SshConfig,
    /// Which editor to open. Default: none, meaning the caller picks whichever is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<Editor>,
    /// Forward the local SSH agent into workspaces. Default: false, because anyone with root in the
    /// workspace could then use the user's keys while they are connected.
    #[serde(default)]
    pub forward_agent: bool,
}

/// The `github:` section.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// GitHub login. Default: none (learned at sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// OAuth or personal access token. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// `github.com`, a GitHub Enterprise host, or a full `http://ip:port` URL of a test server.
    /// Default: `github.com` (and then not written to the file).
    #[serde(default = "default_github_host", skip_serializing_if = "is_default_github_host")]
    pub host: String,
    /// OAuth app client id for the device flow. Default: none (the server's is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The `ssh:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Private key file; `~` is expanded. Default: `~/.ssh/id_ed25519`.
    #[serde(default = "default_key_path")]
    pub key_path: String,
    /// Type of key to generate when `key_path` does not exist. Default: ed25519.
    #[serde(default)]
    pub key_type: KeyType,
}

/// SSH key types Nexus can generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Short, fast, the default everywhere (and what GitHub recommends).
    #[default]
    Ed25519,
    /// NIST P-256.
    Ecdsa,
    /// RSA 4096, for servers that still need it.
    Rsa,
}

impl KeyType {
    /// The arguments that make `ssh-keygen` generate this type.
    pub fn keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::Ecdsa => &["-t", "ecdsa", "-b", "256"],
            KeyType::Rsa => &["-t", "rsa", "-b", "4096"],
        }
    }
}

/// Editors Nexus can open a workspace in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Editor {
    /// Cursor (ships its own Remote-SSH).
    Cursor,
    /// Visual Studio Code; `vscode` is accepted too.
    #[serde(alias = "vscode")]
    Code,
}

impl Editor {
    /// The editor's command-line program.
    pub fn program(self) -> &'static str {
        match self {
            Editor::Cursor => "cursor",
            Editor::Code => "code",
        }
    }

    /// The scheme of the editor's `<scheme>://vscode-remote/...` URLs.
    pub fn url_scheme(self) -> &'static str {
        match self {
            Editor::Cursor => "cursor",
            Editor::Code => "vscode",
        }
    }
}

fn default_server_port() -> u16 {
    DEFAULT_SERVER_PORT
}

fn default_github_host() -> String {
    DEFAULT_GITHUB_HOST.to_string()
}

fn is_default_github_host(host: &str) -> bool {
    host == DEFAULT_GITHUB_HOST
}

fn default_key_path() -> String {
    DEFAULT_KEY_PATH.to_string()
}

impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            server: None,
            server_port: DEFAULT_SERVER_PORT,
            api_token: None,
            github: GithubConfig::default(),
            ssh: SshConfig::default(),
            editor: None,
            forward_agent: false,
        }
    }
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig { username: None, auth_token: None, host: default_github_host(), client_id: None }
    }
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig { key_path: default_key_path(), key_type: KeyType::default() }
    }
}

/// Shows whether a secret is set without showing it, so a `{:?}` in a log cannot leak a token.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(<redacted>)" } else { "None" })
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("server", &self.server)
            .field("server_port", &self.server_port)
            .field("api_token", &Redacted(&self.api_token))
            .field("github", &self.github)
            .field("ssh", &self.ssh)
            .field("editor", &self.editor)
            .field("forward_agent", &self.forward_agent)
            .finish()
    }
}

impl fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubConfig")
            .field("username", &self.username)
            .field("auth_token", &Redacted(&self.auth_token))
            .field("host", &self.host)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// Reading or writing the user config failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid YAML, has an unknown key, or a value of the wrong kind.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
        /// What to write instead.
        hint: String,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file or its directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `$HOME` is not set, so neither the config nor `~` in a path can be found.
    #[error("cannot find your home directory: HOME is not set")]
    NoHome,
}

impl ConfigError {
    /// The next step for the user.
    pub fn hint(&self) -> String {
        match self {
            ConfigError::Invalid { hint, .. } => hint.clone(),
            ConfigError::Read { path, source } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                format!("check the file's owner and mode with `ls -l {}`", path.display())
            }
            ConfigError::Read { path, .. } => format!("check that `{}` is a readable file", path.display()),
            ConfigError::Write { path, .. } => {
                format!("check that you own `{}` and the disk is not full", path.display())
            }
            ConfigError::NoHome => format!("set HOME, or point {CONFIG_ENV} at the config file"),
        }
    }
}

/// What [`UserConfig::load`] found.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings (all defaults when the file does not exist).
    pub config: UserConfig,
    /// The file they came from, or would be saved to.
    pub path: PathBuf,
    /// Whether the file exists.
    pub exists: bool,
    /// The file can be read or written by group or others, so its tokens are exposed: warn the user.
    pub too_open: bool,
}

impl Loaded {
    /// The warning and hint to show when [`Loaded::too_open`] is set.
    pub fn permission_warning(&self) -> Option<(String, String)> {
        self.too_open.then(|| {
            (
                format!("{} holds your tokens but other users on this computer can read it", self.path.display()),
                format!("run `chmod 600 {}`", self.path.display()),
            )
        })
    }
}

impl UserConfig {
    /// `$NEXUS_CONFIG` if set, else `$HOME/.nexus/config.yaml`.
    pub fn path() -> Result<PathBuf, ConfigError> {
        Self::path_from(&|name| std::env::var(name).ok())
    }

    /// [`UserConfig::path`] with the environment passed in.
    pub fn path_from(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
        if let Some(path) = env(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let home = env("HOME").filter(|h| !h.is_empty()).ok_or(ConfigError::NoHome)?;
        Ok(Path::new(&home).join(CONFIG_RELATIVE_PATH))
    }

    /// Reads the config from [`UserConfig::path`].
    pub fn load() -> Result<Loaded, ConfigError> {
        Self::load_from(&Self::path()?)
    }

    /// Reads the config at `path`; a missing file gives the defaults.
    pub fn load_from(path: &Path) -> Result<Loaded, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    config: UserConfig::default(),
                    path: path.to_path_buf(),
                    exists: false,
                    too_open: false,
                })
            }
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        let config = Self::parse(&text, path)?;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(FILE_MODE);
        Ok(Loaded { config, path: path.to_path_buf(), exists: true, too_open: mode & 0o077 != 0 })
    }

    /// Parses config text; `file` only names the file in errors.
    pub fn parse(text: &str, file: &Path) -> Result<UserConfig, ConfigError> {
        // An empty file, or one with only comments, is a valid config with every default.
        let is_empty = text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if is_empty {
            return Ok(UserConfig::default());
        }
        let config: UserConfig = nexus_project::parse_yaml(text, &KEY_HINTS).map_err(|p| ConfigError::Invalid {
            file: file.to_path_buf(),
            line: p.line,
            column: p.column,
            message: p.message,
            hint: p.hint,
        })?;
        config.validate(text, file)?;
        Ok(config)
    }

    /// Checks what serde's types cannot express.
    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String, hint: &str| {
            let (line, column) = find_key(text, key);
            ConfigError::Invalid { file: file.to_path_buf(), line, column, message, hint: hint.to_string() }
        };
        if self.server_port == 0 {
            return Err(invalid("server_port", "server_port: 0 is not a port".into(), "use a number from 1 to 65535"));
        }
        if let Some(server) = &self.server {
            let scheme_ok = match server.split_once("://") {
                Some((scheme, _)) => scheme == "http" || scheme == "https",
                None => true,
            };
            if server.trim().is_empty() || server.chars().any(char::is_whitespace) || !scheme_ok {
                return Err(invalid(
                    "server",
                    format!("server: {server:?} is not a host name or http(s) URL"),
                    "write the server's host, e.g. `server: staging.example.com` or `server: https://nexus.example.com`",
                ));
            }
        }
        if self.github.host.trim().is_empty() || self.github.host.chars().any(char::is_whitespace) {
            return Err(invalid(
                "github",
                format!("github.host: {:?} is not a host name or URL", self.github.host),
                "remove it to use github.com, or write your GitHub Enterprise host, e.g. `host: github.example.com`",
            ));
        }
        if self.ssh.key_path.trim().is_empty() {
            return Err(invalid("ssh", "ssh.key_path is empty".into(), "remove it to use `~/.ssh/id_ed25519`"));
        }
        Ok(())
    }

    /// The file's text, as [`UserConfig::save`] writes it.
    pub fn to_yaml(&self) -> String {
        let body = serde_saphyr::to_string(self).expect("the config is always representable as YAML");
        format!("# Nexus settings for this computer. `nexus` rewrites this file, so comments are not kept.\n{body}")
    }

    /// Writes the config to [`UserConfig::path`], returning where.
    pub fn save(&self) -> Result<PathBuf, ConfigError> {
        let path = Self::path()?;
        self.save_to(&path)?;
        Ok(path)
    }

    /// Writes the config to `path` atomically (a temp file renamed over it), mode 0600 (or tighter, if the
    /// existing file is), creating the directory with mode 0700. Existing permissions are never loosened.
    pub fn save_to(&self, path: &Path) -> Result<(), ConfigError> {
        // A config managed by a dotfiles repo is a symlink: replace its target, not the link.
        let path = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            _ => path.to_path_buf(),
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(&dir).map_err(|e| write_error(&dir, e))?;
        }
        let mode = match std::fs::metadata(&path) {
            Ok(m) => m.permissions().mode() & FILE_MODE,
            Err(_) => FILE_MODE,
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config.yaml".into());
        // Unique per process and per call, so two saves at once never share a temp file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
            // The umask only removes bits, but set the mode exactly anyway: it is the point of this function.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(self.to_yaml().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_error(&path, e));
        }
        // Make the rename itself durable; not all file systems support syncing a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The server's base URL: `http://server:port`, keeping a scheme or port `server` already has.
    /// `None` when no server is configured.
    pub fn server_url(&self) -> Option<String> {
        let server = self.server.as_deref()?.trim().trim_end_matches('/');
        if server.is_empty() {
            return None;
        }
        let (scheme, rest) = server.split_once("://").unwrap_or(("http", server));
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        // `[::1]:3001` has a port; `[::1]` and `::1`-style bare IPv6 do not get confused with one.
        let has_port = match authority.rfind(':') {
            Some(i) => {
                let port = &authority[i + 1..];
                !port.is_empty()
                    && port.chars().all(|c| c.is_ascii_digit())
                    && (!authority.starts_with('[') || authority[..i].ends_with(']'))
                    && (authority.starts_with('[') || authority[..i].find(':').is_none())
            }
            None => false,
        };
        let default_for_scheme = matches!((scheme, self.server_port), ("http", 80) | ("https", 443));
        let port = if has_port || default_for_scheme { String::new() } else { format!(":{}", self.server_port) };
        Some(format!("{scheme}://{authority}{port}{path}"))
    }

    /// `ssh.key_path` with `~` expanded from `$HOME`.
    pub fn key_path(&self) -> Result<PathBuf, ConfigError> {
        let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
        expand_home(&self.ssh.key_path, home.as_deref().map(Path::new))
    }
}

/// A [`ConfigError::Write`] for `path`.
fn write_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Write { path: path.to_path_buf(), source }
}

/// Expands a leading `~` or `~/` to `home`; other paths are returned unchanged. (`~user` is not
/// supported: it is kept as written.)
pub fn expand_home(path: &str, home: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if path == "~" {
        return home.map(Path::to_path_buf).ok_or(ConfigError::NoHome);
    }
    match path.strip_prefix("~/") {
        Some(rest) => Ok(home.ok_or(ConfigError::NoHome)?.join(rest)),
        None => Ok(PathBuf::from(path)),
    }
}

/// The keys at the top of the file, for the hint when it is not a mapping.
const ROOT_KEYS: &[&str] = &["server", "server_port", "api_token", "github", "ssh", "editor", "forward_agent"];

/// Names people bring from other tools (`~/.ssh/config`, gh, env vars), mapped to ours.
const ALIASES: &[(&str, &str)] = &[
    ("host", "server"),
    ("url", "server"),
    ("server_url", "server"),
    ("port", "server_port"),
    ("token", "api_token"),
    ("nexus_token", "api_token"),
    ("user", "username"),
    ("login", "username"),
    ("oauth_token", "auth_token"),
    ("key", "key_path"),
    ("identity_file", "key_path"),
    ("identityfile", "key_path"),
    ("type", "key_type"),
    ("forwardagent", "forward_agent"),
    ("agent_forwarding", "forward_agent"),
    ("ide", "editor"),
];

/// The words for this file's errors; the wording itself is shared with `.nexus/config.yaml`'s.
const KEY_HINTS: nexus_project::KeyHints =
    nexus_project::KeyHints { aliases: ALIASES, type_names: &[("u16", "a port number")], allowed: hint_for };

/// What a key holds, for type errors.
fn hint_for(path: &str) -> String {
    let last = path.rsplit('.').next().unwrap_or_default();
    match last {
        "" => format!("the file must be a mapping with any of: {}", ROOT_KEYS.join(", ")),
        "server" => "write the server's host, e.g. `server: staging.example.com`".into(),
        "server_port" => "use a number from 1 to 65535, e.g. `server_port: 3001`".into(),
        "github" => "a mapping with username, auth_token, host, client_id".into(),
        "ssh" => "a mapping with key_path and key_type".into(),
        "key_type" => "one of ed25519, ecdsa, rsa".into(),
        "editor" => "one of cursor, code".into(),
        "forward_agent" => "write `forward_agent: true` or `forward_agent: false`".into(),
        key => format!("write {key} as text; quote it if it starts with a special character"),
    }
}

/// Line and column of top-level `key:` in `text`, or (1, 1).
fn find_key(text: &str, key: &str) -> (usize, usize) {
    text.lines()
        .position(|l| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')))
        .map(|i| (i + 1, 1))
        .unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "server: staging.example.com
server_port: 3001
github:
  username: alice
  auth_token: <token>
ssh:
  key_path: ~/.ssh/id_ed25519
  key_type: ed25519
editor: cursor
";

    fn parse(text: &str) -> Result<UserConfig, ConfigError> {
        UserConfig::parse(text, Path::new("/home/alice/.nexus/config.yaml"))
    }

    /// (line, column, message, hint) of a rejected config.
    fn rejected(text: &str) -> (usize, usize, String, String) {
        let e = parse(text).expect_err("should be rejected");
        let shown = e.to_string();
        let hint = e.hint();
        let ConfigError::Invalid { line, column, message, .. } = e else { panic!("unexpected {e:?}") };
        assert_eq!(shown, format!("/home/alice/.nexus/config.yaml:{line}:{column}: {message}"));
        (line, column, message, hint)
    }

    #[test]
    fn the_spec_example_round_trips() {
        let config = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(config.server.as_deref(), Some("staging.example.com"));
        assert_eq!(config.server_port, 3001);
        assert_eq!(config.github.username.as_deref(), Some("alice"));
        assert_eq!(config.github.auth_token.as_deref(), Some("<token>"));
        assert_eq!(config.github.host, "github.com");
        assert_eq!(config.ssh.key_path, "~/.ssh/id_ed25519");
        assert_eq!(config.ssh.key_type, KeyType::Ed25519);
        assert_eq!(config.editor, Some(Editor::Cursor));
        assert!(!config.forward_agent);

        let written = config.to_yaml();
        assert_eq!(parse(&written).unwrap(), config);
        // Our additions at their defaults add only `forward_agent`; the spec's keys keep their shape.
        let body: String = written.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        assert_eq!(body, format!("{SPEC_EXAMPLE}forward_agent: false\n"));
    }

    #[test]
    fn our_additions_parse_and_round_trip() {
        let text = "server: https://nexus.example.com\napi_token: nxt_abc\ngithub:\n  host: http://127.0.0.1:9000\n  client_id: Iv1.x\nforward_agent: true\neditor: vscode\n";
        let config = parse(text).unwrap();
        assert_eq!(config.api_token.as_deref(), Some("nxt_abc"));
        assert_eq!(config.github.host, "http://127.0.0.1:9000");
        assert_eq!(config.github.client_id.as_deref(), Some("Iv1.x"));
        assert!(config.forward_agent);
        assert_eq!(config.editor, Some(Editor::Code));
        assert_eq!(parse(&config.to_yaml()).unwrap(), config);
    }

    #[test]
    fn missing_empty_and_comment_only_files_give_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = UserConfig::load_from(&dir.path().join("nope.yaml")).unwrap();
        assert!(!loaded.exists && !loaded.too_open);
        assert_eq!(loaded.config, UserConfig::default());
        let d = UserConfig::default();
        assert_eq!((d.server.as_deref(), d.server_port, d.github.host.as_str()), (None, 3001, "github.com"));
        assert_eq!(
            (d.ssh.key_path.as_str(), d.ssh.key_type, d.editor, d.forward_agent),
            ("~/.ssh/id_ed25519", KeyType::Ed25519, None, false)
        );
        assert_eq!(parse("").unwrap(), d);
        assert_eq!(parse("# nothing yet\n\n").unwrap(), d);
        assert_eq!(parse("github: {}\n").unwrap(), d);
        // A section written but not filled in yet.
        assert_eq!(parse("github:\nssh:\n").unwrap(), d);
    }

    #[test]
    fn bad_yaml_points_at_line_and_column() {
        let (line, column, message, hint) = rejected("server: a\ngithub:\n  username: alice\n token: x\n");
        assert_eq!((line, column), (4, 2), "{message}");
        assert!(message.starts_with("invalid YAML: "), "{message}");
        assert!(hint.contains("indentation"), "{hint}");

        let (line, _, message, hint) = rejected("server_port: lots\n");
        assert_eq!(line, 1);
        assert_eq!(message, "server_port: expected a port number, found string \"lots\"");
        assert_eq!(hint, "use a number from 1 to 65535, e.g. `server_port: 3001`");

        let (line, _, message, _) = rejected("server: a\nforward_agent: yes please\n");
        assert_eq!(line, 2);
        assert!(message.starts_with("forward_agent: expected true or false"), "{message}");

        let (line, _, _, hint) = rejected("github:\n\tusername: alice\n");
        assert_eq!((line, hint.as_str()), (2, "indent with spaces; YAML does not allow tabs"));

        let (line, column, message, hint) = rejected("server: a\nserver: b\n");
        assert_eq!((line, column), (2, 1));
        assert_eq!((message.as_str(), hint.as_str()), ("key \"server\" is given twice", "keep only one of them"));
        let (line, column, message, _) = rejected("github:\n  username: a\n  host: h\n  username: b\n");
        assert_eq!((line, column, message.as_str()), (4, 3, "github: key \"username\" is given twice"));

        let (line, column, message, _) = rejected("server: a\nserver_port: 0\n");
        assert_eq!((line, column, message.as_str()), (2, 1, "server_port: 0 is not a port"));
    }

    #[test]
    fn unknown_keys_name_the_key_its_line_and_the_nearest_valid_one() {
        let (line, column, message, hint) = rejected("server: a\nsever_port: 3001\n");
        assert_eq!((line, column), (2, 1));
        assert_eq!(message, "unknown key \"sever_port\"");
        assert_eq!(hint, "did you mean \"server_port\"?");

        let (line, column, message, hint) = rejected("github:\n  username: alice\n  token: x\n");
        assert_eq!((line, column), (3, 3));
        assert_eq!(message, "unknown key \"token\" in github");
        assert_eq!(hint, "did you mean \"auth_token\"?");

        let (_, _, _, hint) = rejected("ssh:\n  IdentityFile: ~/.ssh/id_rsa\n");
        assert_eq!(hint, "did you mean \"key_path\"?");
        let (_, _, _, hint) = rejected("colour: blue\n");
        assert!(hint.starts_with("allowed keys here: server, server_port"), "{hint}");
        let (_, _, message, hint) = rejected("editor: cusor\n");
        assert_eq!((message.as_str(), hint.as_str()), ("editor: unknown value \"cusor\"", "did you mean \"cursor\"?"));
    }

    #[test]
    fn save_writes_0600_in_a_0700_dir_and_never_loosens() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".nexus/config.yaml");
        let mut config = UserConfig { api_token: Some("nxt_secret".into()), ..UserConfig::default() };
        config.save_to(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let loaded = UserConfig::load_from(&path).unwrap();
        assert!(loaded.exists && !loaded.too_open);
        assert_eq!(loaded.config, config);
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        // A tighter mode the user chose survives a save; a looser one is tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        config.forward_agent = true;
        config.save_to(&path).unwrap();
        assert_eq!(mode(&path), 0o400);
        assert!(UserConfig::load_from(&path).unwrap().config.forward_agent);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = UserConfig::load_from(&path).unwrap();
        assert!(loaded.too_open);
        assert!(loaded.permission_warning().unwrap().1.starts_with("run `chmod 600 "));
        config.save_to(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        // An existing directory keeps its mode.
        std::fs::set_permissions(path.parent().unwrap(), std::fs::Permissions::from_mode(0o750)).unwrap();
        config.save_to(&path).unwrap();
        assert_eq!(mode(path.parent().unwrap()), 0o750);
    }

    #[test]
    fn save_through_a_symlink_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dotfiles-nexus.yaml");
        let link = dir.path().join("config.yaml");
        std::fs::write(&target, "server: old\n").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        UserConfig { server: Some("new".into()), ..UserConfig::default() }.save_to(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(UserConfig::load_from(&target).unwrap().config.server.as_deref(), Some("new"));
    }

    #[test]
    fn path_comes_from_nexus_config_or_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let p = UserConfig::path_from(&env(&[("HOME", "/home/a"), ("NEXUS_CONFIG", "/tmp/c.yaml")])).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/c.yaml"));
        let p = UserConfig::path_from(&env(&[("HOME", "/home/a"), ("NEXUS_CONFIG", "")])).unwrap();
        assert_eq!(p, PathBuf::from("/home/a/.nexus/config.yaml"));
        assert!(matches!(UserConfig::path_from(&env(&[])), Err(ConfigError::NoHome)));
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = Some(Path::new("/home/alice"));
        assert_eq!(expand_home("~/.ssh/id_ed25519", home).unwrap(), PathBuf::from("/home/alice/.ssh/id_ed25519"));
        assert_eq!(expand_home("~", home).unwrap(), PathBuf::from("/home/alice"));
        assert_eq!(expand_home("/keys/id", home).unwrap(), PathBuf::from("/keys/id"));
        assert_eq!(expand_home("~bob/id", home).unwrap(), PathBuf::from("~bob/id"));
        assert!(matches!(expand_home("~/x", None), Err(ConfigError::NoHome)));
        assert!(ConfigError::NoHome.hint().contains("NEXUS_CONFIG"));
    }

    #[test]
    fn server_urls() {
        let url = |server: &str, port: u16| {
            UserConfig { server: Some(server.into()), server_port: port, ..UserConfig::default() }.server_url()
        };
        assert_eq!(url("staging.example.com", 3001).as_deref(), Some("http://staging.example.com:3001"));
        assert_eq!(url("10.0.0.5", 8080).as_deref(), Some("http://10.0.0.5:8080"));
        assert_eq!(url("10.0.0.5:4000", 3001).as_deref(), Some("http://10.0.0.5:4000"));
        assert_eq!(url("https://nexus.example.com/", 3001).as_deref(), Some("https://nexus.example.com:3001"));
        assert_eq!(url("https://nexus.example.com", 443).as_deref(), Some("https://nexus.example.com"));
        assert_eq!(url("http://h:9/base", 3001).as_deref(), Some("http://h:9/base"));
        assert_eq!(url("https://h/base", 3001).as_deref(), Some("https://h:3001/base"));
        assert_eq!(url("[::1]", 3001).as_deref(), Some("http://[::1]:3001"));
        assert_eq!(url("[::1]:5000", 3001).as_deref(), Some("http://[::1]:5000"));
        assert_eq!(UserConfig::default().server_url(), None);
        assert_eq!(url("  ", 3001), None);
    }

    #[test]
    fn debug_output_hides_tokens() {
        let mut config = parse(SPEC_EXAMPLE).unwrap();
        config.api_token = Some("nxt_secret".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("nxt_secret") && !shown.contains("<token>"), "{shown}");
        assert!(shown.contains("staging.example.com"));
    }
}
