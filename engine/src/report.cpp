#include "kvc_engine/report.hpp"

#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "kvc/version.hpp"
#include "kvc_engine/build_info.hpp"
#include "kvc_engine/svg_plot.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace kvc::engine {
namespace {

double mean(const std::vector<double>& v) {
  double s = 0;
  for (const double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

}  // namespace

std::string format_table(const FidelityReport& r) {
  std::size_t width = 5;
  for (const auto& s : r.stacks) width = std::max(width, s.label.size());
  std::string out =
      r.context == 0
          ? fmt::format("{} windows x {} predictions ({} in all)", r.windows, r.window_tokens, r.predictions)
          : fmt::format("context C = {} tokens (BOS included), then {} scored; {} windows ({} predictions in all)",
                        r.context, r.window_tokens - r.context, r.windows, r.predictions);
  out += fmt::format("; reference perplexity {:.4f} (mean NLL {:.4f}; by position {}: {:.3f})\n",
                     r.reference_perplexity, r.reference_nll, fmt::join(r.position_buckets, ", "),
                     fmt::join(r.reference_perplexity_by_position, ", "));
  out += fmt::format("{:<{}}  {:>6}  {:>9}  {:>6}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}  {:>8}  {:>6}\n", "stack", width,
                     "ratio", "bytes/tok", "kept", "ppl", "dppl%", "KL", "top1", "mass", "attn_err", "sec");
  for (const auto& s : r.stacks)
    out += fmt::format("{:<{}}  {:>6.2f}  {:>9.1f}  {:>6.3f}  {:>8.4f}  {:>+8.3f}  {:>8.5f}  {:>6.4f}  {:>6.4f}  {:>8.5f}  {:>6.1f}\n",
                       s.label, width, s.compression_ratio, s.bytes_per_token, s.tokens_kept, s.perplexity,
                       100.0 * s.perplexity_change, s.mean_kl, s.top1_agreement, s.kept_attention_mass,
                       mean(s.attention_error), s.seconds);
  out += "ratio: f16 full-cache bytes / real bytes at window end; bytes/tok: real bytes per held token per KV head;\n"
         "kept: tokens held / tokens seen; KL: mean KL(full || stack) in nats; mass: share of the exact attention on\n"
         "the tokens the stack held; attn_err: ||out - exact|| / ||exact|| of attention outputs, mean over layers.\n";
  return out;
}

nlohmann::json run_header(const RunInfo& info) {
  nlohmann::json j;
  j["schema_version"] = results_schema_version;
  j["kvc_version"] = fmt::format("{}.{}.{}", kvc::version.major, kvc::version.minor, kvc::version.patch);
  j["git_commit"] = git_commit();
  j["isa"] = kernels::active_isa_name();
  j["threads"] = info.threads;
  j["model"] = info.model;
  j["model_sha256"] = info.model_sha256;
  j["tokenizer"] = info.tokenizer;
  j["text"] = info.text;
  j["note"] = info.note;
  j["parameters"] = info.parameters;
  return j;
}

nlohmann::json to_json(const FidelityReport& r, const RunInfo& info) {
  nlohmann::json j = run_header(info);
  j["protocol"] = r.context == 0 ? "decode" : "context";
  j["windows"] = r.windows;
  j["windows_available"] = info.windows_available;
  j["window_tokens"] = r.window_tokens;
  j["context"] = r.context;
  j["score_tokens"] = r.window_tokens - r.context;
  j["predictions"] = r.predictions;
  j["reference"] = {{"nll", r.reference_nll},
                    {"perplexity", r.reference_perplexity},
                    {"perplexity_by_position", r.reference_perplexity_by_position},
                    {"position_buckets", r.position_buckets}};
  j["seconds"] = r.seconds;
  j["stacks"] = nlohmann::json::array();
  for (const auto& s : r.stacks)
    j["stacks"].push_back({{"stack", s.label},
                           {"compression_ratio", s.compression_ratio},
                           {"bytes_per_token", s.bytes_per_token},
                           {"tokens_kept", s.tokens_kept},
                           {"perplexity", s.perplexity},
                           {"perplexity_change", s.perplexity_change},
                           {"mean_nll", s.mean_nll},
                           {"mean_kl", s.mean_kl},
                           {"top1_agreement", s.top1_agreement},
                           {"kept_attention_mass", s.kept_attention_mass},
                           {"attention_error", s.attention_error},
                           {"seconds", s.seconds}});
  return j;
}

std::string to_csv(const FidelityReport& r, bool header) {
  const std::string prefix = fmt::format("{},{},{},", r.context == 0 ? "decode" : "context", r.context,
                                         r.window_tokens - r.context);
  std::string out = header ? std::string(csv_columns) + "\n" : "";
  for (const auto& s : r.stacks)
    out += fmt::format("{}{},{:.6g},{:.6g},{:.6g},{:.8g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.3f}\n", prefix,
                       csv_field(s.label), s.compression_ratio, s.bytes_per_token, s.tokens_kept, s.perplexity,
                       s.perplexity_change, s.mean_kl, s.top1_agreement, s.kept_attention_mass,
                       mean(s.attention_error), s.seconds);
  return out;
}

std::string to_layer_csv(const FidelityReport& r, bool header) {
  std::string out = header ? std::string(layer_csv_columns) + "\n" : "";
  for (const auto& s : r.stacks)
    for (std::size_t l = 0; l < s.attention_error.size(); ++l)
      out += fmt::format("{},{},{},attention_error,{:.6g}\n", r.context, csv_field(s.label), l, s.attention_error[l]);
  return out;
}

std::string to_svg(const FidelityReport& r) {
  std::vector<PlotPoint> points;
  std::vector<double> xs, ys;
  for (const auto& s : r.stacks) {
    points.push_back({s.label, s.compression_ratio, 100.0 * s.perplexity_change,
                      fmt::format("{}: ratio {:.2f}, perplexity {:+.3f}%, KL {:.5f}", s.label, s.compression_ratio,
                                  100.0 * s.perplexity_change, s.mean_kl)});
    xs.push_back(s.compression_ratio);
    ys.push_back(100.0 * s.perplexity_change);
  }
  // Built whole (designated initializers): assigning the strings afterwards trips a false
  // -Wrestrict of g++ 12 at -O3.
  const ScatterSpec spec{
      .title = fmt::format("Compression vs perplexity change ({}{} window{}, reference perplexity {:.3f})",
                           r.context == 0 ? "" : fmt::format("C = {}, N = {}, ", r.context, r.window_tokens - r.context),
                           r.windows, r.windows == 1 ? "" : "s", r.reference_perplexity),
      .x_label = "compression ratio vs the f16 full cache (log scale; right is smaller)",
      .y_label = "perplexity change vs the exact cache (%, log scale; lower is better)",
      .x = log_axis(xs, 1e-3),
      // Changes below 0.01 % are noise at these prediction counts: they sit on the floor (hollow).
      .y = log_axis(ys, 0.01),
      .x_unit = "x",
      .y_unit = "%",
      .higher_y_better = false};
  return scatter_svg(spec, points);
}

void write_reports(const std::filesystem::path& dir, const FidelityReport& report, const RunInfo& info) {
  create_report_dir(dir);
  write_report_file(dir / "results.txt", format_table(report));
  write_report_file(dir / "results.json", to_json(report, info).dump(2) + "\n");
  write_report_file(dir / "results.csv", to_csv(report));
  write_report_file(dir / "results-layers.csv", to_layer_csv(report));
  write_report_file(dir / "results.svg", to_svg(report));
}

void write_context_reports(const std::filesystem::path& dir, const std::vector<FidelityReport>& reports,
                           const RunInfo& info) {
  create_report_dir(dir);
  std::string table, csv, layers;
  nlohmann::json j = run_header(info);
  j["protocol"] = "context";
  j["contexts"] = nlohmann::json::array();
  j["runs"] = nlohmann::json::array();
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const FidelityReport& r = reports[i];
    table += format_table(r);
    csv += to_csv(r, i == 0);
    layers += to_layer_csv(r, i == 0);
    j["contexts"].push_back(r.context);
    j["score_tokens"] = r.window_tokens - r.context;
    j["runs"].push_back(to_json(r, info));
    write_report_file(dir / fmt::format("results-c{}.svg", r.context), to_svg(r));
  }
  write_report_file(dir / "results.txt", table);
  write_report_file(dir / "results.json", j.dump(2) + "\n");
  write_report_file(dir / "results.csv", csv);
  write_report_file(dir / "results-layers.csv", layers);
}

void create_report_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("kvc::engine::write_reports", "cannot create directory {}: {}", dir.string(), ec.message());
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (const char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void write_report_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("kvc::engine::write_reports", "cannot create {}", path.string());
  out << text;
  if (!out.flush()) fail("kvc::engine::write_reports", "write to {} failed", path.string());
}

}  // namespace kvc::engine
