#!/usr/bin/env bash
# Local staging in one command on a fresh Debian/Ubuntu machine: installs the build prerequisites,
# builds nexus, then `nexus up` prepares this host as an LXD node and starts the coordination server,
# a node agent, a git server with the shipped demo project, a demo user and a demo workspace, ending
# with the "Workspace Ready" block (a working ssh command and the demo's service URL).
# State lives in .nexus-dev/ and is kept by scripts/staging-down.sh (= `nexus down`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

step "host packages"
install_prereqs

step "build (release)"
cargo build --locked --release --bin nexus

step "nexus up"
as_root env DEBIAN_FRONTEND=noninteractive "$PWD/target/release/nexus" up --dir "$PWD/.nexus-dev" --port "${NEXUS_PORT:-3001}"
