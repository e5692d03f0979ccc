//! Node identity: join tokens only enrol; enrolment gives a node its own credential bound to its
//! name (the store keeps only the hash); the control connection and tunnels authenticate with it;
//! the operator lists and revokes nodes and join tokens.
//!
//! The server's `<data-dir>/join-token` file is the default join token, multi-use so `nexus up`
//! and the documented set-up keep working; the operator can revoke it (`nexus node token revoke
//! default`) and make others, optionally single-use.

use nexus_types::api::{
    CreateJoinTokenRequest, EnrolRequest, EnrolResponse, JoinTokenCreated, JoinTokenList, JoinTokenView, NodeRevoked,
};

use super::*;
use crate::store::nodes::{Enrolment, JoinTokenUse, NameRefusal};

/// The id the default join token (`<data-dir>/join-token`) has in lists and for `revoke`.
pub(crate) const DEFAULT_JOIN_TOKEN_ID: &str = "default";

/// Longest node name (a host name label has at most 63 characters).
const MAX_NODE_NAME: usize = 63;

/// Checks a node name: 1-63 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
fn node_name(name: &str) -> Result<()> {
    let hint =
        "name the node with 1-63 letters, digits, '.', '_' and '-' (`nexus agent --name`; the host name by default)";
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ServerError::bad_request("invalid_field", format!("node_name {name:?} is not a valid node name"), hint))
    }
}

/// Checks an LXD project name as the agent reports it: 1-63 of `A-Z a-z 0-9 _ -`.
fn lxd_project(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServerError::bad_request(
            "invalid_field",
            format!("lxd_project {name:?} is not a valid LXD project name"),
            "use the LXD project the agent runs with (`nexus agent --lxd-project`)",
        ))
    }
}

fn require_operator(caller: &Caller, what: &str) -> Result<()> {
    if caller.is_operator() {
        return Ok(());
    }
    Err(ServerError::Forbidden {
        message: format!("{what} needs the operator token"),
        hint: "run `nexus node ...` on the server host (it reads `<data-dir>/operator-token`) or pass \
               `--operator-token-file`"
            .into(),
    })
}

impl App {
    /// Enrols a node: `bearer` must be a valid join token; the name must not have a live
    /// credential. Returns the node's credential, shown this once.
    pub(crate) async fn enrol(
        &self,
        bearer: Option<&str>,
        source: Option<std::net::IpAddr>,
        req: EnrolRequest,
    ) -> Result<EnrolResponse> {
        node_name(&req.node_name)?;
        lxd_project(&req.lxd_project)?;
        let token = bearer.unwrap_or_default();
        let refused = |why: &str| {
            ServerError::unauthorized(
                format!("the join token {why}"),
                "ask the operator for a join token (`nexus node token create` on the server, or \
                 `<data-dir>/join-token`) and pass it with `nexus agent --join-token-file FILE`",
            )
        };
        if token.is_empty() {
            return Err(refused("is missing"));
        }
        let credential = secret::random_token("nxn_");
        let enrolment = self
            .store
            .enrol(
                &secret::hash_token(token),
                self.is_join_token(token),
                &req.node_name,
                &req.lxd_project,
                &secret::hash_token(&credential),
            )
            .await?;
        let via = match enrolment {
            Enrolment::Bound { by_default: true } => "the default join token",
            Enrolment::Bound { by_default: false } => "an operator-made join token",
            Enrolment::TokenRefused(JoinTokenUse::Revoked) => return Err(refused("was revoked")),
            Enrolment::TokenRefused(JoinTokenUse::Spent) => return Err(refused("was single-use and has been used")),
            Enrolment::TokenRefused(JoinTokenUse::Unknown) => return Err(refused("is not valid")),
            Enrolment::NameRefused(NameRefusal::Taken) => {
                return Err(ServerError::Conflict {
                    code: "node_enrolled",
                    message: format!("node {} is enrolled already", req.node_name),
                    hint: format!(
                        "an agent keeps its credential in `--state-dir`: if this is node {} reinstalled, copy \
                         its old `credential` file there; otherwise give this node another name (`--name`)",
                        req.node_name
                    ),
                })
            }
            Enrolment::NameRefused(NameRefusal::Revoked) => return Err(ServerError::Conflict {
                code: "node_revoked",
                message: format!("node {} was revoked by the operator", req.node_name),
                hint:
                    "a revoked name is never enrolled again; enrol this node under another name (`nexus agent --name`)"
                        .into(),
            }),
        };
        tracing::info!(node = %req.node_name, via, "node enrolled");
        self.audit_as(format!("node:{}", req.node_name), source, "node.enrol", &req.node_name, Some(via.into())).await;
        Ok(EnrolResponse { node_name: req.node_name, credential })
    }

