#pragma once
// Passkey retrieval: a random 5-digit key is stated once at a chosen depth of C tokens of real
// filler text, the prompt ends with the cue "The pass key is", and the model continues greedily
// (at most 8 tokens, stopping at a newline). A trial is correct when the first run of digits of
// the continuation is exactly the key.
//
// Every cache receives the same prompt through the chunked prefill (Transformer::prefill), holds
// it whole, is then compressed to its budget (compress()), and generates token by token.
#include "kvc/runtime/any_cache.hpp"
#include "kvc_engine/generate.hpp"
#include "kvc_engine/plain_cache.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

inline constexpr std::size_t passkey_max_new_tokens = 8;

// "The pass key is 71432. Remember it. 71432 is the pass key." for key "71432".
[[nodiscard]] std::string passkey_sentence(std::string_view key);
inline constexpr std::string_view passkey_cue = "The pass key is";

// Five decimal digits, the first not zero, from a portable generator (splitmix64 of `seed` and
// `index`), so a seed names the same keys on every machine.
[[nodiscard]] std::string passkey_key(std::uint64_t seed, std::size_t index);

struct PasskeyPrompt {
  std::vector<std::int32_t> tokens;  // BOS, filler with the key sentence, the cue: `context` tokens
  std::string key;
  std::size_t filler_begin = 0;            // the filler is filler[filler_begin, ...)
  std::size_t key_begin = 0, key_end = 0;  // the key sentence is tokens[key_begin, key_end)
  double depth = 0;                        // key_begin / tokens.size(), as placed
};

// Builds a prompt of exactly `context` tokens: BOS, consecutive filler tokens (from the first
// offset at which they end with a whole sentence, so the cue starts a sentence), the cue at the
// end and the key sentence inserted at the sentence boundary of the filler nearest to `depth` (in
// [0, 1]) of the prompt. Sentences and cue are encoded with a leading space, without the
// tokenizer's dummy prefix. Throws kvc::Error if the filler is too short or the context too small.
[[nodiscard]] PasskeyPrompt make_passkey_prompt(const Tokenizer& tokenizer, std::span<const std::int32_t> filler,
                                                std::size_t context, double depth, std::string_view key);

// True when the first run of decimal digits in `continuation` is exactly `key`.
[[nodiscard]] bool passkey_correct(std::string_view continuation, std::string_view key) noexcept;

// Prompts go through the chunked prefill in chunks of this many tokens.
inline constexpr std::size_t passkey_prefill_chunk = 512;

// Prefills `prompt` (BOS first) into `cache` in chunks, compresses it where the cache can, then
// continues greedily for at most `max_new` tokens, stopping after a token whose text holds a
// newline or at the tokenizer's BOS/EOS. Returns the decoded continuation.
template <PrefillCache Cache>
std::string greedy_continuation(Transformer& model, Cache& cache, const Tokenizer& tokenizer,
                                std::span<const std::int32_t> prompt, std::size_t max_new = passkey_max_new_tokens) {
  std::span<const float> logits;
  for (std::size_t first = 0; first < prompt.size(); first += passkey_prefill_chunk)
    logits = model.prefill(cache, prompt.subspan(first, std::min(passkey_prefill_chunk, prompt.size() - first)),
                           std::int32_t(first));
  // The prompt is compressed once, as prompt-time methods (SnapKV) do; decode-time selections
  // bring every head to its budget the same way.
  if constexpr (requires { cache.compress_prompt(); }) cache.compress_prompt();
  std::string text;
  std::int32_t previous = prompt.empty() ? tokenizer.bos_id() : prompt.back();
  for (std::size_t i = 0; i < max_new && !logits.empty(); ++i) {
    const std::int32_t next = argmax(logits);
    if (next == tokenizer.bos_id() || next == tokenizer.eos_id()) break;
    const std::string piece = tokenizer.decode(previous, next);
    text += piece;
    if (piece.find('\n') != std::string::npos || i + 1 == max_new) break;
    logits = model.forward(cache, next, std::int32_t(prompt.size() + i));
    previous = next;
  }
  return text;
}

struct PasskeyPlan {
  std::vector<std::size_t> contexts;                  // prompt lengths C, BOS included
  std::vector<double> depths{0.1, 0.3, 0.5, 0.7, 0.9};  // of the prompt
  std::size_t trials = 3;                             // keys per (C, depth) cell
  std::uint64_t seed = 1234;                          // names the keys (passkey_key)
};

struct PasskeyCell {
  std::size_t context = 0;
  double depth = 0;         // requested
  double placed_depth = 0;  // mean over trials of where the key sentence starts
  std::size_t trials = 0, correct = 0;
  std::vector<std::string> answers;  // the continuations, one per trial
  // f16 bytes of the C prompt tokens (layers x KV heads x 2 x 2 x head_dim each) over the cache's
  // memory_bytes() after the answer, mean over trials. The cache then also holds up to
  // passkey_max_new_tokens answer tokens, which understates the ratio by at most 8/C. The exact
  // row (PlainCache) counts f32 keys and values and a 4-byte position per held token and KV head.
  double compression_ratio = 0;
};

struct PasskeyStack {
  std::string label;
  std::vector<PasskeyCell> cells;  // context-major, then depth
};

struct PasskeyReport {
  std::uint64_t seed = 0;
  std::vector<std::string> keys;  // key of trial t, the same in every cell
  std::vector<std::size_t> contexts;
  std::vector<double> depths;
  std::vector<PasskeyStack> stacks;  // "exact" (PlainCache) first
  double seconds = 0;
};

// Builds stack `i`'s cache for prompts of `context` tokens (and passkey_max_new_tokens more).
using CacheFactory = std::function<std::unique_ptr<runtime::AnyCache>(std::size_t i, std::size_t context)>;

// Every (context, depth, trial) with the exact cache and with each stack labelled `labels[i]`
// (built by `make`), stacks shared out over `threads` (the results do not depend on it).
// Progress counts trials. Throws kvc::Error if a context plus the answer exceeds the model's
// seq_len or the filler is too short.
[[nodiscard]] PasskeyReport run_passkey(const Model& model, const Tokenizer& tokenizer,
                                        std::span<const std::int32_t> filler, const PasskeyPlan& plan,
                                        std::vector<std::string> labels, const CacheFactory& make,
                                        const std::function<void(std::size_t, std::size_t)>& progress = {},
                                        std::size_t threads = 1);

}  // namespace kvc::engine
