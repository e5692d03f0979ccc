#!/usr/bin/env bash
# Stops local staging started by staging-up.sh (`nexus down`): the demo workspace is stopped with its
# disk kept, and the agent, server and git daemon exit; everything in .nexus-dev/ is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
nexus=target/release/nexus
[ -x "$nexus" ] || nexus=target/debug/nexus
as_root "$PWD/$nexus" down --dir "$PWD/.nexus-dev" --port "${NEXUS_PORT:-3001}"
