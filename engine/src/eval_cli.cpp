#include "kvc_engine/eval_cli.hpp"

#include "kvc/core/error.hpp"
#include "kvc/data/capture.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc_engine/capture.hpp"
#include "kvc_engine/corpus.hpp"
#include "kvc_engine/fidelity.hpp"
#include "kvc_engine/generate.hpp"
#include "kvc_engine/passkey_report.hpp"
#include "kvc_engine/paths.hpp"
#include "kvc_engine/protocols.hpp"
#include "kvc_engine/sha256.hpp"
#include "kvc_engine/report.hpp"
#include "kvc_engine/tokenizer_gguf.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>
#include <optional>

namespace kvc::engine {
namespace {

// The decode protocol's default panel: one stack per technique at a budget of 64 of 511 tokens
// (8x fewer tokens), plus the quantizers and low rank alone, and the f32 full cache as the sanity
// row (KL 0).
const std::vector<std::string> default_panel = {
    "full",
    "f16",
    "f16:fast=1",
    "int8",
    "int8:fast=1",
    "int4",
    "svd:rank=6",
    "streaming:sinks=4,recent=60",
    "h2o:budget=64",
    "pyramid:budget=64+h2o",
    "h2o:budget=64+d2o",
    "h2o:budget=64+int4",
    "h2o:budget=32",
};

// The context and passkey protocols' default panel: every technique, budgets as shares of the
// context C (so one panel serves every C) of about a quarter, plus the 12.5 % slope of H2O.
const std::vector<std::string> context_panel = {
    "full",
    "f16",
    "int8",
    "int4",
    "svd:rank=16",
    "streaming:sinks=4,recent=25%",
    "h2o:budget=25%",
    "knorm:budget=25%",
    "pyramid:budget=25%+h2o",
    "h2o:budget=25%+d2o",
    "h2o:budget=25%+int4",
    "h2o:budget=12.5%",
};

// The pinned long English text for models with a long context (data/long-text.sha256 holds their
// sha256; scripts/eval.sh checks them): the licence texts Debian ships in package base-files.
const std::vector<std::string> long_text_files = {
    "/usr/share/common-licenses/GPL-3",   "/usr/share/common-licenses/GPL-2",
    "/usr/share/common-licenses/MPL-2.0", "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/common-licenses/GFDL-1.3",
};

// 64 windows x 511 predictions (32,704 predictions): the default panel takes about 40 s on this
// two-core machine with --threads 2 when it is otherwise idle (0.55 s per window) and about 75 s
// while another build runs: within the two-minute target either way.
constexpr std::size_t default_windows = 64;
// The context protocol scores N tokens per window after a long prefill: 8 windows of
// C = 1024 + N = 256 on an 8K model is 2,048 predictions per C.
constexpr std::size_t default_context_windows = 8;
// Low-rank bases are fitted on at most this many positions (a capture of 8K positions of a 30-layer
// model would take about a gigabyte).
constexpr std::size_t max_calibration_tokens = 1024;
// The context and passkey protocols run on large models, where the capture (token by token, about
// 0.1 s a token on SmolLM2 on two busy cores) would cost more than the run: 256 positions.
constexpr std::size_t long_calibration_tokens = 256;

// Counts and sizes are whole numbers >= 0: CLI11 would otherwise wrap "-1" to SIZE_MAX.
const CLI::Validator whole_number(
    [](std::string& value) -> std::string {
      std::size_t n = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc{} || ptr != value.data() + value.size())
        return "must be a whole number >= 0, got '" + value + "'";
      return {};
    },
    "N>=0", "whole number");

struct Args {
  std::string model_path, tokenizer_path;  // empty: the defaults (resolve_model)
  std::vector<std::string> texts;           // empty: the model's default text
  std::string protocol = "decode";
  std::size_t windows = default_windows, window_tokens = 511;
  std::vector<std::size_t> contexts;
  std::size_t score_tokens = 256;
  std::vector<std::size_t> depths{10, 30, 50, 70, 90};
  std::size_t trials = 3;
  std::uint64_t seed = 1234;
  std::vector<std::string> stacks;
  std::string output_dir = "kvc-eval-out", capture_path;
  bool quiet = false, list = false, reference_only = false, windows_given = false;
  std::size_t threads = 2;
  std::size_t generate_tokens = 0;
  std::string model_sha256;  // computed once the model is resolved
};

// What every results file records about the run; `parameters` are the protocol's own settings.
RunInfo run_info(const Args& a, std::size_t windows_available, const std::string& note, nlohmann::json parameters) {
  parameters["stacks"] = a.stacks;
  return RunInfo{a.model_path,     a.tokenizer_path.empty() ? "the GGUF's own" : a.tokenizer_path,
                 fmt::format("{}", fmt::join(a.texts, " + ")), windows_available, note, a.model_sha256,
                 a.threads,        std::move(parameters)};
}

// Progress on one line of stderr: done/total, elapsed and estimated remaining seconds.
auto progress_printer(std::ostream& err, bool quiet, std::string unit) {
  const auto start = std::chrono::steady_clock::now();
  return [&err, quiet, unit = std::move(unit), start](std::size_t done, std::size_t total) {
    if (quiet || done == 0) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    err << fmt::format("\r{} {}/{}  {:.0f}s elapsed, ~{:.0f}s left   ", unit, done, total, elapsed,
                       elapsed / double(done) * double(total - done))
        << (done == total ? "\n" : "") << std::flush;
  };
}

bool needs_calibration(const std::vector<runtime::StackSpec>& specs) {
  for (const runtime::StackSpec& spec : specs)
    for (const runtime::SpecComponent& c : spec.components)
      for (const runtime::ComponentInfo& info : runtime::registered_components())
        if (info.name == c.name && info.family == "lowrank") return true;
  return false;
}

// Checks every stack at every context it will run at (shares resolved), before any work.
std::vector<runtime::StackSpec> check_stacks(const std::vector<std::string>& stacks, const std::vector<std::size_t>& contexts) {
  std::vector<runtime::StackSpec> specs;
  for (const std::size_t c : contexts)
    for (const std::string& s : stacks) {
      specs.push_back(runtime::parse_stack(resolve_context_shares(s, c)));
      runtime::check_stack(specs.back());
    }
  return specs;
}

// The default contexts: those of `wanted` (ascending) up to `limit`, and when the largest does not
// fit, the largest multiple of 64 that does (448 of stories260K's 512, 8128 of an 8K model).
std::vector<std::size_t> fitting(std::vector<std::size_t> wanted, std::size_t limit) {
  const bool all_fit = wanted.back() <= limit;
  std::erase_if(wanted, [&](std::size_t c) { return c > limit; });
  if (!all_fit && limit / 64 * 64 > (wanted.empty() ? 0 : wanted.back())) wanted.push_back(limit / 64 * 64);
  return wanted;
}

bool is_gguf(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

// Fills in the defaults: SmolLM2 when it is found, its tokenizer from the GGUF and the long text;
// a llama2.c checkpoint with tok512.bin and TinyStories from the models folder.
void resolve_model(Args& a, const std::filesystem::path& dir) {
  if (a.model_path.empty()) {
    const std::filesystem::path smollm2 = find_smollm2(dir);
    if (smollm2.empty())
      fail("kvc-eval", "the default model {} is in neither '{}' nor '{}': run scripts/fetch_models.sh (it downloads "
           "it), or pass --model (a GGUF, or stories260K.bin with --tokenizer tok512.bin)",
           smollm2_file, dir.string(), download_cache_dir().string());
    a.model_path = smollm2.string();
  }
  if (!std::filesystem::exists(a.model_path)) fail("kvc-eval", "--model {}: no such file", a.model_path);
  const bool gguf = is_gguf(a.model_path);
  if (gguf && !a.tokenizer_path.empty())
    fail("kvc-eval", "--tokenizer is for llama2.c checkpoints; the GGUF {} carries its own tokenizer", a.model_path);
  if (!gguf && a.tokenizer_path.empty()) {
    a.tokenizer_path = (dir / tokenizer_file).string();
    if (!std::filesystem::exists(a.tokenizer_path))
      fail("kvc-eval", "{} is a llama2.c checkpoint and needs --tokenizer (none given, and {} is missing)",
           a.model_path, a.tokenizer_path);
  }
  if (a.texts.empty()) a.texts = gguf ? long_text_files : std::vector<std::string>{(dir / text_file).string()};
}

std::vector<std::filesystem::path> text_paths(const Args& a) {
  return std::vector<std::filesystem::path>(a.texts.begin(), a.texts.end());
}

int run_decode(const Args& a, const Model& model, const Tokenizer& tokenizer, std::string note, std::ostream& out,
               std::ostream& err) {
  const std::vector<std::size_t> window_context{a.window_tokens};
  std::vector<runtime::StackSpec> specs = check_stacks(a.stacks, window_context);
  Windows corpus = make_windows(encode_corpus(tokenizer, read_texts(text_paths(a))),
                                a.window_tokens, a.windows, tokenizer.bos_id());
  if (a.windows == default_windows && note == "default panel")
    note = fmt::format("default panel and window count ({} of {} windows, chosen to finish in under two "
                       "minutes; --windows 0 scores the whole text)",
                       corpus.count, corpus.available());
  out << fmt::format("kvc-eval: {} stacks, {} of {} windows of {} tokens ({})\n", specs.size(), corpus.count,
                     corpus.available(), a.window_tokens, note.empty() ? "as requested" : note);

  if (!a.capture_path.empty()) {
    const data::KvCapture capture = capture_window(model, corpus[0]);
    data::save_capture(a.capture_path, capture);
    out << fmt::format("captured {} tokens x {} layers to {}\nkey channel outlier ratio (max channel mean |k| / "
                       "median channel's), per layer and KV head:\n",
                       capture.tokens(), capture.shape().layers, a.capture_path);
    for (std::size_t l = 0; l < capture.shape().layers; ++l) {
      out << fmt::format("  layer {}:", l);
      for (std::size_t h = 0; h < capture.shape().kv_heads; ++h) {
        const auto ratios = data::key_channel_ratios(capture, l, h);
        const auto top = std::max_element(ratios.begin(), ratios.end());
        out << fmt::format("  h{} {:.2f} (ch {})", h, *top, top - ratios.begin());
      }
      out << "\n";
    }
  }

  // Low-rank bases are fitted on the last window of the text, which the default run does not
  // score (it is in-sample only when every window is scored).
  std::optional<data::KvCapture> calibration;
  if (needs_calibration(specs))
    calibration = capture_window(model, corpus[corpus.available() - 1].first(
                                            std::min(a.window_tokens, max_calibration_tokens)));
  std::vector<std::unique_ptr<runtime::AnyCache>> caches;
  const Shape shape = model.config().attention_shape();
  for (const runtime::StackSpec& spec : specs)
    caches.push_back(runtime::make_cache(spec, shape, a.window_tokens + 1, calibration ? &*calibration : nullptr));
  const FidelityReport report =
      evaluate(model, corpus, std::move(caches), a.stacks, progress_printer(err, a.quiet, "window"), a.threads);
  const RunInfo info = run_info(a, corpus.available(), note,
                                {{"windows", corpus.count}, {"window_tokens", a.window_tokens}});
  out << format_table(report);
  write_reports(a.output_dir, report, info);
  out << fmt::format("wrote {0}/results.txt, results.json, results.csv, results-layers.csv, results.svg ({1:.1f}s)\n", a.output_dir,
                     report.seconds);
  return 0;
}

int run_context(const Args& a, const Model& model, const Tokenizer& tokenizer, const std::string& note,
                std::ostream& out, std::ostream& err) {
  const std::size_t seq_len = std::size_t(model.config().seq_len);
  if (a.score_tokens == 0 || a.score_tokens >= seq_len)
    fail("kvc-eval", "--score-tokens must be in [1, {}] (below the model's context length), got {}", seq_len - 1,
         a.score_tokens);
  const std::vector<std::size_t> contexts =
      a.contexts.empty() ? fitting({1024, 2048}, seq_len - a.score_tokens) : a.contexts;
  for (const std::size_t c : contexts)
    if (c < 2 || c + a.score_tokens > seq_len)
      fail("kvc-eval", "--context {} with --score-tokens {} needs {} positions; the model has {} (C >= 2, C + N <= {})",
           c, a.score_tokens, c + a.score_tokens, seq_len, seq_len);
  const std::vector<runtime::StackSpec> all_specs = check_stacks(a.stacks, contexts);
  const std::vector<std::int32_t> tokens = encode_corpus(tokenizer, read_texts(text_paths(a)));
  const std::size_t windows = a.windows_given ? a.windows : default_context_windows;
  out << fmt::format("kvc-eval context protocol: {} stacks, contexts {}, {} scored tokens each, up to {} windows ({})\n",
                     a.stacks.size(), fmt::join(contexts, ", "), a.score_tokens, windows == 0 ? "all" : fmt::format("{}", windows),
                     note.empty() ? "as requested" : note);
  std::vector<FidelityReport> reports;
  std::size_t available = 0;
  for (std::size_t ci = 0; ci < contexts.size(); ++ci) {
    const std::size_t c = contexts[ci];
    Windows corpus = make_windows(tokens, c + a.score_tokens, windows, tokenizer.bos_id());
    available = corpus.available();
    const std::span<const runtime::StackSpec> specs(all_specs.data() + ci * a.stacks.size(), a.stacks.size());
    std::optional<data::KvCapture> calibration;
    if (needs_calibration({specs.begin(), specs.end()}))
      calibration = capture_window(
          model, corpus[corpus.available() - 1].first(std::min(c + a.score_tokens, long_calibration_tokens)));
    std::vector<std::unique_ptr<runtime::AnyCache>> caches;
    for (const runtime::StackSpec& spec : specs)
      caches.push_back(runtime::make_cache(spec, model.config().attention_shape(), c + a.score_tokens + 1,
                                  calibration ? &*calibration : nullptr));
    reports.push_back(evaluate(model, corpus, std::move(caches), a.stacks,
                               progress_printer(err, a.quiet, fmt::format("C={} window", c)), a.threads, c));
    out << format_table(reports.back());
  }
  const RunInfo info = run_info(a, available, note,
                                {{"contexts", contexts}, {"score_tokens", a.score_tokens}, {"windows", windows}});
  write_context_reports(a.output_dir, reports, info);
  out << fmt::format("wrote {0}/results.txt, results.json, results.csv, results-layers.csv, results-c<C>.svg\n", a.output_dir);
  return 0;
}

int run_passkey_protocol(const Args& a, const Model& model, const Tokenizer& tokenizer, const std::string& note,
                         std::ostream& out, std::ostream& err) {
  const std::size_t seq_len = std::size_t(model.config().seq_len);
  PasskeyPlan plan;
  plan.contexts = a.contexts.empty() ? fitting({1024, 2048, 4096, 8192}, seq_len - passkey_max_new_tokens)
                                     : a.contexts;
  plan.depths.clear();
  for (const std::size_t d : a.depths) {
    if (d > 100) fail("kvc-eval", "--depths are percentages of the context in [0, 100], got {}", d);
    plan.depths.push_back(double(d) / 100.0);
  }
  if (a.trials == 0) fail("kvc-eval", "--trials must be at least 1");
  plan.trials = a.trials;
  plan.seed = a.seed;
  const std::vector<runtime::StackSpec> all_specs = check_stacks(a.stacks, plan.contexts);
  const std::vector<std::int32_t> filler = encode_corpus(tokenizer, read_texts(text_paths(a)));
  out << fmt::format("kvc-eval passkey protocol: exact cache + {} stacks, contexts {}, depths {}%, {} keys (seed {}) "
                     "({})\n",
                     a.stacks.size(), fmt::join(plan.contexts, ", "), fmt::join(a.depths, "%, "), plan.trials,
                     plan.seed, note.empty() ? "as requested" : note);
  std::optional<data::KvCapture> calibration;
  if (needs_calibration(all_specs))
    calibration = capture_window(model, std::span(filler).first(std::min(
                                            {filler.size(), seq_len, long_calibration_tokens})));
  const CacheFactory make = [&](std::size_t i, std::size_t context) {
    return runtime::make_cache(runtime::parse_stack(resolve_context_shares(a.stacks[i], context)), model.config().attention_shape(),
                      context + passkey_max_new_tokens, calibration ? &*calibration : nullptr);
  };
  const PasskeyReport report = run_passkey(model, tokenizer, filler, plan, a.stacks, make,
                                           progress_printer(err, a.quiet, "trial"), a.threads);
  out << format_passkey_table(report);
  const RunInfo info = run_info(a, 0, note,
                                {{"contexts", plan.contexts},
                                 {"depths", plan.depths},
                                 {"trials", plan.trials},
                                 {"seed", plan.seed},
                                 {"max_new_tokens", passkey_max_new_tokens}});
  write_passkey_reports(a.output_dir, report, info);
  out << fmt::format("wrote {0}/passkey.txt, passkey.json, passkey.csv, passkey.svg, passkey-accuracy.svg ({1:.1f}s)\n", a.output_dir,
                     report.seconds);
  return 0;
}

// What a parameter's 0 means: the help says when 0 is special ("0 = ..."); otherwise 0 is refused
// below the minimum, is the "not given" default, or is taken literally.
std::string zero_meaning(const runtime::ParamInfo& p) {
  if (p.help.find("0 =") != std::string::npos) return "";
  if (p.min > 0) return fmt::format("; 0 is refused (at least {:g})", p.min);
  if (p.default_value == 0) return "; 0, the default, means not given";
  return fmt::format("; 0 is taken literally ({} = 0)", p.key);
}

// --list: every component, then every parameter with its default, range and what 0 means.
std::string describe_parameters() {
  std::string s = "Stack components (join with '+', parameters as name:key=value,key=value):\n" + runtime::describe_components() +
                  "\nParameters (default; range; meaning):\n";
  for (const runtime::ComponentInfo& c : runtime::registered_components()) {
    s += fmt::format("  {} ({}){}\n", c.name, c.family, c.params.empty() ? ": no parameters" : "");
    for (const runtime::ParamInfo& p : c.params)
      s += fmt::format("    {:<11} default {:<5g} {} in [{:g}, {:g}]; {}{}\n", p.key, p.default_value,
                       p.integer ? "integer" : "real", p.min, p.max, p.help, zero_meaning(p));
  }
  return s + "\nToken counts (budget, sinks, recent of streaming, window of pyramid) may be shares of the context, "
             "e.g. budget=12.5%.\n";
}

// --generate: a greedy story from BOS through the exact cache, then through each --stack's cache
// (shares of the context are shares of `steps`), each followed by where it first leaves the exact one.
int run_generate(const Args& a, bool stacks_given, const Model& model, const Tokenizer& tokenizer, std::ostream& out) {
  const std::size_t steps = std::min(a.generate_tokens, std::size_t(model.config().seq_len));
  Transformer transformer(model);
  Sampler greedy;
  PlainCache exact_cache(model.config().attention_shape());
  const std::vector<std::int32_t> exact = generate(transformer, exact_cache, tokenizer, "", steps, greedy);
  if (!stacks_given) {
    out << tokenizer.decode(exact) << "\n";
    return 0;
  }
  out << fmt::format("exact cache ({} tokens):\n{}\n", exact.size(), tokenizer.decode(exact));
  std::vector<runtime::StackSpec> specs;
  for (const std::string& s : a.stacks) specs.push_back(runtime::parse_stack(resolve_context_shares(s, steps)));
  std::optional<data::KvCapture> calibration;
  if (needs_calibration(specs)) {
    const std::vector<std::int32_t> text = encode_corpus(tokenizer, read_texts(text_paths(a)));
    calibration = capture_window(model, std::span(text).first(std::min({text.size(), steps, max_calibration_tokens})));
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::unique_ptr<runtime::AnyCache> cache =
        runtime::make_cache(specs[i], model.config().attention_shape(), steps + 1, calibration ? &*calibration : nullptr);
    const std::vector<std::int32_t> story = generate(transformer, *cache, tokenizer, "", steps, greedy);
    const auto [left, right] = std::mismatch(exact.begin(), exact.end(), story.begin(), story.end());
    const std::string verdict = left == exact.end() && right == story.end()
                                    ? "the same tokens as the exact cache"
                                    : fmt::format("leaves the exact story at token {}", left - exact.begin());
    out << fmt::format("\n{} ({} tokens, {}):\n{}\n", a.stacks[i], story.size(), verdict, tokenizer.decode(story));
  }
  return 0;
}

}  // namespace

int report_failures(std::ostream& err, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    err << "kvc-eval: " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    err << "kvc-eval: out of memory (std::bad_alloc); try fewer windows, stacks or a shorter context\n";
  } catch (const std::exception& e) {
    err << "kvc-eval: unexpected error: " << e.what() << "\n";
  }
  return 1;
}

