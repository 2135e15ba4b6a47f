#pragma once
// The merge loop both tokenizers share: repeatedly merge the adjacent pair of the highest
// priority, leftmost among equal priorities, until no pair merges. Byte-level BPE gives a pair
// the priority -rank (lowest rank first, llama.cpp's and Hugging Face's order); SentencePiece
// gives it the merged token's score (llama2.c's order). Rescanning every pair after each merge,
// as llama2.c does, is quadratic; a priority queue over linked symbols gives the same merges in
// O(n log n), as llama.cpp's tokenizers do.
#include <cstddef>
#include <cstdint>
#include <queue>
#include <vector>

namespace kvc::engine {

struct PairMerge {
  double priority;      // larger merges first
  std::int32_t merged;  // the token the pair becomes
};

// `find(left_id, right_id, PairMerge&)` says whether the pair merges, and into what.
template <class Find>
void merge_pairs(std::vector<std::int32_t>& ids, Find&& find) {
  if (ids.size() < 2) return;
  struct Symbol {
    std::int32_t id;  // -1 once merged into its left neighbour
    std::int32_t prev, next;
  };
  struct Candidate {
    double priority;
    std::int32_t left, right, left_id, right_id, merged;
    // std::priority_queue pops the largest: the highest priority, then the leftmost.
    bool operator<(const Candidate& o) const noexcept {
      return priority != o.priority ? priority < o.priority : left > o.left;
    }
  };
  const auto n = std::int32_t(ids.size());
  std::vector<Symbol> symbols(ids.size());
  for (std::int32_t i = 0; i < n; ++i) symbols[std::size_t(i)] = {ids[std::size_t(i)], i - 1, i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate> queue;
  const auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const std::int32_t a = symbols[std::size_t(left)].id, b = symbols[std::size_t(right)].id;
    if (PairMerge m{}; find(a, b, m)) queue.push({m.priority, left, right, a, b, m.merged});
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[std::size_t(c.left)];
    Symbol& right = symbols[std::size_t(c.right)];
    // Stale when either side has merged since: a merge makes a longer piece, so an unchanged id
    // is an unchanged symbol.
    if (left.id != c.left_id || right.id != c.right_id || left.next != c.right) continue;
    left.id = c.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[std::size_t(right.next)].prev = c.left;
    right.id = -1;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  ids.clear();
  for (std::int32_t i = 0; i >= 0; i = symbols[std::size_t(i)].next) ids.push_back(symbols[std::size_t(i)].id);
}

}  // namespace kvc::engine
