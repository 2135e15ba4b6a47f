#pragma once
// The llama2.c tokenizer: a scored vocabulary with byte fallback, encoded by greedy BPE merges.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvc::engine {

class Tokenizer {
 public:
  static constexpr std::int32_t bos = 1;
  static constexpr std::int32_t eos = 2;
  // Ids 3..258 are the raw bytes <0x00>..<0xFF>.
  static constexpr std::int32_t byte_offset = 3;

  // Reads and validates a tokenizer.bin for a vocabulary of `vocab_size` tokens: the file must
  // hold exactly that many entries with finite scores and sane lengths. Throws kvc::Error.
  [[nodiscard]] static Tokenizer load(const std::filesystem::path& path, std::int32_t vocab_size);

  // llama2.c's encode: optional BOS, optional dummy-prefix space token, UTF-8 code points (unknown
  // ones as byte tokens), then repeatedly merge the adjacent pair whose merge scores highest.
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, bool add_bos,
                                                 bool dummy_prefix = true) const;
  // The text of `token` following `previous`: the leading space after BOS is dropped and byte
  // tokens become their byte, as llama2.c prints them.
  [[nodiscard]] std::string decode(std::int32_t previous, std::int32_t token) const;
  [[nodiscard]] std::string decode(const std::vector<std::int32_t>& tokens) const;

  [[nodiscard]] std::int32_t vocab_size() const noexcept { return std::int32_t(pieces_.size()); }
  [[nodiscard]] const std::string& piece(std::int32_t token) const { return pieces_.at(std::size_t(token)); }
  // -1 when the string is not a token.
  [[nodiscard]] std::int32_t lookup(std::string_view piece) const;

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

}  // namespace kvc::engine
