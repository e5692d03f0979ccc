#!/usr/bin/env bash
# Builds the Nexus base workspace image (Debian trixie, amd64) locally and
# imports it into LXD under the given alias.
# Why: Nexus nodes cannot rely on a reachable image server (the `images:`
# remote is often unavailable), so every node builds its own image from the
# Debian mirror with debootstrap. The image is tuned for fast container boot
# (DHCP lease + sshd answering quickly), carries no SSH host keys (each
# container generates its own ed25519 key on first boot) and ships the
# developer toolchain (git, node/npm, python3, gh) plus a passwordless-sudo
# user `dev`.
#
# Usage: build.sh <alias> [workdir]
#   alias    LXD image alias to create (re-pointed if it already exists; the
#            image it pointed to is deleted if no other alias references it)
#   workdir  scratch directory (default: a fresh mktemp dir under /var/tmp);
#            it is wiped before use and its contents removed on exit
#
# Environment (all optional):
#   NEXUS_DEBIAN_MIRROR    Debian mirror        (default http://deb.debian.org/debian)
#   NEXUS_SECURITY_MIRROR  security mirror      (default http://deb.debian.org/debian-security)
#   NEXUS_APT_CACHE        persistent .deb cache to speed up rebuilds
#                          (default /var/cache/nexus-image-build/apt; empty = off)
#   NEXUS_KEEP_WORKDIR=1   keep rootfs + tarball after the run (debugging)
#
# Host requirements: bash, debootstrap, tar, coreutils, util-linux (mount),
# lxc (LXD client) talking to a running LXD; must run as root.
set -euo pipefail

