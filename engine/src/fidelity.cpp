#include "kvc_engine/fidelity.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/generate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

namespace kvc::engine {
namespace {

// log softmax in double: KL of nearly equal distributions needs the precision.
void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  out.resize(logits.size());
  const double m = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) sum += std::exp(double(logits[i]) - m);
  const double log_sum = std::log(sum) + m;
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = double(logits[i]) - log_sum;
}

using Clock = std::chrono::steady_clock;

// Doubling position buckets: 0-63, 64-127, 128-255, 256-511, ...
std::size_t position_bucket(std::size_t p) noexcept { return p < 64 ? 0 : std::size_t(std::bit_width(p / 64)); }
std::size_t bucket_start(std::size_t b) noexcept { return b == 0 ? 0 : std::size_t{64} << (b - 1); }

// Chunks of this many tokens bound the prefill's buffers (about 40 MB on SmolLM2).
constexpr std::size_t prefill_chunk = 512;

template <class Cache>
void prefill_context(Transformer& transformer, Cache& cache, std::span<const std::int32_t> tokens) {
  for (std::size_t first = 0; first < tokens.size(); first += prefill_chunk)
    transformer.prefill(cache, tokens.subspan(first, std::min(prefill_chunk, tokens.size() - first)),
                        std::int32_t(first));
}

}  // namespace

struct FidelityRun::Stack {
  Stack(const Model& model, std::unique_ptr<runtime::AnyCache> c, std::string l)
      : transformer(model), cache(std::move(c)), label(std::move(l)) {}
  Transformer transformer;
  std::unique_ptr<runtime::AnyCache> cache;
  std::string label;
  // Accumulators.
  double nll = 0, kl = 0, kept_mass = 0, bytes_per_token = 0, ratio = 0, kept_fraction = 0, seconds = 0;
  std::size_t agree = 0, mass_samples = 0, memory_samples = 0;
  std::vector<double> err2, ref2;  // per layer
  // Positions each (layer, KV head) held after the previous step.
  std::vector<std::vector<std::int32_t>> previous;
};

FidelityRun::FidelityRun(const Model& model, std::vector<std::unique_ptr<runtime::AnyCache>> caches,
                         std::vector<std::string> labels, std::size_t context)
    : model_(&model), reference_model_(model), reference_(model.config().attention_shape()), context_(context) {
  if (caches.size() != labels.size())
    fail("kvc::engine::FidelityRun", "{} caches but {} labels", caches.size(), labels.size());
  const Shape shape = model.config().attention_shape();
  for (std::size_t i = 0; i < caches.size(); ++i) {
    if (!caches[i]) fail("kvc::engine::FidelityRun", "cache {} ('{}') is null", i, labels[i]);
    if (!(caches[i]->shape() == shape))
      fail("kvc::engine::FidelityRun", "cache '{}' has a shape that is not the model's", labels[i]);
    auto s = std::make_unique<Stack>(model, std::move(caches[i]), std::move(labels[i]));
    s->err2.assign(shape.layers, 0.0);
    s->ref2.assign(shape.layers, 0.0);
    s->previous.resize(shape.layers * shape.kv_heads);
    stacks_.push_back(std::move(s));
  }
}

FidelityRun::~FidelityRun() = default;

