#!/usr/bin/env bash
# The main job: builds kvc-eval and evaluates the default panel of policy stacks on the real
# model and text. Arguments are passed to kvc-eval (try --help). Results land in kvc-eval-out/.
#
#   scripts/eval.sh                                     # decode protocol, stories260K, TinyStories
#   scripts/eval.sh --protocol context --context 256    # context compression
#   scripts/eval.sh --long-text --protocol passkey ...  # the pinned long English text (see below)
#
# --long-text (this script's own option, first) evaluates on the licence texts Debian ships in
# /usr/share/common-licenses (package base-files), listed and pinned by sha256 in
# data/long-text.sha256 and described in docs/evaluation.md: the script reinstalls base-files if
# a file is missing, refuses to run if one differs, and passes each as --text.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
texts=()
if [[ "${1:-}" == "--long-text" ]]; then
  shift
  manifest="$root/data/long-text.sha256"
  while read -r _ path; do
    if [[ ! -f "$path" ]]; then
      echo "eval: $path is missing; reinstalling base-files" >&2
      sudo_cmd=""
      [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --reinstall base-files >/dev/null
    fi
    texts+=(--text "$path")
  done <"$manifest"
  sha256sum --quiet -c "$manifest" || {
    echo "eval: the long text differs from the sha256 pinned in $manifest (another Debian release?)" >&2
    exit 1
  }
fi
bash "$root/scripts/setup.sh"
models="$(bash "$root/scripts/fetch_models.sh" | tail -n 1)"
dir="$root/build-release"
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_BUILD_TESTS=OFF -DKVC_BUILD_BENCH=OFF \
  -DKVC_BUILD_EXAMPLES=ON -DKVC_MODELS_DIR="$models" >/dev/null
cmake --build "$dir" --target kvc-eval -j "$(nproc)"
cd "$root"
KVC_MODELS_DIR="$models" "$dir/tools/kvc-eval" "${texts[@]}" "$@"
