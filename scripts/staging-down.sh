#!/usr/bin/env bash
# Stops the local staging processes started by staging-up.sh; data in .nexus-dev/ is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
for p in agent server git; do
  f=.nexus-dev/$p.pid
  if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    kill "$(cat "$f")" && echo "stopped $p"
  fi
  rm -f "$f"
done
