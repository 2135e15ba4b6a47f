#pragma once
// Writing a FidelityReport: an aligned text table, JSON, CSV and an SVG plot of compression
// ratio against perplexity change.
#include "kvc_engine/fidelity.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace kvc::engine {

// What the run was, recorded alongside the numbers.
struct RunInfo {
  std::string model, tokenizer, text;
  std::size_t windows_available = 0;
  std::string note;  // e.g. why this many windows
};

[[nodiscard]] std::string format_table(const FidelityReport& report);
[[nodiscard]] nlohmann::json to_json(const FidelityReport& report, const RunInfo& info);
[[nodiscard]] std::string to_csv(const FidelityReport& report);
[[nodiscard]] std::string to_svg(const FidelityReport& report);

// Writes <dir>/results.{txt,json,csv,svg}; creates dir. Throws kvc::Error on I/O failure.
void write_reports(const std::filesystem::path& dir, const FidelityReport& report, const RunInfo& info);

}  // namespace kvc::engine
