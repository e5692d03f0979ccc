//! The designer's account set-up: `nexus auth github` (device flow or a reused token),
//! `nexus auth status|logout`, and `nexus ssh setup` (key, GitHub upload, server registration).

use std::time::Duration;

use nexus_types::api::RegisterRequest;

use crate::client::{base_url, Client};
use crate::config::{Loaded, UserConfig};
use crate::error::Error;
use crate::github::{AddKey, GithubClient, GithubEndpoints, GithubError};
use crate::keys::{self, KeyOutcome};
use crate::opener::Opener;
use crate::system::System;
use crate::ui::Ui;

/// Scopes Nexus asks for: `repo` to fork, clone private repos and open PRs; `admin:public_key`
/// to upload the SSH key; `read:org` so `gh` works inside the workspace.
pub const GITHUB_SCOPES: &str = "repo read:org admin:public_key";

fn err(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::new(message, hint)
}

/// The user's config, or an error saying how to fix the file.
pub fn load_config(ui: &Ui) -> Result<Loaded, Error> {
    let loaded = UserConfig::load()?;
    if let Some((message, hint)) = loaded.permission_warning() {
        ui.warn(&format!("{message} ({hint})"));
    }
    Ok(loaded)
}

fn save(loaded: &Loaded) -> Result<(), Error> {
    Ok(loaded.config.save_to(&loaded.path)?)
}

/// `nexus auth github` options.
#[derive(Debug, Clone, Default)]
pub struct AuthOptions {
    /// Coordination server to remember (and to ask which GitHub to use).
    pub server: Option<String>,
    /// GitHub host (github.com, an Enterprise host, or a URL).
    pub github_host: Option<String>,
    /// OAuth client id for the device flow.
    pub client_id: Option<String>,
    /// A token given directly (`--with-token`), skipping the browser.
    pub token: Option<String>,
    /// Reuse `gh`'s token without asking.
    pub use_gh: bool,
    /// Sign in again even when the saved token still works.
    pub force: bool,
}

/// Where to sign in: flag, then config, then what the server says, then github.com.
async fn github_target(opts: &AuthOptions, cfg: &mut UserConfig, ui: &Ui) -> (GithubEndpoints, Option<String>) {
    let mut host = opts.github_host.clone();
    let mut client_id = opts.client_id.clone().or_else(|| cfg.github.client_id.clone());
    if let Some(server) = cfg.server_url() {
        match Client::new(&server, "").client_config().await {
            Ok(cc) => {
                if host.is_none() && cfg.github.host == crate::config::DEFAULT_GITHUB_HOST {
                    host = Some(github_host_of(&cc.github_url));
                }
                client_id = client_id.or(cc.github_client_id);
            }
            Err(e) => ui.warn(&format!("could not ask the server which GitHub to use ({}); using the config", e)),
        }
    }
    if let Some(h) = host {
        cfg.github.host = h;
    }
    (GithubEndpoints::for_host(&cfg.github.host), client_id)
}

/// `https://github.com` → `github.com`; other URLs stay URLs (test servers, Enterprise over http).
fn github_host_of(url: &str) -> String {
    match url.trim_end_matches('/').strip_prefix("https://") {
        Some(host) if !host.contains('/') => host.to_string(),
        _ => url.trim_end_matches('/').to_string(),
    }
}

/// `gh`'s token for `host`, if `gh` is installed and signed in there.
fn gh_token(sys: &dyn System, host: &str) -> Option<String> {
    if host.contains("://") {
        return None;
    }
    let out = sys.run(&["gh", "auth", "token", "--hostname", host], None).ok()?;
    let token = out.stdout.trim().to_string();
    (out.ok() && !token.is_empty()).then_some(token)
}

/// Signs in to GitHub and saves the token (0600) in `~/.nexus/config.yaml`.
pub async fn auth_github(
    opts: &AuthOptions,
    ui: &Ui,
    sys: &dyn System,
    opener: &dyn Opener,
) -> Result<(String, i64), Error> {
    let mut loaded = load_config(ui)?;
    if let Some(server) = &opts.server {
        loaded.config.server = Some(server.clone());
    }
    ui.section("🔐 GitHub Authentication");
    let (endpoints, client_id) = github_target(opts, &mut loaded.config, ui).await;

    // Re-running the installer (or this command) must not ask for the browser again.
    if opts.token.is_none() && !opts.force {
        if let (Some(login), Some(saved)) = (&loaded.config.github.username, &loaded.config.github.auth_token) {
            if let Ok(user) = GithubClient::new(endpoints.clone(), Some(saved.clone())).user().await {
                if user.login.eq_ignore_ascii_case(login) {
                    ui.ok(&format!("Authenticated as: {} (already signed in; `--force` signs in again)", user.login));
                    save(&loaded)?;
                    return Ok((user.login, user.id));
                }
            }
        }
    }
    let token = if let Some(t) = opts.token.clone() {
        t.trim().to_string()
    } else if let Some(t) = gh_token(sys, &loaded.config.github.host)
        .filter(|_| opts.use_gh || ui.confirm("The GitHub CLI (gh) is signed in here. Use its token for Nexus?", true))
    {
        ui.ok("Using the GitHub CLI's token");
        t
    } else {
        device_flow(&endpoints, client_id.as_deref(), ui, opener).await?
    };

    let step = ui.step("Checking the token with GitHub");
    let user = match GithubClient::new(endpoints.clone(), Some(token.clone())).user().await {
        Ok(u) => u,
        Err(e) => {
            step.fail("GitHub did not accept the token");
            return Err(e.into());
        }
    };
    step.ok(&format!("Authenticated as: {}", user.login));
    loaded.config.github.username = Some(user.login.clone());
    loaded.config.github.auth_token = Some(token);
    save(&loaded)?;
    ui.info(&format!("Saved to {} (readable only by you)", loaded.path.display()));
    Ok((user.login, user.id))
}

