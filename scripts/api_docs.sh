#!/usr/bin/env bash
# Generates the HTML API reference of kvcompress (the public headers include/kvc and the engine's
# include/kvc_engine) with Doxygen, into build/api-docs/html; open build/api-docs/html/index.html.
# Installs doxygen with apt-get when it is missing. Nothing it writes is committed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v doxygen >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends doxygen >/dev/null
fi
cd "$root"
mkdir -p build/api-docs
doxygen docs/Doxyfile
echo "API reference: $root/build/api-docs/html/index.html ($(grep -c . build/api-docs/warnings.log || true) warnings in build/api-docs/warnings.log)"
