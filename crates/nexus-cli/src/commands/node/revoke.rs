//! `nexus node revoke <name>`: the node's credential stops working at once (its connection is
//! closed) and the name is never enrolled again.

use nexus_types::api::NodeRevoked;

use super::{operator_error, OperatorOptions};
use crate::error::Result;
use crate::ui::{Report, Ui};

impl Report for NodeRevoked {
    fn text(&self, ui: &Ui) {
        let connection = if self.was_connected { "; its connection was closed" } else { "" };
        ui.ok(&format!("node {} revoked{connection}", self.node_name));
        ui.info("its workspaces stay on it, unreachable; the name cannot enrol again (enrol the machine under a new `--name`)");
    }
}

/// Revokes node `name` (operator only).
pub async fn run(opts: &OperatorOptions, name: &str) -> Result<NodeRevoked> {
    opts.client()?.revoke_node(name).await.map_err(operator_error)
}