void FidelityRun::run_window(std::span<const std::int32_t> window, std::int32_t bos) {
  if (window.size() <= context_)
    fail("kvc::engine::FidelityRun", "a window of {} tokens leaves nothing to score after a context of {}",
         window.size(), context_);
  const auto start = Clock::now();
  const Shape shape = model_->config().attention_shape();
  const std::size_t group = shape.group_size();
  reference_.clear();
  for (auto& s : stacks_) {
    s->cache->clear();
    for (auto& p : s->previous) p.clear();
  }
  std::int32_t token = bos;
  if (context_ > 0) {
    // The context goes through the chunked prefill (matrix-matrix products); every cache holds it
    // whole, then is brought to its budget at once, as a prefill-time method would (SnapKV,
    // kvpress). Nothing in it is scored.
    prefill_tokens_.assign(1, bos);
    prefill_tokens_.insert(prefill_tokens_.end(), window.begin(), window.begin() + std::ptrdiff_t(context_ - 1));
    prefill_context(reference_model_, reference_, prefill_tokens_);
    for (auto& sp : stacks_) {
      const auto t0 = Clock::now();
      prefill_context(sp->transformer, *sp->cache, prefill_tokens_);
      sp->cache->compress_prompt();
      sp->seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      for (std::size_t l = 0; l < shape.layers; ++l)
        for (std::size_t h = 0; h < shape.kv_heads; ++h) {
          const auto now = sp->cache->positions(l, h);
          sp->previous[l * shape.kv_heads + h].assign(now.begin(), now.end());
        }
    }
    token = window[context_ - 1];
  }
  for (std::size_t p = context_; p < window.size(); ++p) {
    const std::int32_t position = std::int32_t(p);
    const std::int32_t target = window[p];
    log_softmax(reference_model_.forward(reference_, token, position), ref_logp_);
    reference_nll_ -= ref_logp_[std::size_t(target)];
    const std::size_t bucket = position_bucket(p);
    if (bucket >= bucket_nll_.size()) {
      bucket_nll_.resize(bucket + 1, 0.0);
      bucket_count_.resize(bucket + 1, 0);
    }
    max_position_ = std::max(max_position_, p);
    bucket_nll_[bucket] -= ref_logp_[std::size_t(target)];
    ++bucket_count_[bucket];
    const auto ref_top = std::max_element(ref_logp_.begin(), ref_logp_.end()) - ref_logp_.begin();
    for (auto& sp : stacks_) {
      Stack& s = *sp;
      const auto t0 = Clock::now();
      const auto logits = s.transformer.forward(*s.cache, token, position);
      s.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      log_softmax(logits, logp_);
      s.nll -= logp_[std::size_t(target)];
      double kl = 0;
      for (std::size_t i = 0; i < logp_.size(); ++i) kl += std::exp(ref_logp_[i]) * (ref_logp_[i] - logp_[i]);
      s.kl += std::max(kl, 0.0);
      if (std::max_element(logp_.begin(), logp_.end()) - logp_.begin() == ref_top) ++s.agree;
      for (std::size_t l = 0; l < shape.layers; ++l) {
        const auto a = s.transformer.attention_output(l), r = reference_model_.attention_output(l);
        for (std::size_t i = 0; i < a.size(); ++i) {
          s.err2[l] += double(a[i] - r[i]) * double(a[i] - r[i]);
          s.ref2[l] += double(r[i]) * double(r[i]);
        }
        // The tokens this head attended over: what it held after the previous step plus this one.
        for (std::size_t h = 0; h < shape.kv_heads; ++h) {
          auto& held = s.previous[l * shape.kv_heads + h];
          double mass = 0;
          for (std::size_t g = 0; g < group; ++g) {
            const auto w = reference_.last_weights(l, h * group + g);
            for (const std::int32_t t : held) mass += w[std::size_t(t)];
            mass += w[p];
          }
          s.kept_mass += mass / double(group);
          ++s.mass_samples;
          const auto now = s.cache->positions(l, h);
          held.assign(now.begin(), now.end());
        }
      }
    }
    token = target;
  }
  // Memory at the end of the window, when the full cache is largest.
  const double seen = double(window.size());
  const double f16_bytes = seen * double(shape.layers * shape.kv_heads) * 2.0 * 2.0 * double(shape.head_dim);
  for (auto& sp : stacks_) {
    Stack& s = *sp;
    const double bytes = double(s.cache->memory_bytes()), tokens = double(s.cache->tokens());
    s.bytes_per_token += tokens > 0 ? bytes / (tokens) : 0.0;
    s.ratio += bytes > 0 ? f16_bytes / bytes : 0.0;
    s.kept_fraction += tokens / (seen * double(shape.layers * shape.kv_heads));
    ++s.memory_samples;
  }
  ++windows_;
  predictions_ += window.size() - context_;
  window_tokens_ = window.size();
  seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
}

