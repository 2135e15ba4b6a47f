#pragma once
// Writing a FidelityReport (decode and context protocols): an aligned text table, JSON, CSVs and
// an SVG plot of compression ratio against perplexity change (both log scale, Pareto front drawn).
#include "kvc_engine/fidelity.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

// The version of the results files' layout (docs/evaluation.md, "Results schema"): bumped when a
// field or column is renamed, removed or changes meaning; adding a field does not bump it.
inline constexpr int results_schema_version = 1;

// What the run was, recorded alongside the numbers.
struct RunInfo {
  std::string model, tokenizer, text;
  std::size_t windows_available = 0;
  std::string note;  // e.g. why this many windows
  std::string model_sha256;  // of the model file
  std::size_t threads = 1;
  nlohmann::json parameters = nlohmann::json::object();  // the protocol's settings, as given or defaulted
};

// The provenance every results JSON opens with: schema_version, kvc_version ("0.1.0"), git_commit,
// isa (the kernels the caches ran), threads, model, model_sha256, tokenizer, text, note, parameters.
[[nodiscard]] nlohmann::json run_header(const RunInfo& info);

[[nodiscard]] std::string format_table(const FidelityReport& report);
// Records the protocol ("decode" when report.context is 0, else "context"), C and N.
[[nodiscard]] nlohmann::json to_json(const FidelityReport& report, const RunInfo& info);
// One fixed set of columns for both protocols whatever the model (csv_columns): decode rows have
// context 0 and score_tokens = window_tokens. The per-layer values are in to_layer_csv.
inline constexpr std::string_view csv_columns =
    "protocol,context,score_tokens,stack,compression_ratio,bytes_per_token,tokens_kept,perplexity,"
    "perplexity_change,mean_kl,top1_agreement,kept_attention_mass,attention_error_mean,seconds";
[[nodiscard]] std::string to_csv(const FidelityReport& report, bool header = true);
// Long format, one row per (stack, layer, metric): context,stack,layer,metric,value
// (metric attention_error for now; context 0 for decode).
inline constexpr std::string_view layer_csv_columns = "context,stack,layer,metric,value";
[[nodiscard]] std::string to_layer_csv(const FidelityReport& report, bool header = true);
[[nodiscard]] std::string to_svg(const FidelityReport& report);

// Decode protocol: writes <dir>/results.{txt,json,csv,svg} and results-layers.csv; creates dir. Throws kvc::Error on I/O failure.
void write_reports(const std::filesystem::path& dir, const FidelityReport& report, const RunInfo& info);
// Context protocol, one report per context C: results.{txt,json,csv} and results-layers.csv hold
// every C, results-c<C>.svg plots each.
void write_context_reports(const std::filesystem::path& dir, const std::vector<FidelityReport>& reports,
                           const RunInfo& info);

// Shared by the report writers.
[[nodiscard]] std::string csv_field(std::string_view s);
void create_report_dir(const std::filesystem::path& dir);
void write_report_file(const std::filesystem::path& path, const std::string& text);

}  // namespace kvc::engine
