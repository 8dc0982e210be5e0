#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian 12 machine, as root:
# the Debian packages of the real network peers, then the npm dependencies.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: the lab builds network namespaces and must run as root (try: sudo npm test)" >&2
  exit 1
fi

packages=(
  nftables iproute2 conntrack socat netcat-openbsd procps openssl curl
  miniupnpd miniupnpd-nftables miniupnpc natpmpc coturn stun-client
  chromium
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # Keep package scripts from starting daemons (coturn, miniupnpd) in the root
  # namespace: the lab starts its own copies inside its namespaces.
  policy_rc="/usr/sbin/policy-rc.d"
  created_policy_rc=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc"
    chmod +x "$policy_rc"
    created_policy_rc=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # miniupnpd asks debconf questions about its own service; answer them so it
  # stays off.
  echo "miniupnpd miniupnpd/start_daemon boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$created_policy_rc" -eq 1 ]; then
    rm -f "$policy_rc"
  fi
  # coturn's package enables a turnserver on systemd hosts; the lab runs its
  # own STUN servers in namespaces, so the host one stays off.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now coturn miniupnpd >/dev/null 2>&1 || true
  fi
fi

lock_hash_file="node_modules/.package-lock.sha256"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$lock_hash_file" ] || [ "$(cat "$lock_hash_file")" != "$lock_hash" ]; then
  echo "setup: installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$lock_hash_file"
fi
