#include "kvc_engine/tokenizer.hpp"

#include "bpe.hpp"
#include "pair_merge.hpp"
#include "kvc/core/error.hpp"
#include "unicode.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>

namespace kvc::engine {
namespace {

// Far above any real vocabulary (the largest are about 260K tokens); a larger count is a
// corrupt file, not a model.
constexpr std::size_t max_vocab = std::size_t{1} << 22;
constexpr std::size_t max_merges = std::size_t{1} << 24;
constexpr std::string_view spm_space = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string byte_token_text(unsigned byte) { return fmt::format("<0x{:02X}>", byte); }

// The byte a piece spelled <0xNN> stands for, or -1.
int byte_token_value(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
    else return -1;
  }
  return value;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  std::size_t done = 0;
  for (std::size_t at = text.find(from); at != std::string_view::npos; at = text.find(from, done)) {
    out.append(text.substr(done, at - done)).append(to);
    done = at + from.size();
  }
  return out.append(text.substr(done));
}

bool is_special(TokenType type) {
  return type == TokenType::control || type == TokenType::user_defined || type == TokenType::unknown;
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& path, std::int32_t vocab_size) {
  const std::string where = fmt::format("kvc::engine::Tokenizer::load({})", path.string());
  if (vocab_size <= 0) fail(where, "vocab_size must be positive, got {}", vocab_size);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(where, "cannot open the file");
  std::int32_t max_token_length = 0;
  if (!in.read(reinterpret_cast<char*>(&max_token_length), sizeof max_token_length))
    fail(where, "file is empty or shorter than the 4-byte max_token_length header");
  if (max_token_length <= 0 || max_token_length > 4096)
    fail(where, "max_token_length = {} is not plausible (not a llama2.c tokenizer?)", max_token_length);

  Tokenizer t;
  t.pieces_.reserve(std::size_t(vocab_size));
  t.scores_.reserve(std::size_t(vocab_size));
  for (std::int32_t i = 0; i < vocab_size; ++i) {
    float score = 0;
    std::int32_t length = 0;
    if (!in.read(reinterpret_cast<char*>(&score), sizeof score) ||
        !in.read(reinterpret_cast<char*>(&length), sizeof length))
      fail(where, "file is truncated: entry {} of {} is missing", i, vocab_size);
    if (!std::isfinite(score)) fail(where, "token {} has a non-finite score", i);
    if (length <= 0 || length > max_token_length)
      fail(where, "token {} has length {}, outside 1..max_token_length ({})", i, length,
           max_token_length);
    std::string piece(std::size_t(length), '\0');
    if (!in.read(piece.data(), length))
      fail(where, "file is truncated inside token {} of {}", i, vocab_size);
    t.pieces_.push_back(std::move(piece));
    t.scores_.push_back(score);
  }
  if (in.peek() != std::char_traits<char>::eof())
    fail(where, "file has bytes after the {} tokens the model expects (wrong tokenizer for this model?)",
         vocab_size);
  t.types_.assign(t.pieces_.size(), TokenType::normal);
  // First occurrence wins, so a duplicated piece resolves to the lower id.
  for (std::int32_t i = vocab_size - 1; i >= 0; --i) t.ids_[t.pieces_[std::size_t(i)]] = i;
  // llama2.c falls back to the byte tokens at byte + 3 without looking: a vocabulary that does
  // not hold them there would send encode() past the end of the vocabulary.
  for (unsigned b = 0; b < 256; ++b) {
    const auto id = std::int32_t(b) + byte_offset;
    if (id >= vocab_size || t.pieces_[std::size_t(id)] != byte_token_text(b))
      fail(where, "token {} must be the byte token {} (llama2.c's byte fallback); a vocabulary of {} "
                  "tokens without all 256 byte tokens at 3..258 cannot encode arbitrary text",
           id, byte_token_text(b), vocab_size);
    t.byte_ids_[b] = id;
  }
  return t;
}

Tokenizer Tokenizer::from_spec(TokenizerSpec spec) {
  constexpr std::string_view where = "kvc::engine::Tokenizer::from_spec";
  const std::size_t n = spec.tokens.size();
  if (n == 0) fail(where, "tokenizer.ggml.tokens is empty");
  if (n > max_vocab) fail(where, "tokenizer.ggml.tokens has {} tokens, more than the limit {}", n, max_vocab);
  if (spec.model == TokenizerModel::llama2c)
    fail(where, "model llama2c is read by Tokenizer::load, not from a spec");
  if (spec.model == TokenizerModel::spm && spec.scores.size() != n)
    fail(where, "tokenizer.ggml.scores has {} entries for {} tokens", spec.scores.size(), n);
  if (spec.model == TokenizerModel::bpe && !spec.scores.empty() && spec.scores.size() != n)
    fail(where, "tokenizer.ggml.scores has {} entries for {} tokens", spec.scores.size(), n);
  if (!spec.token_types.empty() && spec.token_types.size() != n)
    fail(where, "tokenizer.ggml.token_type has {} entries for {} tokens", spec.token_types.size(), n);
  if (spec.merges.size() > max_merges)
    fail(where, "tokenizer.ggml.merges has {} entries, more than the limit {}", spec.merges.size(), max_merges);
  for (std::size_t i = 0; i < spec.scores.size(); ++i)
    if (!std::isfinite(spec.scores[i])) fail(where, "tokenizer.ggml.scores[{}] is not finite", i);
  for (std::size_t i = 0; i < spec.token_types.size(); ++i) {
    const auto type = std::int32_t(spec.token_types[i]);
    if (type < 0 || type > std::int32_t(TokenType::byte))
      fail(where, "tokenizer.ggml.token_type[{}] = {} is not a token type (0..6)", i, type);
  }
  const auto check_id = [&](std::int32_t id, std::string_view field) {
    if (id < -1 || id >= std::int32_t(n))
      fail(where, "tokenizer.ggml.{} = {} is outside the vocabulary of {} tokens", field, id, n);
  };
  check_id(spec.bos_id, "bos_token_id");
  check_id(spec.eos_id, "eos_token_id");
  check_id(spec.unk_id, "unknown_token_id");
  check_id(spec.pad_id, "padding_token_id");
  if (spec.add_bos && spec.bos_id < 0)
    fail(where, "tokenizer.ggml.add_bos_token is true but there is no tokenizer.ggml.bos_token_id");

  Tokenizer t;
  t.model_ = spec.model;
  t.bos_id_ = spec.bos_id;
  t.eos_id_ = spec.eos_id;
  t.unk_id_ = spec.unk_id;
  t.pad_id_ = spec.pad_id;
  t.add_bos_ = spec.add_bos;
  // llama.cpp adds no space before a byte-level BPE text, whatever the file says.
  t.space_prefix_ = spec.model == TokenizerModel::spm && spec.add_space_prefix;
  t.types_ = spec.token_types.empty() ? std::vector<TokenType>(n, TokenType::normal) : std::move(spec.token_types);
  t.scores_ = spec.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(spec.scores);
  t.pieces_ = std::move(spec.tokens);
  t.ids_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string& piece = t.pieces_[i];
    if (piece.empty()) fail(where, "tokenizer.ggml.tokens[{}] is empty", i);
    // SentencePiece spells a space U+2581; held as a space, the llama2.c algorithm applies as is.
    if (t.model_ == TokenizerModel::spm) piece = replace_all(piece, spm_space, " ");
    if (const auto [it, fresh] = t.ids_.try_emplace(piece, std::int32_t(i)); !fresh)
      fail(where, "tokenizer.ggml.tokens[{}] (\"{}\") repeats token {}", i, piece, it->second);
  }
  for (unsigned b = 0; b < 256; ++b) {
    const std::string text = t.model_ == TokenizerModel::bpe ? bpe_byte_spelling(static_cast<unsigned char>(b))
                                                             : byte_token_text(b);
    const std::int32_t id = t.lookup(text);
    if (id < 0 && t.unk_id_ < 0)
      fail(where, "tokenizer.ggml.tokens has no token \"{}\" for byte 0x{:02X} and there is no "
                  "tokenizer.ggml.unknown_token_id to stand for it", text, b);
    // Without the byte's token, the byte becomes the unknown token (stated in docs/tokenizer.md).
    t.byte_ids_[b] = id >= 0 ? id : t.unk_id_;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (is_special(t.types_[i])) t.specials_.push_back(std::int32_t(i));
  std::stable_sort(t.specials_.begin(), t.specials_.end(), [&](std::int32_t a, std::int32_t b) {
    return t.pieces_[std::size_t(a)].size() > t.pieces_[std::size_t(b)].size();
  });
  if (t.model_ == TokenizerModel::bpe) {
    t.pretokenizer_ = Pretokenizer::create(spec.pre);
    t.merges_ = std::make_shared<const BpeMerges>(spec.merges, t.ids_);
  }
  return t;
}

std::int32_t Tokenizer::lookup(std::string_view piece) const {
  const auto it = ids_.find(std::string(piece));
  return it == ids_.end() ? -1 : it->second;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool dummy_prefix) const {
  return encode(text, EncodeOptions{.add_bos = add_bos, .parse_special = false, .space_prefix = dummy_prefix});
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 2 + 2);
  if (options.add_bos) {
    if (bos_id_ < 0) fail("kvc::engine::Tokenizer::encode", "add_bos is set but the vocabulary has no BOS token");
    out.push_back(bos_id_);
  }
  // Special tokens first, longest first, each at every place it occurs in the text left between
  // earlier ones (llama.cpp's tokenizer_st_partition). A fragment is raw text (token -1) or a token.
  struct Fragment {
    std::string_view text;
    std::int32_t token;
  };
  std::vector<Fragment> fragments, next;
  if (!text.empty()) fragments.push_back({text, -1});
  for (const std::int32_t special : specials_) {
    // User-defined tokens are always matched; control and unknown ones only when asked.
    if (!options.parse_special && types_[std::size_t(special)] != TokenType::user_defined) continue;
    const std::string& needle = pieces_[std::size_t(special)];
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::size_t done = 0;
      for (std::size_t at = f.text.find(needle); at != std::string_view::npos; at = f.text.find(needle, done)) {
        if (at > done) next.push_back({f.text.substr(done, at - done), -1});
        next.push_back({{}, special});
        done = at + needle.size();
      }
      if (done < f.text.size()) next.push_back({f.text.substr(done), -1});
    }
    fragments.swap(next);
  }
  const bool space_prefix = options.space_prefix.value_or(space_prefix_);
  bool after_special = true;  // the start of the text counts as following a special token
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      encode_fragment(f.text, space_prefix && after_special, out);
    }
    after_special = f.token >= 0;
  }
  return out;
}

