#!/usr/bin/env bash
# Installs the build dependencies from Debian 12's packages. Idempotent: installs only what is
# missing, so a machine that has everything runs no apt-get at all.
#   setup.sh           the host build's packages
#   setup.sh aarch64   also the aarch64 cross build's (scripts/test.sh): Debian's cross compiler,
#                      qemu-user to run the tests, and the target's libraries from Debian
#                      multiarch (architecture arm64 added to dpkg); the header-only libraries
#                      (Eigen, CLI11, nlohmann-json) are the host's.
set -euo pipefail
packages=(cmake ninja-build g++ clang-14 libeigen3-dev libfmt-dev libgtest-dev libgmock-dev
          libbenchmark-dev libcli11-dev nlohmann-json3-dev ca-certificates curl libpcre2-dev pkg-config
          libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for clang
          python3 python3-pip python3-venv python3-dev)  # pip: SmolLM2 comes from PyPI; venv: the Python package's tests
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if [ "${1:-}" = aarch64 ]; then
  # The library needs fmt; the tests GoogleTest; the engine (linked by the tests) PCRE2.
  packages+=(g++-aarch64-linux-gnu qemu-user libfmt-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
             libpcre2-dev:arm64)
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the arm64 architecture" >&2
    $sudo_cmd dpkg --add-architecture arm64  # its packages are missing, so apt-get update runs below
  fi
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
