//! The host commands, one module per command (uv's layout): `nexus node init`, `nexus up` and
//! `nexus down`. Each returns a typed output that [`Ui::report`](nexus_cli::ui::Ui::report) prints.

pub mod down;
pub mod node;
pub mod up;
