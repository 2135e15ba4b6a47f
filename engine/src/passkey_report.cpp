#include "kvc_engine/passkey_report.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/svg_plot.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

namespace kvc::engine {
namespace {

double accuracy(const PasskeyCell& c) { return c.trials ? double(c.correct) / double(c.trials) : 0.0; }

// Red (0) through yellow (0.5) to green (1), the usual diverging scale for a success rate.
std::string colour(double a) {
  constexpr int lo[3] = {215, 48, 39}, mid[3] = {254, 224, 139}, hi[3] = {26, 152, 80};
  const int* from = a < 0.5 ? lo : mid;
  const int* to = a < 0.5 ? mid : hi;
  const double t = a < 0.5 ? a / 0.5 : (a - 0.5) / 0.5;
  int rgb[3];
  for (int i = 0; i < 3; ++i) rgb[i] = int(std::lround(from[i] + t * (to[i] - from[i])));
  return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
}

}  // namespace

std::string format_passkey_table(const PasskeyReport& r) {
  std::size_t width = 5;
  for (const auto& s : r.stacks) width = std::max(width, s.label.size());
  std::string out = fmt::format("passkey retrieval: {} keys per cell (seed {}: {}), accuracy per context and depth\n",
                                r.keys.size(), r.seed, fmt::join(r.keys, ", "));
  for (std::size_t c = 0; c < r.contexts.size(); ++c) {
    out += fmt::format("C = {}\n{:<{}}", r.contexts[c], "stack", width);
    for (const double d : r.depths) out += fmt::format("  {:>5.0f}%", 100.0 * d);
    out += "    mean\n";
    for (const auto& s : r.stacks) {
      out += fmt::format("{:<{}}", s.label, width);
      double sum = 0;
      for (std::size_t d = 0; d < r.depths.size(); ++d) {
        const double a = accuracy(s.cells[c * r.depths.size() + d]);
        sum += a;
        out += fmt::format("  {:>6.2f}", a);
      }
      out += fmt::format("  {:>6.2f}\n", r.depths.empty() ? 0.0 : sum / double(r.depths.size()));
    }
  }
  return out;
}

nlohmann::json passkey_to_json(const PasskeyReport& r, const RunInfo& info) {
  nlohmann::json j = run_header(info);
  j["protocol"] = "passkey";
  j["seed"] = r.seed;
  j["keys"] = r.keys;
  j["contexts"] = r.contexts;
  j["depths"] = r.depths;
  j["max_new_tokens"] = passkey_max_new_tokens;
  j["seconds"] = r.seconds;
  j["stacks"] = nlohmann::json::array();
  for (const auto& s : r.stacks) {
    nlohmann::json cells = nlohmann::json::array();
    for (const auto& c : s.cells)
      cells.push_back({{"context", c.context},
                       {"depth", c.depth},
                       {"placed_depth", c.placed_depth},
                       {"trials", c.trials},
                       {"correct", c.correct},
                       {"accuracy", accuracy(c)},
                       {"compression_ratio", c.compression_ratio},
                       {"answers", c.answers}});
    j["stacks"].push_back({{"stack", s.label}, {"cells", cells}});
  }
  return j;
}

std::string passkey_to_csv(const PasskeyReport& r) {
  std::string out = std::string(passkey_csv_columns) + "\n";
  for (const auto& s : r.stacks) {
    const std::string label = csv_field(s.label);
    for (const auto& c : s.cells)
      out += fmt::format("{},{},{:.6g},{:.6g},{},{},{:.6g},{:.6g}\n", label, c.context, c.depth, c.placed_depth,
                         c.trials, c.correct, accuracy(c), c.compression_ratio);
  }
  return out;
}

std::string passkey_to_svg(const PasskeyReport& r) {
  // Layout in pixels: labels at up to 7.5 px per character of a 12 px sans-serif font.
  std::size_t longest = 5;
  for (const auto& s : r.stacks) longest = std::max(longest, s.label.size());
  const double cell_w = 56, cell_h = 22, left = 24 + 7.5 * double(longest), top = 64, panel_gap = 46;
  const double grid_w = cell_w * double(r.depths.size());
  const double panel_h = 20 + cell_h * double(r.stacks.size());
  const double width = std::max(left + grid_w + 24, 500.0);
  const double height = top + double(r.contexts.size()) * (panel_h + panel_gap);
  std::string out =
      svg_open(width, height, fmt::format("Passkey retrieval accuracy ({} key{} per cell, seed {})", r.keys.size(),
                                          r.keys.size() == 1 ? "" : "s", r.seed));
  // Colour scale: 0% .. 100% in five steps.
  out += "<g class=\"legend\">\n";
  for (int i = 0; i <= 4; ++i)
    out += fmt::format("<rect x=\"{0}\" y=\"32\" width=\"30\" height=\"12\" fill=\"{1}\"/>"
                       "<text x=\"{2}\" y=\"56\" text-anchor=\"middle\" font-size=\"10\">{3}%</text>\n",
                       12 + 30 * i, colour(i / 4.0), 27 + 30 * i, 25 * i);
  out += "</g>\n";
  for (std::size_t c = 0; c < r.contexts.size(); ++c) {
    const double y0 = top + double(c) * (panel_h + panel_gap) + 16;
    out += fmt::format("<text class=\"panel\" x=\"12\" y=\"{:.1f}\" font-weight=\"bold\">C = {} tokens</text>\n",
                       y0 - 2, r.contexts[c]);
    for (std::size_t d = 0; d < r.depths.size(); ++d)
      out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}%</text>\n",
                         left + cell_w * (double(d) + 0.5), y0 + 14, 100.0 * r.depths[d]);
    for (std::size_t s = 0; s < r.stacks.size(); ++s) {
      const double y = y0 + 20 + cell_h * double(s);
      out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 6, y + 15,
                         xml_escape(r.stacks[s].label));
      for (std::size_t d = 0; d < r.depths.size(); ++d) {
        const PasskeyCell& cell = r.stacks[s].cells[c * r.depths.size() + d];
        const double a = accuracy(cell), x = left + cell_w * double(d);
        out += fmt::format("<rect class=\"cell\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\" "
                           "stroke=\"white\"><title>{}, C {}, depth {:g}%: {}/{}</title></rect>"
                           "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}/{}</text>\n",
                           x, y, cell_w, cell_h, colour(a), xml_escape(r.stacks[s].label), cell.context,
                           100.0 * cell.depth, cell.correct, cell.trials, x + cell_w / 2, y + 15, cell.correct,
                           cell.trials);
      }
    }
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\">depth of the key "
                       "in the prompt</text>\n",
                       left + grid_w / 2, y0 + 20 + cell_h * double(r.stacks.size()) + 14);
  }
  return out + svg_close();
}

