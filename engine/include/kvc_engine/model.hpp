#pragma once
// A llama-architecture model held in memory as float32, validated on load: a llama2.c checkpoint
// (legacy "v0" format) or a GGUF file (general.architecture "llama", e.g. SmolLM2-135M).
//
// The engine is the worked example of how an inference engine integrates kvcompress, so the
// model is deliberately plain: float32 weights in one std::vector. GGUF tensors (Q4_1, Q8_0, ...)
// are dequantized at load: 135M parameters take 540 MB, and float32 rows let prefill use
// matrix-matrix products without a kernel per block format. Decode, bound by the bytes of weights
// it reads, uses the file's own blocks where a kernel exists (quant_weights(); docs/model.md).
#include "kvc/core/shape.hpp"
#include "kvc/core/token_tag.hpp"
#include "kvc_engine/dequant.hpp"
#include "kvc_engine/gguf.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

namespace kvc::engine {

// The seven int32 header fields of a llama2.c v0 checkpoint, and the hyperparameters a GGUF file
// adds (llama2.c's fixed values by default).
struct Config {
  std::int32_t dim = 0;
  std::int32_t hidden_dim = 0;
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;
  std::int32_t n_kv_heads = 0;
  std::int32_t vocab_size = 0;  // always positive here; see shared_classifier
  std::int32_t seq_len = 0;  // the trained context length (GGUF llama.context_length)
  // llama2.c stores a negative vocab_size when the classifier has its own matrix.
  bool shared_classifier = true;
  float rope_base = 10000.0f;  // theta of RoPE
  std::int32_t rope_dim = 0;   // leading dims of each head that RoPE rotates; 0: all (head_dim)
  float norm_eps = 1e-5f;      // RMSNorm epsilon

  [[nodiscard]] std::size_t head_dim() const noexcept { return std::size_t(dim / n_heads); }
  [[nodiscard]] std::size_t rotary_dim() const noexcept { return rope_dim ? std::size_t(rope_dim) : head_dim(); }
  [[nodiscard]] std::size_t kv_dim() const noexcept { return head_dim() * std::size_t(n_kv_heads); }
  [[nodiscard]] Shape attention_shape() const noexcept {
    return Shape{std::size_t(n_layers), std::size_t(n_heads), std::size_t(n_kv_heads), head_dim()};
  }
  // Throws kvc::Error naming the first inconsistent field.
  void validate() const;
  // Number of float32 values the weights occupy, without / with the legacy RoPE tables
  // (an unshared classifier always follows the RoPE tables, as llama2.c writes it).
  [[nodiscard]] std::size_t weight_floats(bool with_rope_tables) const noexcept;
};

// Views into Model::storage; per-layer matrices are stacked along the first dimension.
struct Weights {
  std::span<const float> token_embedding;  // [vocab][dim]
  std::span<const float> rms_att;          // [layers][dim]
  std::span<const float> wq;               // [layers][dim][dim]
  std::span<const float> wk;               // [layers][kv_dim][dim]
  std::span<const float> wv;               // [layers][kv_dim][dim]
  std::span<const float> wo;               // [layers][dim][dim]
  std::span<const float> rms_ffn;          // [layers][dim]
  std::span<const float> w1;               // [layers][hidden][dim]
  std::span<const float> w2;               // [layers][dim][hidden]
  std::span<const float> w3;               // [layers][hidden][dim]
  std::span<const float> rms_final;        // [dim]
  std::span<const float> classifier;       // [vocab][dim]
};

// The per-layer matrices as the GGUF file stores them (one entry per layer; empty entries where
// the format has no direct matrix-vector kernel): decode reads these instead of the float32 copy,
// a fraction of the memory traffic (Q4_1: 5 bits per weight instead of 32), which is what bounds
// a matrix-vector product.
struct QuantWeights {
  std::vector<QuantMatrix> wq, wk, wv, wo, w1, w2, w3;
  QuantMatrix classifier;
};

class Model {
 public:
  // Reads and validates a llama2.c checkpoint (header fields, exact file size, finite weights) or,
  // recognized by its magic, a GGUF file (see from_gguf). Throws kvc::Error with the path and
  // what is wrong.
  [[nodiscard]] static Model load(const std::filesystem::path& path);
  // A llama GGUF: hyperparameters from the llama.* metadata, every tensor's name, shape and type
  // checked, weights dequantized to float32; output.weight if present, else the tied embedding.
  // Given the file itself (an rvalue), the model keeps it mapped for quant_weights(); given a
  // reference, quant_weights() stays empty.
  [[nodiscard]] static Model from_gguf(const GgufFile& file);
  [[nodiscard]] static Model from_gguf(GgufFile&& file);
  // Builds a model from a header and a flat weight array (tests, synthetic models).
  [[nodiscard]] static Model from_floats(const Config& config, std::vector<float> floats);

  [[nodiscard]] const Config& config() const noexcept { return config_; }
  [[nodiscard]] const Weights& weights() const noexcept { return weights_; }
  // Empty vectors for a llama2.c checkpoint.
  [[nodiscard]] const QuantWeights& quant_weights() const noexcept { return quant_; }
  // Per token id, the kvc::tag bits the forward pass gives the cache with each token (SepLLM's
  // separators); empty (every token untagged) unless a tool sets them from its tokenizer.
  [[nodiscard]] std::span<const TokenTag> token_tags() const noexcept { return token_tags_; }
  void set_token_tags(std::vector<TokenTag> tags) { token_tags_ = std::move(tags); }

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;

 private:
  Model() = default;
  // Sets the weight views over storage_; `rope_gap`: an unshared classifier follows llama2.c's
  // legacy RoPE tables.
  void bind(bool rope_gap);
  // from_gguf, with quant_ pointing into `file`'s mapping.
  [[nodiscard]] static Model read_gguf(const GgufFile& file);
  void check_finite(std::string_view where) const;

  Config config_;
  std::vector<float> storage_;
  Weights weights_;
  std::unique_ptr<GgufFile> gguf_;  // keeps quant_'s data mapped
  QuantWeights quant_;
  std::vector<TokenTag> token_tags_;
};

}  // namespace kvc::engine
