// The results files' provenance and fixed shapes (docs/evaluation.md, "Results schema"), and the
// SHA-256 behind the model checksum, checked against the FIPS 180-4 test vectors and sha256sum.
#include "engine/models.hpp"
#include "eval/run_cli.hpp"

#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "kvc/version.hpp"
#include "kvc_engine/sha256.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace kvc::test {
namespace {

using ::testing::HasSubstr;

std::string sha(std::string_view text) { return engine::sha256_hex(std::as_bytes(std::span(text.data(), text.size()))); }

std::vector<std::string> lines_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> fields(const std::string& line) {  // the writer quotes no field these tests use
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; std::getline(in, f, ',');) out.push_back(f);
  return out;
}

// sha256sum, an implementation independent of ours.
std::string coreutils_sha256(const std::filesystem::path& path) {
  FILE* pipe = popen(("sha256sum '" + path.string() + "'").c_str(), "r");
  if (!pipe) return "popen failed";
  char digest[65] = {};
  const std::size_t n = std::fread(digest, 1, 64, pipe);
  pclose(pipe);
  return std::string(digest, n);
}

TEST(Sha256, MatchesTheFipsTestVectors) {
  EXPECT_EQ(sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecewiseUpdatesEqualOneUpdate) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += char('a' + i % 26);
  const std::string whole = sha(text);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    engine::Sha256 s;
    s.update(std::as_bytes(std::span(text.data(), cut)));
    s.update(std::as_bytes(std::span(text.data() + cut, text.size() - cut)));
    ASSERT_EQ(s.hex_digest(), whole) << "split at " << cut;
  }
}

TEST(Sha256, FileDigestMatchesSha256sumAndMissingFilesThrow) {
  const auto path = temp_dir() / "three-mib.bin";
  std::string bytes(3u << 20, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 2654435761u >> 13);
  write_bytes(path, bytes);
  EXPECT_EQ(engine::file_sha256(path), coreutils_sha256(path));
  try {
    (void)engine::file_sha256(path.parent_path() / "missing.bin");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open"));
    EXPECT_THAT(e.what(), HasSubstr("missing.bin"));
  }
}

// The provenance block every results JSON opens with (run_header).
void expect_header(const nlohmann::json& j, const std::filesystem::path& model, std::size_t threads) {
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["kvc_version"], std::to_string(KVC_VERSION_MAJOR) + "." + std::to_string(KVC_VERSION_MINOR) + "." +
                                  std::to_string(KVC_VERSION_PATCH));
  ASSERT_TRUE(j["git_commit"].is_string());
  EXPECT_FALSE(j["git_commit"].get<std::string>().empty());
  EXPECT_EQ(j["isa"], kernels::active_isa_name());
  EXPECT_EQ(j["threads"], threads);
  EXPECT_EQ(j["model"], model.string());
  EXPECT_EQ(j["model_sha256"], coreutils_sha256(model));
  EXPECT_TRUE(j["parameters"].is_object());
}

