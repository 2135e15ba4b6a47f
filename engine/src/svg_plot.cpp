#include "kvc_engine/svg_plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kvc::engine {
namespace {

// 7 px per character: rsvg-convert's sans-serif (DejaVu Sans on Debian) drew the 22 characters of
// 'pyramid:budget=25%+h2o' at 11 px 152 px wide (6.9 px each).
constexpr double char_width = 7.0, label_height = 13, marker_radius = 5;

// The largest 1, 2 or 5 x 10^k at or below v (down), or the smallest at or above it (up).
double nice_125(double v, bool up) {
  const double decade = std::pow(10.0, std::floor(std::log10(v)));
  const double steps[] = {1, 2, 5, 10};
  if (up) {
    for (const double m : steps)
      if (m * decade >= v * (1 - 1e-9)) return m * decade;
    return 10 * decade;
  }
  for (int i = 3; i >= 0; --i)
    if (steps[i] * decade <= v * (1 + 1e-9)) return steps[i] * decade;
  return decade;
}

bool better(double a, double b, bool higher_y_better) { return higher_y_better ? a > b : a < b; }

}  // namespace

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

std::string svg_open(double width, double height, std::string_view title) {
  return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                     "font-family=\"sans-serif\" font-size=\"12\">\n"
                     "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
                     "<text x=\"12\" y=\"22\" font-size=\"15\">{2}</text>\n",
                     width, height, xml_escape(title));
}

std::string svg_close() { return "</svg>\n"; }

double Axis::fraction(double v) const noexcept {
  if (!log) return hi > lo ? (v - lo) / (hi - lo) : 0.5;
  if (v <= lo) return 0.0;
  return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
}

std::vector<Tick> ticks(const Axis& axis, std::string_view unit) {
  std::vector<Tick> out;
  if (axis.log) {
    const int first = int(std::floor(std::log10(axis.lo))), last = int(std::ceil(std::log10(axis.hi)));
    const bool decades_only = last - first > 3;
    for (int k = first; k <= last; ++k)
      for (const double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, k);
        if ((decades_only && m != 1.0) || v < axis.lo * (1 - 1e-9) || v > axis.hi * (1 + 1e-9)) continue;
        out.push_back({v, fmt::format("{:g}{}", v, unit)});
      }
    return out;
  }
  const double span = std::max(axis.hi - axis.lo, 1e-12);
  double step = nice_125(span / 10.0, true);
  if (span / step < 4) step = nice_125(span / 4.0, false);
  for (double v = std::ceil(axis.lo / step - 1e-9) * step; v <= axis.hi + step * 1e-9; v += step) {
    const double shown = std::fabs(v) < step * 1e-6 ? 0.0 : v;
    out.push_back({shown, fmt::format("{:g}{}", shown, unit)});
  }
  return out;
}

Axis log_axis(const std::vector<double>& values, double floor_lo) {
  double lo = HUGE_VAL, hi = 0;
  for (const double v : values)
    if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi == 0) return {floor_lo, floor_lo * 10, true};
  lo = std::max(nice_125(lo, false), floor_lo);
  hi = std::max(nice_125(hi, true), lo * 2);
  return {lo, hi, true};
}

std::vector<std::size_t> pareto_front(const std::vector<PlotPoint>& points, bool higher_y_better) {
  std::vector<std::size_t> front;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const bool beaten = std::any_of(points.begin(), points.end(), [&](const PlotPoint& o) {
      const bool no_worse = o.x >= points[i].x && !better(points[i].y, o.y, higher_y_better);
      return no_worse && (o.x > points[i].x || better(o.y, points[i].y, higher_y_better));
    });
    if (!beaten) front.push_back(i);
  }
  std::stable_sort(front.begin(), front.end(), [&](std::size_t a, std::size_t b) { return points[a].x < points[b].x; });
  return front;
}

std::vector<Box> place_labels(const std::vector<std::string>& text,
                              const std::vector<std::pair<double, double>>& anchors, const Box& bounds,
                              std::vector<Box> obstacles) {
  for (const auto& [x, y] : anchors)
    obstacles.push_back({x - marker_radius, y - marker_radius, 2 * marker_radius, 2 * marker_radius});
  const auto inside = [&](const Box& b) {
    return b.x >= bounds.x && b.y >= bounds.y && b.x + b.w <= bounds.x + bounds.w && b.y + b.h <= bounds.y + bounds.h;
  };
  std::vector<Box> placed;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto [ax, ay] = anchors[i];
    const double w = char_width * double(text[i].size()) + 2, h = label_height;
    std::vector<Box> candidates = {
        {ax + 7, ay - h / 2, w, h},     {ax - 7 - w, ay - h / 2, w, h}, {ax + 4, ay - 7 - h, w, h},
        {ax + 4, ay + 7, w, h},         {ax - 4 - w, ay - 7 - h, w, h}, {ax - 4 - w, ay + 7, w, h},
        {ax - w / 2, ay - 8 - h, w, h}, {ax - w / 2, ay + 8, w, h}};
    for (double d = h + 1; d <= 240; d += h + 1)
      for (const double side : {1.0, -1.0}) {
        candidates.push_back({ax + 14, ay - h / 2 + side * d, w, h});
        candidates.push_back({ax - 14 - w, ay - h / 2 + side * d, w, h});
      }
    const auto free = std::find_if(candidates.begin(), candidates.end(), [&](const Box& b) {
      return inside(b) && std::none_of(obstacles.begin(), obstacles.end(), [&](const Box& o) { return b.overlaps(o); });
    });
    placed.push_back(free == candidates.end() ? candidates[0] : *free);
    obstacles.push_back(placed.back());
  }
  return placed;
}

