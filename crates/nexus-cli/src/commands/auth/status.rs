//! `nexus auth status`: who you are signed in as, on GitHub and on the server.

use crate::client::Client;
use crate::commands::load_config;
use crate::error::Result;
use crate::github::{GithubClient, GithubEndpoints};
use crate::ui::{Report, Ui};

/// What `nexus auth status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthStatus {
    /// The GitHub signed in to: `github.com`, an Enterprise host, or a URL.
    pub github_host: String,
    /// Login, when signed in and the token works.
    pub github_user: Option<String>,
    /// Why the token does not work, if it doesn't.
    pub github_problem: Option<String>,
    /// Coordination server URL.
    pub server: Option<String>,
    /// Whether the server accepts the API token.
    pub registered: bool,
    /// Where the settings and tokens are saved.
    pub config_path: String,
}

/// Checks the saved GitHub token and server registration.
pub async fn run(ui: &Ui) -> Result<AuthStatus> {
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

impl Report for AuthStatus {
    fn text(&self, ui: &Ui) {
        ui.result(&match (&self.github_user, &self.github_problem) {
            (Some(u), _) => format!("GitHub ({}): signed in as {u}", self.github_host),
            (None, Some(p)) => format!("GitHub ({}): {p} (run `nexus auth github`)", self.github_host),
            (None, None) => format!("GitHub ({}): not signed in", self.github_host),
        });
        ui.result(&match &self.server {
            Some(s) if self.registered => format!("Server {s}: registered"),
            Some(s) => format!("Server {s}: not registered (run `nexus ssh setup`)"),
            None => "Server: none configured (run `nexus auth github --server <host>`)".to_string(),
        });
        ui.result(&format!("Config: {}", self.config_path));
    }
}
