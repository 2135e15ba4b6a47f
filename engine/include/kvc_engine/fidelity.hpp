#pragma once
// Fidelity of compressed caches against the exact one, measured in lockstep.
//
// For every window of the text, the reference (PlainCache: exact f32 attention, nothing evicted)
// and every stack's cache see the same tokens, one at a time, with teacher forcing. So a stack's
// compression acts during decoding, as in serving, and every prediction is compared with the
// reference's prediction of the same token from the same prefix.
//
// With a context C > 0 (the context-compression protocol), the first C positions (BOS included)
// are a chunked prefill (Transformer::prefill) that is not scored; then every cache is
// compressed to its budget (compress()) and only the remaining positions are scored, still in
// lockstep, token by token.
#include "kvc/runtime/any_cache.hpp"
#include "kvc_engine/corpus.hpp"
#include "kvc_engine/plain_cache.hpp"
#include "kvc_engine/transformer.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvc::engine {

struct StackMetrics {
  std::string label;
  std::size_t predictions = 0;
  double mean_nll = 0;
  double perplexity = 0;
  double perplexity_change = 0;  // perplexity / reference perplexity - 1
  double mean_kl = 0;            // mean KL(reference || stack) of next-token distributions, nats
  double top1_agreement = 0;     // fraction of predictions whose argmax matches the reference's
  std::vector<double> attention_error;  // per layer: ||out - ref|| / ||ref|| over all tokens and heads
  double kept_attention_mass = 0;  // mean over predictions, layers, KV heads (see docs/evaluation.md)
  double bytes_per_token = 0;      // memory_bytes() / tokens() at the end of each window, averaged
  double compression_ratio = 0;    // f16 full cache bytes of the window / memory_bytes(), averaged
  double tokens_kept = 0;          // tokens() / (tokens seen * layers * KV heads) at window end
  double seconds = 0;              // time in this stack's forward passes
};

struct FidelityReport {
  std::size_t windows = 0;
  std::size_t window_tokens = 0;  // positions per window (BOS + window - 1 inputs)
  std::size_t context = 0;        // unscored prefill positions per window; 0 scores every position
  std::size_t predictions = 0;    // scored, over all windows
  double reference_nll = 0;
  double reference_perplexity = 0;
  // Reference perplexity of the scored positions by position, in doubling buckets as the model
  // README reports them (0-63, 64-127, 128-255, 256-511, 512-1023, ...), with their labels.
  std::vector<double> reference_perplexity_by_position;
  std::vector<std::string> position_buckets;
  double seconds = 0;
  std::vector<StackMetrics> stacks;
};

class FidelityRun {
 public:
  // `caches[i]` is evaluated under `labels[i]`. The caches are cleared between windows. `context`
  // positions of every window are prefilled unscored, then the caches are compressed.
  FidelityRun(const Model& model, std::vector<std::unique_ptr<runtime::AnyCache>> caches, std::vector<std::string> labels,
              std::size_t context = 0);
  ~FidelityRun();

  // Scores `bos` + window with the reference and every cache in lockstep (after the context's
  // chunked prefill). Throws kvc::Error if the window is not longer than the context.
  void run_window(std::span<const std::int32_t> window, std::int32_t bos = Tokenizer::bos);
  [[nodiscard]] FidelityReport report() const;

 private:
  struct Stack;
  const Model* model_;
  Transformer reference_model_;
  PlainCache reference_;
  std::vector<std::unique_ptr<Stack>> stacks_;
  std::size_t context_ = 0, windows_ = 0, predictions_ = 0, window_tokens_ = 0;
  std::size_t max_position_ = 0;
  double reference_nll_ = 0, seconds_ = 0;
  std::vector<double> bucket_nll_;
  std::vector<std::size_t> bucket_count_;
  std::vector<double> ref_logp_, logp_;
  std::vector<std::int32_t> prefill_tokens_;
};

// Runs the windows of `corpus` through FidelityRun on `threads` threads (each with its own copy
// of the reference and a share of the stacks; the numbers do not depend on the thread count),
// reporting progress through `progress` (windows done, total) if given. `context` as FidelityRun.
[[nodiscard]] FidelityReport evaluate(const Model& model, const Windows& corpus,
                                      std::vector<std::unique_ptr<runtime::AnyCache>> caches, std::vector<std::string> labels,
                                      const std::function<void(std::size_t, std::size_t)>& progress = {},
                                      std::size_t threads = 1, std::size_t context = 0);

}  // namespace kvc::engine