    /// The node a credential belongs to; `None` for an unknown or revoked one (or a join token).
    pub(crate) async fn node_for_credential(&self, bearer: Option<&str>) -> Result<Option<String>> {
        match bearer {
            Some(token) if !token.is_empty() => self.store.node_by_credential(&secret::hash_token(token)).await,
            _ => Ok(None),
        }
    }

    /// Whether `node` has a live control connection (a second one is refused).
    pub(crate) fn node_is_connected(&self, node: &str) -> bool {
        self.hub.is_connected(node)
    }

    /// Whether tunnel `tunnel_id` was asked of `node`.
    pub(crate) fn tunnel_expected(&self, tunnel_id: &str, node: &str) -> bool {
        self.hub.expects_tunnel(tunnel_id, node)
    }

    /// Revokes a node's credential and closes its connection (operator only). The name is never
    /// enrolled again (whoever holds a join token must not get its workspaces back); its workspaces
    /// stay placed on it, unreachable.
    pub(crate) async fn revoke_node(&self, caller: &Caller, name: &str) -> Result<NodeRevoked> {
        require_operator(caller, "revoking a node")?;
        if !self.store.revoke_node(name).await? {
            return Err(ServerError::bad_request(
                "node_not_found",
                format!("there is no node named {name:?}"),
                "list the nodes with `nexus node list`",
            ));
        }
        let was_connected = self.hub.is_connected(name);
        self.hub.kick(name);
        tracing::warn!(node = name, was_connected, "node revoked");
        self.audit(caller, "node.revoke", name, None).await;
        Ok(NodeRevoked { node_name: name.to_string(), was_connected })
    }

    /// Makes a join token (operator only), shown this once.
    pub(crate) async fn create_join_token(
        &self,
        caller: &Caller,
        req: CreateJoinTokenRequest,
    ) -> Result<JoinTokenCreated> {
        require_operator(caller, "making a join token")?;
        let token = secret::random_token("nxj_");
        let id = format!("jt-{}", &secret::random_token("")[..12]);
        self.store.add_join_token(&id, &secret::hash_token(&token), req.single_use).await?;
        let detail = if req.single_use { "single-use" } else { "multi-use" };
        self.audit(caller, "node.token_create", &id, Some(detail.into())).await;
        Ok(JoinTokenCreated { id, token, single_use: req.single_use })
    }

    /// Every join token: the default one, then the operator's (operator only).
    pub(crate) async fn join_tokens(&self, caller: &Caller) -> Result<JoinTokenList> {
        require_operator(caller, "listing join tokens")?;
        let rows = self.store.list_join_tokens().await?;
        let default_hash = secret::hash_token(&self.join_token);
        // The default token has a row only once revoked, and only its current file's counts.
        let default_row = rows.iter().find(|r| r.id == DEFAULT_JOIN_TOKEN_ID);
        let default_revoked = default_row.filter(|r| r.token_hash == default_hash).and_then(|r| r.revoked_at.clone());
        let mut tokens = vec![JoinTokenView {
            id: DEFAULT_JOIN_TOKEN_ID.into(),
            single_use: false,
            created_at: None,
            used_at: None,
            used_by: None,
            revoked_at: default_revoked,
        }];
        tokens.extend(rows.into_iter().filter(|r| r.id != DEFAULT_JOIN_TOKEN_ID).map(|r| JoinTokenView {
            id: r.id,
            single_use: r.single_use,
            created_at: Some(r.created_at),
            used_at: r.used_at,
            used_by: r.used_by,
            revoked_at: r.revoked_at,
        }));
        Ok(JoinTokenList { tokens })
    }

    /// Revokes a join token (operator only); `default` is the server's `<data-dir>/join-token`.
    /// Enrolled nodes keep their credentials: a join token only ever enrols.
    pub(crate) async fn revoke_join_token(&self, caller: &Caller, id: &str) -> Result<JoinTokenView> {
        require_operator(caller, "revoking a join token")?;
        let default_hash = (id == DEFAULT_JOIN_TOKEN_ID).then(|| secret::hash_token(&self.join_token));
        if !self.store.revoke_join_token(id, default_hash.as_deref()).await? {
            return Err(ServerError::bad_request(
                "join_token_not_found",
                format!("there is no join token {id:?}"),
                "list them with `nexus node token list`",
            ));
        }
        self.audit(caller, "node.token_revoke", id, None).await;
        let list = self.join_tokens(caller).await?;
        Ok(list.tokens.into_iter().find(|t| t.id == id).expect("the token revoked is listed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_host_names() {
        for ok in ["n1", "node-a", "host.example.com", "A_1"] {
            assert!(node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-n", ".n", "a b", "a/b", "ü", &"a".repeat(64)] {
            assert!(node_name(bad).is_err(), "{bad:?}");
        }
    }
}
