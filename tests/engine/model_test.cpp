// Loading llama2.c checkpoints: the real one, and corrupted copies that must be rejected clearly.
#include "engine/gguf_writer.hpp"
#include "engine/models.hpp"

#include "kvc/core/error.hpp"

#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace kvc::test {
namespace {

using engine::Model;
using ::testing::AllOf;
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
  // A negative vocab_size marks a separate classifier; INT32_MIN cannot be negated.
  EXPECT_THAT(with_field(5, std::numeric_limits<std::int32_t>::min()), HasSubstr("is not a vocabulary size"));
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

TEST(Model, LoadsSmolLM2FromGguf) {
  KVC_REQUIRE_SMOLLM2();
  const auto& c = smollm2().config();
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.seq_len, 8192);
  EXPECT_EQ(c.head_dim(), 64u);
  EXPECT_EQ(c.rotary_dim(), 64u);
  EXPECT_EQ(c.rope_base, 100000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(smollm2().weights().classifier.data(), smollm2().weights().token_embedding.data());
  EXPECT_EQ(smollm2().weights().rms_final.size(), 576u);
  // Decode reads the file's Q4_1 projections and Q8_0 embedding directly.
  const auto& q = smollm2().quant_weights();
  ASSERT_EQ(q.w2.size(), 30u);
  EXPECT_EQ(q.w2[29].type, engine::GgmlType::q4_1);
  EXPECT_EQ(q.w2[29].rows, 576u);
  EXPECT_EQ(q.w2[29].cols, 1536u);
  EXPECT_EQ(q.w2[29].row_bytes, 1536u / 32 * 20);
  EXPECT_EQ(q.classifier.type, engine::GgmlType::q8_0);
  EXPECT_EQ(q.classifier.rows, 49152u);
  EXPECT_TRUE(bundle().model.quant_weights().wq.empty()) << "llama2.c checkpoints have no block formats";
}

// A two-layer llama in GGUF written by the test: dim 8, 2 heads sharing 1 KV head, vocab 5.
struct TinyLlama {
  GgufWriter w;
  std::vector<std::string> skip;  // tensors and keys left out
  std::string arch = "llama";

  bool keep(const std::string& name) const { return std::find(skip.begin(), skip.end(), name) == skip.end(); }
  std::string bytes() {
    w.string("general.architecture", arch);
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::uint32_t>>{
             {"llama.block_count", 2}, {"llama.embedding_length", 8}, {"llama.feed_forward_length", 16},
             {"llama.attention.head_count", 2}, {"llama.attention.head_count_kv", 1}, {"llama.context_length", 32}})
      if (keep(key)) w.u32(key, value);
    if (keep("llama.attention.layer_norm_rms_epsilon")) w.f32("llama.attention.layer_norm_rms_epsilon", 1e-6f);
    w.f32("llama.rope.freq_base", 500.0f);
    float next = 0.0f;
    const auto add = [&](const std::string& name, std::vector<std::uint64_t> dims) {
      if (!keep(name)) return;
      std::size_t n = 1;
      for (const auto d : dims) n *= d;
      std::vector<float> v(n);
      for (auto& x : v) x = (next += 0.001f);
      w.tensor(name, std::move(dims), engine::GgmlType::f32, f32_bytes(v));
    };
    add("token_embd.weight", {8, 5});
    for (int l = 0; l < 2; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      add(b + "attn_norm.weight", {8});
      add(b + "attn_q.weight", {8, 8});
      add(b + "attn_k.weight", {8, 4});
      add(b + "attn_v.weight", {8, 4});
      add(b + "attn_output.weight", {8, 8});
      add(b + "ffn_norm.weight", {8});
      add(b + "ffn_gate.weight", {8, 16});
      add(b + "ffn_down.weight", {16, 8});
      add(b + "ffn_up.weight", {8, 16});
    }
    add("output_norm.weight", {8});
    add("output.weight", {8, 5});
    return w.bytes();
  }
};

TEST(Model, LoadsALlamaGguf) {
  TinyLlama tiny;
  const auto p = temp_dir() / "tiny.gguf";
  write_bytes(p, tiny.bytes());
  const Model m = Model::load(p);
  const auto& c = m.config();
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.vocab_size, 5);
  EXPECT_EQ(c.seq_len, 32);
  EXPECT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.rope_base, 500.0f);
  EXPECT_EQ(c.rotary_dim(), 4u);
  EXPECT_FALSE(c.shared_classifier) << "output.weight present";
  // Values were written in order 0.001, 0.002, ...: the tensors land where Weights says.
  EXPECT_FLOAT_EQ(m.weights().token_embedding[0], 0.001f);
  EXPECT_FLOAT_EQ(m.weights().rms_att[0], 0.041f);
  EXPECT_NEAR(m.weights().rms_att[8], 0.041f + 0.001f * (8 + 64 + 32 + 32 + 64 + 8 + 3 * 128), 1e-5f);
  EXPECT_NE(m.weights().classifier.data(), m.weights().token_embedding.data());
}

TEST(Model, RejectsBadLlamaGgufs) {
  const auto error_of = [](TinyLlama tiny) {
    const auto p = temp_dir() / "bad.gguf";
    write_bytes(p, tiny.bytes());
    return load_error(p);
  };
  TinyLlama gpt2;
  gpt2.arch = "gpt2";
  EXPECT_THAT(error_of(gpt2), HasSubstr("general.architecture is 'gpt2'; only 'llama' is supported"));
  TinyLlama missing;
  missing.skip = {"blk.1.ffn_up.weight"};
  EXPECT_THAT(error_of(missing), HasSubstr("tensor 'blk.1.ffn_up.weight' is missing"));
  TinyLlama shape;
  shape.skip = {"blk.0.attn_k.weight"};
  shape.w.tensor("blk.0.attn_k.weight", {8, 8}, engine::GgmlType::f32, f32_bytes(std::vector<float>(64)));
  EXPECT_THAT(error_of(shape), HasSubstr("tensor 'blk.0.attn_k.weight' has shape [8, 8, 1, 1] (ggml order, 2 dims); expected [8, 4]"));
  TinyLlama type;
  type.skip = {"output_norm.weight"};
  type.w.tensor("output_norm.weight", {8}, engine::GgmlType::i32, std::string(32, '\0'));
  EXPECT_THAT(error_of(type), HasSubstr("tensor 'output_norm.weight' has type I32, which the engine cannot read"));
  TinyLlama no_key;
  no_key.skip = {"llama.attention.layer_norm_rms_epsilon"};
  EXPECT_THAT(error_of(no_key), AllOf(HasSubstr("bad.gguf"), HasSubstr("'llama.attention.layer_norm_rms_epsilon' is missing")));
  TinyLlama heads;
  heads.skip = {"llama.attention.head_count_kv"};
  heads.w.u32("llama.attention.head_count_kv", 3);
  EXPECT_THAT(error_of(heads), HasSubstr("n_kv_heads (3) must divide n_heads (2)"));
}

}  // namespace
}  // namespace kvc::test
