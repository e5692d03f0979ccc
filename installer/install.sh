#!/usr/bin/env bash
# Nexus one-line installer.
#
#   curl -fsSL https://<server>:3001/install.sh | bash -s -- --repo my-org/my-project
#
# Checks git, ssh and curl; downloads the nexus CLI from the Nexus server that served this script,
# verifies its SHA-256 and installs it; then runs `nexus auth github`, `nexus ssh setup`,
# `nexus workspace create` and `nexus workspace connect`. Safe to run again. `--help` lists the flags.
#
# What the checksum proves: the binary arrived as the server published it, i.e. it was not cut off
# or corrupted on the way. The checksum comes from the same server over the same connection as the
# binary (and as this script), so it cannot tell whether someone on the way changed all three; only
# https from a server you trust protects against that. So this script refuses plain http to another
# machine unless given `--insecure`.
#
# The server fills in SERVED_FROM and INSTALLER_VERSION below when it serves this file
# (crates/nexus-server/src/installer.rs). Plain bash 3.2 (macOS's), checked with shellcheck.
#
# Environment:
#   NEXUS_INSTALL_BASE_URL  download the CLI from this server URL instead of the one that served the script
#   NO_COLOR                no colours (set and non-empty)

set -euo pipefail

# Where this script was downloaded from: the default --server and where the CLI is downloaded from.
SERVED_FROM=""
INSTALLER_VERSION="dev"

DEFAULT_PORT=3001

# ---- output ------------------------------------------------------------------------------------
# Progress goes to stderr, like the nexus CLI's; --help and --version go to stdout. Emoji and ✓ only
# on a UTF-8 terminal, colour only on a terminal without NO_COLOR.

SYMBOLS=0
COLOR=0
SECTIONS=0

utf8_locale() {
    local l="${LC_ALL:-${LC_CTYPE:-${LANG:-}}}"
    case "$l" in
        *UTF-8* | *utf-8* | *UTF8* | *utf8*) return 0 ;;
        "") [ "$(uname -s 2>/dev/null || true)" = Darwin ] ;;
        *) return 1 ;;
    esac
}

setup_output() {
    if [ -t 2 ] && [ "${TERM:-}" != dumb ]; then
        if utf8_locale; then SYMBOLS=1; fi
        if [ -z "${NO_COLOR:-}" ]; then COLOR=1; fi
    fi
}

paint() { # paint <ansi code> <text>
    if [ "$COLOR" = 1 ]; then printf '\033[%sm%s\033[0m' "$1" "$2"; else printf '%s' "$2"; fi
}

# section <emoji> <title>: a bold title, with its emoji on a UTF-8 terminal.
section() {
    local title="$2"
    if [ "$SYMBOLS" = 1 ]; then title="$1 $2"; fi
    if [ "$SECTIONS" != 0 ]; then printf '\n' >&2; fi
    SECTIONS=$((SECTIONS + 1))
    printf '%s\n' "$(paint 1 "$title")" >&2
}

ok() {
    local mark="ok:"
    if [ "$SYMBOLS" = 1 ]; then mark="✓"; fi
    printf '%s %s\n' "$(paint 32 "$mark")" "$1" >&2
}

info() { printf '%s\n' "$1" >&2; }

warn() { printf '%s %s\n' "$(paint '1;33' 'warning:')" "$1" >&2; }

# die <message> [hint] [exit status]: `error: ...` and `hint: ...`, then exit.
die() {
    printf '%s %s\n' "$(paint '1;31' 'error:')" "$1" >&2
    if [ -n "${2:-}" ]; then printf '%s %s\n' "$(paint '1;33' 'hint:')" "$2" >&2; fi
    exit "${3:-1}"
}

# In --dry-run mode, what would have been done.
would() { printf '[dry run] would %s\n' "$1" >&2; }

