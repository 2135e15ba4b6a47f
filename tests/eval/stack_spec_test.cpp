// Stack specs: the parser and the registry's checks, with errors that name the wrong token.
#include "kvc/core/error.hpp"
#include "kvc_engine/registry.hpp"
#include "kvc_engine/stack_spec.hpp"
#include "kvc/kvc.hpp"

#include <gmock/gmock.h>

#include <algorithm>
#include <random>
#include <vector>

namespace kvc::test {
namespace {

using namespace kvc::engine;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string spec_error(std::string_view text) {
  try {
    check_stack(parse_stack(text));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(StackSpec, ParsesComponentsAndParameters) {
  const StackSpec s = parse_stack("pyramid:budget=64,beta=10 + h2o:recent=0.25+int4:group=8");
  ASSERT_EQ(s.components.size(), 3u);
  EXPECT_EQ(s.components[0].name, "pyramid");
  ASSERT_EQ(s.components[0].params.size(), 2u);
  EXPECT_EQ(s.components[0].params[0].key, "budget");
  EXPECT_EQ(s.components[0].params[0].value, 64.0);
  EXPECT_EQ(s.components[0].params[1].key, "beta");
  EXPECT_EQ(s.components[1].name, "h2o");
  EXPECT_EQ(s.components[1].params[0].value, 0.25);
  EXPECT_EQ(s.components[2].name, "int4");
  EXPECT_EQ(parse_stack("full").components.size(), 1u);
}

TEST(StackSpec, AcceptsEveryExampleOfTheIssue) {
  for (const char* text : {"full", "streaming:sinks=4,recent=60", "h2o:budget=64", "h2o:budget=64+int4:group=8",
                           "pyramid:budget=64+h2o", "int8:group=8", "svd:rank=4", "h2o:budget=64+d2o",
                           "uniform:budget=32+h2o+d2o:threshold=0.9+int8", "f16", "h2o:budget=64+bf16",
                           "kivi:bits=2,group=32,residual=128", "h2o:budget=64+kivi:bits=4"})
    EXPECT_EQ(spec_error(text), "no error") << text;
}

TEST(StackSpec, SyntaxErrorsQuoteTheToken) {
  EXPECT_THAT(spec_error(""), HasSubstr("empty stack"));
  EXPECT_THAT(spec_error("h2o:budget=64++int4"), HasSubstr("empty component at offset 14"));
  EXPECT_THAT(spec_error("h2o:budget=abc"), HasSubstr("value 'abc' of parameter 'budget' of 'h2o' is not a number"));
  EXPECT_THAT(spec_error("h2o:budget"), HasSubstr("parameter 'budget' of 'h2o' must be written key=value"));
  EXPECT_THAT(spec_error("h2o:"), HasSubstr("has a ':' but no parameters"));
  EXPECT_THAT(spec_error("h2o:budget=1,budget=2"), HasSubstr("parameter 'budget' of 'h2o' is given twice"));
  EXPECT_THAT(spec_error("9lives"), HasSubstr("'9lives' is not a policy name"));
  EXPECT_THAT(spec_error("h2o:budget=+5"),
              HasSubstr("value of parameter 'budget' of 'h2o' is cut at the '+' at offset 11: '+' separates components"));
  EXPECT_THAT(spec_error("h2o:budget=1e+5"), HasSubstr("cut at the '+' at offset 13"));
  EXPECT_THAT(spec_error("h2o:budget="), HasSubstr("parameter 'budget' of 'h2o' has no value after '='"));
}

TEST(StackSpec, UnknownNamesListTheValidOnes) {
  EXPECT_THAT(spec_error("h2o:budget=64+int3"),
              AllOf(HasSubstr("unknown component 'int3' at offset 14"), HasSubstr("valid names: full, f16"),
                    HasSubstr("int4"), HasSubstr("streaming"), HasSubstr("svd")));
}

TEST(StackSpec, UnknownParametersListTheValidOnes) {
  EXPECT_THAT(spec_error("h2o:budgt=64"),
              AllOf(HasSubstr("unknown parameter 'budgt' of 'h2o'"), HasSubstr("budget=0"), HasSubstr("recent=0.5")));
  EXPECT_THAT(spec_error("full:budget=3"), HasSubstr("'full' takes no parameters"));
}

TEST(StackSpec, ValuesAreRangeAndTypeChecked) {
  EXPECT_THAT(spec_error("h2o:budget=6.5"), HasSubstr("'budget' of 'h2o' must be an integer, got 6.5"));
  EXPECT_THAT(spec_error("h2o:budget=64,recent=2"), HasSubstr("'recent' of 'h2o' must be in [0, 1], got 2"));
  EXPECT_THAT(spec_error("int4:value_bits=9"), HasSubstr("must be in [0, 8]"));
}

TEST(StackSpec, FamiliesAndTheirDependenciesAreChecked) {
  EXPECT_THAT(spec_error("h2o:budget=64+streaming"),
              HasSubstr("'h2o' and 'streaming' are both selection components"));
  EXPECT_THAT(spec_error("int8+int4"), HasSubstr("both quantization components"));
  EXPECT_THAT(spec_error("pyramid:budget=64"), HasSubstr("needs a selection policy"));
  EXPECT_THAT(spec_error("d2o"), HasSubstr("merging policy folds evicted tokens"));
  EXPECT_THAT(spec_error("h2o"), HasSubstr("eviction needs a budget"));
  EXPECT_THAT(spec_error("full+int8"), HasSubstr("'full' is the uncompressed cache"));
  EXPECT_THAT(spec_error("streaming:sinks=4,recent=60+pyramid:budget=32"),
              HasSubstr("another component already set budget=64"));
}

TEST(StackSpec, DescribeListsEveryComponent) {
  const std::string d = describe_components();
  for (const ComponentInfo& c : registered_components()) EXPECT_THAT(d, HasSubstr(c.name));
  EXPECT_THAT(d, HasSubstr("streaming:sinks=4,recent=60"));
}

TEST(StackSpec, BuildsCachesOfTheRightShape) {
  const Shape shape{2, 4, 2, 8};
  for (const char* text : {"full", "h2o:budget=16+int8", "pyramid:budget=16+h2o+d2o", "streaming:sinks=2,recent=6"}) {
    auto cache = make_cache(parse_stack(text), shape, 64);
    ASSERT_TRUE(cache) << text;
    EXPECT_EQ(cache->shape(), shape);
    EXPECT_EQ(cache->tokens(), 0u);
  }
  EXPECT_THROW((void)make_cache(parse_stack("svd:rank=4"), shape, 64), Error) << "svd needs calibration data";
}

// A run-time stack computes what the compile-time KVCache of the same policies computes, bit for
// bit, and holds the same memory: its per-family dynamic policies forward to the same hooks.
template <class Cache>
void expect_same_as_compile_time(const char* text, Cache reference) {
  SCOPED_TRACE(text);
  const Shape s = reference.shape();
  const auto dynamic = make_cache(parse_stack(text), s, 64);
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  std::vector<float> k(s.kv_heads * s.head_dim), v(k.size()), q(s.query_heads * s.head_dim), out(q.size()),
      expected(q.size());
  for (std::int32_t t = 0; t < 40; ++t)
    for (std::size_t layer = 0; layer < s.layers; ++layer) {
      for (auto* x : {&k, &v, &q})
        for (float& f : *x) f = normal(rng);
      ASSERT_EQ(dynamic->append(layer, t, k, v), Status::ok);
      ASSERT_EQ(reference.append(layer, t, k, v), Status::ok);
      dynamic->attend(layer, q, out);
      reference.attend(layer, q, expected);
      ASSERT_EQ(out, expected) << "token " << t << " layer " << layer;
    }
  for (std::size_t layer = 0; layer < s.layers; ++layer)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const auto a = dynamic->positions(layer, h), b = reference.positions(layer, h);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "layer " << layer << " head " << h;
    }
  EXPECT_EQ(dynamic->memory_bytes(), reference.memory_bytes());
}

TEST(StackSpec, RunTimeStacksMatchCompileTimeCaches) {
  const Shape s{2, 4, 2, 8};
  expect_same_as_compile_time("full", KVCache<>(s, {.capacity = 64}));
  expect_same_as_compile_time("knorm:budget=6,window=2",
                              KVCache<ContiguousLayout, select::KNorm>(s, {.budget = 6}, select::KNorm{.window = 2}));
  expect_same_as_compile_time(
      "h2o:budget=6+d2o+int8:group=8",
      KVCache<ContiguousLayout, select::H2O, merge::D2O, quant::PerToken>(
          s, {.budget = 6}, select::H2O{}, merge::D2O{}, quant::PerToken{.bits = 8, .group = 8}));
  expect_same_as_compile_time(
      "pyramid:budget=12,window=2+streaming:sinks=1,recent=11",
      KVCache<ContiguousLayout, budget::PyramidKV, select::StreamingLLM>(
          s, {.budget = 12}, budget::PyramidKV{.beta = 20, .window = 2}, select::StreamingLLM{.sinks = 1}));
  expect_same_as_compile_time("tova:budget=6", KVCache<ContiguousLayout, select::TOVA>(s, {.budget = 6}));
}

// Prompt-time compression: prefill and attend a prompt, compress_prompt(), then decode.
template <class Cache>
void expect_prompt_same_as_compile_time(const char* text, Cache reference) {
  SCOPED_TRACE(text);
  const Shape s = reference.shape();
  const auto dynamic = make_cache(parse_stack(text), s, 64);
  std::mt19937 rng(19);
  std::normal_distribution<float> normal;
  const std::size_t n = 40;
  std::vector<float> keys(n * s.kv_heads * s.head_dim), values(keys.size()), queries(n * s.query_heads * s.head_dim),
      out(queries.size()), expected(queries.size());
  for (auto* x : {&keys, &values, &queries})
    for (float& f : *x) f = normal(rng);
  for (std::size_t layer = 0; layer < s.layers; ++layer) {
    dynamic->prefill(layer, 0, keys, values);
    reference.prefill(layer, 0, keys, values);
    dynamic->attend(layer, queries, out);
    reference.attend(layer, queries, expected);
    ASSERT_EQ(out, expected) << "layer " << layer;
  }
  dynamic->compress_prompt();
  reference.compress_prompt();
  for (std::size_t layer = 0; layer < s.layers; ++layer)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const auto a = dynamic->positions(layer, h), b = reference.positions(layer, h);
      EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "layer " << layer << " head " << h;
      EXPECT_LT(a.size(), n);
    }
  const std::span<const float> q(queries.data(), s.query_heads * s.head_dim);
  for (std::size_t layer = 0; layer < s.layers; ++layer) {
    ASSERT_EQ(dynamic->append(layer, 50, std::span(keys).first(s.kv_heads * s.head_dim),
                              std::span(values).first(s.kv_heads * s.head_dim)), Status::ok);
    ASSERT_EQ(reference.append(layer, 50, std::span(keys).first(s.kv_heads * s.head_dim),
                               std::span(values).first(s.kv_heads * s.head_dim)), Status::ok);
    dynamic->attend(layer, q, std::span(out).first(q.size()));
    reference.attend(layer, q, std::span(expected).first(q.size()));
    ASSERT_TRUE(std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(q.size()), expected.begin()));
  }
  EXPECT_EQ(dynamic->memory_bytes(), reference.memory_bytes());
}

TEST(StackSpec, PromptCompressionMatchesCompileTimeCaches) {
  const Shape s{2, 4, 2, 8};
  expect_prompt_same_as_compile_time(
      "snapkv:budget=12,window=4,kernel=3",
      KVCache<ContiguousLayout, select::SnapKV>(s, {.budget = 12}, select::SnapKV{.window = 4, .kernel = 3}));
  expect_prompt_same_as_compile_time(
      "snapkv:ratio=0.25,window=4,avg=1",
      KVCache<ContiguousLayout, select::SnapKV>(s, {.budget_ratio = 0.25, .capacity = 64},
                                                select::SnapKV{.window = 4, .pooling = select::Pooling::avg}));
  expect_prompt_same_as_compile_time(
      "pyramidkv:window=4,beta=2+snapkv:budget=10,window=4",
      KVCache<ContiguousLayout, budget::PyramidKVPrompt, select::SnapKV>(
          s, {.budget = 10}, budget::PyramidKVPrompt{.beta = 2, .window = 4}, select::SnapKV{.window = 4}));
  expect_prompt_same_as_compile_time(
      "adakv:alpha=0.5+snapkv:ratio=0.25,window=4",
      KVCache<ContiguousLayout, budget::AdaKV, select::SnapKV>(s, {.budget_ratio = 0.25, .capacity = 64},
                                                               budget::AdaKV{.alpha = 0.5}, select::SnapKV{.window = 4}));
  expect_prompt_same_as_compile_time("tova:ratio=0.5",
                                     KVCache<ContiguousLayout, select::TOVA>(s, {.budget_ratio = 0.5, .capacity = 64}));
}

TEST(StackSpec, BudgetOrRatioIsRequiredAndChecked) {
  EXPECT_THAT(spec_error("snapkv"), HasSubstr("eviction needs a budget (or a ratio)"));
  EXPECT_THAT(spec_error("snapkv:budget=64,ratio=0.5"), HasSubstr("give a budget or a ratio, not both"));
  EXPECT_THAT(spec_error("snapkv:ratio=1.5"), HasSubstr("must be in [0, 1]"));
  EXPECT_THROW((void)make_cache(parse_stack("snapkv:ratio=0"), Shape{2, 4, 2, 8}, 64), Error);
  EXPECT_THROW((void)make_cache(parse_stack("snapkv:budget=16,window=32"), Shape{2, 4, 2, 8}, 64), Error);
  EXPECT_THAT(spec_error("pyramidkv:window=8+snapkv:budget=64,window=16"), HasSubstr("the two must agree"));
}

}  // namespace
}  // namespace kvc::test