int run_eval_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"kvc-eval: fidelity of KV-cache compression stacks on a real model, against the exact cache.\n"
               "Protocols: decode (every stack in lockstep with the exact cache, token by token, teacher forced),\n"
               "context (prefill C tokens, compress, score the next N) and passkey (retrieve a 5-digit key hidden\n"
               "at a depth of C tokens of text). See docs/evaluation.md."};
  const std::filesystem::path dir = models_dir();
  Args a;
  app.add_option("--model", a.model_path, "a GGUF (tokenizer included) or a llama2.c checkpoint (default: " +
                                              std::string(smollm2_file) + " from $KVC_MODELS_DIR or the download "
                                              "cache; stories260K: --model $KVC_MODELS_DIR/stories260K.bin)");
  app.add_option("--tokenizer", a.tokenizer_path, "llama2.c checkpoints only: tokenizer.bin ($KVC_MODELS_DIR/tok512.bin)");
  app.add_option("--text", a.texts, "evaluation text, repeatable: the files are joined as paragraphs (default: the "
                                    "Debian licence texts for a GGUF, $KVC_MODELS_DIR/tinystories_val.txt for a "
                                    "llama2.c checkpoint; at most 256 MiB)");
  app.add_option("--protocol", a.protocol, "decode, context or passkey")->capture_default_str();
  const auto* windows_option =
      app.add_option("--windows", a.windows, "windows of the text to score; 0 = all (decode: 64, context: 8)")
          ->check(whole_number);
  app.add_option("--window-tokens", a.window_tokens,
                 "decode: predictions per window (BOS + this many tokens <= the model's context length)")
      ->capture_default_str()
      ->check(whole_number);
  app.add_option("--context", a.contexts, "context and passkey: prompt lengths C, BOS included, comma-separated "
                                          "(context: 1024,2048; passkey: 1024,2048,4096,8192; those that fit "
                                          "the model, plus the largest multiple of 64 that does when the last "
                                          "does not)")
      ->delimiter(',')
      ->check(whole_number);
  app.add_option("--score-tokens", a.score_tokens, "context: tokens N scored after the context")
      ->capture_default_str()
      ->check(whole_number);
  app.add_option("--depths", a.depths, "passkey: depths of the key in percent of C, comma-separated")
      ->delimiter(',')
      ->capture_default_str()
      ->check(whole_number);
  app.add_option("--trials", a.trials, "passkey: keys per (C, depth) cell")->capture_default_str()->check(whole_number);
  app.add_option("--seed", a.seed, "passkey: seed of the keys")->capture_default_str()->check(whole_number);
  app.add_option("--stack", a.stacks,
                 "a policy stack, repeatable, e.g. 'h2o:budget=64+int4:group=8' (--list shows the components); "
                 "token counts may be shares of the context, e.g. 'h2o:budget=12.5%'; default: a panel of every "
                 "technique");
  app.add_option("--output-dir,-o", a.output_dir, "folder for the reports")->capture_default_str();
  app.add_option("--capture", a.capture_path, "decode: also dump the K/V/Q of the first window (exact cache) to this "
                                              "file (docs/capture-format.md) and print key-channel outlier ratios");
  app.add_option("--generate", a.generate_tokens,
                 "print a greedy story of this many tokens from BOS (exact cache) and, for each --stack, the story "
                 "generated through that compressed cache, then exit; 0 = no generation")
      ->check(whole_number);
  app.add_flag("--reference", a.reference_only, "decode: score the text with the exact cache only (no stacks); "
                                                "with --windows 0 this reproduces the model README's perplexity 4.947");
  app.add_flag("--list", a.list, "list the stack components and every parameter (default, range, what 0 means), then exit");
  app.add_option("--threads", a.threads, "threads (>= 1); stacks are shared out, results do not depend on it")
      ->capture_default_str()
      ->check(whole_number);
  app.add_flag("--quiet,-q", a.quiet, "no progress on stderr");
  app.footer("Stack components:\n" + runtime::describe_components() + "\nModel files come from $KVC_MODELS_DIR, else " +
             dir.string() + ".");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  a.windows_given = windows_option->count() > 0;

  return report_failures(err, [&] {
    if (a.list) {
      out << describe_parameters();
      return 0;
    }
    if (a.threads == 0) fail("kvc-eval", "--threads must be at least 1");
    const Protocol protocol = parse_protocol(a.protocol);
    std::string note;
    if (a.reference_only && protocol != Protocol::decode)
      fail("kvc-eval", "--reference belongs to the decode protocol");
    if (a.reference_only && !a.stacks.empty()) fail("kvc-eval", "--reference scores no stacks; drop --stack or --reference");
    const bool stacks_given = !a.stacks.empty();
    if (a.stacks.empty() && !a.reference_only && a.generate_tokens == 0) {
      a.stacks = protocol == Protocol::decode ? default_panel : context_panel;
      note = "default panel";
    }
    // Spell errors and unknown components fail before the model is loaded.
    for (const std::string& s : a.stacks) runtime::check_stack(runtime::parse_stack(resolve_context_shares(s, 1024)));
    resolve_model(a, dir);
    const bool gguf = a.tokenizer_path.empty();
    std::optional<GgufFile> file;
    if (gguf) file = GgufFile::open(a.model_path);
    // The GGUF gives its tokenizer before the model takes the file; tok512.bin needs the vocabulary size.
    std::optional<Tokenizer> gguf_tokenizer;
    if (gguf) gguf_tokenizer = tokenizer_from_gguf(*file);
    Model model = gguf ? Model::from_gguf(std::move(*file)) : Model::load(a.model_path);
    const Tokenizer tokenizer = gguf ? std::move(*gguf_tokenizer) : Tokenizer::load(a.tokenizer_path, model.config().vocab_size);
    if (tokenizer.vocab_size() != model.config().vocab_size)
      fail("kvc-eval", "the tokenizer has {} tokens but the model {} has {}", tokenizer.vocab_size(), a.model_path,
           model.config().vocab_size);
    if (tokenizer.bos_id() < 0)
      fail("kvc-eval", "the tokenizer of {} has no BOS token, which every protocol puts at position 0", a.model_path);
    model.set_token_tags(token_tags(tokenizer));  // separators for SepLLM
    const std::size_t seq_len = std::size_t(model.config().seq_len);
    if (a.generate_tokens > 0) return run_generate(a, stacks_given, model, tokenizer, out);
    a.model_sha256 = file_sha256(a.model_path);
    switch (protocol) {
      case Protocol::decode:
        if (a.window_tokens == 0 || a.window_tokens + 1 > seq_len)
          fail("kvc-eval", "--window-tokens must be in [1, {}] (the model's context length minus BOS), got {}",
               seq_len - 1, a.window_tokens);
        return run_decode(a, model, tokenizer, note, out, err);
      case Protocol::context: return run_context(a, model, tokenizer, note, out, err);
      case Protocol::passkey: return run_passkey_protocol(a, model, tokenizer, note, out, err);
    }
    return 1;
  });
}

}  // namespace kvc::engine
