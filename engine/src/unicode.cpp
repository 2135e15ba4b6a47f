#include "unicode.hpp"

#include "kvc/core/error.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>
#include <utility>

namespace kvc::engine {
namespace {

constexpr char32_t replacement = 0xFFFD;

void put_utf8(char32_t cpt, std::string& out) {
  if (cpt < 0x80) {
    out += char(cpt);
  } else if (cpt < 0x800) {
    out += char(0xC0 | (cpt >> 6));
    out += char(0x80 | (cpt & 0x3F));
  } else if (cpt < 0x10000) {
    out += char(0xE0 | (cpt >> 12));
    out += char(0x80 | ((cpt >> 6) & 0x3F));
    out += char(0x80 | (cpt & 0x3F));
  } else {
    out += char(0xF0 | (cpt >> 18));
    out += char(0x80 | ((cpt >> 12) & 0x3F));
    out += char(0x80 | ((cpt >> 6) & 0x3F));
    out += char(0x80 | (cpt & 0x3F));
  }
}

// GPT-2's split with the trailing `\s+` of the original: llama.cpp's list omits it, but its
// hand-written GPT-2 splitter has it, and the white space it catches would otherwise be left
// between matches, which the split keeps as a word anyway.
constexpr const char* gpt2_regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* llama3_regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* qwen2_regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreType {
  std::string_view name;
  std::vector<const char*> regexes;
  bool ignore_merges = false;
};

// llama.cpp's src/llama-vocab.cpp: the regex lists of the pre-tokenizers, by the names
// tokenizer.ggml.pre gives them.
const std::vector<PreType>& pre_types() {
  static const std::vector<PreType> types = {
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", gpt2_regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {"gpt-2", {gpt2_regex}},
      {"gpt2", {gpt2_regex}},
      {"smollm", {R"(\p{N})", gpt2_regex}},
      {"starcoder", {R"(\p{N})", gpt2_regex}},
      {"refact", {R"(\p{N})", gpt2_regex}},
      {"llama3", {llama3_regex}, true},
      {"llama-v3", {llama3_regex}, true},
      {"llama-bpe", {llama3_regex}, true},
      {"qwen2", {qwen2_regex}},
  };
  return types;
}

struct MatchDataFree {
  void operator()(pcre2_match_data* p) const noexcept { pcre2_match_data_free(p); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataFree>;

}  // namespace

struct Pretokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

Pretokenizer::~Pretokenizer() = default;

void canonical_utf8(std::string_view in, std::string& text, std::string& match) {
  text.clear();
  match.clear();
  text.reserve(in.size());
  match.reserve(in.size());
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
  const auto continuation = [&](std::size_t i) { return i < in.size() && (byte(i) & 0xC0) == 0x80; };
  for (std::size_t i = 0; i < in.size();) {
    const unsigned b0 = byte(i);
    char32_t cpt = replacement;
    std::size_t length = 1;
    if (b0 < 0x80) {
      cpt = b0;
    } else if ((b0 & 0xE0) == 0xC0 && continuation(i + 1)) {
      cpt = char32_t((b0 & 0x1F) << 6 | (byte(i + 1) & 0x3F));
      length = 2;
    } else if ((b0 & 0xF0) == 0xE0 && continuation(i + 1) && continuation(i + 2)) {
      cpt = char32_t((b0 & 0x0F) << 12 | (byte(i + 1) & 0x3F) << 6 | (byte(i + 2) & 0x3F));
      length = 3;
    } else if ((b0 & 0xF8) == 0xF0 && continuation(i + 1) && continuation(i + 2) && continuation(i + 3)) {
      cpt = char32_t((b0 & 0x07) << 18 | (byte(i + 1) & 0x3F) << 12 | (byte(i + 2) & 0x3F) << 6 |
                     (byte(i + 3) & 0x3F));
      length = 4;
    }
    if (cpt > 0x10FFFF) cpt = replacement;  // F4 90.. and above: no code point to write back
    i += length;
    put_utf8(cpt, text);
    put_utf8(cpt >= 0xD800 && cpt <= 0xDFFF ? replacement : cpt, match);
  }
}

std::shared_ptr<const Pretokenizer> Pretokenizer::create(std::string_view pre) {
  const std::string where = fmt::format("kvc::engine::Pretokenizer(\"{}\")", pre);
  const PreType* type = nullptr;
  std::string names;
  for (const auto& t : pre_types()) {
    if (t.name == pre) type = &t;
    names += names.empty() ? "" : ", ";
    names += t.name;
  }
  if (!type) fail(where, "tokenizer.ggml.pre names an unsupported pre-tokenizer (supported: {})", names);

  std::shared_ptr<Pretokenizer> result(new Pretokenizer);
  result->ignore_merges_ = type->ignore_merges;
  for (const char* pattern : type->regexes) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    auto regex = std::make_unique<Regex>();
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
    if (!regex->code) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error, message.data(), message.size());
      fail(where, "PCRE2 rejects `{}` at offset {}: {}", pattern, error_offset,
           reinterpret_cast<const char*>(message.data()));
    }
    // The JIT is several times faster; without it (unsupported CPU) PCRE2 interprets.
    (void)pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    result->regexes_.push_back(std::move(regex));
  }
  return result;
}

void Pretokenizer::split(std::string_view text, std::string_view match,
                         std::vector<std::string_view>& words) const {
  using Span = std::pair<std::size_t, std::size_t>;  // offset, length
  std::vector<Span> pieces, next;
  if (!text.empty()) pieces.emplace_back(0, text.size());
  for (const auto& regex : regexes_) {
    const MatchData data(pcre2_match_data_create_from_pattern(regex->code, nullptr));
    if (!data) fail("kvc::engine::Pretokenizer::split", "out of memory for PCRE2 match data");
    next.clear();
    for (const auto& [offset, length] : pieces) {
      // Each piece is its own subject, so a look-ahead never sees past the piece (as llama.cpp).
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(match.data() + offset);
      std::size_t done = 0;
      for (std::size_t start = 0; start < length;) {
        const int rc = pcre2_match(regex->code, subject, length, start, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          std::array<PCRE2_UCHAR, 256> message{};
          pcre2_get_error_message(rc, message.data(), message.size());
          fail("kvc::engine::Pretokenizer::split", "PCRE2 match failed: {}",
               reinterpret_cast<const char*>(message.data()));
        }
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
        const std::size_t begin = ovector[0], end = ovector[1];
        if (end == begin) {  // no pattern here matches empty text; step over a code point anyway
          ++start;
          while (start < length && (static_cast<unsigned char>(match[offset + start]) & 0xC0) == 0x80) ++start;
          continue;
        }
        if (begin > done) next.emplace_back(offset + done, begin - done);
        next.emplace_back(offset + begin, end - begin);
        done = start = end;
      }
      if (done < length) next.emplace_back(offset + done, length - done);
    }
    pieces.swap(next);
  }
  for (const auto& [offset, length] : pieces) words.push_back(text.substr(offset, length));
}

}  // namespace kvc::engine
