#!/usr/bin/env bash
# Installs GitHub's official OpenAPI description (npm package `@octokit/openapi`, pinned) into
# `target/github-openapi/`, where `nexus_testkit::github_openapi` loads it to check that the GitHub
# stand-in and the CLI's GitHub client speak the real API. Idempotent: does nothing when the file is
# already there. Prints the path of the JSON file.
#
# To move to a newer description, change OCTOKIT_OPENAPI_VERSION and delete `target/github-openapi/`.
set -euo pipefail
cd "$(dirname "$0")/.."

OCTOKIT_OPENAPI_VERSION=23.0.2
prefix=target/github-openapi
json="$prefix/node_modules/@octokit/openapi/generated/api.github.com.json"
stamp="$prefix/version"

if [[ -f "$json" && "$(cat "$stamp" 2>/dev/null)" == "$OCTOKIT_OPENAPI_VERSION" ]]; then
    echo "$PWD/$json"
    exit 0
fi

if ! command -v npm >/dev/null; then
    echo "error: npm is needed to fetch @octokit/openapi" >&2
    echo "hint: install Node.js and npm (Debian: \`apt-get install npm\`), then run \`scripts/github-openapi.sh\` again" >&2
    exit 1
fi

mkdir -p "$prefix"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" \
    "@octokit/openapi@$OCTOKIT_OPENAPI_VERSION" >&2
if [[ ! -f "$json" ]]; then
    echo "error: npm installed @octokit/openapi@$OCTOKIT_OPENAPI_VERSION but $json is missing" >&2
    exit 1
fi
echo "$OCTOKIT_OPENAPI_VERSION" >"$stamp"
echo "$PWD/$json"