std::string scatter_svg(const ScatterSpec& spec, const std::vector<PlotPoint>& points) {
  constexpr double width = 800, height = 500, left = 92, right = 24, top = 48, bottom = 56;
  const double pw = width - left - right, ph = height - top - bottom;
  const auto px = [&](double x) { return left + pw * std::clamp(spec.x.fraction(x), 0.0, 1.0); };
  const auto py = [&](double y) { return top + ph * (1.0 - std::clamp(spec.y.fraction(y), 0.0, 1.0)); };
  const auto pinned = [&](const PlotPoint& p) { return spec.y.log && p.y < spec.y.lo; };
  const bool any_pinned = std::any_of(points.begin(), points.end(), pinned);

  std::string out = svg_open(width, height, spec.title);
  out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top,
                     pw, ph);
  for (const Tick& t : ticks(spec.x, spec.x_unit))
    out += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#e4e4e4\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       px(t.value), top, top + ph, top + ph + 16, xml_escape(t.label));
  for (const Tick& t : ticks(spec.y, spec.y_unit)) {
    const bool floor = any_pinned && t.value <= spec.y.lo * (1 + 1e-9);
    out += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\"/>"
                       "<text x=\"{4}\" y=\"{5:.1f}\" text-anchor=\"end\">{6}{7}</text>\n",
                       left, py(t.value), left + pw, !spec.y.log && t.value == 0 ? "#999" : "#e4e4e4", left - 6,
                       py(t.value) + 4, floor ? "\u2264 " : "", xml_escape(t.label));
  }
  out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, height - 16,
                     xml_escape(spec.x_label));
  out += fmt::format("<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     top + ph / 2, xml_escape(spec.y_label));
  // Legend, above the plot on the right.
  out += fmt::format("<g class=\"legend\" font-size=\"11\"><line x1=\"{0}\" y1=\"36\" x2=\"{1}\" y2=\"36\" "
                     "stroke=\"#d95f02\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>"
                     "<text x=\"{2}\" y=\"40\">Pareto front</text>{3}</g>\n",
                     width - 300, width - 276, width - 270,
                     any_pinned ? fmt::format("<circle cx=\"{}\" cy=\"36\" r=\"4\" fill=\"white\" stroke=\"#1f77b4\" "
                                              "stroke-width=\"1.5\"/><text x=\"{}\" y=\"40\">below the axis</text>",
                                              width - 180, width - 172)
                                : "");

  const std::vector<std::size_t> front = pareto_front(points, spec.higher_y_better);
  std::vector<bool> on_front(points.size(), false);
  std::string line;
  std::vector<Box> line_boxes;  // the front line, as 2-px boxes every 3 px, for the labels to avoid
  for (std::size_t f = 0; f < front.size(); ++f) {
    const std::size_t i = front[f];
    on_front[i] = true;
    line += fmt::format("{}{:.1f},{:.1f}", line.empty() ? "" : " ", px(points[i].x), py(points[i].y));
    if (f == 0) continue;
    const double x0 = px(points[front[f - 1]].x), y0 = py(points[front[f - 1]].y), x1 = px(points[i].x), y1 = py(points[i].y);
    const double steps = std::ceil(std::hypot(x1 - x0, y1 - y0) / 3.0);
    for (double t = 0; t <= steps; ++t)
      line_boxes.push_back({x0 + (x1 - x0) * t / steps - 1, y0 + (y1 - y0) * t / steps - 1, 2, 2});
  }
  out += fmt::format("<polyline class=\"pareto\" points=\"{}\" fill=\"none\" stroke=\"#d95f02\" stroke-width=\"2\" "
                     "stroke-dasharray=\"6 3\"/>\n",
                     line);

  std::vector<std::string> labels;
  std::vector<std::pair<double, double>> anchors;
  for (const PlotPoint& p : points) {
    labels.push_back(p.label);
    anchors.emplace_back(px(p.x), py(p.y));
  }
  const std::vector<Box> boxes = place_labels(labels, anchors, {left + 2, top + 2, pw - 4, ph - 4}, line_boxes);
  out += "<g class=\"points\">\n";
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto [x, y] = anchors[i];
    const char* colour = on_front[i] ? "#d95f02" : "#1f77b4";
    out += fmt::format("<circle class=\"point\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\" stroke=\"{}\" "
                       "stroke-width=\"1.5\"{}><title>{}</title></circle>\n",
                       x, y, pinned(points[i]) ? "white" : colour, colour,
                       pinned(points[i]) ? " data-pinned=\"1\"" : "", xml_escape(points[i].tooltip));
    const Box& b = boxes[i];
    const double cx = std::clamp(x, b.x, b.x + b.w), cy = std::clamp(y, b.y, b.y + b.h);
    if (std::hypot(cx - x, cy - y) > 12)
      out += fmt::format("<line class=\"leader\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                         "stroke=\"#999\"/>\n",
                         x, y, cx, cy);
    out += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\">{}</text>\n", b.x + 1,
                       b.y + 10, xml_escape(points[i].label));
  }
  out += "</g>\n";
  return out + svg_close();
}

}  // namespace kvc::engine
