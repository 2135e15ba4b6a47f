#pragma once
#include "kvc/kernels/table.hpp"

#include <cstddef>
#include <optional>

namespace kvc {

// How the attention weights of the query heads sharing one KV head are combined before a
// policy sees them. The choice changes which tokens survive: `max` keeps a token any one query
// head needs, `mean` and `sum` (same ranking, different scale) favour tokens the group agrees on.
enum class GqaReduce { mean, sum, max };

struct Options {
  // Element type of rows no quantization policy encodes: f32, f16 or bf16.
  kernels::Dtype dtype = kernels::Dtype::f32;
  // Average tokens kept per (layer, KV head); the budget policy distributes the total.
  // 0 means unbounded: nothing is evicted (and no selection policy may be given).
  std::size_t budget = 0;
  // Instead of `budget`: the share of the prompt each head keeps, in (0, 1]. Budgets are then set
  // by KVCache::compress_prompt() from the prompt's length, floor(ratio * prompt) but at least 1
  // (then handed to the budget policy as the average); until then nothing is evicted.
  // 0 means unused; exactly one of budget and budget_ratio is set when a selection is given.
  double budget_ratio = 0.0;
  // Tokens per head reserved up front, so that append and attend never allocate below it.
  // 0 reserves nothing and grows on demand. A budget may not exceed a non-zero capacity.
  std::size_t capacity = 0;
  // A head compresses when it holds more than budget + compress_slack tokens: 0 evicts every
  // step as the papers do; a larger slack amortizes selection over several steps.
  std::size_t compress_slack = 0;
  // Compress a layer's over-budget heads at the end of attend(); otherwise only compress() does.
  bool auto_compress = true;
  GqaReduce gqa_reduce = GqaReduce::mean;
  // Logit scale; 0 means 1/sqrt(head_dim) (also under low rank, where stored rows are shorter).
  float scale = 0.0f;
  // Arithmetic of attention (kernels::Precision): `fast` lets kernels with int8 dot products
  // (avx512vnni, avx512bf16) quantize the query and the softmax weights to 8 bits over quantized
  // rows, an error of the order of the cache's own int8 quantization, and kernels with bf16 dot
  // products (avx512bf16) round q, the weights and f16 rows to bf16 (2^-8 relative) over f16
  // and bf16 rows; `exact` keeps fp32 arithmetic. f32 rows and ISAs without those dot products
  // are exact either way.
  kernels::Precision precision = kernels::Precision::exact;
  // Kernels of this ISA instead of the process-wide choice (kernels::active()); for tests and
  // benchmarks that compare instruction sets in one process. Must be supported by the CPU.
  std::optional<kernels::Isa> isa = std::nullopt;
};

}  // namespace kvc
