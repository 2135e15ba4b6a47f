#include "kvc_engine/tokenizer.hpp"

#include "kvc/core/error.hpp"

#include <cmath>
#include <fstream>

namespace kvc::engine {

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
  // First occurrence wins, so a duplicated piece resolves to the lower id.
  for (std::int32_t i = std::int32_t(t.pieces_.size()) - 1; i >= 0; --i) t.ids_[t.pieces_[std::size_t(i)]] = i;
  return t;
}

std::int32_t Tokenizer::lookup(std::string_view piece) const {
  const auto it = ids_.find(std::string(piece));
  return it == ids_.end() ? -1 : it->second;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool dummy_prefix) const {
  std::vector<std::int32_t> tokens;
  tokens.reserve(text.size() + 2);
  if (add_bos) tokens.push_back(bos);
  const std::size_t first = tokens.size();
  if (dummy_prefix && !text.empty()) {
    const std::int32_t space = lookup(" ");
    if (space >= 0) tokens.push_back(space);
  }
  // Split into UTF-8 code points: a lead byte and its continuation bytes (at most 4 in all).
  for (std::size_t i = 0; i < text.size();) {
    std::size_t j = i + 1;
    while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    const std::string_view point = text.substr(i, j - i);
    if (const std::int32_t id = lookup(point); id >= 0) {
      tokens.push_back(id);
    } else {
      for (const char c : point) tokens.push_back(static_cast<unsigned char>(c) + byte_offset);
    }
    i = j;
  }
  // Greedy merges; ties go to the leftmost pair, as in llama2.c (strictly greater score wins).
  std::string merged;
  for (;;) {
    float best_score = -1e10f;
    std::int32_t best_id = -1;
    std::size_t best_index = 0;
    for (std::size_t i = first; i + 1 < tokens.size(); ++i) {
      merged = pieces_[std::size_t(tokens[i])];
      merged += pieces_[std::size_t(tokens[i + 1])];
      const std::int32_t id = lookup(merged);
      if (id >= 0 && scores_[std::size_t(id)] > best_score) {
        best_score = scores_[std::size_t(id)];
        best_id = id;
        best_index = i;
      }
    }
    if (best_id < 0) break;
    tokens[best_index] = best_id;
    tokens.erase(tokens.begin() + std::ptrdiff_t(best_index) + 1);
  }
  return tokens;
}

std::string Tokenizer::decode(std::int32_t previous, std::int32_t token) const {
  std::string_view piece = pieces_.at(std::size_t(token));
  if (previous == bos && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
  // Byte tokens are spelled <0xNN>.
  if (piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>') {
    unsigned value = 0;
    for (char c : piece.substr(3, 2)) {
      value <<= 4;
      if (c >= '0' && c <= '9') value |= unsigned(c - '0');
      else if (c >= 'A' && c <= 'F') value |= unsigned(c - 'A' + 10);
      else if (c >= 'a' && c <= 'f') value |= unsigned(c - 'a' + 10);
      else return std::string(piece);
    }
    return std::string(1, static_cast<char>(value));
  }
  return std::string(piece);
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& tokens) const {
  std::string out;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    out += decode(i == 0 ? bos : tokens[i - 1], tokens[i]);
  return out;
}

}  // namespace kvc::engine
