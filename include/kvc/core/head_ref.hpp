#pragma once
// HeadRef<P>: the one view of a (layer, KV head) every policy hook receives. It carries what a
// policy may need about the head: its identity, positions and budget, the policy's own per-token
// column and per-sequence state (both owned by the cache), scratch, and the rows (decoded on
// demand through HeadView). A new input a policy needs becomes a member here, not a new call path
// in the container.
#include "kvc/core/error.hpp"
#include "kvc/core/head_view.hpp"
#include "kvc/core/token_tag.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace kvc {

// A policy keeps per-token state by naming its type, `using column = float;`: the cache holds one
// value per token of every head for it, value-initialized when the token is appended, reserved,
// compacted with the tokens, cleared and counted in memory_bytes() like the positions.
struct NoColumn {};
// A policy keeps per-sequence state by naming a type, `struct state {...};` (default-constructible):
// the cache holds one, so copying a configured policy never copies a sequence.
struct NoState {};

template <class P>
struct policy_column {
  using type = NoColumn;
};
template <class P>
  requires requires { typename P::column; }
struct policy_column<P> {
  using type = typename P::column;
};
template <class P>
using column_t = typename policy_column<P>::type;

template <class P>
struct policy_state {
  using type = NoState;
};
template <class P>
  requires requires { typename P::state; }
struct policy_state<P> {
  using type = typename P::state;
};
template <class P>
using state_t = typename policy_state<P>::type;

// Where a head is: its identity, the original positions of its tokens (storage order) and the
// number of tokens it keeps after compression (SIZE_MAX when unbounded), and the tokens' tags
// (storage order) when some policy of the cache reads them (TagReader), else empty.
struct HeadInfo {
  std::size_t layer = 0;
  std::size_t kv_head = 0;
  std::span<const std::int32_t> positions{};
  std::size_t budget = std::numeric_limits<std::size_t>::max();
  std::span<const TokenTag> tags{};
  // The selection's scores (ScoringHook), one per token: handed to the merging hook only.
  std::span<const float> scores{};
};

template <class P>
class HeadRef {
 public:
  using column_type = column_t<P>;
  using state_type = state_t<P>;

  // The cache builds these; tests of a policy's decisions may build one without rows or state.
  explicit HeadRef(HeadInfo info, std::span<column_type> column = {}, std::span<std::uint32_t> scratch = {},
                   state_type* state = nullptr, HeadView* rows = nullptr) noexcept
      : info_(info), column_(column), scratch_(scratch), state_(state), rows_(rows) {}

  [[nodiscard]] std::size_t layer() const noexcept { return info_.layer; }
  [[nodiscard]] std::size_t kv_head() const noexcept { return info_.kv_head; }
  [[nodiscard]] std::size_t size() const noexcept { return info_.positions.size(); }
  [[nodiscard]] std::span<const std::int32_t> positions() const noexcept { return info_.positions; }
  [[nodiscard]] std::size_t budget() const noexcept { return info_.budget; }
  // The tags given at append, one per token in storage order (empty unless a policy reads them).
  [[nodiscard]] std::span<const TokenTag> tags() const noexcept { return info_.tags; }
  // In merge() only: what the selection ranked the head's tokens by (higher was kept first), one
  // per token in storage order, when the selection exposes them (ScoringHook: H2O's accumulated
  // attention, TOVA's last weights, SnapKV's pooled window attention); empty otherwise and in
  // every other hook. PolicySetup::selection_scores tells setup() whether they will be there.
  [[nodiscard]] std::span<const float> scores() const noexcept { return info_.scores; }

  // The policy's per-token values, one per token in storage order (empty without a column).
  [[nodiscard]] std::span<column_type> column() const noexcept { return column_; }
  // One uint32 per token of the head, free for the hook's duration (selection's ranking keys).
  [[nodiscard]] std::span<std::uint32_t> scratch() const noexcept { return scratch_; }
  [[nodiscard]] state_type& state() const noexcept {
    KVC_CONTRACT(state_ != nullptr, "HeadRef::state: this view carries no policy state");
    return *state_;
  }

  // The same head seen by another policy, with that policy's column and state: how a policy
  // chosen at run time hands the view to the concrete policy it wraps.
  template <class Q>
  [[nodiscard]] HeadRef<Q> rebind(std::span<column_t<Q>> column, state_t<Q>* state) const noexcept {
    return HeadRef<Q>(info_, column, scratch_, state, rows_);
  }

  // Rows in the stored space (rank dims under low rank), decoded and re-encoded on demand.
  [[nodiscard]] std::size_t key_dim() const noexcept { return rows().key_dim(); }
  [[nodiscard]] std::size_t value_dim() const noexcept { return rows().value_dim(); }
  void load_key(std::size_t i, std::span<float> out) const noexcept { rows().load_key(i, out); }
  void load_value(std::size_t i, std::span<float> out) const noexcept { rows().load_value(i, out); }
  void store_key(std::size_t i, std::span<const float> row) const noexcept { rows().store_key(i, row); }
  void store_value(std::size_t i, std::span<const float> row) const noexcept { rows().store_value(i, row); }

 private:
  [[nodiscard]] HeadView& rows() const noexcept {
    KVC_CONTRACT(rows_ != nullptr, "HeadRef: this view carries no rows");
    return *rows_;
  }

  HeadInfo info_;
  std::span<column_type> column_;
  std::span<std::uint32_t> scratch_;
  state_type* state_;
  HeadView* rows_;
};

}  // namespace kvc
