//! Who is calling: API tokens (with expiry and revocation), the operator token, the join token,
//! registering users and adding keys to them, and the secrets sealed in the database.
//!
//! What registration proves (docs/security/accounts.md): a GitHub token shows that the caller can
//! act as a GitHub account *now*. That is enough to create the account (first registration, if the
//! operator's policy admits the user), but not to change an existing one: adding a key (or getting
//! a new API token) for a registered login also needs an API token that user already holds. The
//! operator token can do both.

use super::*;
use crate::github::OauthApp;
use nexus_types::api::LogoutResponse;

use crate::sealed::{git_token_context, OpenError};
use crate::store::unix_now;

const SETUP_HINT: &str =
    "run `nexus ssh setup` to register and get a token, then send it as `Authorization: Bearer <token>`";

impl App {
    // ---- identity -------------------------------------------------------------------------------

    /// Resolves a bearer token to a caller. Expired and revoked tokens are refused, each with
    /// what to do about it.
    pub(crate) async fn authenticate(&self, bearer: Option<&str>, source: Option<std::net::IpAddr>) -> Result<Caller> {
        let Some(token) = bearer else {
            return Err(ServerError::unauthorized("this endpoint needs an API token", SETUP_HINT));
        };
        if secret::same_secret(token, &self.operator_token) {
            return Ok(Caller::operator(source));
        }
        match self.store.token(&secret::hash_token(token)).await? {
            Some(t) if t.revoked => Err(ServerError::unauthorized(
                "the API token was revoked (`nexus auth logout`)",
                "run `nexus ssh setup` on a machine still signed in to this server to get a new token",
            )),
            Some(t) if t.expires_at <= unix_now() => Err(ServerError::unauthorized(
                "the API token has expired",
                "run `nexus ssh setup` again on this machine; it renews the token",
            )),
            Some(t) => Ok(Caller::user(t.user, source)),
            None => Err(ServerError::unauthorized("the API token is not valid", SETUP_HINT)),
        }
    }

    pub(crate) fn is_join_token(&self, token: &str) -> bool {
        secret::same_secret(token, &self.join_token)
    }

    /// Registers a user, or adds a key to one, and issues a new API token.
    ///
    /// - The operator token may register anyone and add keys to anyone.
    /// - Otherwise a GitHub token must prove the login and id (`GET /user`), have been issued to
    ///   this server's OAuth app when its secret is configured, and the user must pass the
    ///   operator's allow-list.
    /// - A login already registered also needs `bearer` to be an API token of that user (expired
    ///   is fine: it still shows this machine registered before; revoked is not). The key is then
    ///   added, never swapped in.
    pub(crate) async fn register(
        &self,
        bearer: Option<&str>,
        source: Option<std::net::IpAddr>,
        req: RegisterRequest,
    ) -> Result<RegisterResponse> {
        names::github_login(&req.github_username)?;
        let key = names::ssh_public_key(&req.ssh_pubkey)?;
        if let Some(fp) = &req.ssh_pubkey_fingerprint {
            if fp != &key.fingerprint {
                return Err(ServerError::bad_request(
                    "fingerprint_mismatch",
                    format!(
                        "ssh_pubkey_fingerprint {fp} does not match the key (its fingerprint is {})",
                        key.fingerprint
                    ),
                    "send the fingerprint `ssh-keygen -lf <key>.pub` prints, or leave the field out",
                ));
            }
        }
        let by_operator = bearer.is_some_and(|t| secret::same_secret(t, &self.operator_token));
        if !by_operator {
            self.prove_github_identity(&req).await?;
        }

        let by_login = self.store.user_by_login(&req.github_username).await?;
        if let Some(holder) = by_login.as_ref().filter(|u| u.github_id != req.github_id) {
            return Err(ServerError::Conflict {
                code: "login_taken",
                message: format!(
                    "the login {} is registered here to another GitHub account (id {}), not id {}",
                    holder.github_username, holder.github_id, req.github_id
                ),
                hint: "GitHub logins can change hands after a rename; ask the operator to remove or rename the old \
                       account on this server"
                    .into(),
            });
        }
        let existing = self.store.user_by_github_id(req.github_id).await?;
        let actor = if by_operator { "operator".to_string() } else { req.github_username.clone() };
        let user_id = match existing {
            None => {
                let id = self
                    .store
                    .create_user(&req.github_username, req.github_id, &key.authorized_line, &key.fingerprint)
                    .await?;
                self.audit_as(actor, source, "user.register", &req.github_username, Some(key.fingerprint.clone()))
                    .await;
                id
            }
            Some(user) => {
                if !by_operator {
                    self.require_own_token(&user, bearer).await?;
                }
                let added = self
                    .store
                    .add_user_key(user.id, &req.github_username, &key.authorized_line, &key.fingerprint)
                    .await?;
                let action = if added { "user.key_add" } else { "user.token_renew" };
                self.audit_as(actor, source, action, &req.github_username, Some(key.fingerprint.clone())).await;
                user.id
            }
        };
        let api_token = secret::random_token("nxs_");
        let ttl = i64::try_from(self.config.api_token_ttl.as_secs()).unwrap_or(i64::MAX);
        self.store.add_api_token(user_id, &secret::hash_token(&api_token), unix_now().saturating_add(ttl)).await?;
        Ok(RegisterResponse {
            github_username: req.github_username,
            ssh_pubkey_fingerprint: key.fingerprint,
            api_token,
        })
    }

