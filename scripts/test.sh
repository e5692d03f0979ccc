#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what the tests need, prepares
# this host as an LXD driver node (`nexus node init`), then runs lints, unit, integration and
# end-to-end tests (the e2e tests use real LXD containers and fail, never skip, without it).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/prereqs.sh

step "host packages"
install_prereqs

step "GitHub's OpenAPI description (@octokit/openapi) for the GitHub contract tests"
NEXUS_GITHUB_OPENAPI=$(scripts/github-openapi.sh)
export NEXUS_GITHUB_OPENAPI

step "build"
cargo build --locked --bin nexus

step "prepare this host as a driver node (LXD, storage pool, bridge, base image)"
as_root env DEBIAN_FRONTEND=noninteractive ./target/debug/nexus node init

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

step "unit, integration and end-to-end tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Doc tests are left out: the crates have none, and an empty run would end the log with "0 passed".
cargo test --locked --workspace --lib --bins --tests 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
