#include "kvc_engine/report.hpp"

#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "kvc/version.hpp"
#include "kvc_engine/build_info.hpp"

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
  // Compression ratio on a log2 axis (it spans 0.5x to 100x), perplexity change in percent.
  constexpr double width = 760, height = 480, left = 70, right = 220, top = 40, bottom = 60;
  double x_lo = 0.5, x_hi = 2.0, y_lo = 0.0, y_hi = 1.0;
  for (const auto& s : r.stacks) {
    x_lo = std::min(x_lo, s.compression_ratio);
    x_hi = std::max(x_hi, s.compression_ratio);
    y_lo = std::min(y_lo, 100.0 * s.perplexity_change);
    y_hi = std::max(y_hi, 100.0 * s.perplexity_change);
  }
  const double lx_lo = std::floor(std::log2(std::max(x_lo, 1e-3))), lx_hi = std::ceil(std::log2(x_hi) + 0.01);
  const double pad = 0.08 * (y_hi - y_lo);
  y_lo -= pad;
  y_hi += pad;
  const double pw = width - left - right, ph = height - top - bottom;
  const auto px = [&](double ratio) { return left + pw * (std::log2(std::max(ratio, 1e-3)) - lx_lo) / (lx_hi - lx_lo); };
  const auto py = [&](double change) { return top + ph * (1.0 - (100.0 * change - y_lo) / (y_hi - y_lo)); };

  std::string out = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\">Compression vs perplexity change ({3}{4} windows, "
      "reference ppl {5:.3f})</text>\n",
      width, height, left,
      r.context == 0 ? "" : fmt::format("C = {}, N = {}, ", r.context, r.window_tokens - r.context), r.windows,
      r.reference_perplexity);
  // Axes, grid and ticks.
  out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top,
                     pw, ph);
  for (double e = lx_lo; e <= lx_hi + 1e-9; e += 1.0) {
    const double x = px(std::exp2(e));
    out += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>\n"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:g}x</text>\n",
                       x, top, top + ph, top + ph + 16, std::exp2(e));
  }
  const double step = std::pow(10.0, std::floor(std::log10(std::max(y_hi - y_lo, 1e-6) / 2.0)));
  for (double y = std::ceil(y_lo / step) * step; y <= y_hi; y += step) {
    const double yy = py(y / 100.0);
    out += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\"/>\n"
                       "<text x=\"{4}\" y=\"{5:.1f}\" text-anchor=\"end\">{6:g}%</text>\n",
                       left, yy, left + pw, std::fabs(y) < step / 2 ? "#888" : "#eee", left - 6, yy + 4,
                       std::fabs(y) < step / 2 ? 0.0 : y);
  }
  out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">compression ratio vs f16 full cache "
                     "(log scale)</text>\n",
                     left + pw / 2, height - 18);
  out += fmt::format("<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">perplexity change "
                     "(%)</text>\n",
                     top + ph / 2);
  // One labeled point per stack.
  out += "<g class=\"points\">\n";
  for (const auto& s : r.stacks) {
    const double x = px(s.compression_ratio), y = py(s.perplexity_change);
    out += fmt::format("<circle class=\"point\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#1f77b4\">"
                       "<title>{}: ratio {:.2f}, perplexity {:+.2f}%, KL {:.4f}</title></circle>\n",
                       x, y, xml_escape(s.label), s.compression_ratio, 100.0 * s.perplexity_change, s.mean_kl);
    out += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", x + 6, y - 6, xml_escape(s.label));
  }
  out += "</g>\n</svg>\n";
  return out;
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

std::string xml_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
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
