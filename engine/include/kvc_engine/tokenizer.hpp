#pragma once
// One tokenizer for the three vocabularies the engine meets (docs/tokenizer.md):
//  * llama2.c's tokenizer.bin: scored pieces, byte fallback, greedy merges by score;
//  * GGUF `llama` (SentencePiece-style): the same algorithm on pieces spelled with U+2581;
//  * GGUF `gpt2` (byte-level BPE): a regex pre-tokenizer, then merges by rank on the bytes of
//    each word, spelled with GPT-2's byte-to-unicode map.
// Special tokens (control and user-defined) are matched whole before anything else when asked.
#include "kvc/core/token_tag.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvc::engine {

enum class TokenizerModel {
  llama2c,  // llama2.c tokenizer.bin
  spm,      // GGUF tokenizer.ggml.model = "llama"
  bpe,      // GGUF tokenizer.ggml.model = "gpt2"
};

// GGUF's tokenizer.ggml.token_type values.
enum class TokenType : std::int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

// Everything a tokenizer is made from, as a GGUF file states it. Untrusted: Tokenizer::from_spec
// validates it.
struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::bpe;
  std::vector<std::string> tokens;        // as stored: U+2581 for spaces (spm), byte-mapped (bpe)
  std::vector<float> scores;              // spm: merge priority, one per token; bpe: empty or unused
  std::vector<TokenType> token_types;     // empty: every token normal
  std::vector<std::string> merges;        // bpe: "left right", rank = index
  std::string pre = "default";            // bpe: the pre-tokenizer (tokenizer.ggml.pre)
  std::int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;  // -1: none
  bool add_bos = false;
  bool add_space_prefix = false;          // spm: a space before the text (and after specials)
};

struct EncodeOptions {
  bool add_bos = false;        // prepend bos_id()
  bool parse_special = false;  // match the text of control tokens (user-defined ones always)
  // Prefix a space to the text and after each special token; unset: the vocabulary's own
  // choice (llama2.c: yes, spm: add_space_prefix, bpe: no).
  std::optional<bool> space_prefix = std::nullopt;
};

class Pretokenizer;
class BpeMerges;

class Tokenizer {
 public:
  // The llama2.c vocabulary: BOS, EOS, and ids 3..258 the raw bytes <0x00>..<0xFF>. Kept for
  // llama2.c callers; bos_id()/eos_id() serve every vocabulary.
  static constexpr std::int32_t bos = 1;
  static constexpr std::int32_t eos = 2;
  static constexpr std::int32_t byte_offset = 3;

  // Reads and validates a tokenizer.bin for a vocabulary of `vocab_size` tokens: the file must
  // hold exactly that many entries with finite scores and sane lengths, and ids 3..258 must be
  // the byte tokens (a smaller vocabulary cannot encode arbitrary text). Throws kvc::Error.
  [[nodiscard]] static Tokenizer load(const std::filesystem::path& path, std::int32_t vocab_size);
  // Validates the spec (sizes, ids, duplicates, merges, pre-tokenizer name) and builds the
  // tokenizer. Throws kvc::Error naming the field.
  [[nodiscard]] static Tokenizer from_spec(TokenizerSpec spec);

  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // llama2.c's call: optional BOS and dummy-prefix space, no special tokens.
  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text, bool add_bos,
                                                 bool dummy_prefix = true) const;

  // The bytes of `token` following `previous`: after BOS the dummy-prefix space is dropped
  // (llama2.c and spm with a space prefix), byte tokens become their byte, special tokens their text.
  [[nodiscard]] std::string decode(std::int32_t previous, std::int32_t token) const;
  // The first token is decoded as following BOS.
  [[nodiscard]] std::string decode(const std::vector<std::int32_t>& tokens) const;

  [[nodiscard]] TokenizerModel model() const noexcept { return model_; }
  [[nodiscard]] std::int32_t vocab_size() const noexcept { return std::int32_t(pieces_.size()); }
  // The token's text as stored (spm pieces with spaces, not U+2581; bpe pieces byte-mapped).
  [[nodiscard]] const std::string& piece(std::int32_t token) const { return pieces_.at(std::size_t(token)); }
  [[nodiscard]] TokenType token_type(std::int32_t token) const { return types_.at(std::size_t(token)); }
  // -1 when the string is not a token (spelled as piece() spells it).
  [[nodiscard]] std::int32_t lookup(std::string_view piece) const;

  [[nodiscard]] std::int32_t bos_id() const noexcept { return bos_id_; }
  [[nodiscard]] std::int32_t eos_id() const noexcept { return eos_id_; }
  [[nodiscard]] std::int32_t unk_id() const noexcept { return unk_id_; }
  [[nodiscard]] std::int32_t pad_id() const noexcept { return pad_id_; }
  // Whether the vocabulary asks for BOS before a text (tokenizer.ggml.add_bos_token).
  [[nodiscard]] bool add_bos() const noexcept { return add_bos_; }

 private:
  Tokenizer() = default;
  void encode_fragment(std::string_view text, bool space_prefix, std::vector<std::int32_t>& out) const;
  void encode_scored(std::string_view text, std::vector<std::int32_t>& out) const;

  TokenizerModel model_ = TokenizerModel::llama2c;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::array<std::int32_t, 256> byte_ids_{};  // the token of each byte (byte fallback / byte level)
  std::vector<std::int32_t> specials_;        // control and user-defined tokens, longest first
  std::shared_ptr<const Pretokenizer> pretokenizer_;  // bpe
  std::shared_ptr<const BpeMerges> merges_;            // bpe
  std::int32_t bos_id_ = bos, eos_id_ = eos, unk_id_ = -1, pad_id_ = -1;
  bool add_bos_ = true;
  bool space_prefix_ = true;
};

// The kvc::tag bits of every token id, for Model::set_token_tags: tag::special for control and
// user-defined tokens; tag::separator for a token whose text is made of . , ; : ! ? and whitespace
// with at least one of those marks or a line break (SepLLM's separators: its reference lists the
// ids of exactly such tokens per model).
[[nodiscard]] std::vector<TokenTag> token_tags(const Tokenizer& tokenizer);

}  // namespace kvc::engine
