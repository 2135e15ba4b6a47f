#pragma once
// The dense operations of the forward pass. Plain loops the compiler vectorizes; the model is
// small enough that the KV cache, not these, is what the evaluation is about.
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::engine::ops {

// out[r] = sum_c w[r][c] * x[c], w row-major [out.size()][x.size()].
void matvec(std::span<float> out, std::span<const float> w, std::span<const float> x) noexcept;
// out = x / rms(x) * weight, eps 1e-5 as in llama2.c.
void rmsnorm(std::span<float> out, std::span<const float> x, std::span<const float> weight) noexcept;
// Rotates adjacent pairs (2i, 2i+1) of each head of `v` by position * theta^(-2i/head_dim).
void rope(std::span<float> v, std::size_t head_dim, std::int32_t position, float theta = 10000.0f) noexcept;
// In place softmax; returns nothing, max-subtracted for stability.
void softmax(std::span<float> x) noexcept;
// h1[i] = silu(h1[i]) * h3[i].
void swiglu(std::span<float> h1, std::span<const float> h3) noexcept;

}  // namespace kvc::engine::ops
