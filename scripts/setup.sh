#!/usr/bin/env bash
# Installs the build dependencies from Debian 12's packages. Idempotent: installs only what is
# missing, so a machine that has everything runs no apt-get at all.
set -euo pipefail
packages=(cmake ninja-build g++ clang-14 libeigen3-dev libfmt-dev libgtest-dev libgmock-dev
          libbenchmark-dev libcli11-dev nlohmann-json3-dev ca-certificates curl libpcre2-dev pkg-config
          libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for clang
          python3 python3-pip python3-venv python3-dev)  # pip: SmolLM2 comes from PyPI; venv: the Python package's tests
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
