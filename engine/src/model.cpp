#include "kvc_engine/model.hpp"

#include "kvc/core/error.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

namespace kvc::engine {
namespace {

constexpr std::size_t header_bytes = 7 * sizeof(std::int32_t);
// Nothing of this family is larger than a few billion weights; a header asking for more is
// corrupt, and the limit keeps the size arithmetic below from overflowing.
constexpr std::int64_t max_field = std::int64_t{1} << 20;

}  // namespace

void Config::validate() const {
  constexpr std::string_view where = "kvc::engine::Config";
  const auto check = [&](std::int32_t value, const char* name) {
    if (value <= 0) fail(where, "{} must be positive, the header says {}", name, value);
    if (value > max_field) fail(where, "{} = {} is implausibly large (corrupt header?)", name, value);
  };
  check(dim, "dim");
  check(hidden_dim, "hidden_dim");
  check(n_layers, "n_layers");
  check(n_heads, "n_heads");
  check(n_kv_heads, "n_kv_heads");
  check(vocab_size, "vocab_size");
  check(seq_len, "seq_len");
  if (dim % n_heads != 0) fail(where, "n_heads ({}) must divide dim ({})", n_heads, dim);
  if (n_heads % n_kv_heads != 0)
    fail(where, "n_kv_heads ({}) must divide n_heads ({})", n_kv_heads, n_heads);
  if ((dim / n_heads) % 2 != 0)
    fail(where, "head size dim/n_heads = {} must be even for RoPE on adjacent pairs", dim / n_heads);
  if (rope_dim < 0 || rope_dim > dim / n_heads || rope_dim % 2 != 0)
    fail(where, "rope_dim = {} must be even and at most the head size {}", rope_dim, dim / n_heads);
  if (!(rope_base > 1.0f) || !std::isfinite(rope_base)) fail(where, "rope_base = {} must be finite and > 1", rope_base);
  if (!(norm_eps > 0.0f) || !(norm_eps < 1.0f)) fail(where, "norm_eps = {} must be in (0, 1)", norm_eps);
}

std::size_t Config::weight_floats(bool with_rope_tables) const noexcept {
  const std::size_t d = std::size_t(dim), h = std::size_t(hidden_dim), l = std::size_t(n_layers);
  const std::size_t v = std::size_t(vocab_size), kv = kv_dim();
  std::size_t n = v * d                      // token embedding
                  + l * d                    // rms_att
                  + l * d * d                // wq
                  + 2 * l * kv * d           // wk, wv
                  + l * d * d                // wo
                  + l * d                    // rms_ffn
                  + 3 * l * h * d            // w1, w2, w3
                  + d;                       // rms_final
  if (with_rope_tables || !shared_classifier) n += 2 * std::size_t(seq_len) * head_dim() / 2;
  if (!shared_classifier) n += v * d;
  return n;
}

Model Model::from_floats(const Config& config, std::vector<float> floats) {
  config.validate();
  const std::size_t without = config.weight_floats(false), with = config.weight_floats(true);
  if (floats.size() != without && floats.size() != with)
    fail("kvc::engine::Model", "expected {} floats (or {} with the RoPE tables), got {}", without,
         with, floats.size());
  Model model;
  model.config_ = config;
  model.storage_ = std::move(floats);
  model.check_finite("kvc::engine::Model");
  model.bind(true);
  return model;
}

void Model::check_finite(std::string_view where) const {
  for (std::size_t i = 0; i < storage_.size(); ++i)
    if (!std::isfinite(storage_[i]))
      fail(where, "weight {} of {} is not finite ({})", i, storage_.size(), storage_[i]);
}

Model Model::load(const std::filesystem::path& path) {
  const std::string where = fmt::format("kvc::engine::Model::load({})", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(where, "cannot open the file");
  char magic[4] = {};
  if (in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0) return from_gguf(GgufFile::open(path));
  in.clear();
  in.seekg(0);
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) fail(where, "cannot read the file size: {}", ec.message());
  if (file_size < header_bytes)
    fail(where, "file has {} bytes, fewer than the 28-byte llama2.c header", file_size);

  std::int32_t header[7];
  in.read(reinterpret_cast<char*>(header), header_bytes);
  Config config{header[0], header[1], header[2], header[3], header[4], header[5], header[6], true};
  if (config.vocab_size < 0) {
    // INT32_MIN has no positive counterpart: negating it was signed overflow (found by fuzzing).
    if (config.vocab_size == std::numeric_limits<std::int32_t>::min())
      fail(where, "vocab_size = {} in the header is not a vocabulary size (corrupt header?)", config.vocab_size);
    config.shared_classifier = false;
    config.vocab_size = -config.vocab_size;
  }
  try {
    config.validate();
  } catch (const Error& e) {
    fail(where, "not a llama2.c v0 checkpoint (header dim={} hidden_dim={} n_layers={} n_heads={} "
                "n_kv_heads={} vocab_size={} seq_len={}): {}",
         header[0], header[1], header[2], header[3], header[4], header[5], header[6], e.what());
  }
  const std::size_t payload = std::size_t(file_size) - header_bytes;
  const std::size_t without = config.weight_floats(false) * sizeof(float);
  const std::size_t with = config.weight_floats(true) * sizeof(float);
  if (payload != without && payload != with) {
    if (payload < without)
      fail(where, "file is truncated: the header needs {} bytes of weights{}, the file has {}",
           without, without == with ? "" : fmt::format(" ({} with RoPE tables)", with), payload);
    fail(where, "file size does not match the header: expected {} or {} bytes of weights, found {}",
         without, with, payload);
  }
  std::vector<float> floats(payload / sizeof(float));
  in.read(reinterpret_cast<char*>(floats.data()), std::streamsize(payload));
  if (!in) fail(where, "read error after {} bytes", in.gcount());
  try {
    return from_floats(config, std::move(floats));
  } catch (const Error& e) {
    fail(where, "{}", e.what());
  }
}

void Model::bind(bool rope_gap) {
  const Config& c = config_;
  const std::size_t d = std::size_t(c.dim), h = std::size_t(c.hidden_dim), l = std::size_t(c.n_layers);
  const std::size_t v = std::size_t(c.vocab_size), kv = c.kv_dim();
  std::span<const float> rest(storage_);
  const auto take = [&](std::size_t n) {
    auto s = rest.first(n);
    rest = rest.subspan(n);
    return s;
  };
  Weights& w = weights_;
  w.token_embedding = take(v * d);
  w.rms_att = take(l * d);
  w.wq = take(l * d * d);
  w.wk = take(l * kv * d);
  w.wv = take(l * kv * d);
  w.wo = take(l * d * d);
  w.rms_ffn = take(l * d);
  w.w1 = take(l * h * d);
  w.w2 = take(l * d * h);
  w.w3 = take(l * h * d);
  w.rms_final = take(d);
  if (c.shared_classifier) {
    w.classifier = w.token_embedding;
  } else {
    if (rope_gap) take(std::size_t(c.seq_len) * c.head_dim());  // the two legacy RoPE tables
    w.classifier = take(v * d);
  }
}

}  // namespace kvc::engine
