//! `nexus ssh`: the designer's SSH key.

pub mod setup;
