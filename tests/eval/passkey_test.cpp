// Passkey retrieval mechanics on stories260K: keys, prompt construction (key at the requested
// depth, tokenized as specified), scoring, and a small run. The tiny model is not expected to
// retrieve the key; these tests check the protocol, not the model.
#include "engine/models.hpp"

#include "kvc/core/error.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc_engine/passkey.hpp"
#include "kvc_engine/passkey_report.hpp"

#include <gmock/gmock.h>

#include <cmath>
#include <set>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

TEST(Passkey, KeysAreFiveDigitsAndNamedByTheSeed) {
  std::set<std::string> seen;
  for (std::size_t i = 0; i < 50; ++i) {
    const std::string key = engine::passkey_key(1234, i);
    ASSERT_EQ(key.size(), 5u) << key;
    EXPECT_NE(key[0], '0');
    EXPECT_EQ(key, engine::passkey_key(1234, i)) << "deterministic";
    seen.insert(key);
  }
  EXPECT_GT(seen.size(), 45u);
  EXPECT_NE(engine::passkey_key(1234, 0), engine::passkey_key(1235, 0));
}

TEST(Passkey, TheAnswerIsTheFirstRunOfDigits) {
  EXPECT_TRUE(engine::passkey_correct(" 71432. Remember", "71432"));
  EXPECT_TRUE(engine::passkey_correct("71432", "71432"));
  EXPECT_TRUE(engine::passkey_correct(" is 71432\n", "71432"));
  EXPECT_FALSE(engine::passkey_correct(" 7143", "71432")) << "truncated";
  EXPECT_FALSE(engine::passkey_correct(" 714321", "71432")) << "too long";
  EXPECT_FALSE(engine::passkey_correct(" 12345 71432", "71432")) << "only the first number counts";
  EXPECT_FALSE(engine::passkey_correct(" the key", "71432"));
  EXPECT_FALSE(engine::passkey_correct("", "71432"));
}

// The text of tokens [begin, end) of a prompt.
std::string text_of(const engine::Tokenizer& t, const std::vector<std::int32_t>& tokens, std::size_t begin,
                    std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end; ++i) out += t.decode(tokens[i - 1], tokens[i]);
  return out;
}

TEST(Passkey, PromptHoldsTheKeyAtTheRequestedDepthAndEndsWithTheCue) {
  KVC_REQUIRE_MODELS();
  const auto& tok = bundle().tokenizer;
  const auto& filler = corpus_head();
  constexpr std::size_t context = 400;
  for (const double depth : {0.1, 0.3, 0.5, 0.7, 0.9}) {
    const engine::PasskeyPrompt p = engine::make_passkey_prompt(tok, filler, context, depth, "71432");
    ASSERT_EQ(p.tokens.size(), context);
    EXPECT_EQ(p.tokens[0], engine::Tokenizer::bos);
    EXPECT_EQ(text_of(tok, p.tokens, p.key_begin, p.key_end),
              " The pass key is 71432. Remember it. 71432 is the pass key.");
    // The cue is the last thing in the prompt, tokenized as " The pass key is".
    const auto cue = tok.encode(" The pass key is", false, false);
    EXPECT_TRUE(std::equal(cue.begin(), cue.end(), p.tokens.end() - std::ptrdiff_t(cue.size())));
    // Around the key, the filler is the text in its order, nothing dropped or repeated.
    std::vector<std::int32_t> rest(p.tokens.begin() + 1, p.tokens.begin() + std::ptrdiff_t(p.key_begin));
    rest.insert(rest.end(), p.tokens.begin() + std::ptrdiff_t(p.key_end), p.tokens.end() - std::ptrdiff_t(cue.size()));
    EXPECT_TRUE(std::equal(rest.begin(), rest.end(), filler.begin() + std::ptrdiff_t(p.filler_begin)))
        << "depth " << depth;
    EXPECT_LT(p.filler_begin, 200u);
    // The cue follows a whole sentence.
    const std::string tail = text_of(tok, p.tokens, p.tokens.size() - cue.size() - 3, p.tokens.size() - cue.size());
    EXPECT_THAT(std::string(".!?\n"), HasSubstr(std::string(1, tail[tail.find_last_not_of(" \"'")])))
        << "depth " << depth << ": ..." << tail;
    // The key starts a sentence, and at most one sentence end lies between it and the requested depth.
    const std::string before = text_of(tok, p.tokens, 1, p.key_begin);
    const std::size_t last = before.find_last_not_of(" \"'");
    ASSERT_NE(last, std::string::npos);
    EXPECT_THAT(std::string(".!?\n"), HasSubstr(std::string(1, before[last]))) << "depth " << depth << ": ..."
                                                                              << before.substr(before.size() - 40);
    // In filler tokens: the key went in at filler index key_begin - 1, the request was depth x C - 1.
    const std::size_t target = std::size_t(std::lround(depth * double(context) - 1.0)), placed = p.key_begin - 1;
    std::vector<std::int32_t> span(filler.begin() + std::ptrdiff_t(p.filler_begin + std::min(target, placed)),
                                   filler.begin() + std::ptrdiff_t(p.filler_begin + std::max(target, placed)));
    span.insert(span.begin(), engine::Tokenizer::bos);
    const std::string between = text_of(tok, span, 1, span.size());
    std::size_t ends = 0;
    for (std::size_t i = 0; i + 1 < between.size(); ++i) ends += std::string_view(".!?").find(between[i]) != std::string_view::npos;
    EXPECT_LE(ends, 1u) << "depth " << depth << ": '" << between << "'";
    EXPECT_NEAR(p.depth, double(p.key_begin) / double(context), 1e-12);
    EXPECT_NEAR(p.depth, depth, 0.1) << "stories are short: sentences are a few tokens";
  }
}

