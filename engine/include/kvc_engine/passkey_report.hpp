#pragma once
// Writing a PasskeyReport: a text table (accuracy per stack and (C, depth)), JSON, CSV, an SVG
// heat map (stack rows x depth columns, one panel per context) and an SVG of compression ratio
// against accuracy (one point per stack, Pareto front drawn).
#include "kvc_engine/passkey.hpp"
#include "kvc_engine/report.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace kvc::engine {

[[nodiscard]] std::string format_passkey_table(const PasskeyReport& report);
[[nodiscard]] nlohmann::json passkey_to_json(const PasskeyReport& report, const RunInfo& info);
// One row per (stack, context, depth), columns passkey_csv_columns.
inline constexpr std::string_view passkey_csv_columns =
    "stack,context,depth,placed_depth,trials,correct,accuracy,compression_ratio";
[[nodiscard]] std::string passkey_to_csv(const PasskeyReport& report);
[[nodiscard]] std::string passkey_to_svg(const PasskeyReport& report);
// Per stack, the mean compression ratio over the cells against the share of keys retrieved.
[[nodiscard]] std::string passkey_accuracy_svg(const PasskeyReport& report);

// Writes <dir>/passkey.{txt,json,csv,svg} and passkey-accuracy.svg; creates dir. Throws kvc::Error on I/O failure.
void write_passkey_reports(const std::filesystem::path& dir, const PasskeyReport& report, const RunInfo& info);

}  // namespace kvc::engine
