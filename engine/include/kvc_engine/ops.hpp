#pragma once
// The dense operations of the forward pass. Plain loops the compiler vectorizes; the model is
// small enough that the KV cache, not these, is what the evaluation is about.
#include "kvc/kernels/table.hpp"
#include "kvc_engine/dequant.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::engine::ops {

// out[r] = sum_c w[r][c] * x[c], w row-major [out.size()][x.size()].
void matvec(std::span<float> out, std::span<const float> w, std::span<const float> x) noexcept;
// out = w x for a matrix in its block format (has_quant_matvec(w.type)); x.size() == w.cols.
// `isa`: scalar, or any wider supported one for the AVX2 kernels (default: kvc::kernels::active()).
void matvec_quant(std::span<float> out, const QuantMatrix& w, std::span<const float> x) noexcept;
void matvec_quant(std::span<float> out, const QuantMatrix& w, std::span<const float> x, kernels::Isa isa) noexcept;
// For n rows of x ([n][cols]): out[t][r] = sum_c w[r][c] * x[t][c]; w is [rows][cols], out [n][rows].
void matmul(std::span<float> out, std::span<const float> w, std::span<const float> x, std::size_t n) noexcept;
void matmul(std::span<float> out, std::span<const float> w, std::span<const float> x, std::size_t n,
            kernels::Isa isa) noexcept;
// out = x / sqrt(mean(x^2) + eps) * weight (llama2.c: eps 1e-5).
void rmsnorm(std::span<float> out, std::span<const float> x, std::span<const float> weight, float eps = 1e-5f) noexcept;
// The rotation of RoPE at `position`: cos_sin[2i], cos_sin[2i+1] = cos, sin of
// position * theta^(-2i/rotary_dim) for the rotary_dim / 2 pairs.
void rope_angles(std::span<float> cos_sin, std::int32_t position, float theta) noexcept;
// Rotates adjacent pairs (2i, 2i+1) of the first cos_sin.size() dims of each head of `v`
// (the GGUF llama and llama2.c convention; the rest of a head is left as is).
void rope(std::span<float> v, std::size_t head_dim, std::span<const float> cos_sin) noexcept;
// In place softmax; returns nothing, max-subtracted for stability.
void softmax(std::span<float> x) noexcept;
// h1[i] = silu(h1[i]) * h3[i].
void swiglu(std::span<float> h1, std::span<const float> h3) noexcept;

}  // namespace kvc::engine::ops