TEST(ResultsSchema, DecodeJsonCarriesProvenanceAndTheCsvsHaveFixedShapes) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  ASSERT_EQ(run({"--windows", "1", "--window-tokens", "64", "--stack", "full", "--stack", "h2o:budget=16", "--threads",
                 "2", "-q", "-o", dir.string()},
                out, err),
            0)
      << err;
  const auto json = nlohmann::json::parse(read_bytes(dir / "results.json"));
  expect_header(json, models_dir() / engine::model_file, 2);
  EXPECT_EQ(json["parameters"]["windows"], 1);
  EXPECT_EQ(json["parameters"]["window_tokens"], 64);
  EXPECT_EQ(json["parameters"]["stacks"], nlohmann::json::array({"full", "h2o:budget=16"}));

  const auto rows = lines_of(read_bytes(dir / "results.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], "protocol,context,score_tokens,stack,compression_ratio,bytes_per_token,tokens_kept,perplexity,"
                     "perplexity_change,mean_kl,top1_agreement,kept_attention_mass,attention_error_mean,seconds");
  EXPECT_THAT(rows[1], ::testing::StartsWith("decode,0,64,full,"));
  EXPECT_THAT(rows[2], ::testing::StartsWith("decode,0,64,h2o:budget=16,"));

  // Long format: one row per (stack, layer) of stories260K's 5 layers, the JSON's values.
  const auto layers = lines_of(read_bytes(dir / "results-layers.csv"));
  ASSERT_EQ(layers.size(), 1u + 2u * 5u);
  EXPECT_EQ(layers[0], "context,stack,layer,metric,value");
  for (std::size_t s = 0; s < 2; ++s)
    for (std::size_t l = 0; l < 5; ++l) {
      const auto f = fields(layers[1 + s * 5 + l]);
      ASSERT_EQ(f.size(), 5u) << layers[1 + s * 5 + l];
      EXPECT_EQ(f[0], "0");
      EXPECT_EQ(f[1], json["stacks"][s]["stack"].get<std::string>());
      EXPECT_EQ(f[2], std::to_string(l));
      EXPECT_EQ(f[3], "attention_error");
      const double expected = json["stacks"][s]["attention_error"][l].get<double>();
      EXPECT_NEAR(std::stod(f[4]), expected, 1e-5 * std::max(1.0, expected));
    }
  EXPECT_GT(std::stod(fields(layers[6 + 4])[4]), 0.0) << "h2o's last layer differs from the exact cache";
}

TEST(ResultsSchema, ContextAndPasskeyJsonCarryProvenanceAndParameters) {
  KVC_REQUIRE_MODELS();
  const auto dir = temp_dir();
  std::string out, err;
  ASSERT_EQ(run({"--protocol", "context", "--context", "64,96", "--score-tokens", "16", "--windows", "1", "--stack",
                 "full", "-q", "-o", dir.string()},
                out, err),
            0)
      << err;
  const auto context = nlohmann::json::parse(read_bytes(dir / "results.json"));
  expect_header(context, models_dir() / engine::model_file, 2);
  EXPECT_EQ(context["parameters"]["contexts"], nlohmann::json::array({64, 96}));
  EXPECT_EQ(context["parameters"]["score_tokens"], 16);
  const auto layers = lines_of(read_bytes(dir / "results-layers.csv"));
  ASSERT_EQ(layers.size(), 1u + 2u * 5u) << "one header for both contexts";
  EXPECT_THAT(layers[1], ::testing::StartsWith("64,full,0,attention_error,"));
  EXPECT_THAT(layers[6], ::testing::StartsWith("96,full,0,attention_error,"));

  ASSERT_EQ(run({"--protocol", "passkey", "--context", "96", "--depths", "50", "--trials", "1", "--seed", "9", "--stack",
                 "h2o:budget=16", "--threads", "1", "-q", "-o", dir.string()},
                out, err),
            0)
      << err;
  const auto passkey = nlohmann::json::parse(read_bytes(dir / "passkey.json"));
  expect_header(passkey, models_dir() / engine::model_file, 1);
  EXPECT_EQ(passkey["parameters"]["trials"], 1);
  EXPECT_EQ(passkey["parameters"]["seed"], 9);
  EXPECT_EQ(passkey["parameters"]["depths"], nlohmann::json::array({0.5}));
  // Budget 16 of a 96-token prompt (plus at most 8 answer tokens held): well above the exact cache's ratio.
  const double exact = passkey["stacks"][0]["cells"][0]["compression_ratio"].get<double>();
  const double h2o = passkey["stacks"][1]["cells"][0]["compression_ratio"].get<double>();
  EXPECT_GT(exact, 0.3);
  EXPECT_LE(exact, 0.5) << "f32 rows are twice f16's";
  EXPECT_GT(h2o, 2.0 * exact);
}

}  // namespace
}  // namespace kvc::test
