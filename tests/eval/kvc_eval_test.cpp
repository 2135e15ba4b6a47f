// kvc-eval end to end on a small run: table, JSON, CSV and SVG are written and parse.
#include "engine/models.hpp"
#include "eval/run_cli.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/corpus.hpp"
#include "kvc_engine/eval_cli.hpp"
#include "kvc_engine/protocols.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

// Minimal well-formedness check: every start tag is closed in order (no attribute parsing needed:
// the writer never puts '>' inside attribute values, which it escapes).
bool well_formed_xml(const std::string& text, std::string& why) {
  std::vector<std::string> open;
  std::size_t i = 0;
  while ((i = text.find('<', i)) != std::string::npos) {
    const std::size_t end = text.find('>', i);
    if (end == std::string::npos) return why = "unterminated tag", false;
    const std::string tag = text.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return why = "empty tag", false;
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) return why = "mismatched </" + name + ">", false;
      open.pop_back();
      continue;
    }
    if (tag.back() == '/') continue;
    open.push_back(tag.substr(0, tag.find_first_of(" \t\n")));
  }
  if (!open.empty()) return why = "unclosed <" + open.back() + ">", false;
  return true;
}

TEST(KvcEval, SmallRunWritesEveryReport) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  const int code = run({"--windows", "1", "--window-tokens", "96", "--stack", "full", "--stack", "h2o:budget=24",
                        "--stack", "streaming:sinks=2,recent=22+int8", "-o", dir.string()},
                       out, err);
  ASSERT_EQ(code, 0) << err;
  EXPECT_THAT(out, HasSubstr("reference perplexity"));
  EXPECT_THAT(out, HasSubstr("h2o:budget=24"));
  EXPECT_THAT(err, HasSubstr("window 1/1")) << "progress goes to stderr";

  const auto json = nlohmann::json::parse(read_bytes(dir / "results.json"));
  ASSERT_EQ(json["stacks"].size(), 3u);
  EXPECT_EQ(json["protocol"], "decode");
  EXPECT_EQ(json["context"], 0);
  EXPECT_EQ(json["windows"], 1);
  EXPECT_EQ(json["predictions"], 96);
  EXPECT_EQ(json["stacks"][0]["stack"], "full");
  EXPECT_LT(json["stacks"][0]["mean_kl"].get<double>(), 1e-9);
  EXPECT_EQ(json["stacks"][0]["top1_agreement"].get<double>(), 1.0);
  EXPECT_GT(json["stacks"][1]["mean_kl"].get<double>(), 0.0);
  EXPECT_GT(json["stacks"][1]["compression_ratio"].get<double>(), json["stacks"][0]["compression_ratio"].get<double>());
  EXPECT_EQ(json["stacks"][1]["attention_error"].size(), 5u);

  std::istringstream csv(read_bytes(dir / "results.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "protocol,context,score_tokens,stack,compression_ratio,bytes_per_token,tokens_kept,perplexity,"
            "perplexity_change,mean_kl,top1_agreement,kept_attention_mass,attention_error_mean,seconds")
      << "one fixed shape whatever the model's layer count";
  const auto columns = [](const std::string& l) {  // commas outside quoted fields
    std::size_t n = 0;
    bool quoted = false;
    for (const char c : l) {
      if (c == '"') quoted = !quoted;
      if (c == ',' && !quoted) ++n;
    }
    return n;
  };
  for (const auto& l : lines) EXPECT_EQ(columns(l), columns(lines[0])) << l;

  const std::string svg = read_bytes(dir / "results.svg");
  std::string why;
  EXPECT_TRUE(well_formed_xml(svg, why)) << why;
  // Counted by hand: <regex> trips a false -Wmaybe-uninitialized of g++ 12 under the sanitizers.
  std::size_t points = 0;
  for (std::size_t at = svg.find("<circle class=\"point\""); at != std::string::npos;
       at = svg.find("<circle class=\"point\"", at + 1))
    ++points;
  EXPECT_EQ(points, 3u);
  EXPECT_THAT(svg, HasSubstr(">streaming:sinks=2,recent=22+int8</text>"));
  EXPECT_THAT(read_bytes(dir / "results.txt"), HasSubstr("h2o:budget=24"));
}