std::string passkey_accuracy_svg(const PasskeyReport& r) {
  std::vector<PlotPoint> points;
  std::vector<double> xs;
  for (const auto& s : r.stacks) {
    double ratio = 0, correct = 0, trials = 0;
    for (const PasskeyCell& c : s.cells) {
      ratio += c.compression_ratio / double(s.cells.size());
      correct += double(c.correct);
      trials += double(c.trials);
    }
    points.push_back({s.label, ratio, trials > 0 ? 100.0 * correct / trials : 0.0,
                      fmt::format("{}: ratio {:.2f}, {:g}/{:g} keys retrieved", s.label, ratio, correct, trials)});
    xs.push_back(ratio);
  }
  const ScatterSpec spec{.title = fmt::format("Compression vs passkey accuracy (C = {}; {} key{} per cell, seed {})",
                                              fmt::join(r.contexts, ", "), r.keys.size(),
                                              r.keys.size() == 1 ? "" : "s", r.seed),
                         .x_label = "compression ratio vs the f16 full cache (log scale; right is smaller)",
                         .y_label = "passkey accuracy over every context and depth (%, higher is better)",
                         .x = log_axis(xs, 1e-3),
                         .y = {-4, 104, false},
                         .x_unit = "x",
                         .y_unit = "%",
                         .higher_y_better = true};
  return scatter_svg(spec, points);
}

void write_passkey_reports(const std::filesystem::path& dir, const PasskeyReport& report, const RunInfo& info) {
  create_report_dir(dir);
  write_report_file(dir / "passkey.txt", format_passkey_table(report));
  write_report_file(dir / "passkey.json", passkey_to_json(report, info).dump(2) + "\n");
  write_report_file(dir / "passkey.csv", passkey_to_csv(report));
  write_report_file(dir / "passkey.svg", passkey_to_svg(report));
  write_report_file(dir / "passkey-accuracy.svg", passkey_accuracy_svg(report));
}

}  // namespace kvc::engine
