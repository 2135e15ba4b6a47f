#include "bpe.hpp"
#include "pair_merge.hpp"

#include "kvc/core/error.hpp"

#include <array>

namespace kvc::engine {
namespace {

bool printable(unsigned byte) { return (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174; }

struct ByteMap {
  std::array<std::string, 256> spelling;
  std::array<std::int16_t, 512> byte_of{};  // code point -> byte, -1 when no byte has it

  ByteMap() {
    byte_of.fill(-1);
    unsigned extra = 256;
    for (unsigned b = 0; b < 256; ++b) {
      const unsigned cpt = printable(b) ? b : extra++;
      byte_of[cpt] = std::int16_t(b);
      // Every code point here is below U+0800: two UTF-8 bytes at most.
      spelling[b] = cpt < 0x80 ? std::string(1, char(cpt))
                               : std::string{char(0xC0 | (cpt >> 6)), char(0x80 | (cpt & 0x3F))};
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::string& bpe_byte_spelling(unsigned char byte) { return byte_map().spelling[byte]; }

std::string bpe_piece_bytes(std::string_view piece) {
  const ByteMap& map = byte_map();
  std::string out;
  out.reserve(piece.size());
  for (std::size_t i = 0; i < piece.size();) {
    const auto b0 = static_cast<unsigned char>(piece[i]);
    if (b0 < 0x80) {
      out += map.byte_of[b0] >= 0 ? char(map.byte_of[b0]) : char(b0);
      ++i;
      continue;
    }
    if ((b0 & 0xE0) == 0xC0 && i + 1 < piece.size()) {
      const unsigned cpt = (b0 & 0x1Fu) << 6 | (static_cast<unsigned char>(piece[i + 1]) & 0x3Fu);
      if (cpt < map.byte_of.size() && map.byte_of[cpt] >= 0) {
        out += char(map.byte_of[cpt]);
        i += 2;
        continue;
      }
    }
    out += piece[i++];  // not a byte's spelling (special text): the bytes as they are
  }
  return out;
}

BpeMerges::BpeMerges(const std::vector<std::string>& merges,
                     const std::unordered_map<std::string, std::int32_t>& ids) {
  constexpr std::string_view where = "kvc::engine::Tokenizer (tokenizer.ggml.merges)";
  table_.reserve(merges.size());
  const auto id_of = [&](const std::string& text, std::size_t rank, std::string_view what) {
    const auto it = ids.find(text);
    if (it == ids.end())
      fail(where, "merge {} (\"{}\"): its {} \"{}\" is not a token", rank, merges[rank], what, text);
    return it->second;
  };
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    // From index 1, as llama.cpp: a left part may itself be a space.
    const std::size_t space = merge.find(' ', 1);
    if (space == std::string::npos || space + 1 == merge.size())
      fail(where, "merge {} (\"{}\") is not two tokens separated by a space", rank, merge);
    const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
    const std::int32_t left_id = id_of(left, rank, "left part"), right_id = id_of(right, rank, "right part");
    const std::int32_t merged = id_of(left + right, rank, "result");
    // A repeated pair keeps its first (lowest) rank, as llama.cpp's rank map does.
    table_.try_emplace(key(left_id, right_id), Merge{std::int32_t(rank), merged});
  }
}

void BpeMerges::apply(std::vector<std::int32_t>& word) const {
  merge_pairs(word, [&](std::int32_t a, std::int32_t b, PairMerge& m) {
    const auto it = table_.find(key(a, b));
    if (it == table_.end()) return false;
    m = {-double(it->second.rank), it->second.id};  // exact: ranks are int32
    return true;
  });
}

}  // namespace kvc::engine
