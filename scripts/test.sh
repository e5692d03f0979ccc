#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what the tests need, prepares
# this host as an LXD driver node (`nexus node init`), then runs lints, unit, integration and
# end-to-end tests (the e2e tests use real LXD containers and fail, never skip, without it).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/prereqs.sh

step "host packages"
install_prereqs

step "build"
cargo build --locked --bin nexus

step "prepare this host as a driver node (LXD, storage pool, bridge, base image)"
as_root env DEBIAN_FRONTEND=noninteractive ./target/debug/nexus node init

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

step "unit, integration and end-to-end tests"
cargo test --locked --workspace