usage() {
    cat <<EOF
Nexus installer $INSTALLER_VERSION: installs the nexus CLI and opens a workspace for a GitHub repo.

Usage:
  curl -fsSL ${SERVED_FROM:-https://<server>:$DEFAULT_PORT}/install.sh | bash -s -- --repo <owner/repo> [options]

Options:
  --repo OWNER/REPO   GitHub repository to make a workspace for (required)
  --server HOST       Nexus server (host, host:port or URL) [default: ${SERVED_FROM:-none; required}]
  --prefix DIR        where to put the nexus binary [default: ~/.local/bin]
  --editor EDITOR     cursor, code or none [default: nexus's choice, cursor]
  --no-connect        stop after creating the workspace (don't open the editor)
  --dry-run           print every step without changing anything
  --insecure          allow plain http to a server on another machine (anyone on the network
                      path could then read your tokens and replace the binary)
  --version           print the installer's version and exit
  -h, --help          print this help

Steps: check git, ssh and curl; download nexus, verify its SHA-256 and install it;
\`nexus auth github --server HOST\`, \`nexus ssh setup\`, \`nexus workspace create REPO\`,
\`nexus workspace connect\`. Running it again is safe.
EOF
}

# ---- helpers -----------------------------------------------------------------------------------

# The CLI's rule for a server argument: a scheme defaults to http, a port to 3001.
server_url() {
    local s="${1%/}" scheme="http" rest authority path=""
    case "$s" in
        *://*)
            scheme="${s%%://*}"
            rest="${s#*://}"
            ;;
        *) rest="$s" ;;
    esac
    authority="${rest%%/*}"
    if [ "$authority" != "$rest" ]; then path="/${rest#*/}"; fi
    case "$authority" in
        \[*\]:[0-9]*) ;;
        \[*\]) authority="$authority:$DEFAULT_PORT" ;;
        *:*) ;;
        *) authority="$authority:$DEFAULT_PORT" ;;
    esac
    printf '%s://%s%s' "$scheme" "$authority" "$path"
}

# Refuses plain http to a host other than this machine unless --insecure: the tokens, the binary
# and its checksum would all cross the network readable and replaceable (the CLI has the same rule).
check_transport() {
    local url="$1" rest host
    case "$url" in
        http://*) rest="${url#http://}" ;;
        *) return 0 ;;
    esac
    host="${rest%%/*}"
    host="${host##*@}"
    case "$host" in
        \[*) host="${host#\[}" && host="${host%%\]*}" ;;
        *) host="${host%%:*}" ;;
    esac
    case "$host" in
        localhost | *.localhost | ::1) return 0 ;;
    esac
    if [[ "$host" =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then return 0; fi
    if [ "$INSECURE" = 1 ]; then return 0; fi
    die "$url is plain http to another machine: your tokens and the nexus binary would cross the network readable and replaceable (the checksum comes the same way, so it cannot catch that)" \
        "use the server's https:// URL (\`--server https://HOST:3001\`); on a network you trust, pass \`--insecure\`" 2
}

# The workspace name nexus makes from a repo: its name, lowercased, runs of other characters as `-`.
workspace_name() {
    local r="${1%/}"
    r="${r%.git}"
    r="${r##*/}"
    r="${r##*:}"
    printf '%s' "$r" | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9][^a-z0-9]*/-/g' -e 's/^-*//' | cut -c1-40 |
        sed -e 's/-*$//'
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# A string field of the server's `{error: {code, message, hint}}` body.
json_field() {
    sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$2" | head -n 1
}

# One value from /etc/os-release (ID, ID_LIKE).
os_release() {
    local f
    for f in /etc/os-release /usr/lib/os-release; do
        if [ -r "$f" ]; then
            sed -n "s/^$1=//p" "$f" | tr -d '"' | head -n 1
            return 0
        fi
    done
}

# The exact command that installs the given tools here.
install_command() {
    local sudo="" pkgs="" tool distro
    if [ "$(id -u 2>/dev/null || echo 0)" != 0 ]; then sudo="sudo "; fi
    if [ "$OS" = darwin ]; then
        for tool in "$@"; do
            case "$tool" in
                ssh) pkgs="$pkgs openssh" ;;
                sha256sum) pkgs="$pkgs coreutils" ;;
                *) pkgs="$pkgs $tool" ;;
            esac
        done
        printf 'brew install%s' "$pkgs"
        return 0
    fi
    distro=" $(os_release ID) $(os_release ID_LIKE) "
    case "$distro" in
        *" debian "* | *" ubuntu "*)
            for tool in "$@"; do
                case "$tool" in
                    ssh) pkgs="$pkgs openssh-client" ;;
                    sha256sum) pkgs="$pkgs coreutils" ;;
                    *) pkgs="$pkgs $tool" ;;
                esac
            done
            printf '%sapt-get install -y%s' "$sudo" "$pkgs"
            ;;
        *" fedora "* | *" rhel "* | *" centos "*)
            for tool in "$@"; do
                case "$tool" in
                    ssh) pkgs="$pkgs openssh-clients" ;;
                    sha256sum) pkgs="$pkgs coreutils" ;;
                    *) pkgs="$pkgs $tool" ;;
                esac
            done
            printf '%sdnf install -y%s' "$sudo" "$pkgs"
            ;;
        *) printf 'your package manager (packages for:%s)' " $*" ;;
    esac
}

# ---- steps -------------------------------------------------------------------------------------

detect_platform() {
    local s m
    s="$(uname -s)"
    m="$(uname -m)"
    case "$s" in
        Linux) OS=linux ;;
        Darwin) OS=darwin ;;
        *) die "there is no nexus CLI for $s" "nexus runs on Linux and macOS; on Windows, run this installer inside WSL 2" ;;
    esac
    case "$m" in
        x86_64 | amd64) ARCH=amd64 ;;
        aarch64 | arm64) ARCH=arm64 ;;
        *) die "there is no nexus CLI for $m processors" "nexus is built for x86_64 (amd64) and arm64 machines" ;;
    esac
    # In a Rosetta 2 shell an Apple silicon Mac says x86_64; the native build is the one to use.
    if [ "$OS" = darwin ] && [ "$ARCH" = amd64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
        ARCH=arm64
    fi
}

check_dependencies() {
    section "⚙ " "Checking dependencies..."
    local missing="" tool
    for tool in git ssh curl; do
        if ! command -v "$tool" >/dev/null 2>&1; then missing="$missing $tool"; fi
    done
    if ! command -v sha256sum >/dev/null 2>&1 && ! command -v shasum >/dev/null 2>&1; then
        missing="$missing sha256sum"
    fi
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086 # one word per tool
        die "missing:$missing (the installer needs git, ssh, curl, and sha256sum or shasum)" \
            "install with \`$(install_command $missing)\`, then run this installer again"
    fi
    ok "git, ssh, curl found"
}

# Fetches the published checksum of $ASSET into EXPECTED; a 404 says which platforms the server has.
fetch_checksum() {
    local out="$WORK/$ASSET.sha256" code message hint
    if ! code="$(curl -sSL --proto '=http,https' -o "$out" -w '%{http_code}' "$BASE/download/$ASSET.sha256")"; then
        die "cannot reach the Nexus server at $BASE" "check the address and that the server runs: \`curl $BASE/health\`"
    fi
    case "$code" in
        200) ;;
        404)
            message="$(json_field message "$out")"
            hint="$(json_field hint "$out")"
            if [ -z "$message" ]; then message="the server at $BASE has no nexus CLI for $OS-$ARCH"; fi
            if [ -z "$hint" ]; then hint="ask the operator of the server which platforms it serves"; fi
            die "$message" "$hint"
            ;;
        *) die "the server at $BASE answered HTTP $code for $ASSET.sha256" "try again; if it persists, tell the server's operator" ;;
    esac
    EXPECTED="$(cut -d' ' -f1 <"$out" | tr -d '\r\n' | tr '[:upper:]' '[:lower:]')"
    case "$EXPECTED" in
        *[!0-9a-f]* | "") die "the server at $BASE sent no valid checksum for $ASSET" "is $BASE a Nexus server?" ;;
    esac
    if [ "${#EXPECTED}" != 64 ]; then
        die "the server at $BASE sent no valid checksum for $ASSET" "is $BASE a Nexus server?"
    fi
}

install_binary() {
    section "📦" "Downloading nexus CLI..."
    fetch_checksum
    if [ -f "$TARGET" ] && [ "$(sha256_of "$TARGET")" = "$EXPECTED" ]; then
        ok "nexus is already installed at $TARGET (same checksum)"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        would "download $BASE/download/$ASSET to a temporary file in $PREFIX"
        would "check its SHA-256 is $EXPECTED, then move it to $TARGET (chmod 755)"
        return 0
    fi
    mkdir -p "$PREFIX" || die "cannot create $PREFIX" "choose another directory with \`--prefix DIR\`"
    # In the prefix itself, so the final `mv` is an atomic rename on one file system.
    TMP_BIN="$(mktemp "$PREFIX/.nexus-download.XXXXXX")"
    if ! curl -fsSL --proto '=http,https' -o "$TMP_BIN" "$BASE/download/$ASSET"; then
        die "downloading $BASE/download/$ASSET failed; nothing was installed" "run the installer again"
    fi
    local actual
    actual="$(sha256_of "$TMP_BIN")"
    if [ "$actual" != "$EXPECTED" ]; then
        rm -f "$TMP_BIN"
        TMP_BIN=""
        die "checksum mismatch for $ASSET: expected $EXPECTED, got $actual; nothing was installed" \
            "the download was damaged on the way; run the installer again, and if it keeps failing tell the server's operator"
    fi
    chmod 755 "$TMP_BIN"
    mv -f "$TMP_BIN" "$TARGET"
    TMP_BIN=""
    ok "Downloaded and installed $TARGET"
}

# How to run nexus from now on: `nexus` when the prefix is on PATH, else its full path.
path_advice() {
    local found rc
    NEXUS_CMD="$TARGET"
    case ":$PATH:" in
        *":$PREFIX:"*)
            found="$(command -v nexus 2>/dev/null || true)"
            if [ -n "$found" ] && [ "$found" != "$TARGET" ]; then
                warn "$found comes before $TARGET on your PATH; remove it or put $PREFIX first"
            else
                NEXUS_CMD=nexus
            fi
            return 0
            ;;
    esac
    case "$(basename "${SHELL:-sh}")" in
        zsh) rc=".zshrc" ;;
        bash) if [ "$OS" = darwin ]; then rc=".bash_profile"; else rc=".bashrc"; fi ;;
        fish)
            info "$PREFIX is not on your PATH; add it with: fish_add_path $PREFIX"
            return 0
            ;;
        *) rc=".profile" ;;
    esac
    info "$PREFIX is not on your PATH; add it with:"
    info "  echo 'export PATH=\"$PREFIX:\$PATH\"' >> ~/$rc && export PATH=\"$PREFIX:\$PATH\""
}

# Runs one nexus step; the device flow and questions need the user's terminal, which is not stdin
# when this script itself arrives on stdin.
run_nexus() {
    if [ "$DRY_RUN" = 1 ]; then
        would "run: nexus $*"
        return 0
    fi
    local status=0
    if [ "$USE_TTY" = 1 ]; then
        "$TARGET" "$@" </dev/tty || status=$?
    else
        "$TARGET" "$@" || status=$?
    fi
    if [ "$status" != 0 ]; then
        die "the installer stopped at \`nexus $*\`" \
            "fix what it says above and run the installer again (it picks up where it left off)" "$status"
    fi
}

cleanup() {
    if [ -n "${TMP_BIN:-}" ]; then rm -f "$TMP_BIN"; fi
    if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}

main() {
    setup_output
    local repo="" server="" editor="" connect=1 name
    DRY_RUN=0
    INSECURE=0
    PREFIX=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --repo | --server | --prefix | --editor)
                case "${2:-}" in
                    "" | --*) die "$1 needs a value" "run with \`--help\` to see the options" 2 ;;
                esac
                case "$1" in
                    --repo) repo="$2" ;;
                    --server) server="$2" ;;
                    --prefix) PREFIX="$2" ;;
                    --editor) editor="$2" ;;
                esac
                shift 2
                ;;
            --repo=*) repo="${1#*=}" && shift ;;
            --server=*) server="${1#*=}" && shift ;;
            --prefix=*) PREFIX="${1#*=}" && shift ;;
            --editor=*) editor="${1#*=}" && shift ;;
            --no-connect) connect=0 && shift ;;
            --dry-run) DRY_RUN=1 && shift ;;
            --insecure) INSECURE=1 && shift ;;
            --version)
                if [ -n "$SERVED_FROM" ]; then
                    printf 'nexus installer %s (from %s)\n' "$INSTALLER_VERSION" "$SERVED_FROM"
                else
                    printf 'nexus installer %s\n' "$INSTALLER_VERSION"
                fi
                exit 0
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option: $1" "run with \`--help\` to see the options" 2 ;;
        esac
    done

    [ -n "$repo" ] || die "--repo is required" "name the GitHub repository, e.g. \`--repo my-org/my-project\`" 2
    name="$(workspace_name "$repo")"
    case "$repo" in
        */*) ;;
        *) name="" ;;
    esac
    [ -n "$name" ] || die "cannot read a repository from --repo $repo" "use \`owner/repo\` or a GitHub URL" 2
    case "$editor" in
        "" | cursor | code | none) ;;
        *) die "--editor must be cursor, code or none, not $editor" "e.g. \`--editor code\`" 2 ;;
    esac
    server="${server:-$SERVED_FROM}"
    [ -n "$server" ] || die "--server is required" "name the Nexus server, e.g. \`--server staging.example.com\`" 2

    if [ -z "$PREFIX" ]; then
        [ -n "${HOME:-}" ] || die "HOME is not set" "pass the install directory with \`--prefix DIR\`" 2
        PREFIX="$HOME/.local/bin"
    fi
    case "$PREFIX" in
        \~) PREFIX="${HOME:-}" ;;
        \~/*) PREFIX="${HOME:-}/${PREFIX#\~/}" ;;
    esac
    case "$PREFIX" in
        /*) ;;
        *) PREFIX="$PWD/$PREFIX" ;;
    esac
    PREFIX="${PREFIX%/}"
    TARGET="$PREFIX/nexus"

    detect_platform
    ASSET="nexus-$OS-$ARCH"
    BASE="${NEXUS_INSTALL_BASE_URL:-${SERVED_FROM:-$(server_url "$server")}}"
    BASE="${BASE%/}"
    check_transport "$BASE"
    check_transport "$(server_url "$server")"
    # The CLI applies the same rule; told once, it applies to every step.
    if [ "$INSECURE" = 1 ]; then export NEXUS_INSECURE=1; fi
    USE_TTY=0
    if [ ! -t 0 ] && (: </dev/tty) 2>/dev/null; then USE_TTY=1; fi

    TMP_BIN=""
    WORK=""
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    check_dependencies
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/nexus-install.XXXXXX")"
    install_binary
    path_advice

    # The CLI prints its own sections from here on; each step is idempotent.
    run_nexus auth github --server "$server"
    run_nexus ssh setup
    run_nexus workspace create "$repo" --name "$name"
    if [ "$connect" = 0 ]; then
        if [ "$DRY_RUN" = 0 ]; then
            info ""
            info "Workspace $name is ready. Open it with: $NEXUS_CMD workspace connect $name"
        fi
    elif [ -n "$editor" ]; then
        run_nexus workspace connect "$name" --editor "$editor"
    else
        run_nexus workspace connect "$name"
    fi
    if [ "$DRY_RUN" = 1 ]; then
        info ""
        info "Dry run: nothing was changed."
    fi
}

# Called last, so bash has read the whole script before running any of it: a command that reads
# stdin cannot swallow the rest of a script piped into bash.
main "$@"