void Tokenizer::encode_fragment(std::string_view text, bool space_prefix, std::vector<std::int32_t>& out) const {
  std::string prefixed;
  if (space_prefix) {
    prefixed.reserve(text.size() + 1);
    prefixed += ' ';
    prefixed += text;
    text = prefixed;
  }
  if (model_ != TokenizerModel::bpe) {
    encode_scored(text, out);
    return;
  }
  std::string canonical, match;
  canonical_utf8(text, canonical, match);
  std::vector<std::string_view> words;
  pretokenizer_->split(canonical, match, words);
  std::vector<std::int32_t> symbols;
  std::string spelled;
  for (const std::string_view word : words) {
    if (pretokenizer_->ignore_merges()) {
      spelled.clear();
      for (const char c : word) spelled += bpe_byte_spelling(static_cast<unsigned char>(c));
      if (const std::int32_t id = lookup(spelled); id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    symbols.clear();
    for (const char c : word) symbols.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    merges_->apply(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
  }
}

void Tokenizer::encode_scored(std::string_view text, std::vector<std::int32_t>& out) const {
  std::vector<std::int32_t> symbols;
  symbols.reserve(text.size());
  // Split into UTF-8 code points: a lead byte and its continuation bytes (at most 4 in all).
  for (std::size_t i = 0; i < text.size();) {
    std::size_t j = i + 1;
    while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    const std::string_view point = text.substr(i, j - i);
    if (const std::int32_t id = lookup(point); id >= 0) {
      symbols.push_back(id);
    } else {
      for (const char c : point) symbols.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    }
    i = j;
  }
  // The pair whose concatenation is the highest-scoring token merges first (llama2.c's order).
  std::string merged;
  merge_pairs(symbols, [&](std::int32_t a, std::int32_t b, PairMerge& m) {
    merged = pieces_[std::size_t(a)];
    merged += pieces_[std::size_t(b)];
    const std::int32_t id = lookup(merged);
    if (id < 0) return false;
    m = {double(scores_[std::size_t(id)]), id};
    return true;
  });
  out.insert(out.end(), symbols.begin(), symbols.end());
}

std::string Tokenizer::decode(std::int32_t previous, std::int32_t token) const {
  if (token < 0 || token >= vocab_size())
    fail("kvc::engine::Tokenizer::decode", "token {} is outside the vocabulary of {} tokens", token, vocab_size());
  std::string_view piece = pieces_[std::size_t(token)];
  if (is_special(types_[std::size_t(token)])) return std::string(piece);
  if (model_ == TokenizerModel::bpe) return bpe_piece_bytes(piece);
  if (previous == bos_id_ && space_prefix_ && piece.starts_with(' ')) piece.remove_prefix(1);
  if (const int byte = byte_token_value(piece); byte >= 0) return std::string(1, static_cast<char>(byte));
  return std::string(piece);
}

std::vector<TokenTag> token_tags(const Tokenizer& tokenizer) {
  const auto is_separator = [](std::string_view text) {
    bool mark = false;
    for (const char c : text) {
      if (std::string_view(".,;:!?\n").find(c) != std::string_view::npos)
        mark = true;
      else if (c != ' ' && c != '\t' && c != '\r')
        return false;
    }
    return mark;
  };
  std::vector<TokenTag> tags(std::size_t(tokenizer.vocab_size()), tag::none);
  for (std::int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (is_special(tokenizer.token_type(id)))
      tags[std::size_t(id)] = tag::special;
    else if (is_separator(tokenizer.decode(tokenizer.bos_id(), id)))
      tags[std::size_t(id)] = tag::separator;
  }
  return tags;
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& tokens) const {
  std::string out;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    out += decode(i == 0 ? bos_id_ : tokens[i - 1], tokens[i]);
  return out;
}

}  // namespace kvc::engine
