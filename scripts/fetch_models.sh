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
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

MODEL_SHA256=b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
TOKENIZER_SHA256=037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
TEXT_BYTES=794375
TEXT_SHA256=5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6
BASE_URL="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
TEXT_URL="https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt"

say() { printf '%s\n' "$*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

complete() {  # complete DIR: the three files are there and the model and tokenizer check out
  local dir="$1"
  [[ -f "$dir/stories260K.bin" && -f "$dir/tok512.bin" && -f "$dir/tinystories_val.txt" ]] || return 1
  [[ "$(sha256_of "$dir/stories260K.bin")" == "$MODEL_SHA256" ]] || { say "warning: $dir/stories260K.bin has the wrong sha256"; return 1; }
  [[ "$(sha256_of "$dir/tok512.bin")" == "$TOKENIZER_SHA256" ]] || { say "warning: $dir/tok512.bin has the wrong sha256"; return 1; }
}

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
