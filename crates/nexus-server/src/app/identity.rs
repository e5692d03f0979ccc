//! Who is calling: API tokens, the operator token, the join token, and registering users.

use super::*;

impl App {
    // ---- identity -------------------------------------------------------------------------------

    /// Resolves a bearer token to a caller.
    pub(crate) async fn authenticate(&self, bearer: Option<&str>, source: Option<std::net::IpAddr>) -> Result<Caller> {
        let hint = "run `nexus ssh setup` to register and get a token, then send it as `Authorization: Bearer <token>`";
        let Some(token) = bearer else {
            return Err(ServerError::unauthorized("this endpoint needs an API token", hint));
        };
        if secret::same_secret(token, &self.operator_token) {
            return Ok(Caller::operator(source));
        }
        match self.store.user_by_token(&secret::hash_token(token)).await? {
            Some(u) => Ok(Caller::user(u, source)),
            None => Err(ServerError::unauthorized("the API token is not valid", hint)),
        }
    }

    pub(crate) fn is_join_token(&self, token: &str) -> bool {
        secret::same_secret(token, &self.join_token)
    }

    /// Registers (or re-registers) a user and issues a new API token.
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
        }
        let user_id =
            self.store.upsert_user(&req.github_username, req.github_id, &key.authorized_line, &key.fingerprint).await?;
        let api_token = secret::random_token("nxs_");
        self.store.add_token(user_id, &secret::hash_token(&api_token)).await?;
        let actor = if by_operator { "operator".to_string() } else { req.github_username.clone() };
        self.audit_as(actor, source, "user.register", &req.github_username, Some(key.fingerprint.clone())).await;
        Ok(RegisterResponse {
            github_username: req.github_username,
            ssh_pubkey_fingerprint: key.fingerprint,
            api_token,
        })
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
}
