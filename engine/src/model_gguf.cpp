// Model::from_gguf: a llama-architecture GGUF file into the engine's float32 layout.
#include "kvc/core/error.hpp"
#include "kvc_engine/dequant.hpp"
#include "kvc_engine/model.hpp"

#include <limits>

namespace kvc::engine {
namespace {

// A hyperparameter as int32: GGUF writers use u32, but the engine's Config is int32.
std::int32_t get_count(const GgufFile& f, const std::string& key) {
  const std::uint32_t v = f.get_u32(key);
  if (v > std::uint32_t(std::numeric_limits<std::int32_t>::max()))
    fail(fmt::format("kvc::engine::Model::from_gguf({})", f.path().string()), "'{}' = {} is implausibly large", key, v);
  return std::int32_t(v);
}

}  // namespace

Model Model::read_gguf(const GgufFile& f) {
  const std::string where = fmt::format("kvc::engine::Model::from_gguf({})", f.path().string());
  const std::string& arch = f.get_string("general.architecture");
  if (arch != "llama") fail(where, "general.architecture is '{}'; only 'llama' is supported", arch);

  Config c;
  c.n_layers = get_count(f, "llama.block_count");
  c.dim = get_count(f, "llama.embedding_length");
  c.hidden_dim = get_count(f, "llama.feed_forward_length");
  c.n_heads = get_count(f, "llama.attention.head_count");
  c.n_kv_heads = f.find("llama.attention.head_count_kv") ? get_count(f, "llama.attention.head_count_kv") : c.n_heads;
  c.seq_len = get_count(f, "llama.context_length");
  c.norm_eps = f.get_f32("llama.attention.layer_norm_rms_epsilon");
  if (f.find("llama.rope.freq_base")) c.rope_base = f.get_f32("llama.rope.freq_base");
  if (f.find("llama.rope.dimension_count")) c.rope_dim = get_count(f, "llama.rope.dimension_count");

  const GgufTensorInfo* embedding = f.tensor("token_embd.weight");
  if (!embedding) fail(where, "tensor 'token_embd.weight' is missing");
  if (embedding->n_dims != 2 || embedding->dims[1] > std::uint64_t(std::numeric_limits<std::int32_t>::max()))
    fail(where, "tensor 'token_embd.weight' must be a matrix [embedding_length][vocab]");
  c.vocab_size = std::int32_t(embedding->dims[1]);
  if (f.find("llama.vocab_size") && get_count(f, "llama.vocab_size") != c.vocab_size)
    fail(where, "llama.vocab_size = {} but token_embd.weight has {} rows", f.get_u32("llama.vocab_size"), c.vocab_size);
  const GgufTensorInfo* output = f.tensor("output.weight");
  c.shared_classifier = output == nullptr;
  try {
    c.validate();
  } catch (const Error& e) {
    fail(where, "{}", e.what());
  }

  const std::size_t d = std::size_t(c.dim), h = std::size_t(c.hidden_dim), kv = c.kv_dim();
  const std::size_t v = std::size_t(c.vocab_size);
  Model model;
  model.config_ = c;
  // Two walks over the tensors: the first checks every name, shape and type, so that storage is
  // sized only for tensors the file really holds (a header could otherwise ask for terabytes; found
  // by fuzzing); the second dequantizes.
  bool checking = true;
  std::size_t filled = 0;
  // Dequantizes tensor `name`, which must be [rows][cols] (ggml: ne0 = cols, ne1 = rows; a vector
  // when rows is 0), into the next rows * cols floats of storage.
  const auto take = [&](const std::string& name, std::size_t rows, std::size_t cols) {
    const GgufTensorInfo* t = f.tensor(name);
    if (!t) fail(where, "tensor '{}' is missing", name);
    const bool vector = rows == 0;
    const bool shape_ok = vector ? t->n_dims == 1 && t->dims[0] == cols
                                 : t->n_dims == 2 && t->dims[0] == cols && t->dims[1] == rows;
    if (!shape_ok)
      fail(where, "tensor '{}' has shape [{}, {}, {}, {}] (ggml order, {} dims); expected [{}{}]", name, t->dims[0],
           t->dims[1], t->dims[2], t->dims[3], t->n_dims, cols, vector ? "" : fmt::format(", {}", rows));
    if (!can_dequantize(t->type)) fail(where, "tensor '{}' has type {}, which the engine cannot read", name, ggml_type_name(t->type));
    const std::size_t n = (vector ? 1 : rows) * cols;
    if (!checking) dequantize(t->type, f.data(*t), std::span(model.storage_).subspan(filled, n));
    filled += n;
  };
  const auto quant = [&](const std::string& name) {
    const GgufTensorInfo* t = f.tensor(name);
    if (!has_quant_matvec(t->type)) return QuantMatrix{};
    const std::size_t rows = std::size_t(t->dims[1]), cols = std::size_t(t->dims[0]);
    return QuantMatrix{t->type, f.data(*t).data(), rows, cols, std::size_t(t->bytes) / rows};
  };
  const auto per_layer = [&](const char* suffix, std::size_t rows, std::size_t cols,
                             std::vector<QuantMatrix>* q = nullptr) {
    for (std::int32_t l = 0; l < c.n_layers; ++l) {
      const std::string name = fmt::format("blk.{}.{}.weight", l, suffix);
      take(name, rows, cols);
      if (q && !checking) q->push_back(quant(name));
    }
  };
  QuantWeights& q = model.quant_;
  const auto walk = [&] {
    take("token_embd.weight", v, d);
    per_layer("attn_norm", 0, d);
    per_layer("attn_q", d, d, &q.wq);
    per_layer("attn_k", kv, d, &q.wk);
    per_layer("attn_v", kv, d, &q.wv);
    per_layer("attn_output", d, d, &q.wo);
    per_layer("ffn_norm", 0, d);
    per_layer("ffn_gate", h, d, &q.w1);
    per_layer("ffn_down", d, h, &q.w2);
    per_layer("ffn_up", h, d, &q.w3);
    take("output_norm.weight", 0, d);
    if (output) take("output.weight", v, d);
  };
  walk();
  model.storage_.resize(filled);
  checking = false, filled = 0;
  walk();
  q.classifier = quant(output ? "output.weight" : "token_embd.weight");
  model.check_finite(where);
  model.bind(false);
  return model;
}

Model Model::from_gguf(const GgufFile& file) {
  Model model = read_gguf(file);
  model.quant_ = {};  // it would point into a file the model does not own
  return model;
}

Model Model::from_gguf(GgufFile&& file) {
  Model model = read_gguf(file);
  model.gguf_ = std::make_unique<GgufFile>(std::move(file));  // the mapping, and so the data, stay put
  return model;
}

}  // namespace kvc::engine
