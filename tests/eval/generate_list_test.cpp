// kvc-eval --generate through compressed caches, and --list's explanation of every parameter.
#include "engine/models.hpp"
#include "eval/run_cli.hpp"

#include "kvc/kvc.hpp"
#include "kvc_engine/generate.hpp"
#include "kvc_engine/plain_cache.hpp"
#include "kvc/runtime/registry.hpp"

#include <gmock/gmock.h>

#include <algorithm>
#include <string>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

template <class Cache>
std::vector<std::int32_t> greedy_story(Cache& cache, std::size_t steps) {
  engine::Transformer transformer(bundle().model);
  engine::Sampler greedy;
  return engine::generate(transformer, cache, bundle().tokenizer, "", steps, greedy);
}

TEST(KvcEvalGenerate, WithoutStacksPrintsOnlyTheExactStory) {
  KVC_REQUIRE_MODELS();
  engine::PlainCache exact(bundle().model.config().attention_shape());
  const std::string story = bundle().tokenizer.decode(greedy_story(exact, 48));
  std::string out, err;
  ASSERT_EQ(run({"--generate", "48"}, out, err), 0) << err;
  EXPECT_EQ(out, story + "\n");
}

TEST(KvcEvalGenerate, EveryStackGeneratesThroughItsOwnCompressedCache) {
  KVC_REQUIRE_MODELS();
  const std::size_t steps = 64;
  const Shape shape = bundle().model.config().attention_shape();
  engine::PlainCache plain(shape);
  const std::vector<std::int32_t> exact = greedy_story(plain, steps);
  // The same StreamingLLM window built directly, without the registry: 2 sinks + 6 recent tokens.
  KVCache<ContiguousLayout, select::StreamingLLM> direct(shape, Options{.budget = 8}, select::StreamingLLM{.sinks = 2});
  const std::vector<std::int32_t> windowed = greedy_story(direct, steps);
  const auto first_difference = std::mismatch(exact.begin(), exact.end(), windowed.begin(), windowed.end()).first;
  ASSERT_NE(first_difference, exact.end()) << "an 8-token window should change a 64-token story";

  std::string out, err;
  ASSERT_EQ(run({"--generate", "64", "--stack", "full", "--stack", "streaming:sinks=2,recent=6"}, out, err), 0) << err;
  const std::string& text = out;
  EXPECT_THAT(text, HasSubstr("exact cache (" + std::to_string(exact.size()) + " tokens):\n" +
                                  bundle().tokenizer.decode(exact) + "\n"));
  EXPECT_THAT(text, HasSubstr("\nfull (" + std::to_string(exact.size()) + " tokens, the same tokens as the exact cache):\n" +
                                  bundle().tokenizer.decode(exact) + "\n"));
  EXPECT_THAT(text, HasSubstr(fmt::format("\nstreaming:sinks=2,recent=6 ({} tokens, leaves the exact story at token {}):\n{}\n",
                                          windowed.size(), first_difference - exact.begin(),
                                          bundle().tokenizer.decode(windowed))));
}

TEST(KvcEvalGenerate, SharesAreSharesOfTheGenerationLength) {
  KVC_REQUIRE_MODELS();
  std::string out_share, out_count, err;
  // 12.5% of 64 steps is 8 tokens.
  ASSERT_EQ(run({"--generate", "64", "--stack", "h2o:budget=12.5%"}, out_share, err), 0) << err;
  ASSERT_EQ(run({"--generate", "64", "--stack", "h2o:budget=8"}, out_count, err), 0) << err;
  const auto body = [](const std::string& s) { return s.substr(s.find("tokens, ")); };
  EXPECT_EQ(body(out_share.substr(out_share.find("h2o:budget=12.5%"))),
            body(out_count.substr(out_count.find("h2o:budget=8"))));
}

TEST(KvcEvalGenerate, BadStackFailsBeforeGenerating) {
  std::string out, err;
  EXPECT_EQ(run({"--generate", "16", "--stack", "h2o:budgt=3"}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("unknown parameter 'budgt' of 'h2o'"));
  EXPECT_EQ(out, "");
}

// The line --list prints for one parameter.
std::string parameter_line(const std::string& list, const std::string& component, const std::string& key) {
  const std::size_t at = list.find("\n  " + component + " (");
  if (at == std::string::npos) return "component not listed";
  std::size_t end = list.find('\n', at + 1);  // the next component's header: two spaces, then a name
  while (end != std::string::npos && list.compare(end, 5, "\n    ") == 0) end = list.find('\n', end + 1);
  const std::size_t line = list.find("\n    " + key + " ", at);
  if (line == std::string::npos || line > end) return "parameter not listed";
  return list.substr(line + 1, list.find('\n', line + 1) - line - 1);
}

TEST(KvcEvalList, ExplainsEveryParameterAndWhatItsZeroMeans) {
  std::string out, err;
  ASSERT_EQ(run({"--list"}, out, err), 0);
  for (const runtime::ComponentInfo& c : runtime::registered_components())
    for (const runtime::ParamInfo& p : c.params) {
      const std::string line = parameter_line(out, c.name, p.key);
      EXPECT_THAT(line, HasSubstr(p.help)) << c.name << ":" << p.key;
      const bool says_zero = line.find("0 =") != std::string::npos || line.find("; 0 is ") != std::string::npos ||
                             line.find("; 0, the default") != std::string::npos;
      EXPECT_TRUE(says_zero) << line;
    }
  // The four cases, one parameter each.
  EXPECT_THAT(parameter_line(out, "int4", "group"), HasSubstr("0 = min(32, head_dim)"));
  EXPECT_THAT(parameter_line(out, "streaming", "recent"), HasSubstr("0 is refused (at least 1)"));
  EXPECT_THAT(parameter_line(out, "streaming", "sinks"), HasSubstr("0 is taken literally (sinks = 0)"));
  EXPECT_THAT(parameter_line(out, "d2o", "threshold"), HasSubstr("0, the default, means not given"));
  EXPECT_THAT(parameter_line(out, "streaming", "sinks"), HasSubstr("default 4"));
  EXPECT_THAT(parameter_line(out, "streaming", "sinks"), HasSubstr("integer in [0, 1e+06]"));
}

}  // namespace
}  // namespace kvc::test
