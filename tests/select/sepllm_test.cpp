// SepLLM and the per-token tags it reads: against its definition (sinks, the newest separators
// older than the recent window, the window), through a real cache in both layouts with tags given
// at append and at prefill (kept, compacted and cleared with the tokens, counted in memory_bytes,
// absent from caches whose policies do not read them), bad parameters throw, decode allocates
// nothing in steady state.
#include "support/allocation_counter.hpp"
#include "kvc/kvc.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/sepllm.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::int32_t> positions_of(std::span<const std::int32_t> p) { return {p.begin(), p.end()}; }

static_assert(KVCache<ContiguousLayout, select::SepLLM>::keeps_tags);
static_assert(!KVCache<ContiguousLayout, select::H2O>::keeps_tags);

TEST(SepLLM, SelectionMatchesTheDefinition) {
  std::mt19937 rng(2);
  for (std::size_t n : {12, 50, 200})
    for (std::size_t sinks : {0, 1, 4})
      for (std::size_t separators : {0, 3, 16}) {
        const select::SepLLM s{.sinks = sinks, .separators = separators};
        std::vector<TokenTag> tags(n);
        for (auto& t : tags) t = rng() % 4 == 0 ? tag::separator : (rng() % 2 == 0 ? tag::special : tag::none);
        std::vector<std::int32_t> positions(n);
        std::iota(positions.begin(), positions.end(), 0);
        std::vector<std::uint32_t> scratch(n);
        for (std::size_t budget = sinks + separators + 1; budget < n; budget += 5) {
          SCOPED_TRACE("n " + std::to_string(n) + " sinks " + std::to_string(sinks) + " separators " +
                       std::to_string(separators) + " budget " + std::to_string(budget));
          // Definition: tokens [0, sinks); the window [n - local, n), local = budget - sinks -
          // separators; between them, the `separators` newest tokens tagged separator.
          const std::size_t local = budget - sinks - separators;
          std::vector<std::uint32_t> want;
          for (std::size_t i = 0; i < sinks; ++i) want.push_back(static_cast<std::uint32_t>(i));
          std::vector<std::uint32_t> seps;
          for (std::size_t i = n - local; i-- > sinks && seps.size() < separators;)
            if (tags[i] & tag::separator) seps.push_back(static_cast<std::uint32_t>(i));
          want.insert(want.end(), seps.rbegin(), seps.rend());
          for (std::size_t i = n - local; i < n; ++i) want.push_back(static_cast<std::uint32_t>(i));
          std::vector<std::uint32_t> keep(budget);
          const HeadRef<select::SepLLM> head(HeadInfo{0, 0, positions, budget, tags}, {}, scratch);
          keep.resize(s.select(head, keep));
          EXPECT_EQ(keep, want);
        }
      }
}

template <class L>
class SepLLMLayouts : public ::testing::Test {};
using Layouts = ::testing::Types<ContiguousLayout, PagedLayout>;
TYPED_TEST_SUITE(SepLLMLayouts, Layouts);

// Positions 0..29 decoded one at a time, every third one (p % 3 == 2) a separator; budget 10 with
// 2 sinks and 3 separators leaves a window of 5: sinks 0, 1; separators 17, 20, 23; window 25..29.
TYPED_TEST(SepLLMLayouts, DecodeKeepsSinksSeparatorsAndTheWindow) {
  KVCache<TypeParam, select::SepLLM> cache(Shape{1, 2, 1, 4}, {.budget = 10},
                                           select::SepLLM{.sinks = 2, .separators = 3});
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> k(4), q(8), out(8);
  for (std::int32_t t = 0; t < 30; ++t) {
    for (auto& x : k) x = normal(rng);
    for (auto& x : q) x = normal(rng);
    ASSERT_EQ(cache.append(0, t, k, k, t % 3 == 2 ? tag::separator : tag::none), Status::ok);
    cache.attend(0, q, out);
    ASSERT_LE(cache.size(0, 0), 10u);
  }
  EXPECT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(0, 1, 17, 20, 23, 25, 26, 27, 28, 29));
  const auto tags = cache.tags(0, 0);
  for (std::size_t i = 0; i < tags.size(); ++i)
    EXPECT_EQ(tags[i], cache.positions(0, 0)[i] % 3 == 2 ? tag::separator : tag::none) << i;
  cache.clear();
  EXPECT_TRUE(cache.tags(0, 0).empty());
}

