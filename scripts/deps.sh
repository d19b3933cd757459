#!/usr/bin/env bash
# Installs what weft needs to build and test on Debian 12 (run as root). Skips apt when all is present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libck-dev libcriterion-dev libxxhash-dev xxhash
  libuv1-dev libglib2.0-dev parallel procps time libnats-dev nats-server)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] || [ "${WEFT_FORCE_APT:-0}" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