TEST(KvcEval, BadStackFailsBeforeAnyWork) {
  std::string out, err;
  EXPECT_EQ(run({"--stack", "h2o:budgt=3", "-o", temp_dir().string()}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("unknown parameter 'budgt' of 'h2o'"));
}

TEST(KvcEval, ListShowsTheComponents) {
  std::string out, err;
  EXPECT_EQ(run({"--list"}, out, err), 0);
  EXPECT_THAT(out, HasSubstr("pyramid"));
  EXPECT_THAT(out, HasSubstr("int4"));
}

TEST(KvcEval, MissingModelFilesSayHowToSetTheFolder) {
  std::string out, err;
  const auto dir = temp_dir();
  EXPECT_EQ(run({"--model", (dir / "nope.bin").string(), "-o", dir.string()}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("nope.bin: no such file"));
  EXPECT_THAT(engine::missing_models_message(dir), HasSubstr("Set the environment variable KVC_MODELS_DIR"));
}

TEST(KvcEval, CaptureWritesALoadableDump) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  ASSERT_EQ(run({"--windows", "1", "--window-tokens", "32", "--stack", "full", "--capture", (dir / "c.kvc").string(),
                 "-o", dir.string(), "-q"},
                out, err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr("key channel outlier ratio"));
  EXPECT_TRUE(std::filesystem::exists(dir / "c.kvc"));
}

TEST(KvcEval, UnboundedTextIsRejectedAtTheLimit) {
  // /dev/zero has no size and no end: the reader must stop at its limit, not exhaust memory.
  EXPECT_THAT([] { (void)engine::read_text_file("/dev/zero", std::size_t{1} << 20); },
              ::testing::ThrowsMessage<Error>(HasSubstr("larger than the 1 MiB limit")));
  std::string out, err;
  EXPECT_EQ(run({"--text", "/dev/zero", "--stack", "full", "-o", temp_dir().string(), "-q"}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("/dev/zero is larger than the 256 MiB limit"));
}

TEST(KvcEval, TextsAreJoinedAsParagraphs) {
  const auto dir = temp_dir();
  for (const char* name : {"a.txt", "b.txt"}) {
    std::ofstream f(dir / name);
    f << "Text " << name << ".";
  }
  EXPECT_EQ(engine::read_texts({dir / "a.txt", dir / "b.txt"}), "Text a.txt.\n\nText b.txt.");
  EXPECT_THROW((void)engine::read_texts({}), Error);
}

TEST(KvcEval, NegativeCountsAreRejectedNotWrapped) {
  for (const char* option : {"--windows", "--threads", "--window-tokens", "--context", "--trials"}) {
    std::string out, err;
    EXPECT_NE(run({option, "-1", "--stack", "full", "-o", temp_dir().string()}, out, err), 0) << option;
    EXPECT_THAT(err, HasSubstr("must be a whole number >= 0, got '-1'")) << option;
  }
  std::string out, err;
  EXPECT_EQ(run({"--threads", "0", "--stack", "full", "-o", temp_dir().string()}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("--threads must be at least 1"));
}

TEST(KvcEval, WindowsUpToTheModelsContext) {
  KVC_REQUIRE_MODELS();
  std::string out, err;
  EXPECT_EQ(run({"--window-tokens", "512", "--stack", "full", "-o", temp_dir().string()}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("--window-tokens must be in [1, 511]"));
}

TEST(KvcEval, EveryExceptionBecomesAMessage) {
  std::ostringstream err;
  EXPECT_EQ(engine::report_failures(err, []() -> int { throw std::bad_alloc(); }), 1);
  EXPECT_THAT(err.str(), HasSubstr("kvc-eval: out of memory"));
  EXPECT_EQ(engine::report_failures(err, []() -> int { throw std::runtime_error("disk on fire"); }), 1);
  EXPECT_THAT(err.str(), HasSubstr("kvc-eval: unexpected error: disk on fire"));
  EXPECT_EQ(engine::report_failures(err, []() -> int { fail("here", "bad {}", 42); }), 1);
  EXPECT_THAT(err.str(), HasSubstr("kvc-eval: here: bad 42"));
  EXPECT_EQ(engine::report_failures(err, [] { return 0; }), 0);
}

TEST(KvcEval, UnknownProtocolIsNamed) {
  std::string out, err;
  EXPECT_EQ(run({"--protocol", "needle", "--stack", "full", "-o", temp_dir().string()}, out, err), 1);
  EXPECT_THAT(err, HasSubstr("unknown protocol 'needle'; valid: decode, context, passkey"));
}

TEST(KvcEval, PasskeyRunWritesEveryReport) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  ASSERT_EQ(run({"--protocol", "passkey", "--context", "96,128", "--depths", "10,90", "--trials", "2", "--seed", "7",
                 "--stack", "full", "--stack", "h2o:budget=16", "-o", dir.string(), "-q"},
                out, err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr("C = 128"));
  const auto json = nlohmann::json::parse(read_bytes(dir / "passkey.json"));
  EXPECT_EQ(json["protocol"], "passkey");
  EXPECT_EQ(json["seed"], 7);
  EXPECT_EQ(json["contexts"], nlohmann::json::array({96, 128}));
  EXPECT_EQ(json["depths"], nlohmann::json::array({0.1, 0.9}));
  ASSERT_EQ(json["keys"].size(), 2u);
  ASSERT_EQ(json["stacks"].size(), 3u);
  EXPECT_EQ(json["stacks"][0]["stack"], "exact") << "the uncompressed cache is reported first";
  for (const auto& s : json["stacks"]) {
    ASSERT_EQ(s["cells"].size(), 4u);
    for (const auto& c : s["cells"]) {
      EXPECT_EQ(c["trials"], 2);
      EXPECT_EQ(c["answers"].size(), 2u);
      EXPECT_NEAR(c["accuracy"].get<double>(), c["correct"].get<double>() / 2.0, 1e-12);
    }
  }
  // The f32 full cache decodes exactly as the exact cache does (its bytes differ: it reserves rows).
  auto full = json["stacks"][1]["cells"], exact = json["stacks"][0]["cells"];
  for (auto* cells : {&full, &exact})
    for (auto& c : *cells) c.erase("compression_ratio");
  EXPECT_EQ(full, exact);

  std::istringstream csv(read_bytes(dir / "passkey.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 1u + 3u * 4u);
  EXPECT_EQ(lines[0], "stack,context,depth,placed_depth,trials,correct,accuracy,compression_ratio");

  const std::string svg = read_bytes(dir / "passkey.svg");
  std::string why;
  EXPECT_TRUE(well_formed_xml(svg, why)) << why;
  std::size_t cells = 0;
  for (std::size_t at = svg.find("<rect class=\"cell\""); at != std::string::npos;
       at = svg.find("<rect class=\"cell\"", at + 1))
    ++cells;
  EXPECT_EQ(cells, 3u * 2u * 2u) << "stacks x contexts x depths";
  EXPECT_THAT(svg, HasSubstr(">C = 96 tokens</text>"));
  EXPECT_THAT(svg, HasSubstr(">h2o:budget=16</text>"));
}

}  // namespace
}  // namespace kvc::test
