// kvc-eval on SmolLM2-135M (GGUF): the model and its own tokenizer from one file, a tiny context
// protocol run, and passkey prompts built with the GGUF tokenizer.
#include "engine/models.hpp"
#include "eval/run_cli.hpp"

#include "kvc_engine/gguf.hpp"
#include "kvc_engine/passkey.hpp"
#include "kvc_engine/tokenizer_gguf.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

TEST(SmolLM2Eval, ContextProtocolRunsOnTheGguf) {
  KVC_REQUIRE_SMOLLM2();
  const auto dir = temp_dir();
  const std::string model = engine::find_smollm2(models_dir()).string();
  std::string out, err;
  // The TinyStories text: the long text is Debian's and the test should not depend on it.
  ASSERT_EQ(run({"--model", model, "--text", (models_dir() / engine::text_file).string(), "--protocol", "context",
                 "--context", "128", "--score-tokens", "16", "--windows", "1", "--stack", "full", "--stack",
                 "h2o:budget=16", "-o", dir.string(), "-q"},
                out, err),
            0)
      << err;
  const auto json = nlohmann::json::parse(read_bytes(dir / "results.json"));
  ASSERT_EQ(json["runs"].size(), 1u);
  const auto& r = json["runs"][0];
  EXPECT_EQ(r["model"], model);
  EXPECT_EQ(r["tokenizer"], "the GGUF's own");
  EXPECT_EQ(r["predictions"], 16);
  // A fluent model on English text: far below the 49,152 of a uniform guess.
  EXPECT_LT(r["reference"]["perplexity"].get<double>(), 100.0);
  ASSERT_EQ(r["stacks"].size(), 2u);
  EXPECT_LT(r["stacks"][0]["mean_kl"].get<double>(), 1e-6) << "the f32 full cache is the exact cache";
  EXPECT_GT(r["stacks"][1]["mean_kl"].get<double>(), 1e-4) << "16 of 128 tokens lose something";
}

TEST(SmolLM2Eval, TokenizerComesFromTheGguf) {
  KVC_REQUIRE_SMOLLM2();
  std::string out, err;
  EXPECT_EQ(run({"--model", engine::find_smollm2(models_dir()).string(), "--tokenizer",
                 (models_dir() / engine::tokenizer_file).string(), "--stack", "full", "-o", temp_dir().string()},
                out, err),
            1);
  EXPECT_THAT(err, HasSubstr("carries its own tokenizer"));
}

TEST(SmolLM2Eval, PasskeyPromptHoldsTheKeyAtTheDepth) {
  KVC_REQUIRE_SMOLLM2();
  const engine::Tokenizer tokenizer =
      engine::tokenizer_from_gguf(engine::GgufFile::open(engine::find_smollm2(models_dir())));
  const auto filler = engine::encode_corpus(
      tokenizer, engine::read_text_file(models_dir() / engine::text_file).substr(0, 40000));
  for (const double depth : {0.1, 0.5, 0.9}) {
    const engine::PasskeyPrompt p = engine::make_passkey_prompt(tokenizer, filler, 1024, depth, "71432");
    ASSERT_EQ(p.tokens.size(), 1024u);
    EXPECT_EQ(p.tokens.front(), tokenizer.bos_id());
    EXPECT_NEAR(p.depth, depth, 0.05) << "the nearest sentence boundary";
    const std::vector<std::int32_t> needle(p.tokens.begin() + std::ptrdiff_t(p.key_begin),
                                           p.tokens.begin() + std::ptrdiff_t(p.key_end));
    EXPECT_EQ(tokenizer.decode(needle), " The pass key is 71432. Remember it. 71432 is the pass key.");
    const std::vector<std::int32_t> tail(p.tokens.end() - 4, p.tokens.end());
    EXPECT_THAT(tokenizer.decode(tail), ::testing::EndsWith(" The pass key is"));
  }
}

}  // namespace
}  // namespace kvc::test
