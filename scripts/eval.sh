#!/usr/bin/env bash
# The main job: builds kvc-eval and evaluates KV-cache compression on SmolLM2-135M-Instruct at
# long contexts. Results land in kvc-eval-out/ (tables, JSON, CSV, SVG and, with rsvg-convert,
# PNG); progress goes to stderr, the tables to stdout.
#
#   scripts/eval.sh                 # the default run (docs/evaluation.md): the context protocol
#                                   # at C = 512 and 1024 for every stack, then passkey at C = 1024
#   scripts/eval.sh ARGS...         # kvc-eval ARGS... (try --help), e.g.
#   scripts/eval.sh --protocol passkey --context 4096 --stack h2o:budget=25%
#   scripts/eval.sh --model "$KVC_MODELS_DIR/stories260K.bin" --tokenizer "$KVC_MODELS_DIR/tok512.bin"
#
# SmolLM2 is evaluated on the licence texts Debian ships in /usr/share/common-licenses (package
# base-files), pinned by sha256 in data/long-text.sha256: the script reinstalls base-files if a
# file is missing and refuses to run if one differs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
manifest="$root/data/long-text.sha256"
while read -r _ path; do
  if [[ ! -f "$path" ]]; then
    echo "eval: $path is missing; reinstalling base-files" >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --reinstall base-files >/dev/null
  fi
done <"$manifest"
sha256sum --quiet -c "$manifest" || {
  echo "eval: the long text differs from the sha256 pinned in $manifest (another Debian release?)" >&2
  exit 1
}
bash "$root/scripts/setup.sh"
# The figures are also rendered to PNG when librsvg's converter is (or can be) installed.
if ! command -v rsvg-convert >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends librsvg2-bin >/dev/null ||
    echo "eval: librsvg2-bin not installed; the figures stay SVG only" >&2
fi
models="$(bash "$root/scripts/fetch_models.sh" | tail -n 1)"
dir="$root/build-release"
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_BUILD_TESTS=OFF -DKVC_BUILD_BENCH=OFF \
  -DKVC_BUILD_EXAMPLES=ON -DKVC_MODELS_DIR="$models" >/dev/null
cmake --build "$dir" --target kvc-eval -j "$(nproc)"
cd "$root"
out=kvc-eval-out
eval_cmd=(env KVC_MODELS_DIR="$models" "$dir/tools/kvc-eval")
if [[ $# -gt 0 ]]; then
  "${eval_cmd[@]}" "$@"
else
  # Sized for a few minutes on two cores (docs/evaluation.md, "SmolLM2 at long contexts").
  "${eval_cmd[@]}" --protocol context --context 512,1024 --score-tokens 32 --windows 1 -o "$out"
  "${eval_cmd[@]}" --protocol passkey --context 1024 --depths 10,50,90 --trials 1 --stack "streaming:sinks=4,recent=25%" \
    --stack "h2o:budget=25%" --stack int4 -o "$out"
fi
if command -v rsvg-convert >/dev/null; then
  for svg in "$out"/*.svg; do
    if [[ -f "$svg" ]]; then rsvg-convert "$svg" -o "${svg%.svg}.png"; fi
  done
fi
