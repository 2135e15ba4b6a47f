#pragma once
// KV capture files: the keys, values and queries of a real model run, so kernels, benchmarks and
// policy tests can work on real cache statistics without running a model.
//
// Format (little-endian; docs/capture-format.md has the byte diagram):
//   0  char[8]  magic "KVCCAPT\0"
//   8  u32      version (1)
//  12  u32      header bytes (64): data starts here
//  16  u32      layers
//  20  u32      query_heads
//  24  u32      kv_heads
//  28  u32      head_dim
//  32  u64      tokens n (positions first_position .. first_position + n - 1)
//  40  i32      first_position
//  44  u32      flags: bit 0 = keys and queries are RoPE-rotated
//  48  u8[16]   reserved, zero
//  64  f32      for each layer: keys [n][kv_heads][head_dim], values [n][kv_heads][head_dim],
//               queries [n][query_heads][head_dim]
// The file size is exactly 64 + 4 * layers * n * (2 * kv_heads + query_heads) * head_dim.
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <vector>

namespace kvc::data {

inline constexpr char capture_magic[8] = {'K', 'V', 'C', 'C', 'A', 'P', 'T', '\0'};
inline constexpr std::uint32_t capture_version = 1;
inline constexpr std::uint32_t capture_header_bytes = 64;
inline constexpr std::uint32_t capture_flag_rotated = 1u;

class KvCapture {
 public:
  KvCapture() = default;
  KvCapture(Shape shape, std::int32_t first_position = 0, bool rotated = true)
      : shape_(shape), first_position_(first_position), rotated_(rotated), layers_(shape.layers) {
    shape_.validate();
  }

  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] std::size_t tokens() const noexcept { return layers_.empty() ? 0 : tokens(0); }
  [[nodiscard]] std::size_t tokens(std::size_t layer) const noexcept {
    return layers_[layer].keys.size() / kv_row();
  }
  [[nodiscard]] std::int32_t first_position() const noexcept { return first_position_; }
  [[nodiscard]] bool rotated() const noexcept { return rotated_; }

  // Rows of one token: [kv_heads][head_dim] for keys and values, [query_heads][head_dim] for queries.
  void append_kv(std::size_t layer, std::span<const float> k, std::span<const float> v) {
    auto& l = layers_.at(layer);
    l.keys.insert(l.keys.end(), k.begin(), k.end());
    l.values.insert(l.values.end(), v.begin(), v.end());
  }
  void append_query(std::size_t layer, std::span<const float> q) {
    auto& l = layers_.at(layer);
    l.queries.insert(l.queries.end(), q.begin(), q.end());
  }

  // All tokens of a layer, [n][heads][head_dim].
  [[nodiscard]] std::span<const float> keys(std::size_t layer) const noexcept { return layers_[layer].keys; }
  [[nodiscard]] std::span<const float> values(std::size_t layer) const noexcept { return layers_[layer].values; }
  [[nodiscard]] std::span<const float> queries(std::size_t layer) const noexcept { return layers_[layer].queries; }
  // One head's row of one token.
  [[nodiscard]] std::span<const float> key(std::size_t layer, std::size_t token, std::size_t kv_head) const noexcept {
    return keys(layer).subspan((token * shape_.kv_heads + kv_head) * shape_.head_dim, shape_.head_dim);
  }
  [[nodiscard]] std::span<const float> value(std::size_t layer, std::size_t token, std::size_t kv_head) const noexcept {
    return values(layer).subspan((token * shape_.kv_heads + kv_head) * shape_.head_dim, shape_.head_dim);
  }
  [[nodiscard]] std::span<const float> query(std::size_t layer, std::size_t token, std::size_t query_head) const noexcept {
    return queries(layer).subspan((token * shape_.query_heads + query_head) * shape_.head_dim, shape_.head_dim);
  }

