// Loading llama2.c checkpoints: the real one, and corrupted copies that must be rejected clearly.
#include "engine/models.hpp"

#include "kvc/core/error.hpp"

#include <gmock/gmock.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace kvc::test {
namespace {

using engine::Model;
using ::testing::HasSubstr;

std::string load_error(const std::filesystem::path& p) {
  try {
    (void)Model::load(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Callers check KVC_REQUIRE_MODELS() first.
std::string model_bytes() {
  return read_bytes(models_dir() / engine::model_file);
}

TEST(Model, LoadsTheBundledCheckpoint) {
  KVC_REQUIRE_MODELS();
  const Model& m = bundle().model;
  const auto& c = m.config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.head_dim(), 8u);
  EXPECT_EQ(c.kv_dim(), 32u);
  EXPECT_EQ(c.attention_shape(), (Shape{5, 8, 4, 8}));
  EXPECT_EQ(m.weights().classifier.data(), m.weights().token_embedding.data());
}

TEST(Model, AcceptsTheFileWithoutTheLegacyRopeTables) {
  KVC_REQUIRE_MODELS();
  std::string bytes = model_bytes();
  const auto& c = bundle().model.config();
  bytes.resize(28 + c.weight_floats(false) * 4);
  const auto p = temp_dir() / "no_rope.bin";
  write_bytes(p, bytes);
  EXPECT_NO_THROW((void)Model::load(p));
}

TEST(Model, RejectsATruncatedFile) {
  KVC_REQUIRE_MODELS();
  std::string bytes = model_bytes();
  bytes.resize(bytes.size() / 2);
  const auto p = temp_dir() / "truncated.bin";
  write_bytes(p, bytes);
  EXPECT_THAT(load_error(p), HasSubstr("truncated"));
  write_bytes(p, bytes.substr(0, 10));
  EXPECT_THAT(load_error(p), HasSubstr("fewer than the 28-byte llama2.c header"));
}

TEST(Model, RejectsExtraBytes) {
  KVC_REQUIRE_MODELS();
  const auto p = temp_dir() / "long.bin";
  write_bytes(p, model_bytes() + "junk");
  EXPECT_THAT(load_error(p), HasSubstr("file size does not match the header"));
}

TEST(Model, RejectsAWrongHeader) {
  KVC_REQUIRE_MODELS();
  const std::string good = model_bytes();
  const auto p = temp_dir() / "header.bin";
  const auto with_field = [&](int index, std::int32_t value) {
    std::string bytes = good;
    std::memcpy(bytes.data() + 4 * index, &value, 4);
    write_bytes(p, bytes);
    return load_error(p);
  };
  EXPECT_THAT(with_field(3, 7), HasSubstr("n_heads (7) must divide dim (64)"));
  EXPECT_THAT(with_field(4, 3), HasSubstr("n_kv_heads (3) must divide n_heads (8)"));
  EXPECT_THAT(with_field(0, 0), HasSubstr("dim must be positive"));
  EXPECT_THAT(with_field(2, -5), HasSubstr("n_layers must be positive"));
  EXPECT_THAT(with_field(2, 4), HasSubstr("does not match the header"));  // plausible header, wrong size
  EXPECT_THAT(with_field(0, 0x7fffffff), HasSubstr("implausibly large"));
  EXPECT_THAT(with_field(0, 0), HasSubstr("not a llama2.c v0 checkpoint"));
}

TEST(Model, RejectsNonFiniteWeights) {
  KVC_REQUIRE_MODELS();
  std::string bytes = model_bytes();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + 28 + 4 * 1000, &nan, 4);
  const auto p = temp_dir() / "nan.bin";
  write_bytes(p, bytes);
  EXPECT_THAT(load_error(p), HasSubstr("weight 1000"));
  EXPECT_THAT(load_error(p), HasSubstr("not finite"));
}

TEST(Model, RejectsAMissingFile) {
  EXPECT_THAT(load_error(temp_dir() / "absent.bin"), HasSubstr("cannot open"));
}

}  // namespace
}  // namespace kvc::test