// Tags given to prefill follow the tokens through compress_prompt-free compression.
TYPED_TEST(SepLLMLayouts, PrefillTagsAreKeptAndCompacted) {
  KVCache<TypeParam, select::SepLLM> cache(Shape{1, 1, 1, 4}, {.budget = 4, .auto_compress = false},
                                           select::SepLLM{.sinks = 1, .separators = 2});
  const std::vector<TokenTag> tags{tag::none, tag::separator, tag::special, tag::separator, tag::separator,
                                   tag::none, tag::none, tag::none};
  cache.prefill(0, 100, std::vector<float>(32, 1.0f), std::vector<float>(32, 1.0f), tags);
  EXPECT_THAT(cache.tags(0, 0), ElementsAre(0, 1, 2, 1, 1, 0, 0, 0));
  cache.compress();
  // Sink 100, window 107 (budget 4 - 1 - 2), newest separators before it: 103, 104.
  EXPECT_THAT(positions_of(cache.positions(0, 0)), ElementsAre(100, 103, 104, 107));
  EXPECT_THAT(cache.tags(0, 0), ElementsAre(tag::none, tag::separator, tag::separator, tag::none));
  try {
    cache.prefill(0, 200, std::vector<float>(8, 1.0f), std::vector<float>(8, 1.0f), tags);
    ADD_FAILURE() << "8 tags for 2 tokens must be rejected";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("KVCache::prefill: tags hold 8 values for 2 tokens"));
  }
}

// One byte per token: memory_bytes() of a SepLLM cache counts it; an H2O cache keeps no tags.
TEST(SepLLM, TagsAreCountedInMemoryBytes) {
  const Shape s{1, 1, 1, 4};
  KVCache<ContiguousLayout, select::SepLLM> a(s, {.budget = 40, .capacity = 64}, select::SepLLM{});
  KVCache<ContiguousLayout, select::StreamingLLM> b(s, {.budget = 40, .capacity = 64}, select::StreamingLLM{});
  EXPECT_EQ(a.memory_bytes(), b.memory_bytes() + 41u);  // 41 = budget + slack + 1 reserved tags
}

TYPED_TEST(SepLLMLayouts, DecodeAllocatesNothingInSteadyState) {
  const Shape s{2, 4, 2, 16};
  KVCache<TypeParam, select::SepLLM> cache(s, {.budget = 48, .compress_slack = 4});
  std::vector<float> k(s.kv_heads * s.head_dim, 0.5f), q(s.query_heads * s.head_dim, 0.25f), out(q.size());
  std::size_t before = 0;
  for (std::int32_t t = 0; t < 300; ++t) {
    if (t == 60) before = kvc::testing::allocation_count();
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      ASSERT_EQ(cache.append(layer, t, k, k, t % 7 == 0 ? tag::separator : tag::none), Status::ok);
      cache.attend(layer, q, out);
    }
  }
  EXPECT_EQ(kvc::testing::allocation_count() - before, 0u);
  EXPECT_LE(cache.size(1, 1), 48u + 4u);
}

TEST(SepLLM, BadParametersThrow) {
  try {
    KVCache<ContiguousLayout, select::SepLLM> cache(Shape{1, 1, 1, 4}, {.budget = 10},
                                                    select::SepLLM{.sinks = 4, .separators = 6});
    ADD_FAILURE() << "sinks + separators = budget must be rejected";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kvc::select::SepLLM: sinks + separators = 4 + 6 must be smaller than the budget 10"));
  }
}

}  // namespace
}  // namespace kvc