  // Throws kvc::Error unless every layer holds the same number of keys, values and queries.
  void check_complete() const {
    const std::size_t n = tokens();
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const auto& layer = layers_[l];
      if (layer.keys.size() != n * kv_row() || layer.values.size() != n * kv_row() ||
          layer.queries.size() != n * shape_.query_heads * shape_.head_dim)
        fail("kvc::data::KvCapture", "layer {} holds {} keys, {} values and {} queries; every layer needs {} of each",
             l, layer.keys.size() / kv_row(), layer.values.size() / kv_row(),
             layer.queries.size() / (shape_.query_heads * shape_.head_dim), n);
    }
  }

  void clear() noexcept {
    for (auto& l : layers_) l.keys.clear(), l.values.clear(), l.queries.clear();
  }

 private:
  friend KvCapture load_capture(const std::filesystem::path& path);
  [[nodiscard]] std::size_t kv_row() const noexcept { return shape_.kv_heads * shape_.head_dim; }

  struct Layer {
    std::vector<float> keys, values, queries;
  };
  Shape shape_{};
  std::int32_t first_position_ = 0;
  bool rotated_ = true;
  std::vector<Layer> layers_;
};

namespace detail {

template <class T>
void put(std::vector<char>& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.insert(out.end(), bytes, bytes + sizeof(T));
}
template <class T>
T get(const char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

}  // namespace detail

inline void save_capture(const std::filesystem::path& path, const KvCapture& capture) {
  capture.check_complete();
  const Shape& s = capture.shape();
  std::vector<char> header;
  header.insert(header.end(), capture_magic, capture_magic + 8);
  detail::put<std::uint32_t>(header, capture_version);
  detail::put<std::uint32_t>(header, capture_header_bytes);
  detail::put<std::uint32_t>(header, std::uint32_t(s.layers));
  detail::put<std::uint32_t>(header, std::uint32_t(s.query_heads));
  detail::put<std::uint32_t>(header, std::uint32_t(s.kv_heads));
  detail::put<std::uint32_t>(header, std::uint32_t(s.head_dim));
  detail::put<std::uint64_t>(header, capture.tokens());
  detail::put<std::int32_t>(header, capture.first_position());
  detail::put<std::uint32_t>(header, capture.rotated() ? capture_flag_rotated : 0u);
  header.resize(capture_header_bytes, '\0');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("kvc::data::save_capture", "cannot create {}", path.string());
  out.write(header.data(), std::streamsize(header.size()));
  const auto write = [&](std::span<const float> floats) {
    out.write(reinterpret_cast<const char*>(floats.data()), std::streamsize(floats.size_bytes()));
  };
  for (std::size_t l = 0; l < s.layers; ++l) {
    write(capture.keys(l));
    write(capture.values(l));
    write(capture.queries(l));
  }
  if (!out.flush()) fail("kvc::data::save_capture", "write to {} failed", path.string());
}

// Reads and validates a capture: magic, version, shape, exact file size, finite values.
inline KvCapture load_capture(const std::filesystem::path& path) {
  const std::string where = "kvc::data::load_capture(" + path.string() + ")";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(where, "cannot open the file");
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail(where, "cannot read the file size: {}", ec.message());
  if (size < capture_header_bytes)
    fail(where, "file has {} bytes, fewer than the {}-byte header", size, capture_header_bytes);
  char header[capture_header_bytes];
  in.read(header, capture_header_bytes);
  if (std::memcmp(header, capture_magic, 8) != 0) fail(where, "bad magic: not a KV capture file");
  const auto version = detail::get<std::uint32_t>(header + 8);
  if (version != capture_version)
    fail(where, "format version {} is not supported (this build reads version {})", version, capture_version);
  const auto header_bytes = detail::get<std::uint32_t>(header + 12);
  if (header_bytes != capture_header_bytes)
    fail(where, "header size {} is not {} (corrupt header)", header_bytes, capture_header_bytes);
  Shape shape{detail::get<std::uint32_t>(header + 16), detail::get<std::uint32_t>(header + 20),
              detail::get<std::uint32_t>(header + 24), detail::get<std::uint32_t>(header + 28)};
  try {
    shape.validate();
  } catch (const Error& e) {
    fail(where, "bad shape in header: {}", e.what());
  }
  const auto n = detail::get<std::uint64_t>(header + 32);
  if (n == 0) fail(where, "header says the capture holds 0 tokens");
  const auto first = detail::get<std::int32_t>(header + 40);
  // Positions are int32 in the cache: the last token's, first + n - 1, must be one too.
  if (n - 1 > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max() - std::int64_t{first}))
    fail(where, "{} tokens from position {} would pass the largest position {}", n, first,
         std::numeric_limits<std::int32_t>::max());
  const auto flags = detail::get<std::uint32_t>(header + 44);
  if ((flags & ~capture_flag_rotated) != 0) fail(where, "unknown flags {:#x} in header", flags);
  // Reserved bytes are zero in version 1, so a later version can give them a meaning that an old
  // reader refuses rather than misreads.
  for (std::uint32_t i = 48; i < capture_header_bytes; ++i)
    if (header[i] != 0)
      fail(where, "reserved header byte {} is {:#x}, not 0 (a newer format version?)", i,
           static_cast<unsigned char>(header[i]));
  // Checked in long double so an absurd header cannot overflow the comparison.
  const long double expected = (long double)capture_header_bytes +
      4.0L * shape.layers * (long double)n * (2.0L * shape.kv_heads + shape.query_heads) * shape.head_dim;
  if (expected != (long double)size)
    fail(where, "file has {} bytes but its header (layers {}, query_heads {}, kv_heads {}, head_dim {}, tokens {}) "
         "needs {:.0f}{}", size, shape.layers, shape.query_heads, shape.kv_heads, shape.head_dim, n,
         (double)expected, (long double)size < expected ? " (truncated?)" : "");
  KvCapture capture(shape, first, (flags & capture_flag_rotated) != 0);
  const auto read = [&](std::vector<float>& v, std::size_t count, std::size_t layer, const char* what) {
    v.resize(count);
    in.read(reinterpret_cast<char*>(v.data()), std::streamsize(count * sizeof(float)));
    if (!in) fail(where, "read error in the {} of layer {}", what, layer);
    const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
    if (bad != v.end())
      fail(where, "non-finite value {} in the {} of layer {} (float {} of {})", *bad, what, layer,
           bad - v.begin(), count);
  };
  for (std::size_t l = 0; l < shape.layers; ++l) {
    auto& layer = capture.layers_[l];
    read(layer.keys, n * shape.kv_heads * shape.head_dim, l, "keys");
    read(layer.values, n * shape.kv_heads * shape.head_dim, l, "values");
    read(layer.queries, n * shape.query_heads * shape.head_dim, l, "queries");
  }
  return capture;
}

// Outlier key channels: for one (layer, KV head), the mean |k| of each channel divided by the
// median channel's mean |k|. Real LLaMA-family keys have one or a few channels far above 1.
inline std::vector<double> key_channel_ratios(const KvCapture& capture, std::size_t layer, std::size_t kv_head) {
  const std::size_t hd = capture.shape().head_dim, n = capture.tokens();
  std::vector<double> mean(hd, 0.0);
  for (std::size_t t = 0; t < n; ++t) {
    const auto k = capture.key(layer, t, kv_head);
    for (std::size_t d = 0; d < hd; ++d) mean[d] += std::fabs(k[d]);
  }
  std::vector<double> sorted = mean;
  std::sort(sorted.begin(), sorted.end());
  // Median of an even count: the mean of the two middle channels.
  const double median = hd % 2 ? sorted[hd / 2] : 0.5 * (sorted[hd / 2 - 1] + sorted[hd / 2]);
  for (double& m : mean) m = median > 0 ? m / median : 0.0;
  return mean;
}

}  // namespace kvc::data