async fn device_flow(
    endpoints: &GithubEndpoints,
    client_id: Option<&str>,
    ui: &Ui,
    opener: &dyn Opener,
) -> Result<String, Error> {
    let client_id = client_id.ok_or_else(|| {
        err(
            "no GitHub OAuth app is configured for signing in with the browser",
            "ask the operator to start the server with `--github-client-id`, or sign in with a token: `gh auth token | nexus auth github --with-token`",
        )
    })?;
    let gh = GithubClient::new(endpoints.clone(), None);
    let code = gh.request_device_code(client_id, GITHUB_SCOPES).await?;
    ui.info(&format!("First copy your one-time code: {}", code.user_code));
    match opener.open_url(&code.verification_uri) {
        Ok(()) => ui.info(&format!("Opened {} in your browser; paste the code there", code.verification_uri)),
        Err(_) => ui.info(&format!("Open {} in your browser and paste the code", code.verification_uri)),
    }
    let step = ui.step("Waiting for you to approve Nexus on GitHub");
    match gh.poll_device_token(client_id, &code).await {
        Ok(token) => {
            step.ok("Approved");
            Ok(token)
        }
        Err(e) => {
            step.fail("Not approved");
            Err(e.into())
        }
    }
}

/// What `nexus auth status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthStatus {
    /// GitHub host.
    pub github_host: String,
    /// Login, when signed in and the token works.
    pub github_user: Option<String>,
    /// Why the token does not work, if it doesn't.
    pub github_problem: Option<String>,
    /// Coordination server URL.
    pub server: Option<String>,
    /// Whether the server accepts the API token.
    pub registered: bool,
    /// The config file.
    pub config_path: String,
}

/// Checks the saved GitHub token and server registration.
pub async fn auth_status(ui: &Ui) -> Result<AuthStatus, Error> {
    let loaded = load_config(ui)?;
    let cfg = &loaded.config;
    let mut status = AuthStatus {
        github_host: cfg.github.host.clone(),
        github_user: None,
        github_problem: None,
        server: cfg.server_url(),
        registered: false,
        config_path: loaded.path.display().to_string(),
    };
    match &cfg.github.auth_token {
        None => status.github_problem = Some("not signed in".into()),
        Some(t) => match GithubClient::new(GithubEndpoints::for_host(&cfg.github.host), Some(t.clone())).user().await {
            Ok(u) => status.github_user = Some(u.login),
            Err(e) => status.github_problem = Some(e.to_string()),
        },
    }
    if let (Some(server), Some(token)) = (&status.server, &cfg.api_token) {
        status.registered = Client::new(server, token).me().await.is_ok();
    }
    Ok(status)
}

/// Forgets the GitHub and server tokens (the rest of the config stays).
pub fn auth_logout(ui: &Ui) -> Result<bool, Error> {
    let mut loaded = load_config(ui)?;
    let had = loaded.config.github.auth_token.is_some() || loaded.config.api_token.is_some();
    loaded.config.github.auth_token = None;
    loaded.config.api_token = None;
    if loaded.exists {
        save(&loaded)?;
    }
    Ok(had)
}

/// `nexus ssh setup` options.
#[derive(Debug, Clone, Default)]
pub struct SshSetupOptions {
    /// Server to register with (else the config's).
    pub server: Option<String>,
}

/// What `nexus ssh setup` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SshSetupOutcome {
    /// Private key path.
    pub key_path: String,
    /// Whether the key was generated now.
    pub generated: bool,
    /// Whether it was uploaded now (false: GitHub had it already).
    pub uploaded: bool,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// The server registered with.
    pub server: String,
}

