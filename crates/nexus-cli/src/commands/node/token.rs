//! `nexus node token create | list | revoke`: join tokens, which only enrol nodes. `default` is the
//! server's `<data-dir>/join-token`; the operator's own can be single-use.

use nexus_types::api::{JoinTokenCreated, JoinTokenList, JoinTokenView};

use super::{operator_error, OperatorOptions};
use crate::error::Result;
use crate::ui::{Report, Ui};

impl Report for JoinTokenCreated {
    fn text(&self, ui: &Ui) {
        // The token alone on stdout, so `nexus node token create > token-file` works.
        ui.result(&self.token);
        let uses = if self.single_use { "enrols one node" } else { "enrols any number of nodes until revoked" };
        ui.info(&format!("join token {} ({uses}); shown once", self.id));
        ui.info(&format!(
            "on the node: save it to a file (mode 0600) and run `nexus agent --join-token-file FILE`; revoke it with `nexus node token revoke {}`",
            self.id
        ));
    }
}

impl Report for JoinTokenList {
    fn text(&self, ui: &Ui) {
        ui.result(&format!("{:16} {:10} {:21} {:21} {}", "ID", "USES", "LAST USED", "REVOKED", "LAST NODE"));
        for t in &self.tokens {
            ui.result(&line(t));
        }
    }
}

fn line(t: &JoinTokenView) -> String {
    format!(
        "{:16} {:10} {:21} {:21} {}",
        t.id,
        if t.single_use { "single" } else { "multi" },
        t.used_at.as_deref().unwrap_or("-"),
        t.revoked_at.as_deref().unwrap_or("-"),
        t.used_by.as_deref().unwrap_or("-")
    )
}

impl Report for JoinTokenView {
    fn text(&self, ui: &Ui) {
        ui.ok(&format!("join token {} revoked; enrolled nodes keep working", self.id));
        if self.id == "default" {
            ui.info("for a new default token, delete `<data-dir>/join-token` and restart the server");
        }
    }
}

/// Makes a join token (operator only).
pub async fn create(opts: &OperatorOptions, single_use: bool) -> Result<JoinTokenCreated> {
    opts.client()?.create_join_token(single_use).await.map_err(operator_error)
}

/// Lists the join tokens (operator only).
pub async fn list(opts: &OperatorOptions) -> Result<JoinTokenList> {
    opts.client()?.join_tokens().await.map_err(operator_error)
}

/// Revokes join token `id` (operator only).
pub async fn revoke(opts: &OperatorOptions, id: &str) -> Result<JoinTokenView> {
    opts.client()?.revoke_join_token(id).await.map_err(operator_error)
}
