#!/usr/bin/env bash
# Installs the host packages building and running Nexus need (Debian/Ubuntu); sourced by the
# staging and test scripts so both start from the same fresh-machine assumptions.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '\n==> %s\n' "$*" >&2; }

install_prereqs() {
  # systemd: `systemd-analyze verify` checks the units `nexus node service install` writes.
  local pkgs=(git openssh-client openssh-server curl ca-certificates gcc pkg-config python3 systemd)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # npm fetches GitHub's OpenAPI description for the GitHub contract tests.
  if ! command -v npm >/dev/null; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
  fi
  if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed" >&2
    echo "hint: install Rust with rustup: curl --proto '=https' -sSf https://sh.rustup.rs | sh, then re-run" >&2
    exit 1
  fi
}
