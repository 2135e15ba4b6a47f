#pragma once
// The text side of byte-level BPE: UTF-8 read as llama.cpp reads it, and the regex
// pre-tokenizers that split a text into words (PCRE2 with Unicode properties).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

// Decodes `in` as llama.cpp does (each invalid byte becomes U+FFFD; surrogates and overlong
// forms are decoded, not rejected) and re-encodes it into `text`, the bytes the words are cut
// from. `match` is `text` with surrogates replaced by U+FFFD (the same length, also of the
// category "other"), so that PCRE2 can match it as valid UTF-8.
void canonical_utf8(std::string_view in, std::string& text, std::string& match);

// A list of regexes applied in turn: each one splits every piece the previous ones left into
// its matches and the text between them (which is kept), as llama.cpp's unicode_regex_split.
class Pretokenizer {
 public:
  // The regexes that llama.cpp uses for this tokenizer.ggml.pre name; throws kvc::Error naming
  // the supported names when `pre` is not one of them.
  [[nodiscard]] static std::shared_ptr<const Pretokenizer> create(std::string_view pre);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Appends the words of `text` (offsets into it); `match` is canonical_utf8's second output.
  void split(std::string_view text, std::string_view match, std::vector<std::string_view>& words) const;
  // Llama 3: a word that is a whole token is taken as is, without merges.
  [[nodiscard]] bool ignore_merges() const noexcept { return ignore_merges_; }

 private:
  struct Regex;
  Pretokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace kvc::engine