FidelityReport FidelityRun::report() const {
  FidelityReport r;
  r.windows = windows_;
  r.window_tokens = window_tokens_;
  r.context = context_;
  r.predictions = predictions_;
  r.seconds = seconds_;
  const double n = double(std::max<std::size_t>(predictions_, 1));
  r.reference_nll = reference_nll_ / n;
  r.reference_perplexity = std::exp(r.reference_nll);
  for (std::size_t b = 0; b < bucket_count_.size(); ++b) {
    if (!bucket_count_[b]) continue;
    r.reference_perplexity_by_position.push_back(std::exp(bucket_nll_[b] / double(bucket_count_[b])));
    r.position_buckets.push_back(
        fmt::format("{}-{}", std::max(bucket_start(b), context_), std::min(bucket_start(b + 1) - 1, max_position_)));
  }
  for (const auto& sp : stacks_) {
    const Stack& s = *sp;
    StackMetrics m;
    m.label = s.label;
    m.predictions = predictions_;
    m.mean_nll = s.nll / n;
    m.perplexity = std::exp(m.mean_nll);
    m.perplexity_change = m.perplexity / r.reference_perplexity - 1.0;
    m.mean_kl = s.kl / n;
    m.top1_agreement = double(s.agree) / n;
    for (std::size_t l = 0; l < s.err2.size(); ++l)
      m.attention_error.push_back(s.ref2[l] > 0 ? std::sqrt(s.err2[l] / s.ref2[l]) : 0.0);
    m.kept_attention_mass = s.mass_samples ? s.kept_mass / double(s.mass_samples) : 0.0;
    const double w = double(std::max<std::size_t>(s.memory_samples, 1));
    m.bytes_per_token = s.bytes_per_token / w;
    m.compression_ratio = s.ratio / w;
    m.tokens_kept = s.kept_fraction / w;
    m.seconds = s.seconds;
    r.stacks.push_back(std::move(m));
  }
  return r;
}

FidelityReport evaluate(const Model& model, const Windows& corpus, std::vector<std::unique_ptr<runtime::AnyCache>> caches,
                        std::vector<std::string> labels, const std::function<void(std::size_t, std::size_t)>& progress,
                        std::size_t threads, std::size_t context) {
  // Stacks are independent given the reference, so each thread runs its own copy of the (cheap,
  // deterministic) reference with a share of the stacks: the metrics do not depend on `threads`.
  const std::size_t n = caches.size();
  threads = std::max<std::size_t>(1, std::min(threads, n));
  std::vector<std::vector<std::unique_ptr<runtime::AnyCache>>> shares(threads);
  std::vector<std::vector<std::string>> share_labels(threads);
  std::vector<std::vector<std::size_t>> share_index(threads);
  for (std::size_t i = 0; i < n; ++i) {
    shares[i % threads].push_back(std::move(caches[i]));
    share_labels[i % threads].push_back(std::move(labels[i]));
    share_index[i % threads].push_back(i);
  }
  std::vector<std::unique_ptr<FidelityRun>> runs;
  for (std::size_t t = 0; t < threads; ++t)
    runs.push_back(std::make_unique<FidelityRun>(model, std::move(shares[t]), std::move(share_labels[t]), context));

  std::atomic<std::size_t> done{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;
  const auto work = [&](std::size_t t) {
    try {
      for (std::size_t i = 0; i < corpus.count; ++i) {
        runs[t]->run_window(corpus[i], corpus.bos);
        const std::size_t finished = ++done;
        // Progress counts windows finished by every thread, in window units.
        if (progress && finished % threads == 0) {
          std::lock_guard lock(progress_mutex);
          progress(finished / threads, corpus.count);
        }
      }
    } catch (...) {
      std::lock_guard lock(progress_mutex);
      failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);

  FidelityReport report = runs[0]->report();
  report.stacks.assign(n, StackMetrics{});
  for (std::size_t t = 0; t < threads; ++t) {
    FidelityReport part = runs[t]->report();
    report.seconds = std::max(report.seconds, part.seconds);
    for (std::size_t j = 0; j < part.stacks.size(); ++j) report.stacks[share_index[t][j]] = std::move(part.stacks[j]);
  }
  return report;
}

}  // namespace kvc::engine