TEST(Passkey, PromptThatCannotFitSaysWhy) {
  KVC_REQUIRE_MODELS();
  const auto& tok = bundle().tokenizer;
  const auto& filler = corpus_head();
  EXPECT_THAT([&] { (void)engine::make_passkey_prompt(tok, filler, 20, 0.5, "71432"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("cannot hold BOS, the key sentence and the cue")));
  EXPECT_THAT([&] { (void)engine::make_passkey_prompt(tok, std::span(filler).first(50), 400, 0.5, "71432"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the filler text has 50 tokens")));
  EXPECT_THAT([&] { (void)engine::make_passkey_prompt(tok, filler, 400, 1.5, "71432"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("depth must be in [0, 1]")));
}

TEST(Passkey, ContinuationStopsAtEightTokensOrANewline) {
  KVC_REQUIRE_MODELS();
  const auto& b = bundle();
  engine::Transformer transformer(b.model);
  engine::PlainCache cache(b.model.config().attention_shape());
  const auto prompt = b.tokenizer.encode("Once upon a time", true);
  const std::string text = engine::greedy_continuation(transformer, cache, b.tokenizer, prompt);
  const std::size_t newline = text.find('\n');
  EXPECT_TRUE(newline == std::string::npos || newline == text.size() - 1) << text;
  EXPECT_LE(cache.size(0, 0), prompt.size() + engine::passkey_max_new_tokens - 1)
      << "the last generated token is never fed back";
  EXPECT_FALSE(text.empty());
}

TEST(Passkey, RunScoresEveryCellAndTheExactCacheFirst) {
  KVC_REQUIRE_MODELS();
  const auto& b = bundle();
  engine::PasskeyPlan plan;
  plan.contexts = {128};
  plan.depths = {0.2, 0.8};
  plan.trials = 2;
  plan.seed = 99;
  const std::vector<std::string> labels{"full", "h2o:budget=16"};
  const Shape shape = b.model.config().attention_shape();
  const engine::CacheFactory make = [&](std::size_t i, std::size_t context) {
    return runtime::make_cache(runtime::parse_stack(labels[i]), shape, context + engine::passkey_max_new_tokens);
  };
  const engine::PasskeyReport r = engine::run_passkey(b.model, b.tokenizer, corpus_head(), plan, labels, make, {}, 2);
  EXPECT_EQ(r.keys, (std::vector<std::string>{engine::passkey_key(99, 0), engine::passkey_key(99, 1)}));
  ASSERT_EQ(r.stacks.size(), 3u);
  EXPECT_EQ(r.stacks[0].label, "exact");
  for (const auto& s : r.stacks) {
    ASSERT_EQ(s.cells.size(), 2u);
    for (const auto& c : s.cells) {
      EXPECT_EQ(c.trials, 2u);
      ASSERT_EQ(c.answers.size(), 2u);
      std::size_t correct = 0;
      for (std::size_t t = 0; t < 2; ++t) correct += engine::passkey_correct(c.answers[t], r.keys[t]);
      EXPECT_EQ(c.correct, correct);
    }
  }
  EXPECT_EQ(r.stacks[1].cells[0].answers, r.stacks[0].cells[0].answers) << "the f32 full cache is exact";
  EXPECT_THAT(engine::format_passkey_table(r), HasSubstr("exact"));
  plan.contexts = {600};
  EXPECT_THAT([&] { (void)engine::run_passkey(b.model, b.tokenizer, corpus_head(), plan, labels, make); },
              ::testing::ThrowsMessage<Error>(HasSubstr("exceeds the model's 512")));
}

}  // namespace
}  // namespace kvc::test
