#pragma once
// KVCache<Layout, Policy...>: the KV cache of one sequence, all layers and KV heads, with any
// combination of one policy per family. See docs/architecture.md for the data flow.
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/quantization.hpp"
#include "kvc/concepts/hooks.hpp"
#include "kvc/concepts/layout.hpp"
#include "kvc/concepts/selection.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/channel_store.hpp"
#include "kvc/core/checked.hpp"
#include "kvc/core/contiguous_layout.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/head_view.hpp"
#include "kvc/core/options.hpp"
#include "kvc/core/paged_layout.hpp"
#include "kvc/core/policy_pack.hpp"
#include "kvc/core/shape.hpp"
#include "kvc/core/token_tag.hpp"
#include "kvc/kernels/table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

namespace kvc {

template <Layout L = ContiguousLayout, class... Policy>
class KVCache {
  static_assert((HasFamily<Policy> && ...),
                "Every policy must name its family with a nested `using family = kvc::family::X;` "
                "where X is budget, selection, merging, quantization or lowrank.");
  static_assert((detail::KnownFamily<Policy> && ...),
                "A policy names a family that is not one of kvc::family::budget, selection, merging, "
                "quantization or lowrank.");
  static_assert(detail::at_most_one_per_family<Policy...>(),
                "A KVCache takes at most one policy of each family: two selections (or two quantizers, "
                "two budgets...) would disagree about the same tokens. Compose different families instead.");
  static_assert((detail::ValidPolicy<Policy> && ...),
                "A policy does not satisfy the concept of the family it names; see the concept in "
                "kvc/concepts/<family>.hpp for the members it needs.");

  using Budget = detail::family_policy_t<family::budget, Policy...>;
  using Selection = detail::family_policy_t<family::selection, Policy...>;
  using Merging = detail::family_policy_t<family::merging, Policy...>;
  using Quantization = detail::family_policy_t<family::quantization, Policy...>;
  using LowRank = detail::family_policy_t<family::lowrank, Policy...>;

 public:
  static constexpr bool has_budget = !std::is_void_v<Budget>;
  static constexpr bool has_selection = !std::is_void_v<Selection>;
  static constexpr bool has_merging = !std::is_void_v<Merging>;
  static constexpr bool has_quantization = !std::is_void_v<Quantization>;
  static constexpr bool has_lowrank = !std::is_void_v<LowRank>;
  // Whether any policy implements on_attend: without one the kernel writes no logits.
  static constexpr bool observes_attention = (AttendHook<Policy> || ... || false);
  // Whether the selection scores the prompt from an observation window (compress_prompt()).
  static constexpr bool observes_prompt = (PromptHook<Policy> || ... || false);
  // Whether a policy reads the per-token tags given at append: only then are they stored.
  static constexpr bool keeps_tags = (TagReader<Policy> || ... || false);
  // Whether the budget policy shares a layer's budget across its heads by the selection's scores
  // (AdaKV) at compress_prompt().
  static constexpr bool shares_budgets = (ShareHook<Policy> || ... || false) && (ScoringHook<Policy> || ... || false);
  // Whether the merging policy sees the selection's scores (HeadRef::scores) in merge().
  static constexpr bool merging_sees_scores = [] {
    if constexpr (has_merging) return ScoringHook<Selection>;
    return false;
  }();
  // Whether the quantization may ask for per-channel keys (core/channel_store.hpp); its
  // channel_keys() decides at run time.
  static constexpr bool has_channel_keys = (ChannelKeyHook<Policy> || ... || false);

  static_assert(!has_merging || has_selection,
                "A merging policy folds evicted tokens into kept ones, so it needs a selection policy "
                "to evict them.");
  static_assert(!has_budget || has_selection,
                "A budget policy decides how many tokens each head keeps, so it needs a selection "
                "policy to decide which.");

  using layout_type = L;
  using store_type = typename L::store;

  // Policies not passed are default-constructed (their papers' defaults).
  explicit KVCache(Shape shape, Options options = {})
    requires(std::default_initializable<Policy> && ...)
      : KVCache(shape, options, typename L::config{}, Policy{}...) {}
  KVCache(Shape shape, Options options, Policy... policies)
    requires(sizeof...(Policy) > 0)
      : KVCache(shape, options, typename L::config{}, std::move(policies)...) {}
  KVCache(Shape shape, Options options, typename L::config layout)
    requires(sizeof...(Policy) > 0 && (std::default_initializable<Policy> && ...))
      : KVCache(shape, options, std::move(layout), Policy{}...) {}

  KVCache(Shape shape, Options options, typename L::config layout, Policy... policies)
      : shape_(shape), options_(options), layout_(std::move(layout)), policies_(std::move(policies)...) {
    shape_.validate();
    validate_options();
    if (options_.isa && !kernels::isa_supported(*options_.isa))
      fail("kvc::Options", "isa {} is not supported by this CPU", kernels::isa_name(*options_.isa));
    table_ = options_.isa ? &kernels::table(*options_.isa) : &kernels::active();
    choose_dims_and_formats();
    try {
      allocate_budgets();
      make_stores();
      setup_policies();
      make_window();
    } catch (const std::bad_alloc&) {
      fail("kvc::KVCache", "out of memory building {} heads (budget {}, capacity {} tokens per head)",
           shape_.head_count(), options_.budget, options_.capacity);
    } catch (const std::length_error&) {
      fail("kvc::KVCache", "a buffer of {} heads (budget {}, capacity {} tokens per head) exceeds its maximum size",
           shape_.head_count(), options_.budget, options_.capacity);
    }
  }

  // Copies are explicit (fork()): an accidental copy of a whole cache is a bug in an engine.
  KVCache& operator=(const KVCache&) = delete;
  KVCache(KVCache&&) noexcept = default;
  KVCache& operator=(KVCache&&) noexcept = default;

  // ---- hot path -------------------------------------------------------------------------

  // Appends one token of `layer`: k and v are [kv_heads][head_dim], keys already rotated.
  // Contract: finite values, matching sizes, positions increasing per layer. Allocates only while
  // a head grows past its reservation; if that allocation fails, returns Status::out_of_memory
  // and leaves the cache as it was (its contents; a grown reservation may stay). `token_tag`
  // (kvc::tag bits: separator, special) is kept for policies that read tags, ignored otherwise.
  Status append(std::size_t layer, std::int32_t position, std::span<const float> k, std::span<const float> v,
                TokenTag token_tag = tag::none) noexcept {
    KVC_CONTRACT(!moved_from(), "append: the cache was moved from");
    KVC_CONTRACT(layer < shape_.layers, "append: layer out of range");
    KVC_CONTRACT(k.size() == shape_.kv_heads * shape_.head_dim, "append: k must hold kv_heads * head_dim floats");
    KVC_CONTRACT(v.size() == k.size(), "append: v must hold kv_heads * head_dim floats");
    KVC_CONTRACT(all_finite(k) && all_finite(v), "append: keys and values must be finite");
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const auto& pos = positions_[index(layer, h)];
      KVC_CONTRACT(pos.empty() || position > pos.back(), "positions of a head must increase");
      if constexpr (has_lowrank)
        KVC_CONTRACT(lowrank().ready(layer, h),
                     "append: low-rank head has no projection yet; prefill it or calibrate the policy first");
    }
    try {
      grow(layer, 1);
    } catch (const std::bad_alloc&) {
      return Status::out_of_memory;
    } catch (const std::length_error&) {
      return Status::out_of_memory;
    } catch (const Error&) {  // a size that overflows size_t: no allocation could serve it
      return Status::out_of_memory;
    }
    for (std::size_t h = 0; h < shape_.kv_heads; ++h)
      write_token(layer, h, head_size(index(layer, h)) - 1, position, k.subspan(h * shape_.head_dim, shape_.head_dim),
                  v.subspan(h * shape_.head_dim, shape_.head_dim), token_tag);
    return Status::ok;
  }

