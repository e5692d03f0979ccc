#!/usr/bin/env bash
# Local staging in one command: prepares this host as an LXD node, starts the coordination server,
# a node agent and a git server for the shipped demo project, registers a demo user and creates
# a demo workspace, then prints how to SSH in. State lives in .nexus-dev/ (kept by staging-down.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh

state=.nexus-dev
mkdir -p "$state"
port=${NEXUS_PORT:-3001}

step "host packages"
install_prereqs

step "build (release)"
cargo build --locked --release --bin nexus
nexus=$PWD/target/release/nexus

step "prepare this host as a driver node"
as_root env DEBIAN_FRONTEND=noninteractive "$nexus" node init

bridge_ip=$(lxc network get nexusbr0 ipv4.address | cut -d/ -f1)

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

step "demo repository (git daemon on $bridge_ip:9418)"
if [ ! -d "$state/git/demo/site.git" ]; then
  mkdir -p "$state/git/demo"
  git init -q --bare -b main "$state/git/demo/site.git"
  work=$(mktemp -d)
  cp -r examples/demo-site/. "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" -c user.name=Nexus -c user.email=demo@nexus.invalid commit -q -m "Demo site"
  git -C "$work" push -q "$PWD/$state/git/demo/site.git" main
  rm -rf "$work"
fi
if ! running git; then
  git daemon --reuseaddr --export-all --enable=receive-pack --base-path="$PWD/$state/git" \
    --listen="$bridge_ip" --port=9418 "$PWD/$state/git" >"$state/git.log" 2>&1 &
  echo $! >"$state/git.pid"
fi

step "coordination server on :$port"
if ! running server; then
  "$nexus" server --listen "0.0.0.0:$port" --data-dir "$state/server" --git-base-url "git://$bridge_ip:9418" \
    >"$state/server.log" 2>&1 &
  echo $! >"$state/server.pid"
fi
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "error: the server did not start; see $state/server.log" >&2; exit 1; }

step "node agent"
if ! running agent; then
  "$nexus" agent --server "http://127.0.0.1:$port" --join-token "$(cat "$state/server/join-token")" \
    --lxd-project nexus-staging --name "$(hostname)" >"$state/agent.log" 2>&1 &
  echo $! >"$state/agent.pid"
fi

step "demo user and workspace"
[ -f "$state/demo_key" ] || ssh-keygen -q -t ed25519 -N '' -C demo@nexus -f "$state/demo_key"
op=$(cat "$state/server/operator-token")
if [ ! -f "$state/demo_token" ]; then
  body=$(printf '{"github_username":"demo","github_id":1,"ssh_pubkey":"%s"}' "$(cat "$state/demo_key.pub")")
  curl -fsS -H "Authorization: Bearer $op" -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$port/api/v1/users/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_token"])' >"$state/demo_token"
fi
token=$(cat "$state/demo_token")
api() { curl -sS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }
# The agent needs a moment to join; create answers 503 no_nodes until then.
for _ in $(seq 100); do
  created=$(api -d '{"workspace_name":"demo","repo":"demo/site"}' "http://127.0.0.1:$port/api/v1/workspaces/create")
  echo "$created" | grep -q '"no_nodes"' || break
  sleep 0.2
done
id=$(echo "$created" | field '["workspace_id"]') || { echo "error: create failed: $created" >&2; exit 1; }
start=$(date +%s)
while :; do
  status=$(api "http://127.0.0.1:$port/api/v1/workspaces/$id/status")
  s=$(echo "$status" | field '["status"]')
  printf '\r⏳ workspace %s: %s (%ss)   ' "$id" "$s" "$(( $(date +%s) - start ))" >&2
  [ "$s" = running ] && break
  if [ "$s" = failed ]; then echo >&2; echo "error: $(echo "$status" | field '["message"]')" >&2; echo "hint: $(echo "$status" | field '["hint"]')" >&2; exit 1; fi
  sleep 0.3
done
echo >&2
ssh_port=$(echo "$status" | field '["ssh"]["port"]')
# Wait (briefly) for the detected services so the block below can list them.
for _ in $(seq 100); do
  status=$(api "http://127.0.0.1:$port/api/v1/workspaces/$id/status")
  echo "$status" | python3 -c 'import json,sys; s=json.load(sys.stdin)["services"]; sys.exit(0 if s and all(x["status"] in ("running","failed") for x in s) else 1)' && break
  sleep 0.3
done
services=$(echo "$status" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["services"]:
    line = "  - %s: %s (port %s in the workspace, %s)" % (s["name"], s["url"], s["port"], s["status"])
    print(line)')
cat <<TXT

✅ Workspace Ready
Server: 127.0.0.1:$port
SSH: ssh -i $state/demo_key -p $ssh_port dev@127.0.0.1
Repo: /home/dev/site (commit $(echo "$status" | field '["repo"]["commit"]' | cut -c1-12))
Services:
${services:-  (none)}
  Forward one to your machine: ssh -i $state/demo_key -p $ssh_port -L <url port>:localhost:<port> dev@127.0.0.1

Stop everything (data is kept): scripts/staging-down.sh
TXT