readonly SUITE=trixie
readonly MIRROR=${NEXUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly SECURITY_MIRROR=${NEXUS_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
readonly APT_CACHE=${NEXUS_APT_CACHE-/var/cache/nexus-image-build/apt}
readonly MARKER=.nexus-image-build

# Installed by debootstrap itself (small, needed to boot and to run apt).
readonly BOOTSTRAP_PKGS=(
  systemd systemd-sysv dbus libpam-systemd
  ifupdown dhcpcd-base
  iproute2 procps less ca-certificates
)
# Installed with apt-get inside the chroot afterwards (big dependency trees).
readonly CHROOT_PKGS=(
  openssh-server sudo git curl
  nodejs npm python3 python3-venv python3-pip gh
)

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { printf '[build.sh] ERROR: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
PHASE_NAME="" PHASE_START="" BUILD_START=$(now)
phase() { # phase <name>: closes the running phase (printing its time) and opens a new one
  local t; t=$(now)
  if [[ -n $PHASE_NAME ]]; then
    printf '[build.sh] phase %-16s %7.1fs\n' "$PHASE_NAME" "$(elapsed "$PHASE_START" "$t")" >&2
  fi
  PHASE_NAME=$1 PHASE_START=$t
  [[ -n $PHASE_NAME ]] && log "== $PHASE_NAME"
  return 0
}

usage() { echo "usage: $0 <alias> [workdir]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && -n $1 ]] || usage
ALIAS=$1

# ---- preflight --------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot, mounts)"
[[ $(dpkg --print-architecture 2>/dev/null || uname -m) =~ ^(amd64|x86_64)$ ]] \
  || die "only amd64/x86_64 hosts are supported"
for cmd in debootstrap lxc tar chroot mount umount sha256sum findmnt flock awk; do
  command -v "$cmd" >/dev/null || die "required host command '$cmd' not found (apt-get install debootstrap)"
done
lxc info >/dev/null 2>&1 || die "'lxc info' failed: is the LXD daemon running and reachable?"
# One build at a time per host (shared apt cache, alias juggling at the end).
exec 9>/run/lock/nexus-image-build.lock
flock -w 1800 9 || die "another build.sh is still running (lock /run/lock/nexus-image-build.lock)"

# ---- workdir ----------------------------------------------------------------
if [[ $# -eq 2 ]]; then
  WORKDIR=$(realpath -m -- "$2")
  case $WORKDIR in /|/bin|/boot|/dev|/etc|/home|/lib*|/proc|/root|/run|/sbin|/sys|/usr|/var|/tmp|/var/tmp)
    die "refusing to use '$WORKDIR' as workdir" ;;
  esac
  if [[ -d $WORKDIR && -n $(ls -A "$WORKDIR") && ! -e $WORKDIR/$MARKER ]]; then
    die "workdir '$WORKDIR' exists, is not empty and was not created by build.sh; refusing to wipe it"
  fi
  mkdir -p "$WORKDIR"
  OWN_WORKDIR=0
else
  WORKDIR=$(mktemp -d /var/tmp/nexus-image-build.XXXXXX)
  OWN_WORKDIR=1
fi
ROOTFS=$WORKDIR/rootfs
TARBALL=$WORKDIR/nexus-base-$SUITE-amd64.tar

unmount_all() { # unmount everything below $WORKDIR, deepest first
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || umount -f "$m" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | awk -v p="$WORKDIR/" 'index($0, p) == 1' | sort -r)
  if findmnt -rn -o TARGET | awk -v p="$WORKDIR/" 'index($0, p) == 1' | grep -q .; then
    return 1
  fi
}

wipe_workdir() {
  unmount_all || die "could not unmount everything below $WORKDIR; not deleting it"
  # --one-file-system: never follow into something that is still mounted.
  find "$WORKDIR" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
}

on_exit() {
  local rc=$?
  set +e
  unmount_all || log "WARNING: mounts left below $WORKDIR"
  if [[ ${NEXUS_KEEP_WORKDIR:-0} == 1 ]]; then
    log "keeping workdir $WORKDIR (NEXUS_KEEP_WORKDIR=1)"
  else
    wipe_workdir
    [[ $OWN_WORKDIR == 1 ]] && rmdir "$WORKDIR" 2>/dev/null
  fi
  if [[ $rc -ne 0 ]]; then
    log "FAILED (exit $rc) during phase '${PHASE_NAME:-setup}'"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

wipe_workdir
touch "$WORKDIR/$MARKER"
log "alias=$ALIAS workdir=$WORKDIR mirror=$MIRROR apt-cache=${APT_CACHE:-<off>}"

# ---- debootstrap -------------------------------------------------------------
phase debootstrap
cache_opt=()
if [[ -n $APT_CACHE ]]; then
  mkdir -p "$APT_CACHE/partial"
  cache_opt=(--cache-dir="$APT_CACHE")
fi
include=$(IFS=,; echo "${BOOTSTRAP_PKGS[*]}")
if ! debootstrap --arch=amd64 --variant=minbase --merged-usr "${cache_opt[@]}" \
     --include="$include" "$SUITE" "$ROOTFS" "$MIRROR" > "$WORKDIR/debootstrap.log" 2>&1; then
  tail -n 30 "$WORKDIR/debootstrap.log" >&2
  [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (log above)"
fi

# ---- chroot install ----------------------------------------------------------
phase chroot-install
in_chroot() {
  chroot "$ROOTFS" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    "$@"
}
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sysfs "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"
if [[ -n $APT_CACHE ]]; then
  mount --bind "$APT_CACHE" "$ROOTFS/var/cache/apt/archives"
fi
# Never start daemons inside the build chroot.
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
rm -f "$ROOTFS/etc/resolv.conf"   # may be a dangling symlink (e.g. systemd-resolved)
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

cat > "$ROOTFS/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SRC
# Keep the image lean (like debian-slim): no docs/man pages/translations,
# except copyright files. Stays in effect for later installs in containers;
# delete /etc/dpkg/dpkg.cfg.d/01-nexus-nodoc to get docs back.
cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-nexus-nodoc" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
DPKG
# Build-time only: let apt write into the (bind-mounted) cache as root.
APT=(apt-get -y -q -o APT::Sandbox::User=root -o Dpkg::Options::=--force-confdef
     -o Dpkg::Options::=--force-confold --no-install-recommends)
apt_run() { # each call checked on its own ({ ...; } || die would disable set -e inside)
  in_chroot "${APT[@]}" "$@" >> "$WORKDIR/apt.log" 2>&1 \
    || { tail -n 40 "$WORKDIR/apt.log" >&2; die "apt-get $* failed inside the chroot (log above)"; }
}
apt_run --error-on=any update   # an unreachable source is an error, not a warning
apt_run dist-upgrade
apt_run install "${CHROOT_PKGS[@]}"
# Apply the same excludes to what debootstrap already unpacked.
find "$ROOTFS/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Prune superseded .debs from the persistent cache, then detach it.
in_chroot "${APT[@]}" autoclean >/dev/null 2>&1 || true

# -- configuration --
# Networking: ifupdown + dhcpcd-base (trixie's default DHCP client for
# ifupdown; isc-dhcp-client is end-of-life upstream). networking.service runs
# `ifup -a`, which blocks until dhcpcd has a lease (no udev needed; dhcpcd's
# hooks write /etc/resolv.conf from the DHCP answer).
cat > "$ROOTFS/etc/network/interfaces" <<'NET'
# Managed by the Nexus base image. eth0 is the LXD NIC (DHCP from the host bridge).
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
NET
# dhcpcd's defaults cost seconds on every boot: an ARP probe of the offered
# address (~5 s; on an LXD bridge only its dnsmasq hands out addresses), a
# random delay of up to 1 s before the first request, and IPv6 router
# solicitation on a bridge without IPv6 (nexusbr0 has ipv6.address none).
cat >> "$ROOTFS/etc/dhcpcd.conf" <<'DHCPCD'

# Nexus base image: a container on an LXD bridge needs none of the above waits.
noarp
nodelay
ipv4only
DHCPCD
in_chroot systemctl enable networking.service >/dev/null 2>&1

# Locale fallback, no locales package needed (C.UTF-8 is built into libc).
echo 'LANG=C.UTF-8' > "$ROOTFS/etc/default/locale"

# User dev (uid 1000) with passwordless sudo.
in_chroot useradd --create-home --uid 1000 --user-group --shell /bin/bash dev
in_chroot usermod --password '*' dev   # no password, but not "locked"
install -d -m 0700 -o 1000 -g 1000 "$ROOTFS/home/dev/.ssh"
install -m 0600 -o 1000 -g 1000 /dev/null "$ROOTFS/home/dev/.ssh/authorized_keys"
echo 'dev ALL=(ALL:ALL) NOPASSWD:ALL' > "$ROOTFS/etc/sudoers.d/dev"
chmod 0440 "$ROOTFS/etc/sudoers.d/dev"
in_chroot visudo -cq -f /etc/sudoers.d/dev || die "sudoers.d/dev does not validate"

# sshd: key-only, no root, ed25519 host key only.
cat > "$ROOTFS/etc/ssh/sshd_config.d/10-nexus.conf" <<'SSHD'
# Nexus base image policy (first match wins; this file is included first).
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
UseDNS no
SSHD
# No host keys in the image: every container generates its own on first boot.
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
install -d "$ROOTFS/etc/systemd/system/ssh.service.d"
cat > "$ROOTFS/etc/systemd/system/ssh.service.d/10-nexus-hostkey.conf" <<'UNIT'
# Generate this container's ed25519 host key before sshd starts (first boot
# only; the image ships without host keys). Replaces the stock ExecStartPre
# list so the key exists before `sshd -t` checks the config.
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || exec /usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
UNIT
in_chroot systemctl enable ssh.service >/dev/null 2>&1
# Check the config parses (against a throwaway key, removed again).
in_chroot ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
mkdir -p "$ROOTFS/run/sshd"
in_chroot /usr/sbin/sshd -t || die "sshd config check failed"
rm -rf "$ROOTFS"/etc/ssh/ssh_host_* "$ROOTFS/run/sshd"

# Boot speed: units that are useless in a container or only cost boot time.
# (systemd-binfmt cannot mount binfmt_misc and systemd-modules-load cannot load
# modules in an unprivileged container; either would leave the system
# "degraded".) sshd-keygen would make RSA and ECDSA keys too (`ssh-keygen -A`)
# if it ever saw a first boot; the ssh.service drop-in above makes the one key.
# tmp.mount keeps /tmp on the container's disk, as in bookworm: a tmpfs /tmp
# would count against the workspace's memory.
for unit in \
  apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service \
  dpkg-db-backup.timer dpkg-db-backup.service \
  e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
  fstrim.timer fstrim.service \
  systemd-timesyncd.service \
  systemd-binfmt.service systemd-modules-load.service \
  sshd-keygen.service tmp.mount \
  man-db.timer man-db.service \
  ; do
  ln -sfn /dev/null "$ROOTFS/etc/systemd/system/$unit"
done

# Identity: nothing host- or build-specific may leak into the image.
: > "$ROOTFS/etc/machine-id"                 # systemd generates one per container
rm -f "$ROOTFS/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOTFS/var/lib/dbus/machine-id"
rm -f "$ROOTFS/etc/hostname"                 # written by the LXD template below
cat > "$ROOTFS/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
HOSTS

# ---- cleanup -----------------------------------------------------------------
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
unmount_all || die "could not unmount chroot filesystems"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/archives/partial/*
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
       "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/alternatives.log \
       "$ROOTFS"/var/log/bootstrap.log "$ROOTFS"/root/.bash_history \
       "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
rm -f "$ROOTFS/etc/resolv.conf"               # dhcpcd writes it at boot
find "$ROOTFS/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

# ---- pack --------------------------------------------------------------------
phase pack
mkdir -p "$WORKDIR/templates"
printf '{{ container.name }}\n' > "$WORKDIR/templates/hostname.tpl"
cat > "$WORKDIR/templates/hosts.tpl" <<'TPL'
127.0.0.1	localhost
127.0.1.1	{{ container.name }}
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
TPL
cat > "$WORKDIR/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  architecture: amd64
  os: debian
  release: $SUITE
  variant: nexus-base
  description: Nexus base workspace (Debian $SUITE amd64, built $(date -u +%Y%m%d-%H%M))
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
META
tar -C "$WORKDIR" --numeric-owner --xattrs --xattrs-include='*' \
    -cf "$TARBALL" metadata.yaml templates rootfs
log "tarball $(du -h "$TARBALL" | cut -f1)  rootfs $(du -sh "$ROOTFS" | cut -f1)"

# ---- import ------------------------------------------------------------------
phase import
fp=$(sha256sum "$TARBALL" | cut -d' ' -f1)
old_fp=$(lxc image info "$ALIAS" 2>/dev/null | awk '/^Fingerprint:/ {print $2}' || true)
if lxc image info "$fp" >/dev/null 2>&1; then
  log "image $fp already present, not re-importing"
else
  lxc image import "$TARBALL" --quiet || die "lxc image import failed"
fi
if [[ -n $old_fp && $old_fp != "$fp" ]]; then
  lxc image alias delete "$ALIAS"
fi
if [[ $old_fp != "$fp" ]]; then
  lxc image alias create "$ALIAS" "$fp" || die "could not create alias $ALIAS"
fi
if [[ -n $old_fp && $old_fp != "$fp" ]]; then
  # Drop the previous image unless something else still names it.
  if [[ -z $(lxc image list "$old_fp" --format csv -c l 2>/dev/null) ]]; then
    lxc image delete "$old_fp" && log "deleted previous image ${old_fp:0:12}"
  fi
fi
phase ""
printf '[build.sh] phase %-16s %7.1fs\n' total "$(elapsed "$BUILD_START" "$(now)")" >&2
log "imported $ALIAS -> ${fp:0:12} ($(lxc image info "$fp" | awk -F': ' '/^Size:/ {print $2}'))"