  // Attention of the last n_queries tokens appended to `layer` (causal among themselves):
  // queries and out are [n_queries][query_heads][head_dim].
  void attend(std::size_t layer, std::span<const float> queries, std::span<float> out) noexcept {
    const std::size_t stride = shape_.query_heads * shape_.head_dim;
    KVC_CONTRACT(!moved_from(), "attend: the cache was moved from");
    KVC_CONTRACT(layer < shape_.layers, "attend: layer out of range");
    KVC_CONTRACT(!queries.empty() && queries.size() % stride == 0,
                 "attend: queries must hold n_queries * query_heads * head_dim floats");
    KVC_CONTRACT(out.size() == queries.size(), "attend: out must have the size of queries");
    KVC_CONTRACT(all_finite(queries), "attend: queries must be finite");
    const std::size_t n_queries = queries.size() / stride;
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      KVC_CONTRACT(n_queries <= head_size(index(layer, h)), "attend: more queries than tokens appended to the head");
      attend_head(layer, h, queries, out, n_queries);
    }
    if constexpr (observes_prompt)
      if (window_ > 0 && !prompt_done_[layer]) capture_window(layer, queries, n_queries);
    if constexpr (has_selection) {
      if (options_.auto_compress && evicts_while_decoding())
        for (std::size_t h = 0; h < shape_.kv_heads; ++h)
          if (head_size(index(layer, h)) > budgets_[index(layer, h)] + options_.compress_slack) compress_head(layer, h);
    }
  }

  // ---- configuration-time and bulk operations (validate and throw kvc::Error) ---------------

  // Appends n tokens of `layer` at positions first_position, first_position + 1, ...:
  // keys and values are [n][kv_heads][head_dim]. Calibrates uncalibrated low-rank heads first.
  // `tags`: one kvc::tag set per token, or empty for none.
  void prefill(std::size_t layer, std::int32_t first_position, std::span<const float> keys,
               std::span<const float> values, std::span<const TokenTag> tags = {}) {
    const std::size_t row = shape_.kv_heads * shape_.head_dim;
    if (moved_from()) fail("KVCache::prefill", "the cache was moved from");
    if (layer >= shape_.layers) fail("KVCache::prefill", "layer {} out of range (layers: {})", layer, shape_.layers);
    if (keys.empty() || keys.size() % row != 0)
      fail("KVCache::prefill", "keys hold {} floats, not a positive multiple of kv_heads * head_dim = {}",
           keys.size(), row);
    if (values.size() != keys.size())
      fail("KVCache::prefill", "values hold {} floats but keys hold {}", values.size(), keys.size());
    check_finite("KVCache::prefill", "keys", keys);
    check_finite("KVCache::prefill", "values", values);
    const std::size_t n = keys.size() / row;
    if (!tags.empty() && tags.size() != n)
      fail("KVCache::prefill", "tags hold {} values for {} tokens (give one per token, or none)", tags.size(), n);
    // Positions are int32: the last one, first_position + n - 1, must be one too.
    if (static_cast<std::int64_t>(first_position) + static_cast<std::int64_t>(n - 1) >
        std::numeric_limits<std::int32_t>::max())
      fail("KVCache::prefill", "{} tokens from position {} would pass the largest position {}", n, first_position,
           std::numeric_limits<std::int32_t>::max());
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const auto& pos = positions_[index(layer, h)];
      if (!pos.empty() && first_position <= pos.back())
        fail("KVCache::prefill", "position {} does not follow the last position {} of layer {}", first_position,
             pos.back(), layer);
    }
    try {
      if constexpr (has_lowrank) calibrate_from(layer, keys, values, n);
      grow(layer, n);
    } catch (const std::bad_alloc&) {
      fail("KVCache::prefill", "out of memory appending {} tokens to layer {}", n, layer);
    } catch (const std::length_error&) {
      fail("KVCache::prefill", "{} more tokens in layer {} exceed a buffer's maximum size", n, layer);
    }
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const std::size_t first_row = head_size(index(layer, h)) - n;
      for (std::size_t t = 0; t < n; ++t)
        write_token(layer, h, first_row + t, first_position + static_cast<std::int32_t>(t),
                    keys.subspan(t * row + h * shape_.head_dim, shape_.head_dim),
                    values.subspan(t * row + h * shape_.head_dim, shape_.head_dim), tags.empty() ? tag::none : tags[t]);
    }
  }

  // Evicts every head down to its budget now (auto-compression waits for budget + slack).
  void compress() {
    for (std::size_t layer = 0; layer < shape_.layers; ++layer) compress(layer);
  }
  void compress(std::size_t layer) {
    if (moved_from()) fail("KVCache::compress", "the cache was moved from");
    if (layer >= shape_.layers) fail("KVCache::compress", "layer {} out of range (layers: {})", layer, shape_.layers);
    if constexpr (has_selection)
      for (std::size_t h = 0; h < shape_.kv_heads; ++h)
        if (head_size(index(layer, h)) > budgets_[index(layer, h)]) compress_head(layer, h);
  }

  // Compresses the prompt of `layer` once, after it was prefilled and its queries attended
  // (exactly): every head keeps its budget (from Options::budget_ratio and the prompt's length
  // when set), chosen by the selection; a prompt-time selection (PromptHook: SnapKV) first sees
  // the weights of the prompt's last observation_window() queries, computed here from the queries
  // attend() kept, over the keys as stored. A head whose prompt fits its budget is left as it is
  // (the papers' rule for short prompts). Call it once per layer and sequence (clear() starts a
  // new one); without a selection it does nothing. Throws kvc::Error when the window does not fit the prompt or the budget, or when
  // fewer than a window of queries attended the layer.
  void compress_prompt() {
    for (std::size_t layer = 0; layer < shape_.layers; ++layer) compress_prompt(layer);
  }
  void compress_prompt(std::size_t layer) {
    constexpr const char* where = "KVCache::compress_prompt";
    if (moved_from()) fail(where, "the cache was moved from");
    if (layer >= shape_.layers) fail(where, "layer {} out of range (layers: {})", layer, shape_.layers);
    if constexpr (has_selection) {
      if (prompt_done_[layer])
        fail(where, "the prompt of layer {} is already compressed (clear() starts a new sequence)", layer);
      const std::size_t prompt = head_size(index(layer, 0));
      if (options_.budget_ratio > 0.0 || has_budget) budgets_for_prompt(layer, prompt);
      if constexpr (shares_budgets) share_budgets(layer, prompt);
      for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
        const std::size_t i = index(layer, h);
        if (head_size(i) <= budgets_[i]) continue;
        if constexpr (observes_prompt && !shares_budgets) {
          if (window_ > 0) {
            check_window(layer, h, i);
            observe_window(layer, h, i);
          }
        }
        compress_head(layer, h);
      }
      prompt_done_[layer] = 1;
    }
  }

  // A second sequence that starts as this one: the same tokens, budgets, policies' columns and
  // states, and window queries; from then on the two are independent (beam search, parallel
  // sampling, a shared system prompt). With the paged layout the two share every block until
  // either writes it (an append into a shared last block, a compression or removal that moves
  // rows, a merge): the writer copies the blocks it touches first, so N forks of a prompt hold
  // its blocks once (BlockPool::blocks_in_use counts them once; each cache's memory_bytes()
  // counts every block it references). The contiguous layout copies the rows. Throws
  // kvc::Error when the cache was moved from, std::bad_alloc when memory runs out. The source
  // must not be used by another thread during the call; the two caches may then be used by
  // different threads (the pool's counts are atomic).
  [[nodiscard]] KVCache fork() const {
    if (moved_from()) fail("KVCache::fork", "the cache was moved from");
    return KVCache(*this);
  }

  // Removes the tokens at positions first..last (inclusive) from every head of every layer:
  // speculative decoding's rollback is remove(p), which drops position p and every later one so
  // that p can be appended again. The survivors keep their order, rows and positions; each
  // policy's column is compacted with them and its on_compact hook sees the kept tokens, exactly
  // as after an eviction (what that means per policy: docs/architecture.md, "Removal and
  // rollback"). A layer whose prompt is not yet compressed forgets the queries it kept for the
  // observation window (they may belong to removed tokens): attend the prompt's last queries again
  // before compress_prompt(). Returns how many tokens were removed over all heads. Throws
  // kvc::Error when first > last or the cache was moved from; allocates one list of the largest
  // head's size before touching anything (not a hot path).
  std::size_t remove(std::int32_t first, std::int32_t last = std::numeric_limits<std::int32_t>::max()) {
    if (moved_from()) fail("KVCache::remove", "the cache was moved from");
    if (first > last) fail("KVCache::remove", "first position {} is after the last {}", first, last);
    std::size_t most = 0;
    for (std::size_t i = 0; i < positions_.size(); ++i) most = std::max(most, head_size(i));
    std::vector<std::uint32_t> kept(most);
    // First every forked head copies the shared blocks compaction will write (from its first
    // removed token), so running out of memory leaves the cache as it was.
    try {
      for (std::size_t i = 0; i < positions_.size(); ++i) {
        const auto& pos = positions_[i];
        std::size_t t = 0;
        while (t < pos.size() && (pos[t] < first || pos[t] > last)) ++t;
        if (t < pos.size()) stores_[i].make_writable(channels_.enabled() ? channels_.first_written(t) : t);
      }
    } catch (const std::bad_alloc&) {
      fail("KVCache::remove", "out of memory copying blocks shared with a fork");
    }
    std::size_t removed = 0;
    for (std::size_t layer = 0; layer < shape_.layers; ++layer) {
      std::size_t from_layer = 0;
      for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
        const std::size_t i = index(layer, h);
        const auto& pos = positions_[i];
        std::size_t held = 0;
        for (std::size_t t = 0; t < pos.size(); ++t)
          if (pos[t] < first || pos[t] > last) kept[held++] = static_cast<std::uint32_t>(t);
        if (held == pos.size()) continue;
        from_layer += pos.size() - held;
        HeadView rows = head_view(layer, h, i);
        compact(layer, h, i, std::span<const std::uint32_t>(kept.data(), held), rows);
      }
      if (from_layer > 0 && !prompt_done_[layer]) window_count_[layer] = 0;
      removed += from_layer;
    }
    return removed;
  }

  // Forgets every token and every policy's per-sequence state; keeps reserved memory.
  void clear() noexcept {
    std::fill(window_count_.begin(), window_count_.end(), std::size_t{0});
    std::fill(prompt_done_.begin(), prompt_done_.end(), char{0});
    if (options_.budget_ratio > 0.0) std::fill(budgets_.begin(), budgets_.end(), unbounded_budget());
    for (auto& s : stores_) s.resize(0);
    channels_.clear();
    for (auto& p : positions_) p.clear();
    for (std::size_t i = 0; i < positions_.size(); ++i) for_each_column(i, [](auto& c) { c.clear(); });
    for_each_policy([&](auto& p, auto slot) {
      // The state's type, not a call of state_at() inside the requires-expression: clang 14
      // judges such a call on the lambda's implicit `this` unsatisfied, and skipped the hook.
      if constexpr (requires(state_t<std::remove_cvref_t<decltype(p)>>& s) { p.reset(s); })
        p.reset(state_at<slot>());
      else if constexpr (requires { p.reset(); })
        p.reset();
    });
  }

  // ---- observation ------------------------------------------------------------------------
  // Observers of one head check their arguments and throw kvc::Error for a layer or KV head out
  // of range, or on a moved-from cache: they are called by tools and tests, not per token (the
  // hot paths use the unchecked head_size()).

  [[nodiscard]] std::size_t size(std::size_t layer, std::size_t kv_head) const {
    return head_size(checked_index("KVCache::size", layer, kv_head));
  }
  [[nodiscard]] std::span<const std::int32_t> positions(std::size_t layer, std::size_t kv_head) const {
    return positions_[checked_index("KVCache::positions", layer, kv_head)];
  }
  // Tokens a head keeps after compression; SIZE_MAX when nothing is evicted.
  [[nodiscard]] std::size_t budget(std::size_t layer, std::size_t kv_head) const {
    const std::size_t i = checked_index("KVCache::budget", layer, kv_head);
    return budgets_.empty() ? std::numeric_limits<std::size_t>::max() : budgets_[i];
  }
  // Tokens held, summed over every (layer, KV head).
  [[nodiscard]] std::size_t tokens() const noexcept {
    std::size_t total = 0;
    for (const auto& p : positions_) total += p.size();
    return total;
  }
  // Bytes allocated for the cached tokens: encoded rows (or whole pages), positions, the
  // policies' columns and their per-sequence state. Scratch is reported by workspace_bytes().
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t bytes = 0;
    for (const auto& s : stores_) bytes += s.memory_bytes();
    bytes += channels_.memory_bytes();
    for (const auto& p : positions_) bytes += p.capacity() * sizeof(std::int32_t);
    for (const auto& t : tags_) bytes += t.capacity() * sizeof(TokenTag);
    std::apply([&](const auto&... c) { (column_bytes(c, bytes), ...); }, columns_);
    std::apply([&](const auto&... p) { ((bytes += memory_of(p)), ...); }, policies_);
    std::apply([&](const auto&... st) { ((bytes += memory_of(st)), ...); }, states_);
    return bytes;
  }
  [[nodiscard]] std::size_t workspace_bytes() const noexcept {
    std::size_t policies = 0;
    std::apply([&](const auto&... p) { ((policies += workspace_of(p)), ...); }, policies_);
    std::apply([&](const auto&... st) { ((policies += workspace_of(st)), ...); }, states_);
    return policies + channels_.workspace_bytes() + (queries_.capacity() + acc_.capacity() + max_.capacity() + sum_.capacity() + logits_.capacity() +
            weights_.capacity() + rows_.capacity() + merge_scores_.capacity()) * sizeof(float) +
           (keep_.capacity() + evicted_.capacity() + scratch_.capacity()) * sizeof(std::uint32_t) +
           segments_.capacity() * sizeof(kernels::Segment);
  }

  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  [[nodiscard]] kernels::RowFormat key_format() const noexcept { return key_format_; }
  [[nodiscard]] kernels::RowFormat value_format() const noexcept { return value_format_; }
  [[nodiscard]] std::size_t key_dim() const noexcept { return key_dim_; }
  [[nodiscard]] std::size_t value_dim() const noexcept { return value_dim_; }
  [[nodiscard]] kernels::Isa isa() const noexcept { return table_->isa; }
  [[nodiscard]] const typename L::config& layout_config() const noexcept { return layout_; }

  // Decoded rows of one head (in the stored space), for tests, tools and policies.
  [[nodiscard]] HeadView view(std::size_t layer, std::size_t kv_head) {
    return head_view(layer, kv_head, checked_index("KVCache::view", layer, kv_head));
  }

  template <class P>
  [[nodiscard]] P& get() noexcept {
    return std::get<P>(policies_);
  }
  template <class P>
  [[nodiscard]] const P& get() const noexcept {
    return std::get<P>(policies_);
  }
  // A policy's per-token column of one head (storage order) and its per-sequence state.
  template <class P>
    requires HasColumn<P>
  [[nodiscard]] std::span<const column_t<P>> column(std::size_t layer, std::size_t kv_head) const {
    return std::get<slot_of<P>()>(columns_)[checked_index("KVCache::column", layer, kv_head)];
  }
  // The tags given at append, one per token of the head (storage order); only when a policy reads them.
  [[nodiscard]] std::span<const TokenTag> tags(std::size_t layer, std::size_t kv_head) const
    requires keeps_tags
  {
    return tags_[checked_index("KVCache::tags", layer, kv_head)];
  }
  template <class P>
    requires HasState<P>
  [[nodiscard]] const state_t<P>& state() const noexcept {
    return std::get<slot_of<P>()>(states_);
  }

 private:
  template <class P>
  static consteval std::size_t slot_of() {
    constexpr bool matches[] = {std::is_same_v<P, Policy>..., false};
    std::size_t i = 0;
    while (i < sizeof...(Policy) && !matches[i]) ++i;
    return i;
  }
  template <std::size_t Slot>
  using policy_at = std::tuple_element_t<Slot, std::tuple<Policy...>>;
  template <std::size_t Slot>
  auto& state_at() noexcept {
    return std::get<Slot>(states_);
  }

  // Calls f(policy, slot) for each policy in family order: budget, selection, merging,
  // quantization, low rank. Every hook goes through here, so the order is one fact.
  template <class F>
  void for_each_policy(F&& f) {
    visit_family<family::budget>(f);
    visit_family<family::selection>(f);
    visit_family<family::merging>(f);
    visit_family<family::quantization>(f);
    visit_family<family::lowrank>(f);
  }
  template <class Family, class F>
  void visit_family(F& f) {
    constexpr std::size_t slot = detail::family_index<Family, Policy...>();
    if constexpr (slot < sizeof...(Policy)) f(std::get<slot>(policies_), std::integral_constant<std::size_t, slot>{});
  }

  // The view of head i that a hook of the policy in `Slot` receives.
  template <std::size_t Slot>
  HeadRef<policy_at<Slot>> ref(std::size_t layer, std::size_t h, std::size_t i, HeadView* rows,
                               std::span<const float> scores = {}) noexcept {
    using P = policy_at<Slot>;
    std::span<column_t<P>> column;
    if constexpr (HasColumn<P>) column = std::get<Slot>(columns_)[i];
    const std::size_t budget = budgets_.empty() ? std::numeric_limits<std::size_t>::max() : budgets_[i];
    std::span<const TokenTag> tags;
    if constexpr (keeps_tags) tags = tags_[i];
    return HeadRef<P>(HeadInfo{layer, h, positions_[i], budget, tags, scores}, column,
                      std::span<std::uint32_t>(scratch_.data(), std::min(scratch_.size(), positions_[i].size())),
                      &std::get<Slot>(states_), rows);
  }

  // Calls f(vector) on head i's column of every policy that keeps one.
  // The tags, kept like a column, are included.
  template <class F>
  void for_each_column(std::size_t i, F&& f) {
    std::apply([&](auto&... c) { (visit_column(c, i, f), ...); }, columns_);
    if constexpr (keeps_tags) f(tags_[i]);
  }
  template <class C, class F>
  static void visit_column(C& columns, std::size_t i, F& f) {
    if constexpr (!std::is_same_v<C, NoColumn>) f(columns[i]);
  }
  template <class C>
  static void column_bytes(const C& columns, std::size_t& bytes) noexcept {
    if constexpr (!std::is_same_v<C, NoColumn>)
      for (const auto& c : columns) bytes += c.capacity() * sizeof(typename C::value_type::value_type);
  }
  template <class T>
  static std::size_t memory_of(const T& t) noexcept {
    if constexpr (ReportsMemory<T>) return t.memory_bytes();
    return 0;
  }
  template <class T>
  static std::size_t workspace_of(const T& t) noexcept {
    if constexpr (ReportsWorkspace<T>) return t.workspace_bytes();
    return 0;
  }

  KVCache(const KVCache&) = default;  // fork()
  [[nodiscard]] bool moved_from() const noexcept { return stores_.empty(); }
  [[nodiscard]] std::size_t checked_index(const char* where, std::size_t layer, std::size_t kv_head) const {
    if (moved_from()) fail(where, "the cache was moved from");
    if (layer >= shape_.layers || kv_head >= shape_.kv_heads)
      fail(where, "layer {} KV head {} out of range (layers: {}, kv_heads: {})", layer, kv_head, shape_.layers,
           shape_.kv_heads);
    return index(layer, kv_head);
  }
  [[nodiscard]] std::size_t head_size(std::size_t i) const noexcept { return positions_[i].size(); }
  [[nodiscard]] HeadView head_view(std::size_t layer, std::size_t kv_head, std::size_t i) noexcept {
    return HeadView(layer, kv_head, positions_[i], *table_, key_format_, value_format_, key_dim_, value_dim_,
                    row_access(i));
  }
  [[nodiscard]] HeadView::Access row_access(std::size_t i) noexcept {
    if (channels_.enabled())
      return {&stores_[i], &key_address, &value_address, &detail::ChannelStore::load_row,
              &detail::ChannelStore::store_row, &channels_.head(i)};
    return {&stores_[i], &key_address, &value_address, nullptr, nullptr, nullptr};
  }

  // ---- construction ------------------------------------------------------------------------

  void validate_options() const {
    using kernels::Dtype;
    if (options_.dtype != Dtype::f32 && options_.dtype != Dtype::f16 && options_.dtype != Dtype::bf16)
      fail("kvc::Options", "dtype {} is not a storage element type (f32, f16, bf16); integer formats come from a "
           "quantization policy", kernels::dtype_name(options_.dtype));
    if (!std::isfinite(options_.scale) || options_.scale < 0.0f)
      fail("kvc::Options", "scale {} must be finite and >= 0 (0 means 1/sqrt(head_dim))", options_.scale);
    // Positions are int32 and increase, so no head ever holds more tokens than this; larger
    // values are typos, and their sums (budget + slack + 1) must not wrap.
    constexpr auto most = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    for (auto [value, what] : {std::pair{options_.budget, "budget"}, std::pair{options_.capacity, "capacity"},
                               std::pair{options_.compress_slack, "compress_slack"}})
      if (value > most)
        fail("kvc::Options", "{} {} exceeds {} tokens, the most a head can hold (positions are int32)", what, value,
             most);
    if (options_.capacity > 0 && options_.budget > options_.capacity)
      fail("kvc::Options", "budget {} exceeds capacity {}", options_.budget, options_.capacity);
    if (!(options_.budget_ratio == 0.0 || (options_.budget_ratio > 0.0 && options_.budget_ratio <= 1.0)))
      fail("kvc::Options", "budget_ratio {} must be in (0, 1] (or 0: unused)", options_.budget_ratio);
    if constexpr (has_selection) {
      if (options_.budget == 0 && options_.budget_ratio == 0.0)
        fail("kvc::Options", "budget must be > 0 (or budget_ratio in (0, 1]) when a selection policy is given (it "
             "evicts down to the budget)");
      if (options_.budget != 0 && options_.budget_ratio != 0.0)
        fail("kvc::Options", "budget {} and budget_ratio {} are both set; give one", options_.budget,
             options_.budget_ratio);
    } else {
      if (options_.budget != 0 || options_.budget_ratio != 0.0)
        fail("kvc::Options", "budget {} (ratio {}) is set but no selection policy decides which tokens to evict",
             options_.budget, options_.budget_ratio);
    }
  }

  void choose_dims_and_formats() {
    key_dim_ = value_dim_ = shape_.head_dim;
    if constexpr (has_lowrank) {
      key_dim_ = lowrank().rank_keys(shape_);
      value_dim_ = lowrank().rank_values(shape_);
      for (auto [dim, what] : {std::pair{key_dim_, "key"}, std::pair{value_dim_, "value"}})
        if (dim == 0 || dim > shape_.head_dim)
          fail("kvc::KVCache", "low-rank {} rank {} must be in [1, head_dim = {}]", what, dim, shape_.head_dim);
    }
    key_format_ = value_format_ = kernels::RowFormat{options_.dtype, 0};
    if constexpr (has_quantization) {
      key_format_ = quantization().key_format();
      value_format_ = quantization().value_format();
    }
    if constexpr (has_channel_keys) {
      channel_keys_ = quantization().channel_keys();
      if (channel_keys_.enabled()) key_format_ = {channel_keys_.dtype, 0};
    }
    if (!channel_keys_.enabled()) check_format(key_format_, key_dim_, "key");
    check_format(value_format_, value_dim_, "value");
    if (std::max(key_dim_, value_dim_) > kMaxStoredDim)
      fail("kvc::KVCache", "stored row dims above {} are not supported (head_dim {})", kMaxStoredDim, shape_.head_dim);
    scale_ = options_.scale > 0.0f ? options_.scale : 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
  }

  static void check_format(kernels::RowFormat f, std::size_t dim, const char* what) {
    if (!kernels::is_quantized(f.dtype)) {
      if (f.group != 0) fail("kvc::KVCache", "{} format {} takes no group size (got {})", what, kernels::dtype_name(f.dtype), f.group);
      return;
    }
    if (f.group == 0 || f.group % 8 != 0)
      fail("kvc::KVCache", "{} group size {} must be a positive multiple of 8", what, f.group);
    if (dim % f.group != 0)
      fail("kvc::KVCache", "{} group size {} does not divide the stored {} dim {}", what, f.group, what, dim);
  }

  void allocate_budgets() {
    if constexpr (has_selection) {
      if (options_.budget_ratio > 0.0) {  // set by compress_prompt() from the prompt's length
        budgets_.assign(shape_.head_count(), unbounded_budget());
        return;
      }
      budgets_.assign(shape_.head_count(), options_.budget);
      if constexpr (has_budget) {
        budget_policy().allocate(BudgetContext{shape_, options_.budget, options_.capacity}, budgets_);
        std::size_t total = 0;
        for (std::size_t i = 0; i < budgets_.size(); ++i) {
          const std::size_t b = budgets_[i];
          if (b == 0 || (options_.capacity > 0 && b > options_.capacity))
            fail("kvc::KVCache", "budget policy gave layer {} KV head {} a budget of {} (must be in [1, {}])",
                 i / shape_.kv_heads, i % shape_.kv_heads, b,
                 options_.capacity > 0 ? options_.capacity : std::numeric_limits<std::size_t>::max());
          total += b;
        }
        const std::size_t allowed = checked_mul(options_.budget, shape_.head_count(), "kvc::KVCache", "budget * heads");
        if (total > allowed)
          fail("kvc::KVCache", "budget policy handed out {} tokens, more than budget * heads = {}", total, allowed);
      }
    }
  }

  void make_stores() {
    const RowGeometry geometry{kernels::row_bytes(key_format_, key_dim_), kernels::row_bytes(value_format_, value_dim_)};
    L::prepare(layout_, geometry);
    stores_.reserve(shape_.head_count());
    positions_.resize(shape_.head_count());
    if constexpr (keeps_tags) tags_.resize(shape_.head_count());
    std::apply([&](auto&... c) { (size_columns(c), ...); }, columns_);
    if (channel_keys_.enabled())
      channels_.configure(channel_keys_, *table_, options_.dtype, value_format_, key_dim_, value_dim_,
                          shape_.head_count());
    std::size_t most_rows = 0;
    for (std::size_t i = 0; i < shape_.head_count(); ++i) {
      stores_.emplace_back(geometry, layout_);
      const std::size_t rows = initial_rows(i);
      stores_.back().reserve(rows);
      if (channels_.enabled()) channels_.reserve(i, rows);
      positions_[i].reserve(rows);
      for_each_column(i, [&](auto& c) { c.reserve(rows); });
      most_rows = std::max(most_rows, rows);
    }
    ensure_workspace(std::max<std::size_t>(most_rows, 1));
    if (options_.budget_ratio == 0.0)
      keep_.resize(budgets_.empty() ? 0 : *std::max_element(budgets_.begin(), budgets_.end()));
  }

  // Rows to reserve for a head: its steady state when bounded, the capacity hint otherwise.
  [[nodiscard]] std::size_t initial_rows(std::size_t head) const noexcept {
    if (budgets_.empty() || options_.budget_ratio > 0.0) return options_.capacity;
    const std::size_t steady = budgets_[head] + options_.compress_slack + 1;
    return options_.capacity > 0 ? std::min(steady, options_.capacity + 1) : steady;
  }

  template <class C>
  void size_columns(C& columns) {
    if constexpr (!std::is_same_v<C, NoColumn>) columns.resize(shape_.head_count());
  }

  void setup_policies() {
    const PolicySetup setup{shape_,    options_.capacity,       budgets_,           key_dim_,
                            value_dim_, options_.compress_slack, merging_sees_scores};
    for_each_policy([&](auto& p, auto slot) {
      if constexpr (requires(state_t<std::remove_cvref_t<decltype(p)>>& s) { p.setup(setup, s); })  // see clear()
        p.setup(setup, state_at<slot>());
      else if constexpr (requires { p.setup(setup); })
        p.setup(setup);
    });
  }

  // ---- per-head work -----------------------------------------------------------------------

  [[nodiscard]] std::size_t index(std::size_t layer, std::size_t kv_head) const noexcept {
    return shape_.head_index(layer, kv_head);
  }

  // Makes room for `count` more tokens in every head of `layer`: rows, positions and scratch, the
  // new rows not yet written. Strong guarantee: if an allocation fails, every head is back at its
  // size (blocks taken from a pool are returned) and the exception propagates.
  void grow(std::size_t layer, std::size_t count) {
    std::size_t grown = 0, most = 0;
    try {
      for (; grown < shape_.kv_heads; ++grown) {
        const std::size_t i = index(layer, grown);
        auto& pos = positions_[i];
        const std::size_t total = checked_add(pos.size(), count, "kvc::KVCache", "tokens of a head");
        const auto make_room = [&](auto& v) {
          if (total > v.capacity()) v.reserve(std::max(total, v.capacity() + v.capacity() / 2));
        };
        make_room(pos);
        for_each_column(i, make_room);
        stores_[i].resize(total);
        if (channels_.enabled()) channels_.reserve(i, total);
        // A fork's shared blocks are copied before rows land in them (with per-channel keys a
        // freeze also writes the tail's older rows, from the first unfrozen one).
        stores_[i].make_writable(channels_.enabled() ? channels_.frozen(i) : total - count);
        // Within the reservations: cannot fail. New column entries are value-initialized.
        pos.resize(total);
        for_each_column(i, [&](auto& c) { c.resize(total); });
        most = std::max(most, total);
      }
      ensure_workspace(most);
    } catch (...) {
      for (std::size_t h = 0; h <= grown && h < shape_.kv_heads; ++h) {
        const std::size_t i = index(layer, h);
        if (h < grown) {
          positions_[i].resize(positions_[i].size() - count);
          for_each_column(i, [&](auto& c) { c.resize(c.size() - count); });
        }
        stores_[i].resize(positions_[i].size());  // shrinking frees, never allocates
      }
      throw;
    }
  }

  // Writes row `row` of head h (made by grow()), then runs the on_append hooks: hot path, no
  // allocation.
  void write_token(std::size_t layer, std::size_t h, std::size_t row, std::int32_t position,
                   std::span<const float> key, std::span<const float> value, TokenTag token_tag) noexcept {
    const std::size_t i = index(layer, h);
    auto& s = stores_[i];
    positions_[i][row] = position;
    if constexpr (keeps_tags) tags_[i][row] = token_tag;
    const float* k = key.data();
    const float* v = value.data();
    if constexpr (has_lowrank) {
      float* key_rank = rows_.data();
      float* value_rank = rows_.data() + kMaxStoredDim;
      lowrank().project_key(layer, h, k, key_rank);
      lowrank().project_value(layer, h, v, value_rank);
      k = key_rank;
      v = value_rank;
    }
    if (channels_.enabled()) {
      channels_.append(i, row_access(i), row, k, v);
    } else {
      table_->encode_rows(key_format_, key_dim_, k, 0, 1, s.key(row), 0);
      table_->encode_rows(value_format_, value_dim_, v, 0, 1, s.value(row), 0);
    }
    for_each_policy([&](auto& p, auto slot) {
      if constexpr (AppendHook<policy_at<slot>>) {
        HeadView rows = head_view(layer, h, i);
        p.on_append(ref<slot>(layer, h, i, &rows), row, key, value);
      }
    });
  }

  void attend_head(std::size_t layer, std::size_t h, std::span<const float> queries, std::span<float> out,
                   std::size_t n_queries) noexcept {
    const std::size_t group = shape_.group_size();
    const std::size_t hd = shape_.head_dim;
    const std::size_t stride = shape_.query_heads * hd;
    const std::size_t n = head_size(index(layer, h));
    kernels::AttendArgs args = attend_args(index(layer, h));
    if constexpr (observes_attention) {
      args.logits = logits_.data();
      args.logits_stride = logits_stride_;
    }

    for (std::size_t j = 0; j < n_queries; ++j) {
      const float* q = queries.data() + j * stride + h * group * hd;
      float* o = out.data() + j * stride + h * group * hd;
      args.q = query_of(layer, h, q);
      args.rows = n - n_queries + j + 1;
      run_kernel(args, index(layer, h));
      for (std::size_t g = 0; g < group; ++g) {
        const float inv = 1.0f / sum_[g];
        float* acc = acc_.data() + g * value_dim_;
        for (std::size_t d = 0; d < value_dim_; ++d) acc[d] *= inv;
        if constexpr (has_lowrank)
          lowrank().restore_value(layer, h, acc, o + g * hd);
        else
          std::copy_n(acc, hd, o + g * hd);
      }
      if constexpr (observes_attention) {
        const std::span<const float> weights = combined_weights(args.rows);
        const std::size_t i = index(layer, h);
        for_each_policy([&](auto& p, auto slot) {
          if constexpr (AttendHook<policy_at<slot>>) {
            HeadView rows = head_view(layer, h, i);
            p.on_attend(ref<slot>(layer, h, i, &rows), weights);
          }
        });
      }
    }
  }

  // The kernel's arguments for head i, without the query, the rows it sees and the logits.
  kernels::AttendArgs attend_args(std::size_t i) noexcept {
    const std::size_t n_segments = stores_[i].segments(segments_.data());
    kernels::AttendArgs args;
    args.n_q = shape_.group_size();
    args.k_dim = key_dim_;
    args.v_dim = value_dim_;
    args.k_format = key_format_;
    args.v_format = value_format_;
    args.k_stride = kernels::row_bytes(key_format_, key_dim_);
    args.v_stride = kernels::row_bytes(value_format_, value_dim_);
    args.segments = segments_.data();
    args.n_segments = n_segments;
    args.scale = scale_;
    args.precision = options_.precision;
    args.m = max_.data();
    args.l = sum_.data();
    args.acc = acc_.data();
    return args;
  }

  // The group's query heads as the kernel reads them (projected to the key basis under low rank).
  const float* query_of(std::size_t layer, std::size_t h, const float* q) noexcept {
    if constexpr (has_lowrank) {
      const std::size_t hd = shape_.head_dim;
      for (std::size_t g = 0; g < shape_.group_size(); ++g)
        lowrank().project_key(layer, h, q + g * hd, queries_.data() + g * key_dim_);
      return queries_.data();
    } else {
      return q;
    }
  }

  // One query over args.rows tokens: running max, normalizer and unnormalized output (and raw
  // logits when args.logits is set) in the workspace.
  void run_kernel(kernels::AttendArgs& args, std::size_t i) noexcept {
    const std::size_t group = shape_.group_size();
    std::fill_n(max_.data(), group, -std::numeric_limits<float>::infinity());
    std::fill_n(sum_.data(), group, 0.0f);
    std::fill_n(acc_.data(), group * value_dim_, 0.0f);
    if (channels_.enabled())
      channels_.attend(i, args);
    else
      table_->attend(args);
  }

  // Softmax weights of the group's query heads over `rows` tokens, combined per Options::gqa_reduce.
  std::span<const float> combined_weights(std::size_t rows) noexcept {
    const std::size_t group = shape_.group_size();
    float* w = weights_.data();
    const auto combine = options_.gqa_reduce == GqaReduce::max ? kernels::Combine::max : kernels::Combine::add;
    for (std::size_t g = 0; g < group; ++g)
      table_->softmax_weights(logits_.data() + g * logits_stride_, rows, max_[g], 1.0f / sum_[g],
                              g == 0 ? kernels::Combine::assign : combine, w);
    if (options_.gqa_reduce == GqaReduce::mean && group > 1) {
      const float inv_group = 1.0f / static_cast<float>(group);
      for (std::size_t r = 0; r < rows; ++r) w[r] *= inv_group;
    }
    return {w, rows};
  }

  void compress_head(std::size_t layer, std::size_t h) noexcept {
    const std::size_t i = index(layer, h);
    auto& s = stores_[i];
    auto& pos = positions_[i];
    const std::size_t n = pos.size();
    const std::size_t b = budgets_[i];
    const std::span<std::uint32_t> keep(keep_.data(), b);
    HeadView rows = head_view(layer, h, i);
    const std::size_t kept =
        selection().select(ref<detail::family_index<family::selection, Policy...>()>(layer, h, i, &rows), keep);
    KVC_CONTRACT(kept <= b, "selection policy kept more tokens than the budget");
    for (std::size_t j = 0; j < kept; ++j)
      KVC_CONTRACT(keep[j] < n && (j == 0 || keep[j] > keep[j - 1]),
                   "selection policy returned indices that are not ascending and in range");
    const std::span<const std::uint32_t> kept_span(keep.data(), kept);
    // A forked head copies the shared blocks that compaction (from the first token that moves) or
    // merging (any kept row) will write. Without memory for them the head stays over its budget
    // until a later compression: this runs inside attend, which cannot fail.
    std::size_t first_moved = 0;
    if constexpr (!has_merging)
      while (first_moved < kept && keep[first_moved] == first_moved) ++first_moved;
    try {
      s.make_writable(channels_.enabled() ? channels_.first_written(first_moved) : first_moved);
    } catch (const std::bad_alloc&) {
      return;
    }
    if constexpr (has_merging) {
      std::size_t e = 0;
      for (std::size_t t = 0, j = 0; t < n; ++t) {
        if (j < kept && keep[j] == t)
          ++j;
        else
          evicted_[e++] = static_cast<std::uint32_t>(t);
      }
      std::span<const float> scores;
      if constexpr (merging_sees_scores) {
        scores = std::span<float>(merge_scores_.data(), n);
        selection().scores(ref<detail::family_index<family::selection, Policy...>()>(layer, h, i, &rows),
                           std::span<float>(merge_scores_.data(), n));
      }
      merging().merge(ref<detail::family_index<family::merging, Policy...>()>(layer, h, i, &rows, scores), kept_span,
                      std::span<const std::uint32_t>(evicted_.data(), e));
    }
    compact(layer, h, i, kept_span, rows);
    // Give memory back once; a head at its steady state keeps its reservation and never reallocates.
    // Best effort: compression runs inside attend (noexcept), and a head that cannot get a
    // smaller buffer keeps its larger one.
    const std::size_t steady = b + options_.compress_slack + 1;
    try {
      s.fit(steady);
      const auto shrink = [&](auto& v) {
        if (v.capacity() > 2 * steady) {
          std::remove_reference_t<decltype(v)> smaller;
          smaller.reserve(steady);
          smaller.assign(v.begin(), v.end());
          v.swap(smaller);
        }
      };
      shrink(pos);
      for_each_column(i, shrink);
    } catch (const std::bad_alloc&) {
    }
  }

  // Head i keeps only `kept` (ascending): the policies' on_compact hooks, then rows, positions and
  // every column gathered and shortened. Shrinking never allocates.
  void compact(std::size_t layer, std::size_t h, std::size_t i, std::span<const std::uint32_t> kept,
               HeadView& rows) noexcept {
    auto& s = stores_[i];
    auto& pos = positions_[i];
    for_each_policy([&](auto& p, auto slot) {
      if constexpr (CompactHook<policy_at<slot>>) p.on_compact(ref<slot>(layer, h, i, &rows), kept);
    });
    const std::size_t key_bytes = kernels::row_bytes(key_format_, key_dim_);
    const std::size_t value_bytes = kernels::row_bytes(value_format_, value_dim_);
    const std::size_t n = kept.size();
    // Per-channel keys re-encode their groups themselves (and read the rows before they move).
    if (channels_.enabled()) channels_.compact(i, row_access(i), kept);
    for (std::size_t j = 0; j < n; ++j) {
      if (kept[j] == j) continue;
      if (!channels_.enabled()) std::memcpy(s.key(j), s.key(kept[j]), key_bytes);
      std::memcpy(s.value(j), s.value(kept[j]), value_bytes);
      pos[j] = pos[kept[j]];
    }
    for_each_column(i, [&](auto& c) {
      for (std::size_t j = 0; j < n; ++j) c[j] = c[kept[j]];
      c.resize(n);
    });
    s.resize(n);
    pos.resize(n);
  }



  // A budget that evicts nothing: what a head keeps before a budget_ratio is applied.
  static constexpr std::size_t unbounded_budget() noexcept {
    return static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
  }

  [[nodiscard]] bool evicts_while_decoding() noexcept {
    if constexpr (observes_prompt)
      return selection().evicts_while_decoding();
    else
      return true;
  }

  void make_window() {
    window_count_.assign(shape_.layers, 0);
    prompt_done_.assign(shape_.layers, 0);
    if constexpr (observes_prompt) {
      window_ = selection().observation_window();
      window_queries_.resize(
          checked_mul(checked_mul(shape_.layers, window_, "kvc::KVCache", "layers * window"),
                      shape_.query_heads * shape_.head_dim, "kvc::KVCache", "window queries"));
    }
  }

  // Keeps the newest window_ queries of the layer: the last ones of this call after the newest
  // earlier ones (a prompt attended in chunks). Hot path: copies only, within the buffer.
  void capture_window(std::size_t layer, std::span<const float> queries, std::size_t n_queries) noexcept {
    const std::size_t stride = shape_.query_heads * shape_.head_dim;
    float* buf = window_queries_.data() + layer * window_ * stride;
    std::size_t& held = window_count_[layer];
    const std::size_t take = std::min(n_queries, window_);
    const std::size_t old = std::min(held, window_ - take);
    std::copy(buf + (held - old) * stride, buf + held * stride, buf);
    std::copy_n(queries.data() + (n_queries - take) * stride, take * stride, buf + old * stride);
    held = old + take;
  }

  void check_window(std::size_t layer, std::size_t h, std::size_t i) const {
    constexpr const char* where = "KVCache::compress_prompt";
    if (window_ > head_size(i))
      fail(where, "observation window of {} queries is longer than the prompt of layer {} ({} tokens)", window_,
           layer, head_size(i));
    if (window_ > budgets_[i])
      fail(where, "budget {} of layer {} KV head {} cannot hold the observation window of {} tokens", budgets_[i],
           layer, h, window_);
    if (window_count_[layer] < window_)
      fail(where, "only {} queries attended layer {} but the observation window needs {}: attend the prompt's "
           "queries before compress_prompt()", window_count_[layer], layer, window_);
  }

  // Weights of each window query over the causal prefix it sees, handed to the selection.
  void observe_window(std::size_t layer, std::size_t h, std::size_t i) noexcept {
    const std::size_t group = shape_.group_size();
    const std::size_t hd = shape_.head_dim;
    const std::size_t stride = shape_.query_heads * hd;
    const std::size_t n = head_size(i);
    const float* base = window_queries_.data() + layer * window_ * stride;
    kernels::AttendArgs args = attend_args(i);
    args.logits = logits_.data();
    args.logits_stride = logits_stride_;
    HeadView rows = head_view(layer, h, i);
    for (std::size_t j = 0; j < window_; ++j) {
      args.q = query_of(layer, h, base + j * stride + h * group * hd);
      args.rows = n - window_ + j + 1;
      run_kernel(args, i);
      selection().on_observe(ref<detail::family_index<family::selection, Policy...>()>(layer, h, i, &rows),
                             combined_weights(args.rows));
    }
  }

  // Head-wise budgets: every head observes the prompt first, then the budget policy redistributes
  // the layer's total by the selection's scores of all its heads.
  void share_budgets(std::size_t layer, std::size_t prompt) {
    constexpr const char* where = "KVCache::compress_prompt";
    for (std::size_t h = 0; h < shape_.kv_heads; ++h)
      if (head_size(index(layer, h)) != prompt)
        fail(where, "head-wise budgets need every head of layer {} to hold the prompt ({} tokens); head {} holds {}",
             layer, prompt, h, head_size(index(layer, h)));
    std::size_t total = 0;
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) total += budgets_[index(layer, h)];
    std::vector<float> scores(shape_.kv_heads * prompt);
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const std::size_t i = index(layer, h);
      if constexpr (observes_prompt) {
        if (window_ > 0) {
          check_window(layer, h, i);
          observe_window(layer, h, i);
        }
      }
      HeadView rows = head_view(layer, h, i);
      selection().scores(ref<detail::family_index<family::selection, Policy...>()>(layer, h, i, &rows),
                         std::span<float>(scores).subspan(h * prompt, prompt));
    }
    const std::span<std::size_t> layer_budgets(budgets_.data() + index(layer, 0), shape_.kv_heads);
    budget_policy().share(scores, prompt, layer_budgets);
    std::size_t shared = 0;
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      if (layer_budgets[h] == 0) fail(where, "budget policy gave layer {} KV head {} no budget", layer, h);
      shared += layer_budgets[h];
    }
    if (shared > total)
      fail(where, "budget policy shared {} tokens in layer {}, more than its {}", shared, layer, total);
    const std::size_t most = *std::max_element(layer_budgets.begin(), layer_budgets.end());
    if (keep_.size() < most) keep_.resize(most);
  }

  // The budgets of `layer` for a prompt of `prompt` tokens: the average is Options::budget, or
  // floor(ratio * prompt) (at least 1) under Options::budget_ratio; the budget policy distributes
  // it knowing the prompt's length (the published PyramidKV's schedule depends on it).
  void budgets_for_prompt(std::size_t layer, std::size_t prompt) {
    const std::size_t average =
        options_.budget_ratio > 0.0
            ? std::max<std::size_t>(
                  1, static_cast<std::size_t>(std::floor(options_.budget_ratio * static_cast<double>(prompt))))
            : options_.budget;
    std::vector<std::size_t> all(shape_.head_count(), average);
    if constexpr (has_budget)
      budget_policy().allocate(BudgetContext{shape_, average, options_.capacity, prompt}, all);
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const std::size_t b = all[index(layer, h)];
      if (b == 0 || b > unbounded_budget())
        fail("KVCache::compress_prompt", "budget policy gave layer {} KV head {} a budget of {} (must be in [1, {}])",
             layer, h, b, unbounded_budget());
      budgets_[index(layer, h)] = b;
    }
    const std::size_t most = *std::max_element(budgets_.begin() + static_cast<std::ptrdiff_t>(index(layer, 0)),
                                               budgets_.begin() + static_cast<std::ptrdiff_t>(index(layer, 0) + shape_.kv_heads));
    if (keep_.size() < most) keep_.resize(most);
  }

  void calibrate_from(std::size_t layer, std::span<const float> keys, std::span<const float> values, std::size_t n)
    requires has_lowrank
  {
    const std::size_t row = shape_.kv_heads * shape_.head_dim;
    std::vector<float> k(n * shape_.head_dim), v(n * shape_.head_dim);
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      if (lowrank().ready(layer, h)) continue;
      for (std::size_t t = 0; t < n; ++t) {
        std::copy_n(keys.data() + t * row + h * shape_.head_dim, shape_.head_dim, k.data() + t * shape_.head_dim);
        std::copy_n(values.data() + t * row + h * shape_.head_dim, shape_.head_dim, v.data() + t * shape_.head_dim);
      }
      lowrank().calibrate(layer, h, k, v, n);
    }
  }

  // Scratch for `rows` tokens per head; grows only past the largest head seen (warm-up).
  void ensure_workspace(std::size_t rows) {
    if (rows <= workspace_rows_) return;
    const std::size_t grown = std::max(rows, workspace_rows_ + workspace_rows_ / 2);
    const std::size_t group = shape_.group_size();
    queries_.resize(group * kMaxStoredDim);
    acc_.resize(group * kMaxStoredDim);
    max_.resize(group);
    sum_.resize(group);
    rows_.resize(2 * kMaxStoredDim);
    if constexpr (observes_attention || observes_prompt) {
      logits_stride_ = grown;
      logits_.resize(group * grown);
      weights_.resize(grown);
    }
    if constexpr (has_merging) evicted_.resize(grown);
    if constexpr (merging_sees_scores) merge_scores_.resize(grown);
    if constexpr (has_selection) scratch_.resize(grown);
    std::size_t most_segments = 0;
    for (const auto& s : stores_) most_segments = std::max(most_segments, s.max_segments(grown));
    segments_.resize(std::max<std::size_t>(most_segments, 1));
    workspace_rows_ = grown;
  }

  static bool all_finite(std::span<const float> x) noexcept {
    bool ok = true;
    for (float f : x) ok &= std::isfinite(f);
    return ok;
  }
  static void check_finite(const char* where, const char* what, std::span<const float> x) {
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(x[i])) fail(where, "{}[{}] is not finite ({})", what, i, x[i]);
  }

  static std::byte* key_address(void* s, std::size_t row) noexcept { return static_cast<store_type*>(s)->key(row); }
  static std::byte* value_address(void* s, std::size_t row) noexcept {
    return static_cast<store_type*>(s)->value(row);
  }

  template <class Family>
  auto& family_policy() noexcept {
    return std::get<detail::family_index<Family, Policy...>()>(policies_);
  }
  auto& selection() noexcept { return family_policy<family::selection>(); }
  auto& merging() noexcept { return family_policy<family::merging>(); }
  auto& quantization() noexcept { return family_policy<family::quantization>(); }
  auto& lowrank() noexcept { return family_policy<family::lowrank>(); }
  auto& budget_policy() noexcept { return family_policy<family::budget>(); }

  static constexpr std::size_t kMaxStoredDim = 1024;

  Shape shape_;
  Options options_;
  typename L::config layout_;
  std::tuple<Policy...> policies_;
  const kernels::Table* table_ = nullptr;
  kernels::RowFormat key_format_{};
  kernels::RowFormat value_format_{};
  std::size_t key_dim_ = 0;
  std::size_t value_dim_ = 0;
  float scale_ = 1.0f;
  std::vector<std::size_t> budgets_;
  std::vector<store_type> stores_;
  // Per-channel key groups and full-precision tails, when the quantization asks for them.
  ChannelKeys channel_keys_{};
  detail::ChannelStore channels_;
  std::vector<std::vector<std::int32_t>> positions_;
  // Per-token tags ([head][token]), only when a policy reads them (keeps_tags).
  std::vector<std::vector<TokenTag>> tags_;
  // Per-token columns ([head][token]) and per-sequence states of the policies, by policy slot.
  std::tuple<std::conditional_t<HasColumn<Policy>, std::vector<std::vector<column_t<Policy>>>, NoColumn>...> columns_;
  std::tuple<state_t<Policy>...> states_;

  // Workspace, sized for the largest head so far.
  std::size_t workspace_rows_ = 0;
  std::size_t logits_stride_ = 0;
  std::vector<float> queries_, acc_, max_, sum_, logits_, weights_, rows_;
  std::vector<float> merge_scores_;  // the selection's scores handed to merge() (merging_sees_scores)
  std::vector<std::uint32_t> keep_, evicted_, scratch_;
  std::vector<kernels::Segment> segments_;
  // The prompt's last window_ queries of each layer ([layer][window_][query_heads * head_dim]),
  // how many are held, and whether the layer's prompt was compressed (then nothing is captured).
  std::size_t window_ = 0;
  std::vector<float> window_queries_;
  std::vector<std::size_t> window_count_;
  std::vector<char> prompt_done_;
};

}  // namespace kvc
