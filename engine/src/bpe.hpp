#pragma once
// Byte-level BPE: GPT-2's byte-to-unicode spelling of tokens and the merge table.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvc::engine {

// The UTF-8 spelling of a byte in a byte-level vocabulary (GPT-2's bytes_to_unicode: printable
// Latin-1 bytes stand for themselves, the other 68 for U+0100.. in byte order, so " " is "Ġ").
[[nodiscard]] const std::string& bpe_byte_spelling(unsigned char byte);
// The bytes a byte-level piece spells; characters outside the map are copied as they are.
[[nodiscard]] std::string bpe_piece_bytes(std::string_view piece);

// The merges of tokenizer.ggml.merges: "left right" at index r merges that pair with rank r
// (lower first) into the token left+right.
class BpeMerges {
 public:
  // `ids` maps a token's text to its id. Throws kvc::Error naming the merge that is malformed or
  // names a token (left, right or their concatenation) that is not in the vocabulary.
  BpeMerges(const std::vector<std::string>& merges, const std::unordered_map<std::string, std::int32_t>& ids);

  // Merges the tokens of one word, lowest rank first and leftmost among equal ranks (llama.cpp's
  // and Hugging Face's order), with a priority queue: O(n log n) in the word's length.
  void apply(std::vector<std::int32_t>& word) const;

 private:
  struct Merge {
    std::int32_t rank;
    std::int32_t id;
  };
  static std::uint64_t key(std::int32_t left, std::int32_t right) noexcept {
    return std::uint64_t(std::uint32_t(left)) << 32 | std::uint32_t(right);
  }
  std::unordered_map<std::uint64_t, Merge> table_;
};

}  // namespace kvc::engine
