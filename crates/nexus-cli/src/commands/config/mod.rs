//! `nexus config`: the project's `.nexus/config.yaml`.

pub mod detect;
