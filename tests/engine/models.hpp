#pragma once
// Test access to the bundled model files. Tests that need them FAIL (never skip) when they are
// missing, saying how to point KVC_MODELS_DIR at them.
#include "kvc_engine/corpus.hpp"
#include "kvc_engine/model.hpp"
#include "kvc_engine/paths.hpp"
#include "kvc_engine/tokenizer.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace kvc::test {

inline std::filesystem::path models_dir() {
  if (const char* env = std::getenv("KVC_MODELS_DIR"); env && *env) return env;
#ifdef KVC_MODELS_DIR_DEFAULT
  return KVC_MODELS_DIR_DEFAULT;
#else
  return engine::models_dir();
#endif
}

// Use as: KVC_REQUIRE_MODELS(); at the top of a test.
#define KVC_REQUIRE_MODELS()                                                              \
  do {                                                                                    \
    const std::string kvc_missing_ = ::kvc::engine::missing_models_message(::kvc::test::models_dir()); \
    if (!kvc_missing_.empty()) FAIL() << kvc_missing_;                                    \
  } while (false)

// SmolLM2-135M-Instruct (98 MB, not bundled): tests that need it SKIP, saying why, when it is
// absent (scripts/fetch_models.sh fetches it). Use as: KVC_REQUIRE_SMOLLM2(); at the top of a test.
#define KVC_REQUIRE_SMOLLM2()                                                                          \
  do {                                                                                                 \
    if (::kvc::engine::find_smollm2(::kvc::test::models_dir()).empty())                                \
      GTEST_SKIP() << ::kvc::engine::smollm2_file << " not found in " << ::kvc::test::models_dir()     \
                   << " nor " << ::kvc::engine::download_cache_dir()                                  \
                   << "; run scripts/fetch_models.sh to download it";                                \
  } while (false)

// Loaded once per test process (540 MB of float32 weights; about a second).
inline const engine::Model& smollm2() {
  static const engine::Model m = engine::Model::load(engine::find_smollm2(models_dir()));
  return m;
}

// Loaded once per test process and read-only. The encoded text is separate and lazy: encoding
// 790 KB takes a second or two, and ctest runs every test in its own process.
struct Bundle {
  engine::Model model;
  engine::Tokenizer tokenizer;
};

inline const Bundle& bundle() {
  static const Bundle b = [] {
    const auto dir = models_dir();
    auto model = engine::Model::load(dir / engine::model_file);
    auto tokenizer = engine::Tokenizer::load(dir / engine::tokenizer_file, model.config().vocab_size);
    return Bundle{std::move(model), std::move(tokenizer)};
  }();
  return b;
}

// The paragraphs in the first 64 KB of the text, encoded: the first windows of corpus() (about
// 30 of them) without encoding the whole text. Paragraphs are encoded independently, so this
// is a prefix of corpus().
inline const std::vector<std::int32_t>& corpus_head() {
  static const std::vector<std::int32_t> tokens = [] {
    std::string text = engine::read_text_file(models_dir() / engine::text_file);
    const std::size_t cut = text.find("\n\n", 64 * 1024);
    if (cut != std::string::npos) text.resize(cut);
    return engine::encode_corpus(bundle().tokenizer, text);
  }();
  return tokens;
}

// The whole text encoded as the reference perplexity does (388,716 tokens).
inline const std::vector<std::int32_t>& corpus() {
  static const std::vector<std::int32_t> tokens =
      engine::encode_corpus(bundle().tokenizer, engine::read_text_file(models_dir() / engine::text_file));
  return tokens;
}

// Committed reference data: tests/engine/golden in the source tree.
inline std::filesystem::path golden_dir() {
  return std::filesystem::path(KVC_ENGINE_SOURCE_TREE) / "tests" / "engine" / "golden";
}

// A fresh temporary folder per test.
inline std::filesystem::path temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = std::filesystem::temp_directory_path() /
             (std::string("kvc_test_") + info->test_suite_name() + "_" + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// The reference greedy story from BOS (/work/shared/models/README.md).
inline constexpr const char* reference_story =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

}  // namespace kvc::test
