#pragma once
// Writing a FidelityReport (decode and context protocols): an aligned text table, JSON, CSV and
// an SVG plot of compression ratio against perplexity change.
#include "kvc_engine/fidelity.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

// What the run was, recorded alongside the numbers.
struct RunInfo {
  std::string model, tokenizer, text;
  std::size_t windows_available = 0;
  std::string note;  // e.g. why this many windows
};

[[nodiscard]] std::string format_table(const FidelityReport& report);
// Records the protocol ("decode" when report.context is 0, else "context"), C and N.
[[nodiscard]] nlohmann::json to_json(const FidelityReport& report, const RunInfo& info);
// One fixed set of columns whatever the model: the per-layer attention errors are in the JSON,
// the CSV has their mean. The context protocol's rows start with context,score_tokens.
[[nodiscard]] std::string to_csv(const FidelityReport& report, bool header = true);
[[nodiscard]] std::string to_svg(const FidelityReport& report);

// Decode protocol: writes <dir>/results.{txt,json,csv,svg}; creates dir. Throws kvc::Error on I/O failure.
void write_reports(const std::filesystem::path& dir, const FidelityReport& report, const RunInfo& info);
// Context protocol, one report per context C: results.{txt,json,csv} hold every C, results-c<C>.svg
// plots each.
void write_context_reports(const std::filesystem::path& dir, const std::vector<FidelityReport>& reports,
                           const RunInfo& info);

// Shared by the report writers.
[[nodiscard]] std::string xml_escape(std::string_view s);
[[nodiscard]] std::string csv_field(std::string_view s);
void create_report_dir(const std::filesystem::path& dir);
void write_report_file(const std::filesystem::path& path, const std::string& text);

}  // namespace kvc::engine