fn hostname(sys: &dyn System) -> String {
    sys.run(&["hostname"], None)
        .ok()
        .map(|o| o.stdout.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this computer".into())
}

/// Generates the key if needed, puts it on GitHub, and registers user + key with the server.
pub async fn ssh_setup(opts: &SshSetupOptions, ui: &Ui, sys: &dyn System) -> Result<SshSetupOutcome, Error> {
    let mut loaded = load_config(ui)?;
    if let Some(server) = &opts.server {
        loaded.config.server = Some(server.clone());
    }
    let cfg = loaded.config.clone();
    let (Some(login), Some(token)) = (cfg.github.username.clone(), cfg.github.auth_token.clone()) else {
        return Err(err("you are not signed in to GitHub yet", "run `nexus auth github` first"));
    };
    let server = cfg.server_url().ok_or_else(|| {
        err(
            "no Nexus server is configured",
            "run `nexus ssh setup --server <host>` (or set `server:` in ~/.nexus/config.yaml)",
        )
    })?;
    ui.section("🔑 SSH Key Setup");
    let key_path = cfg.key_path()?;
    let host = hostname(sys);
    let outcome = keys::ensure_key_of_type(sys, &key_path, &format!("nexus:{login}@{host}"), cfg.ssh.key_type)?;
    let public = outcome.key().clone();
    match &outcome {
        KeyOutcome::Generated(_) => ui.ok(&format!("SSH key generated ({})", key_path.display())),
        KeyOutcome::Existing(_) => ui.ok(&format!("Using your SSH key {}", key_path.display())),
    }

    let endpoints = GithubEndpoints::for_host(&cfg.github.host);
    let gh = GithubClient::new(endpoints.clone(), Some(token.clone()));
    let manual = |why: String| {
        err(
            format!("GitHub did not take the SSH key: {why}"),
            format!(
                "add it yourself at {}/settings/ssh/new (paste the line from {}.pub), then run `nexus ssh setup` again",
                endpoints.web.trim_end_matches('/'),
                key_path.display()
            ),
        )
    };
    let step = ui.step("Uploading the key to GitHub");
    let existing = match gh.list_keys().await {
        Ok(keys) => keys,
        Err(e @ GithubError::Unauthorized { .. }) => {
            step.fail("GitHub did not accept your sign-in");
            return Err(e.into());
        }
        Err(e) => {
            step.fail("Could not read your keys on GitHub");
            return Err(manual(e.to_string()));
        }
    };
    let already = existing.iter().any(|k| keys::PublicKey::parse(&k.key).is_ok_and(|k| k.same_key(&public)));
    let uploaded = if already {
        step.ok("Already on GitHub");
        false
    } else {
        match gh.add_key(&format!("nexus ({host})"), &public.authorized_line()).await {
            Ok(AddKey::Added(_)) => {
                step.ok("Uploaded to GitHub");
                true
            }
            Ok(AddKey::AlreadyInUse) => {
                step.fail("GitHub says this key belongs to another account");
                return Err(err(
                    "this SSH key is already registered to a different GitHub account",
                    format!(
                        "remove it from that account, or point `ssh.key_path` in ~/.nexus/config.yaml at a new key (for example ~/.ssh/nexus_{login}) and run `nexus ssh setup` again"
                    ),
                ));
            }
            Err(e @ GithubError::Unauthorized { .. }) => {
                step.fail("GitHub did not accept your sign-in");
                return Err(e.into());
            }
            Err(e) => {
                step.fail("Upload failed");
                return Err(manual(e.to_string()));
            }
        }
    };

    let user = gh.user().await?;
    let step = ui.step("Registering with the Nexus server");
    let req = RegisterRequest {
        github_username: user.login.clone(),
        github_id: user.id,
        ssh_pubkey: public.authorized_line(),
        ssh_pubkey_fingerprint: Some(public.fingerprint()),
        github_token: Some(token),
    };
    let resp = match register_with_retries(&Client::new(&server, ""), &req).await {
        Ok(r) => r,
        Err(e) => {
            step.fail("Registration failed");
            return Err(e);
        }
    };
    step.ok(&format!("Registered with {}", base_url(&server)));
    loaded.config.api_token = Some(resp.api_token);
    save(&loaded)?;
    Ok(SshSetupOutcome {
        key_path: key_path.display().to_string(),
        generated: outcome.generated(),
        uploaded,
        fingerprint: resp.ssh_pubkey_fingerprint,
        server,
    })
}

/// Registration retried on network errors and 5xx (a server restarting, a proxy blip).
async fn register_with_retries(
    client: &Client,
    req: &RegisterRequest,
) -> Result<nexus_types::api::RegisterResponse, Error> {
    let mut delay = Duration::from_millis(500);
    let mut last = None;
    for _ in 0..3 {
        match client.register(req).await {
            Ok(r) => return Ok(r),
            Err(e) if e.retryable() => {
                last = Some(e);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::FakeSystem;

    #[test]
    fn gh_token_is_offered_only_when_gh_is_signed_in_to_that_host() {
        let sys = FakeSystem::default().on("gh auth token --hostname github.com", 0, "gho_from_gh\n");
        assert_eq!(gh_token(&sys, "github.com").as_deref(), Some("gho_from_gh"));
        let sys = FakeSystem::default().on("gh auth token", 1, "");
        assert_eq!(gh_token(&sys, "github.com"), None);
        // A test server's URL is not a host gh knows.
        assert_eq!(gh_token(&FakeSystem::default(), "http://10.0.0.1:8080"), None);
    }

    #[test]
    fn github_host_from_the_servers_url() {
        assert_eq!(github_host_of("https://github.com"), "github.com");
        assert_eq!(github_host_of("https://ghe.example.com/"), "ghe.example.com");
        assert_eq!(github_host_of("http://10.87.0.1:4567"), "http://10.87.0.1:4567");
    }
}
