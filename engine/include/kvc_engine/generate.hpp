#pragma once
// Generation (greedy or seeded sampling) and teacher-forced scoring over any engine cache.
#include "kvc_engine/tokenizer.hpp"
#include "kvc_engine/transformer.hpp"

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace kvc::engine {

// Temperature 0 is greedy (argmax, lowest id on ties). Otherwise samples from
// softmax(logits / temperature), restricted to the top-p nucleus, with a seeded generator,
// so the same seed gives the same text on every machine.
class Sampler {
 public:
  explicit Sampler(float temperature = 0.0f, float top_p = 1.0f, std::uint64_t seed = 42);
  std::int32_t sample(std::span<const float> logits);

 private:
  float next_uniform() noexcept;  // [0, 1)
  float temperature_, top_p_;
  std::uint64_t state_;
  std::vector<float> probs_;
  std::vector<std::int32_t> order_;
};

[[nodiscard]] std::int32_t argmax(std::span<const float> logits) noexcept;
// -log softmax(logits)[target], computed stably in double.
[[nodiscard]] double negative_log_likelihood(std::span<const float> logits, std::int32_t target) noexcept;

// Runs BOS + prompt (no dummy prefix when the prompt is empty) and then generates up to `steps`
// positions in total, stopping early at BOS/EOS. Returns the tokens after BOS.
template <EngineCache Cache>
std::vector<std::int32_t> generate(Transformer& model, Cache& cache, const Tokenizer& tokenizer,
                                   std::string_view prompt, std::size_t steps, Sampler& sampler) {
  std::vector<std::int32_t> prompt_tokens = tokenizer.encode(prompt, /*add_bos=*/true, !prompt.empty());
  std::vector<std::int32_t> out(prompt_tokens.begin() + 1, prompt_tokens.end());
  std::int32_t token = prompt_tokens[0];
  for (std::size_t pos = 0; pos < steps; ++pos) {
    const auto logits = model.forward(cache, token, std::int32_t(pos));
    std::int32_t next;
    if (pos + 1 < prompt_tokens.size()) {
      next = prompt_tokens[pos + 1];
    } else {
      next = sampler.sample(logits);
      if (next == tokenizer.bos_id() || next == tokenizer.eos_id()) break;
      out.push_back(next);
    }
    token = next;
  }
  return out;
}

// Teacher-forced scoring of BOS + `window`: at position p the model has seen BOS and the first p
// tokens and predicts window[p]. Returns the NLL of every prediction (window.size() of them).
template <EngineCache Cache>
std::vector<double> score_window(Transformer& model, Cache& cache, std::span<const std::int32_t> window) {
  std::vector<double> nll(window.size());
  std::int32_t token = Tokenizer::bos;
  for (std::size_t p = 0; p < window.size(); ++p) {
    const auto logits = model.forward(cache, token, std::int32_t(p));
    nll[p] = negative_log_likelihood(logits, window[p]);
    token = window[p];
  }
  return nll;
}

}  // namespace kvc::engine
