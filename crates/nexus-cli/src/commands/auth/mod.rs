//! `nexus auth`: signing in to GitHub, checking the sign-in, and forgetting it.

pub mod github;
pub mod logout;
pub mod status;
