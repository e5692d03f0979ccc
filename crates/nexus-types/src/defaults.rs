//! Defaults more than one role relies on, declared once: `nexus node init` prepares what the agent
//! and `nexus up` then use by these names.

/// The image alias workspaces launch from unless the agent is told otherwise; `nexus node init`
/// points it at the image it built or was given.
pub const BASE_IMAGE_ALIAS: &str = "nexus-base";

/// The LXD project an agent keeps its workspaces in unless told otherwise.
pub const LXD_PROJECT: &str = "nexus";

/// The port the coordination server's API listens on unless told otherwise.
pub const API_PORT: u16 = 3001;
