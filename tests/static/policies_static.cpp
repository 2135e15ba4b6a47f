// Compile-time checks of the library's policies: each satisfies its family's concept and the
// optional capabilities it relies on, and they compose in one cache. Building this is the test.
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/budget/pyramid_kv_prompt.hpp"
#include "kvc/budget/uniform.hpp"
#include "kvc/kvc.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/merge/d2o.hpp"
#include "kvc/quant/kivi.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/snapkv.hpp"
#include "kvc/select/streaming_llm.hpp"
#include "kvc/select/tova.hpp"

#include <type_traits>

namespace kvc::static_tests {
namespace {

static_assert(SelectionPolicy<select::StreamingLLM>);
static_assert(Configurable<select::StreamingLLM>, "StreamingLLM checks sinks against the budgets in setup()");
static_assert(!AttendHook<select::StreamingLLM>, "StreamingLLM needs no attention: it must cost nothing");

static_assert(SelectionPolicy<select::H2O>);
static_assert(AttendHook<select::H2O> && Configurable<select::H2O> && HasColumn<select::H2O>);
static_assert(!HasState<select::H2O> && !CompactHook<select::H2O> && !Resettable<select::H2O>,
              "H2O's only sequence state is its score column, which the cache compacts and clears");
static_assert(noexcept(std::declval<select::H2O&>().on_attend(std::declval<const HeadRef<select::H2O>&>(),
                                                              std::span<const float>{})),
              "on_attend() runs inside attend(): it must be noexcept");

static_assert(SelectionPolicy<select::SnapKV> && PromptHook<select::SnapKV> && HasColumn<select::SnapKV>);
static_assert(!AttendHook<select::SnapKV>,
              "SnapKV scores the prompt at compress_prompt(): decode attention must not compute weights for it");
static_assert(SelectionPolicy<select::TOVA> && AttendHook<select::TOVA> && !PromptHook<select::TOVA>,
              "TOVA's prompt form is its decode form at the prompt's end: no observation window");
static_assert(KVCache<ContiguousLayout, select::SnapKV>::observes_prompt &&
              !KVCache<ContiguousLayout, select::SnapKV>::observes_attention);
static_assert(!KVCache<ContiguousLayout, select::H2O>::observes_prompt);

static_assert(BudgetPolicy<budget::Uniform> && BudgetPolicy<budget::PyramidKV> && BudgetPolicy<budget::PyramidKVPrompt>);
static_assert(!SelectionPolicy<budget::PyramidKV>, "a budget policy is not a selection policy");

static_assert(MergingPolicy<merge::D2O>);
static_assert(Configurable<merge::D2O> && Resettable<merge::D2O> && HasState<merge::D2O> &&
              ReportsMemory<merge::D2O::state> && ReportsWorkspace<merge::D2O::state>);
static_assert(std::is_trivially_copyable_v<merge::D2O>,
              "a configured D2O is parameters only: copying it never copies a sequence's thresholds");
static_assert(noexcept(std::declval<merge::D2O&>().merge(std::declval<const HeadRef<merge::D2O>&>(),
                                                         std::span<const std::uint32_t>{},
                                                         std::span<const std::uint32_t>{})),
              "merge() runs inside auto-compression: it must be noexcept");

static_assert(QuantizationPolicy<quant::PerToken>);
static_assert(QuantizationPolicy<quant::Kivi> && ChannelKeyHook<quant::Kivi> && !ChannelKeyHook<quant::PerToken>);

static_assert(LowRankPolicy<lowrank::SVD>);
static_assert(Configurable<lowrank::SVD> && ReportsMemory<lowrank::SVD> && !Resettable<lowrank::SVD>,
              "SVD projections are model properties: clear() keeps them");
static_assert(noexcept(std::declval<const lowrank::SVD&>().project_key(0, 0, nullptr, nullptr)));
static_assert(noexcept(std::declval<const lowrank::SVD&>().restore_value(0, 0, nullptr, nullptr)));

// Parameters are aggregates' designated initializers, as in the docs.
constexpr select::StreamingLLM kSinks{.sinks = 4};
static_assert(kSinks.sinks == 4);
[[maybe_unused]] void parameters_are_designated_initializers() {
  [[maybe_unused]] const select::H2O h2o{.recent_fraction = 0.5};
  [[maybe_unused]] const budget::PyramidKV pyramid{.beta = 20, .window = 8};
  [[maybe_unused]] const quant::PerToken int4{.bits = 4, .group = 32, .value_bits = 8};
  [[maybe_unused]] const lowrank::SVD svd{.rank = 16};
  [[maybe_unused]] const merge::D2O d2o{.ema = 0.5f};
}

// Every family at once, in any order, in both layouts.
using Everything = KVCache<PagedLayout, quant::PerToken, lowrank::SVD, merge::D2O, budget::PyramidKV, select::H2O>;
static_assert(Everything::has_budget && Everything::has_selection && Everything::has_merging &&
              Everything::has_quantization && Everything::has_lowrank && Everything::observes_attention);
using Streaming = KVCache<ContiguousLayout, budget::Uniform, select::StreamingLLM, quant::PerToken>;
static_assert(Streaming::has_selection && !Streaming::observes_attention);
using Kivi = KVCache<PagedLayout, select::H2O, quant::Kivi>;
static_assert(Kivi::has_channel_keys && !Streaming::has_channel_keys);

}  // namespace
}  // namespace kvc::static_tests
