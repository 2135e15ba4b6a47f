#pragma once
// Turning the evaluation text into token windows exactly as the reference perplexity does
// (see /work/shared/models/README.md and docs/evaluation.md):
//  1. split at blank lines (runs of two or more '\n'), dropping empty paragraphs;
//  2. encode the first paragraph with the vocabulary's own space prefix (llama2.c's dummy prefix;
//     none for GPT-2 BPE), later ones without, and put the tokenizer's newline (the byte token 13
//     of llama2.c's) between consecutive paragraphs;
//  3. cut into consecutive, non-overlapping windows of `window` tokens (full windows only);
//  4. each window is scored as BOS + window.
#include "kvc_engine/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

[[nodiscard]] std::vector<std::string> split_paragraphs(std::string_view text);
[[nodiscard]] std::vector<std::int32_t> encode_corpus(const Tokenizer& tokenizer, std::string_view text);
// The largest evaluation text read_text_file accepts by default: 300x the bundled TinyStories
// slice and far more than any protocol scores, yet small enough to fail fast on /dev/zero.
inline constexpr std::size_t max_text_bytes = std::size_t{256} << 20;

// Reads a whole text file of at most `max_bytes`; throws kvc::Error if it cannot be read, is
// empty or is larger.
[[nodiscard]] std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes = max_text_bytes);

struct Windows {
  std::vector<std::int32_t> tokens;  // the whole encoded corpus
  std::size_t window = 511;          // tokens per window (BOS is added in front of each)
  std::size_t count = 0;             // number of windows in use
  std::int32_t bos = Tokenizer::bos;  // put before each window: the tokenizer's bos_id()

  [[nodiscard]] std::span<const std::int32_t> operator[](std::size_t i) const noexcept {
    return std::span<const std::int32_t>(tokens).subspan(i * window, window);
  }
  [[nodiscard]] std::size_t available() const noexcept { return tokens.size() / window; }
};

// `max_windows` 0 means all full windows; `bos` is the tokenizer's bos_id() (llama2.c's by
// default). Throws kvc::Error if the text has no full window.
[[nodiscard]] Windows make_windows(std::vector<std::int32_t> tokens, std::size_t window,
                                   std::size_t max_windows = 0, std::int32_t bos = Tokenizer::bos);

}  // namespace kvc::engine
