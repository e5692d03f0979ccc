//! `nexus auth github`: sign in to GitHub with the device flow in the browser, a token on stdin, or
//! the GitHub CLI's token, and save it (0600) in `~/.nexus/config.yaml`. A saved token that still
//! works is kept, so re-running the installer does not open the browser again.

use crate::client::Client;
use crate::commands::{load_config, save};
use crate::config::UserConfig;
use crate::error::{Error, Result};
use crate::github::{GithubClient, GithubEndpoints};
use crate::opener::Opener;
use crate::system::System;
use crate::ui::{Report, Ui};

/// Scopes Nexus asks for, the narrowest that work (docs/security/accounts.md): `repo` to fork,
/// clone private repos, push and open PRs; `write:public_key` to list and upload the SSH key (not
/// `admin:public_key`, which also deletes keys); `read:org` so `gh` works inside the workspace and
/// a server with `--allow-github-org` can see the membership.
const GITHUB_SCOPES: &str = "repo read:org write:public_key";

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

/// Who signed in: the answer of `nexus auth github`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedIn {
    /// GitHub login.
    pub github_username: String,
    /// GitHub numeric user id.
    pub github_id: i64,
}

impl Report for SignedIn {
    fn text(&self, ui: &Ui) {
        ui.info("Next: nexus ssh setup");
    }
}

/// Signs in to GitHub and saves the token (0600) in `~/.nexus/config.yaml`.
pub async fn run(opts: &AuthOptions, ui: &Ui, sys: &dyn System, opener: &dyn Opener) -> Result<SignedIn> {
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
                    return Ok(SignedIn { github_username: user.login, github_id: user.id });
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
    Ok(SignedIn { github_username: user.login, github_id: user.id })
}

async fn device_flow(
    endpoints: &GithubEndpoints,
    client_id: Option<&str>,
    ui: &Ui,
    opener: &dyn Opener,
) -> Result<String> {
    let client_id = client_id.ok_or_else(|| {
        Error::new(
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
