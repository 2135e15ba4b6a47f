#include "kvc_engine/passkey.hpp"

#include "kvc/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

namespace kvc::engine {
namespace {

constexpr std::string_view where = "kvc::engine::make_passkey_prompt";

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A sentence ends before filler[i] when the text of filler[i - 1] ends with . ! ? or a newline
// (a closing quote may follow the punctuation).
bool sentence_ends_before(const Tokenizer& tokenizer, std::span<const std::int32_t> filler, std::size_t i) {
  if (i == 0) return true;
  std::string text = tokenizer.decode(i >= 2 ? filler[i - 2] : tokenizer.bos_id(), filler[i - 1]);
  while (!text.empty() && (text.back() == '"' || text.back() == '\'' || text.back() == ' ')) text.pop_back();
  return !text.empty() && (text.back() == '.' || text.back() == '!' || text.back() == '?' || text.back() == '\n');
}

}  // namespace

std::string passkey_sentence(std::string_view key) {
  return fmt::format("The pass key is {0}. Remember it. {0} is the pass key.", key);
}

std::string passkey_key(std::uint64_t seed, std::size_t index) {
  return fmt::format("{}", 10000 + splitmix64(splitmix64(seed) ^ std::uint64_t(index)) % 90000);
}

PasskeyPrompt make_passkey_prompt(const Tokenizer& tokenizer, std::span<const std::int32_t> filler,
                                  std::size_t context, double depth, std::string_view key) {
  if (!(depth >= 0.0 && depth <= 1.0)) fail(where, "depth must be in [0, 1], got {}", depth);
  const auto needle = tokenizer.encode(fmt::format(" {}", passkey_sentence(key)), /*add_bos=*/false, /*dummy_prefix=*/false);
  const auto cue = tokenizer.encode(fmt::format(" {}", passkey_cue), /*add_bos=*/false, /*dummy_prefix=*/false);
  const std::size_t fixed = 1 + needle.size() + cue.size();
  if (context <= fixed)
    fail(where, "a context of {} tokens cannot hold BOS, the key sentence and the cue ({} tokens)", context, fixed);
  const std::size_t n = context - fixed;  // filler tokens
  if (filler.size() < n) fail(where, "the filler text has {} tokens, fewer than the {} needed", filler.size(), n);
  // The cue should follow a whole sentence: start the filler at the first offset where its n
  // tokens end one (looking a little way only; else from the start).
  std::size_t begin = 0;
  for (std::size_t s = 0; s + n <= filler.size() && s < 4096; ++s)
    if (sentence_ends_before(tokenizer, filler, s + n)) {
      begin = s;
      break;
    }
  filler = filler.subspan(begin, n);

  // The sentence boundary nearest to the requested depth of the prompt (ties go to the earlier).
  const double target = depth * double(context) - 1.0;  // in filler tokens, after BOS
  std::size_t at = std::size_t(std::clamp(std::lround(target), 0l, long(n)));
  for (std::size_t d = 0; d <= n; ++d) {
    if (at >= d && sentence_ends_before(tokenizer, filler, at - d)) {
      at -= d;
      break;
    }
    if (at + d <= n && sentence_ends_before(tokenizer, filler, at + d)) {
      at += d;
      break;
    }
  }

  PasskeyPrompt p;
  p.key = std::string(key);
  p.filler_begin = begin;
  p.tokens.reserve(context);
  p.tokens.push_back(tokenizer.bos_id());
  p.tokens.insert(p.tokens.end(), filler.begin(), filler.begin() + std::ptrdiff_t(at));
  p.key_begin = p.tokens.size();
  p.tokens.insert(p.tokens.end(), needle.begin(), needle.end());
  p.key_end = p.tokens.size();
  p.tokens.insert(p.tokens.end(), filler.begin() + std::ptrdiff_t(at), filler.end());
  p.tokens.insert(p.tokens.end(), cue.begin(), cue.end());
  p.depth = double(p.key_begin) / double(context);
  return p;
}

bool passkey_correct(std::string_view continuation, std::string_view key) noexcept {
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0;
  while (i < continuation.size() && !is_digit(continuation[i])) ++i;
  std::size_t j = i;
  while (j < continuation.size() && is_digit(continuation[j])) ++j;
  return j > i && continuation.substr(i, j - i) == key;
}

PasskeyReport run_passkey(const Model& model, const Tokenizer& tokenizer, std::span<const std::int32_t> filler,
                          const PasskeyPlan& plan, std::vector<std::string> labels, const CacheFactory& make,
                          const std::function<void(std::size_t, std::size_t)>& progress, std::size_t threads) {
  const auto start = std::chrono::steady_clock::now();
  const std::size_t seq_len = std::size_t(model.config().seq_len);
  for (const std::size_t c : plan.contexts)
    if (c + passkey_max_new_tokens > seq_len)
      fail("kvc::engine::run_passkey", "a context of {} tokens plus {} answer tokens exceeds the model's {}", c,
           passkey_max_new_tokens, seq_len);
  if (plan.trials == 0) fail("kvc::engine::run_passkey", "at least one trial per cell is needed");
  PasskeyReport report;
  report.seed = plan.seed;
  report.contexts = plan.contexts;
  report.depths = plan.depths;
  for (std::size_t t = 0; t < plan.trials; ++t) report.keys.push_back(passkey_key(plan.seed, t));
  // Prompts are shared by every stack: built once per (context, depth, trial).
  std::vector<PasskeyPrompt> prompts;
  for (const std::size_t c : plan.contexts)
    for (const double d : plan.depths)
      for (const std::string& key : report.keys) prompts.push_back(make_passkey_prompt(tokenizer, filler, c, d, key));

  labels.insert(labels.begin(), "exact");
  report.stacks.resize(labels.size());
  for (std::size_t s = 0; s < labels.size(); ++s) {
    report.stacks[s].label = labels[s];
    for (const std::size_t c : plan.contexts)
      for (const double d : plan.depths) report.stacks[s].cells.push_back(PasskeyCell{c, d, 0.0, 0, 0, {}, 0.0});
  }
  const std::size_t total = labels.size() * prompts.size();
  std::size_t done = 0;
  std::mutex mutex;
  std::exception_ptr failure;
  threads = std::max<std::size_t>(1, std::min(threads, labels.size()));
  const auto work = [&](std::size_t thread) {
    try {
      Transformer transformer(model);
      for (std::size_t s = thread; s < labels.size(); s += threads) {
        for (std::size_t c = 0; c < plan.contexts.size(); ++c) {
          // The exact row is PlainCache; a stack's cache is built once per context and cleared per trial.
          std::unique_ptr<runtime::AnyCache> cache = s == 0 ? nullptr : make(s - 1, plan.contexts[c]);
          PlainCache exact(model.config().attention_shape());
          for (std::size_t d = 0; d < plan.depths.size(); ++d) {
            PasskeyCell& cell = report.stacks[s].cells[c * plan.depths.size() + d];
            for (std::size_t t = 0; t < plan.trials; ++t) {
              const PasskeyPrompt& prompt = prompts[(c * plan.depths.size() + d) * plan.trials + t];
              std::string answer;
              std::size_t bytes = 0;
              if (cache) {
                cache->clear();
                answer = greedy_continuation(transformer, *cache, tokenizer, prompt.tokens);
                bytes = cache->memory_bytes();
              } else {
                exact.clear();
                answer = greedy_continuation(transformer, exact, tokenizer, prompt.tokens);
                // Its rows as an f32 full cache stores them, not its vectors' spare capacity.
                bytes = exact.tokens() * (8 * model.config().attention_shape().head_dim + sizeof(std::int32_t));
              }
              const Shape& shape = model.config().attention_shape();
              const double f16_bytes = double(prompt.tokens.size() * shape.layers * shape.kv_heads) * 4.0 *
                                       double(shape.head_dim);
              cell.compression_ratio += (bytes > 0 ? f16_bytes / double(bytes) : 0.0) / double(plan.trials);
              ++cell.trials;
              cell.correct += passkey_correct(answer, prompt.key) ? 1 : 0;
              cell.placed_depth += prompt.depth / double(plan.trials);
              cell.answers.push_back(std::move(answer));
              std::lock_guard lock(mutex);
              if (progress) progress(++done, total);
            }
          }
        }
      }
    } catch (...) {
      std::lock_guard lock(mutex);
      failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace kvc::engine
