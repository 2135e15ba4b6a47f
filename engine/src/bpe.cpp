#include "bpe.hpp"

#include "kvc/core/error.hpp"

#include <array>
#include <queue>

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
  if (word.size() < 2) return;
  struct Symbol {
    std::int32_t id;  // -1 once merged into its left neighbour
    std::int32_t prev, next;
  };
  struct Candidate {
    std::int32_t rank, left, right, left_id, right_id, merged;
    // std::priority_queue pops the largest: make that the lowest rank, then the leftmost.
    bool operator<(const Candidate& o) const noexcept { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  const auto n = std::int32_t(word.size());
  std::vector<Symbol> symbols(word.size());
  for (std::int32_t i = 0; i < n; ++i) symbols[std::size_t(i)] = {word[std::size_t(i)], i - 1, i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate> queue;
  const auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const std::int32_t a = symbols[std::size_t(left)].id, b = symbols[std::size_t(right)].id;
    if (const auto it = table_.find(key(a, b)); it != table_.end()) queue.push({it->second.rank, left, right, a, b, it->second.id});
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[std::size_t(c.left)];
    Symbol& right = symbols[std::size_t(c.right)];
    // Stale when either side has merged since: symbols only grow, so an unchanged id is unchanged text.
    if (left.id != c.left_id || right.id != c.right_id || left.next != c.right) continue;
    left.id = c.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[std::size_t(right.next)].prev = c.left;
    right.id = -1;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  word.clear();
  for (std::int32_t i = 0; i >= 0; i = symbols[std::size_t(i)].next) word.push_back(symbols[std::size_t(i)].id);
}

}  // namespace kvc::engine