    /// The GitHub token in the request belongs to the login and id it claims, was issued to this
    /// server's OAuth app (when its secret is configured), and the operator's policy admits the user.
    async fn prove_github_identity(&self, req: &RegisterRequest) -> Result<()> {
        let Some(gh_token) = req.github_token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(ServerError::unauthorized(
                "registration needs a GitHub token (github_token) to prove who you are",
                "run `nexus auth github` first, then `nexus ssh setup`",
            ));
        };
        let Some(gh) = self.github.user(gh_token).await? else {
            return Err(ServerError::unauthorized(
                "GitHub rejected the token (it is invalid, expired or revoked)",
                "run `nexus auth github` to sign in again",
            ));
        };
        if !gh.login.eq_ignore_ascii_case(&req.github_username) || gh.id != req.github_id {
            return Err(ServerError::unauthorized(
                format!(
                    "the GitHub token belongs to {} (id {}), not {} (id {})",
                    gh.login, gh.id, req.github_username, req.github_id
                ),
                "register as the account the token belongs to, or sign in to GitHub as the right user",
            ));
        }
        if let Some(app) = self.oauth_app() {
            if !self.github.issued_to_app(gh_token, &app).await? {
                return Err(ServerError::unauthorized(
                    format!("the GitHub token was not issued to this server's OAuth app ({})", app.client_id),
                    "sign in through this server with `nexus auth github` (a personal access token or another \
                     app's token is not accepted), then run `nexus ssh setup`",
                ));
            }
        }
        self.check_policy(gh_token, &gh.login).await
    }

    /// The OAuth app tokens must come from, when the operator gave its secret.
    fn oauth_app(&self) -> Option<OauthApp> {
        let client_id = self.config.github_client_id.clone()?;
        let secret = self.config.github_client_secret.clone()?;
        Some(OauthApp { client_id, client_secret: secret.0 })
    }

    /// The operator's allow-list: with no `--allow-github-user`/`--allow-github-org`, anyone.
    async fn check_policy(&self, gh_token: &str, login: &str) -> Result<()> {
        let (users, orgs) = (&self.config.allow_github_users, &self.config.allow_github_orgs);
        if users.is_empty() && orgs.is_empty() {
            return Ok(());
        }
        if users.iter().any(|u| u.eq_ignore_ascii_case(login)) {
            return Ok(());
        }
        for org in orgs {
            if self.github.is_org_member(gh_token, org).await? {
                return Ok(());
            }
        }
        let mut allowed: Vec<String> = orgs.iter().map(|o| format!("members of {o}")).collect();
        if !users.is_empty() {
            allowed.push(format!("the users {}", users.join(", ")));
        }
        Err(ServerError::Forbidden {
            message: format!("{login} may not register on this server (it admits {})", allowed.join(" and ")),
            hint: if orgs.is_empty() {
                "ask the operator to add you with `--allow-github-user`".into()
            } else {
                "if you are a member, run `nexus auth github` again and grant the `read:org` scope (and, if the \
                 organization restricts OAuth apps, ask an owner to approve this one); otherwise ask the operator"
                    .into()
            },
        })
    }

    /// `bearer` is an API token of `user` that was not revoked; it may have expired.
    async fn require_own_token(&self, user: &User, bearer: Option<&str>) -> Result<()> {
        let record = match bearer {
            Some(t) => self.store.token(&secret::hash_token(t)).await?,
            None => None,
        };
        if record.is_some_and(|r| r.user.id == user.id && !r.revoked) {
            return Ok(());
        }
        Err(ServerError::Conflict {
            code: "key_change_needs_token",
            message: format!(
                "{} is already registered; adding a key or signing in again needs an API token {} already holds",
                user.github_username, user.github_username
            ),
            hint: "run `nexus ssh setup` on a machine signed in to this server (it sends its API token); on a new \
                   machine run `NEXUS_TOKEN=<api_token of a signed-in machine> nexus ssh setup`; with no such machine \
                   left, ask the operator to register the key"
                .into(),
        })
    }

    /// Revokes the calling API token (`nexus auth logout`).
    pub(crate) async fn logout(&self, caller: &Caller, bearer: Option<&str>) -> Result<LogoutResponse> {
        let user = require_user(caller).map_err(|_| {
            ServerError::bad_request(
                "not_a_user_token",
                "the operator token cannot be revoked here",
                "replace the `operator-token` file in the data dir and restart the server to change it",
            )
        })?;
        let token = bearer.unwrap_or_default();
        let revoked = self.store.revoke_token(&secret::hash_token(token)).await?;
        self.audit(caller, "user.logout", &user.github_username, None).await;
        Ok(LogoutResponse { revoked })
    }

    /// The calling user.
    pub(crate) fn me(&self, caller: &Caller) -> Result<UserInfo> {
        let user = require_user(caller)?;
        Ok(UserInfo {
            github_username: user.github_username.clone(),
            github_id: user.github_id,
            ssh_pubkey_fingerprint: user.ssh_fingerprint.clone(),
        })
    }

    /// What the CLI needs to sign in to the GitHub this server trusts.
    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig {
            github_url: self.config.git_base_url.trim_end_matches('/').to_string(),
            github_api_url: self.config.github_api_url.trim_end_matches('/').to_string(),
            github_client_id: self.config.github_client_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// What the operator should know about the account settings, logged once at start.
    pub(crate) fn account_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.config.allow_github_users.is_empty() && self.config.allow_github_orgs.is_empty() {
            out.push("any GitHub user may register: no --allow-github-org or --allow-github-user is set".to_string());
        }
        if self.oauth_app().is_none() {
            out.push(
                "GitHub tokens are not checked against this server's OAuth app (no --github-client-id and \
                 --github-client-secret-file): a token any app obtained for a user registers as that user; \
                 acceptable for local staging only"
                    .to_string(),
            );
        }
        out
    }

    // ---- secrets at rest ------------------------------------------------------------------------

    /// A workspace's GitHub token, opened. `None` (and an error in the log) when it cannot be: the
    /// workspace then runs without it, and private clones fail with git's own message.
    pub(crate) fn open_git_token(&self, workspace_id: &str, stored: &str) -> Option<String> {
        match self.sealer.open(stored, &git_token_context(workspace_id)) {
            Ok(token) => Some(token),
            Err(e) => {
                tracing::error!(workspace = %workspace_id, problem = ?e,
                    "cannot open the workspace's sealed GitHub token; is the secrets key file the one it was sealed with?");
                None
            }
        }
    }

    /// Seals tokens an older server stored in clear, and reseals those under a retired key (after
    /// a rotation). Runs at start, before anything is served.
    pub(crate) async fn reseal_secrets(&self) -> Result<()> {
        // A copy for the store's blocking thread.
        let sealer = self.sealer.clone();
        let changed = self
            .store
            .reseal_git_tokens(move |id, stored| match sealer.reseal(stored, &git_token_context(id)) {
                Ok(new) => new,
                Err(OpenError::UnknownKey(key_id)) => {
                    tracing::error!(workspace = %id, key_id = %key_id,
                        "a GitHub token is sealed under a key the secrets key file does not hold; put that key back \
                         on a line below the current one");
                    None
                }
                Err(OpenError::Damaged) => {
                    tracing::error!(workspace = %id, "a sealed GitHub token does not open: damaged or moved");
                    None
                }
            })
            .await?;
        if changed > 0 {
            tracing::info!(changed, "sealed the GitHub tokens stored in clear or under a retired key");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewWorkspace;
    use crate::testing::{FakeGithub, FakeRepos};

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPn2PQTrpqfs8UlAOpzdW9++BQ2Bq0ZEqPQUacqj/Bl a@x";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyiBTpa4pk8TTXfcuRbznJ8N9+nfdr5slGEePzD1Pq b@x";

    fn app(data: &std::path::Path, github: FakeGithub) -> Arc<App> {
        let config = ServerConfig::new(data.to_path_buf());
        App::with_store(config, Store::in_memory().unwrap(), Box::new(github), Box::new(FakeRepos::default())).unwrap()
    }

    fn reg(login: &str, id: i64, key: &str, token: &str) -> RegisterRequest {
        RegisterRequest {
            github_username: login.into(),
            github_id: id,
            ssh_pubkey: key.into(),
            ssh_pubkey_fingerprint: None,
            github_token: Some(token.into()),
        }
    }

    /// The start-up step: a token an older server stored in clear is sealed, and still opens.
    #[tokio::test]
    async fn clear_tokens_from_an_older_server_are_sealed_at_start() {
        let data = tempfile::tempdir().unwrap();
        let app = app(data.path(), FakeGithub::default());
        let owner = app.store.create_user("alice", 1, "ssh-ed25519 A", "SHA256:a").await.unwrap();
        app.store.upsert_node("n1", "p").await.unwrap();
        let ws = NewWorkspace {
            id: "ws-old".into(),
            owner_id: owner,
            name: "old".into(),
            image: String::new(),
            cpu: 1,
            memory: "1GB".into(),
            repo_owner: "acme".into(),
            repo_name: "hello".into(),
            repo_url: "https://git.example/acme/hello.git".into(),
            branch: "main".into(),
            ssh_port: 2222,
            node: "n1".into(),
            plan: "{}".into(),
            git_token: Some("ghp_stored_in_clear".into()),
            upstream_url: None,
        };
        app.store.insert_workspace(ws).await.unwrap();
        app.reseal_secrets().await.unwrap();
        let row = app.store.workspace("ws-old").await.unwrap().unwrap();
        let stored = row.git_token.clone().unwrap();
        assert!(crate::sealed::Sealer::is_sealed(&stored) && !stored.contains("ghp_stored_in_clear"), "{stored}");
        assert_eq!(app.spec_of(&row).git_token.as_deref(), Some("ghp_stored_in_clear"));
        // Idempotent: a second start changes nothing.
        app.reseal_secrets().await.unwrap();
        assert_eq!(app.store.workspace("ws-old").await.unwrap().unwrap().git_token.unwrap(), stored);
    }

    /// Registration rules, without HTTP: the identity proof, adding keys, the 409s.
    #[tokio::test]
    async fn registering_again_needs_the_users_api_token_and_adds_the_key() {
        let data = tempfile::tempdir().unwrap();
        let github = FakeGithub::default();
        github.add_token("gho_a", "alice", 1);
        github.add_token("gho_a2", "alice", 1);
        github.add_token("gho_imposter", "alice", 2);
        let app = app(data.path(), github);
        let first = app.register(None, None, reg("alice", 1, KEY_A, "gho_a")).await.unwrap();
        let err = app.register(None, None, reg("alice", 1, KEY_B, "gho_a2")).await.unwrap_err();
        assert!(matches!(err, ServerError::Conflict { code: "key_change_needs_token", .. }), "{err:?}");
        let err = app.register(None, None, reg("alice", 2, KEY_B, "gho_imposter")).await.unwrap_err();
        assert!(matches!(err, ServerError::Conflict { code: "login_taken", .. }), "{err:?}");
        app.register(Some(&first.api_token), None, reg("alice", 1, KEY_B, "gho_a2")).await.unwrap();
        let user = app.store.user_by_github_id(1).await.unwrap().unwrap();
        assert_eq!(app.store.user_keys(user.id).await.unwrap().len(), 2);
        assert_eq!(user.ssh_pubkey, names::ssh_public_key(KEY_A).unwrap().authorized_line, "the first key stays");
    }
}
