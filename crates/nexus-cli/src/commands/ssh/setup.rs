//! `nexus ssh setup`: use the designer's SSH key (or make one), put it on GitHub, and register the
//! user and key with the Nexus server, which answers with the API token every other call uses.

use std::time::Duration;

use nexus_types::api::{RegisterRequest, RegisterResponse};

use crate::client::{base_url, Client};
use crate::commands::{load_config, save};
use crate::error::{Error, Result};
use crate::github::{AddKey, GithubClient, GithubEndpoints, GithubError};
use crate::keys::{self, KeyOutcome};
use crate::system::System;
use crate::ui::{Report, Ui};

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

impl Report for SshSetupOutcome {
    fn text(&self, ui: &Ui) {
        ui.info("Next: nexus workspace create <owner/repo>");
    }
}

fn hostname(sys: &dyn System) -> String {
    sys.run(&["hostname"], None)
        .ok()
        .map(|o| o.stdout.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this computer".into())
}

/// Generates the key if needed, puts it on GitHub, and registers user + key with the server.
pub async fn run(opts: &SshSetupOptions, ui: &Ui, sys: &dyn System) -> Result<SshSetupOutcome> {
    let mut loaded = load_config(ui)?;
    let saved_server = loaded.config.server_url();
    if let Some(server) = &opts.server {
        loaded.config.server = Some(server.clone());
    }
    let cfg = loaded.config.clone();
    let (Some(login), Some(token)) = (cfg.github.username.clone(), cfg.github.auth_token.clone()) else {
        return Err(Error::new("you are not signed in to GitHub yet", "run `nexus auth github` first"));
    };
    let server = cfg.server_url().ok_or_else(|| {
        Error::new(
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
        Error::new(
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
                return Err(Error::new(
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
    // A server that knows this login adds the key only for a caller holding that user's API token:
    // send NEXUS_TOKEN (a new machine, given a token from a signed-in one), else the token saved for
    // this server (never one saved for another server).
    let api_token = std::env::var("NEXUS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| cfg.api_token.clone().filter(|_| saved_server.as_deref() == Some(server.as_str())))
        .unwrap_or_default();
    let resp = match register_with_retries(&Client::new(&server, &api_token), &req).await {
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
async fn register_with_retries(client: &Client, req: &RegisterRequest) -> Result<RegisterResponse> {
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
