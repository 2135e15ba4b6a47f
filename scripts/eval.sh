#!/usr/bin/env bash
# The main job: builds kvc-eval and evaluates the default panel of policy stacks on the real
# model and text. Arguments are passed to kvc-eval (try --help). Results land in eval-results/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
models="$(bash "$root/scripts/fetch_models.sh" | tail -n 1)"
dir="$root/build-release"
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_BUILD_TESTS=OFF -DKVC_BUILD_BENCH=OFF \
  -DKVC_BUILD_EXAMPLES=ON -DKVC_MODELS_DIR="$models" >/dev/null
cmake --build "$dir" --target kvc-eval -j "$(nproc)"
cd "$root"
KVC_MODELS_DIR="$models" "$dir/tools/kvc-eval" "$@"
