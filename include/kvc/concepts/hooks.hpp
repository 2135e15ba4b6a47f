#pragma once
// The hook protocol. A policy is a copyable parameter object that implements any of these hooks;
// the container calls each hook across its policies in family order (budget, selection, merging,
// quantization, low rank) from one place, handing every call a HeadRef<P> of the head.
//
//   on_append(head, row, key, value)  a token was appended: `row` is its index in the head,
//                                     key and value its head_dim floats as appended (before low
//                                     rank and encoding). Hot path: noexcept, no allocation.
//   on_attend(head, weights)          a query attended the head: softmax weights of the tokens it
//                                     saw (a prefix, storage order), combined over the query heads
//                                     of the group per Options::gqa_reduce. Hot path.
//   head.tags()                       not a hook: the tags given at append, when the policy is
//                                     a TagReader (see below).
//   on_compact(head, kept)            the head is about to keep only `kept` (ascending): token
//                                     kept[i] becomes token i. The container compacts columns
//                                     itself; this is for any other per-token bookkeeping.
//   setup(PolicySetup[, state&])      once, when the cache is built; may throw kvc::Error.
//   reset(state&) or reset()          KVCache::clear(): forget the sequence.
// Family hooks (select, merge, allocate, key_format, the low-rank maps) are in the family's header.
#include "kvc/concepts/setup.hpp"
#include "kvc/core/head_ref.hpp"

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc {

template <class P>
concept AppendHook = requires(P& p, const HeadRef<P>& head, std::size_t row, std::span<const float> key,
                              std::span<const float> value) { p.on_append(head, row, key, value); };

template <class P>
concept AttendHook =
    requires(P& p, const HeadRef<P>& head, std::span<const float> weights) { p.on_attend(head, weights); };

template <class P>
concept CompactHook =
    requires(P& p, const HeadRef<P>& head, std::span<const std::uint32_t> kept) { p.on_compact(head, kept); };

// A policy that reads the per-token tags given at append (SepLLM's separators) says so with
// `static constexpr bool reads_tags = true;`: the cache then keeps one TokenTag per token
// (compacted, cleared and counted like the positions) and hands them as head.tags().
template <class P>
concept TagReader = requires { requires P::reads_tags; };

// Per-token and per-sequence state the container keeps for the policy (see head_ref.hpp).
template <class P>
concept HasColumn = requires { typename P::column; };
template <class P>
concept HasState = requires { typename P::state; };

}  // namespace kvc

namespace kvc {

// Prefill-time selection (SnapKV): the policy scores the prompt once, from the attention of the
// prompt's last observation_window() queries, when the engine calls KVCache::compress_prompt().
//   observation_window()      how many of the prompt's last queries the cache keeps for it
//   on_observe(head, weights) one window query, oldest first: softmax weights of the tokens it
//                             sees (the causal prefix, storage order), combined over the group
//                             per Options::gqa_reduce. Called before select(); no allocation.
//   evicts_while_decoding()   false: once the prompt is compressed, decoding appends without
//                             evicting (attend never compresses).
template <class P>
concept PromptHook = requires(P& p, const P& cp, const HeadRef<P>& head, std::span<const float> weights) {
  { cp.observation_window() } noexcept -> std::convertible_to<std::size_t>;
  { cp.evicts_while_decoding() } noexcept -> std::convertible_to<bool>;
  { p.on_observe(head, weights) } noexcept;
};

}  // namespace kvc
