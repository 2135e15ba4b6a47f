#pragma once
// SVD: keys and values stored as their coordinates in a per-head orthonormal basis of rank r,
// fitted by a singular value decomposition of calibration rows.
//
//   Chi-Chih Chang, Wei-Cheng Lin, Chien-Yu Lin, Chong-Yan Chen, Yu-Fang Hu, Pei-Shuo Wang,
//   Ning-Chi Huang, Luis Ceze, Mohamed S. Abdelfattah, Kai-Chiang Wu. "Palu: Compressing
//   KV-Cache with Low-Rank Projection". ICLR 2025, arXiv:2407.21118.
//   Related, fitting the bases from calibration activations rather than weights:
//   Hao Yu, Zelan Yang, Shen Li, Yong Li, Jianxin Wu. "Effectively Compress KV Heads for LLM"
//   (ECKVH). arXiv:2406.07056, 2024; Utkarsh Saxena, Gobinda Saha, Sakshi Choudhary, Kaushik Roy.
//   "Eigen Attention: Attention in Low-Rank Space for KV Cache Compression". arXiv:2408.05646.
//
// Mechanism, per (layer, KV head) with head_dim D and ranks r_k, r_v:
//   P_k (D x r_k), P_v (D x r_v): the top right singular vectors of the calibration key matrix
//   K (n x D) and value matrix V (n x D); orthonormal columns.
//   stored key    k' = P_k^T k          query q' = P_k^T q   (the container projects queries too)
//   logit         q' . k' = q^T P_k P_k^T k  (= q . k when k lies in the span of P_k)
//   stored value  v' = P_v^T v;  output o = P_v (sum_i p_i v'_i)   (restore_value)
// Attention never leaves the small space: the kernel reads r_k + r_v dims per token.
// Palu factors the projection weights W_k, W_v offline (and fuses the restore into W_o); we fit
// from calibration activations (as ECKVH and Eigen Attention do) because the cache sees keys and
// values, not weights. Without centering: attention is linear in k, so a mean cannot be dropped.
//
// Fitting: automatically on the first prefill of an uncalibrated head (KVCache::prefill calls
// calibrate()), or offline: SVD::fit(shape, rank, keys, values) returns a fitted policy to pass
// to the cache, and set_projection() installs bases computed elsewhere. Projections are model
// properties, not sequence state: KVCache::clear() keeps them.
//
// Defaults: rank = 0 means head_dim / 2 (Palu's headline 50% compression of the KV cache);
// value_rank = 0 means the same as rank.
//
// Cost: calibration O(n D^2 + D^3) per head (eigenvectors of the D x D Gram matrix K^T K, in
// double precision, compiled once in the library: src/lowrank/svd.cpp), allocates; projections
// O(D r) per row, allocation-free, inline (compiled with the caller's flags). Bytes of state:
// 4 * D * (r_k + r_v) per (layer, KV head). Stored rows shrink by r/D, before quantization.
// Composition: a quantizer's group must divide the ranks; merging and selection see rank-space
// rows (HeadView::load_key returns k').
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/lowrank.hpp"
#include "kvc/concepts/setup.hpp"
#include "kvc/core/dot.hpp"
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kvc::lowrank {

namespace detail {
// Orthonormal basis (column-major dim x rank) of the top right singular vectors of rows [n][dim].
std::vector<float> svd_basis(std::span<const float> rows, std::size_t n, std::size_t dim, std::size_t rank);

// out[r] = B^T in[D] for a column-major D x r basis B: a dot product per column.
inline void project_onto(const float* basis, std::size_t dim, std::size_t rank, const float* in, float* out) noexcept {
  for (std::size_t j = 0; j < rank; ++j) out[j] = dot(basis + j * dim, in, dim);
}

// out[D] = B in[r]: one scaled column added at a time. out must not alias in.
inline void restore_from(const float* basis, std::size_t dim, std::size_t rank, const float* in, float* out) noexcept {
  std::fill(out, out + dim, 0.0f);
  for (std::size_t j = 0; j < rank; ++j) {
    const float c = in[j], *col = basis + j * dim;
    for (std::size_t i = 0; i < dim; ++i) out[i] += c * col[i];
  }
}

// Bases of every (layer, KV head), column-major D x r each, back to back.
struct SVDState {
  Shape shape{};
  std::size_t key_rank = 0, value_rank = 0;
  std::vector<float> key_basis, value_basis;
  std::vector<std::uint8_t> ready;
};
}  // namespace detail

struct SVD {
  using family = kvc::family::lowrank;

  // Stored key dims per head; 0 means head_dim / 2.
  std::size_t rank = 0;
  // Stored value dims per head; 0 means the same as the key rank.
  std::size_t value_rank = 0;

  // Fitted bases, managed by setup()/calibrate(). Not a parameter.
  detail::SVDState state{};

  [[nodiscard]] std::size_t rank_keys(const Shape& shape) const {
    const std::size_t r = rank == 0 ? std::max<std::size_t>(1, shape.head_dim / 2) : rank;
    if (r > shape.head_dim) fail("kvc::lowrank::SVD", "rank = {} exceeds head_dim = {}", r, shape.head_dim);
    return r;
  }
  [[nodiscard]] std::size_t rank_values(const Shape& shape) const {
    const std::size_t r = value_rank == 0 ? rank_keys(shape) : value_rank;
    if (r > shape.head_dim) fail("kvc::lowrank::SVD", "value_rank = {} exceeds head_dim = {}", r, shape.head_dim);
    return r;
  }

  // Sizes the bases for `setup.shape`. Heads already fitted for the same shape and ranks (by
  // fit() or by calling setup() and calibrate() before handing the policy to a cache) are kept.
  void setup(const PolicySetup& setup) {
    setup.shape.validate();
    const std::size_t rk = rank_keys(setup.shape), rv = rank_values(setup.shape);
    auto& s = state;
    if (s.shape == setup.shape && s.key_rank == rk && s.value_rank == rv && !s.ready.empty()) return;
    s.shape = setup.shape;
    s.key_rank = rk;
    s.value_rank = rv;
    const std::size_t heads = setup.shape.head_count(), d = setup.shape.head_dim;
    s.key_basis.assign(heads * d * rk, 0.0f);
    s.value_basis.assign(heads * d * rv, 0.0f);
    s.ready.assign(heads, 0);
  }

  [[nodiscard]] bool ready(std::size_t layer, std::size_t kv_head) const noexcept {
    return !state.ready.empty() && state.ready[state.shape.head_index(layer, kv_head)] != 0;
  }

  // Fits one head from n calibration rows of keys and values ([n][head_dim] each).
  void calibrate(std::size_t layer, std::size_t kv_head, std::span<const float> keys, std::span<const float> values,
                 std::size_t n) {
    const std::size_t d = check_head("kvc::lowrank::SVD::calibrate", layer, kv_head);
    if (n == 0) fail("kvc::lowrank::SVD::calibrate", "needs at least one calibration row");
    if (keys.size() != n * d || values.size() != n * d)
      fail("kvc::lowrank::SVD::calibrate", "keys ({}) and values ({}) must hold n * head_dim = {} floats",
           keys.size(), values.size(), n * d);
    const auto k = detail::svd_basis(keys, n, d, state.key_rank);
    const auto v = detail::svd_basis(values, n, d, state.value_rank);
    install(layer, kv_head, k, v);
  }

  // Installs bases computed elsewhere: column-major head_dim x rank, orthonormal columns.
  void set_projection(std::size_t layer, std::size_t kv_head, std::span<const float> key_basis,
                      std::span<const float> value_basis) {
    const std::size_t d = check_head("kvc::lowrank::SVD::set_projection", layer, kv_head);
    if (key_basis.size() != d * state.key_rank || value_basis.size() != d * state.value_rank)
      fail("kvc::lowrank::SVD::set_projection", "bases hold {} and {} floats, expected {} x {} and {} x {}",
           key_basis.size(), value_basis.size(), d, state.key_rank, d, state.value_rank);
    install(layer, kv_head, key_basis, value_basis);
  }

  // Orthonormal basis (column-major dim x rank) of the top `rank` right singular vectors of
  // `rows` ([n][dim], row-major). With fewer rows than `rank`, the basis is completed with
  // further right singular vectors (singular value 0).
  [[nodiscard]] static std::vector<float> fit_basis(std::span<const float> rows, std::size_t n, std::size_t dim,
                                                    std::size_t rank) {
    return detail::svd_basis(rows, n, dim, rank);
  }

  // A policy fitted offline from calibration data laid out as [layers][n][kv_heads][head_dim]
  // (one prefill's keys per layer, back to back); pass it to the cache.
  [[nodiscard]] static SVD fit(const Shape& shape, std::size_t rank, std::span<const float> keys,
                               std::span<const float> values, std::size_t value_rank = 0) {
    SVD svd{.rank = rank, .value_rank = value_rank};
    svd.setup(PolicySetup{.shape = shape});
    const std::size_t per_layer_row = shape.kv_heads * shape.head_dim;
    if (keys.empty() || keys.size() % (shape.layers * per_layer_row) != 0 || values.size() != keys.size())
      fail("kvc::lowrank::SVD::fit", "keys ({}) and values ({}) must hold layers * n * kv_heads * head_dim floats",
           keys.size(), values.size());
    const std::size_t n = keys.size() / (shape.layers * per_layer_row);
    std::vector<float> k(n * shape.head_dim), v(n * shape.head_dim);
    for (std::size_t l = 0; l < shape.layers; ++l)
      for (std::size_t h = 0; h < shape.kv_heads; ++h) {
        for (std::size_t t = 0; t < n; ++t) {
          const std::size_t at = (l * n + t) * per_layer_row + h * shape.head_dim;
          std::copy_n(keys.data() + at, shape.head_dim, k.data() + t * shape.head_dim);
          std::copy_n(values.data() + at, shape.head_dim, v.data() + t * shape.head_dim);
        }
        svd.calibrate(l, h, k, v, n);
      }
    return svd;
  }

  // ---- hot path: allocation-free ----------------------------------------------------------

  void project_key(std::size_t layer, std::size_t kv_head, const float* in, float* out) const noexcept {
    project(key_basis(layer, kv_head), state.key_rank, in, out);
  }
  void project_value(std::size_t layer, std::size_t kv_head, const float* in, float* out) const noexcept {
    project(value_basis(layer, kv_head), state.value_rank, in, out);
  }
  void restore_value(std::size_t layer, std::size_t kv_head, const float* in, float* out) const noexcept {
    restore(value_basis(layer, kv_head), state.value_rank, in, out);
  }
  // Maps a stored key back to head_dim (P_k k'): for tests and tools.
  void restore_key(std::size_t layer, std::size_t kv_head, const float* in, float* out) const noexcept {
    restore(key_basis(layer, kv_head), state.key_rank, in, out);
  }

  [[nodiscard]] const float* key_basis(std::size_t layer, std::size_t kv_head) const noexcept {
    return state.key_basis.data() + state.shape.head_index(layer, kv_head) * state.shape.head_dim * state.key_rank;
  }
  [[nodiscard]] const float* value_basis(std::size_t layer, std::size_t kv_head) const noexcept {
    return state.value_basis.data() +
           state.shape.head_index(layer, kv_head) * state.shape.head_dim * state.value_rank;
  }

  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return (state.key_basis.capacity() + state.value_basis.capacity()) * sizeof(float) + state.ready.capacity();
  }

 private:
  void project(const float* basis, std::size_t r, const float* in, float* out) const noexcept {
    detail::project_onto(basis, state.shape.head_dim, r, in, out);
  }
  void restore(const float* basis, std::size_t r, const float* in, float* out) const noexcept {
    detail::restore_from(basis, state.shape.head_dim, r, in, out);
  }

  std::size_t check_head(const char* where, std::size_t layer, std::size_t kv_head) const {
    if (state.ready.empty()) fail(where, "the policy has no shape yet: build a cache with it or call setup() first");
    if (layer >= state.shape.layers || kv_head >= state.shape.kv_heads)
      fail(where, "layer {} KV head {} out of range ({} layers, {} KV heads)", layer, kv_head, state.shape.layers,
           state.shape.kv_heads);
    return state.shape.head_dim;
  }

  void install(std::size_t layer, std::size_t kv_head, std::span<const float> k, std::span<const float> v) {
    const std::size_t i = state.shape.head_index(layer, kv_head), d = state.shape.head_dim;
    std::copy(k.begin(), k.end(), state.key_basis.begin() + static_cast<std::ptrdiff_t>(i * d * state.key_rank));
    std::copy(v.begin(), v.end(), state.value_basis.begin() + static_cast<std::ptrdiff_t>(i * d * state.value_rank));
    state.ready[i] = 1;
  }
};

}  // namespace kvc::lowrank
