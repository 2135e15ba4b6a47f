#pragma once
// The SVG drawing the report writers share: the document frame, axes (linear or log) with ticks,
// and a labelled scatter plot with its Pareto front, whose labels are placed so that no two
// overlap. report.cpp (ratio vs perplexity change) and passkey_report.cpp (ratio vs accuracy, and
// the heat map's frame) draw with it.
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

[[nodiscard]] std::string xml_escape(std::string_view s);

// <?xml?>, <svg> with a white background and a title at the top left; svg_close() ends it.
[[nodiscard]] std::string svg_open(double width, double height, std::string_view title);
[[nodiscard]] std::string svg_close();

// One axis: data [lo, hi] onto [0, 1]. A log axis needs lo > 0; values at or below lo map to 0.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  [[nodiscard]] double fraction(double v) const noexcept;
};

struct Tick {
  double value;
  std::string label;
};
// Linear: steps of 1, 2 or 5 x 10^k, 4 to 10 of them. Log: 1, 2, 5 x 10^k within [lo, hi] (only
// powers of ten past three decades). `unit` follows each label ("%", "x").
[[nodiscard]] std::vector<Tick> ticks(const Axis& axis, std::string_view unit);

// A log axis covering the positive values of `values` (whole decades, or 1-2-5 steps below one
// decade), at least [floor_lo, ...]: values below the floor (zero, negative) are drawn on it.
[[nodiscard]] Axis log_axis(const std::vector<double>& values, double floor_lo);

struct PlotPoint {
  std::string label;
  double x = 0, y = 0;
  std::string tooltip;  // <title> text
};

// The points no other point beats on both axes: larger x is better, and smaller y (or larger y
// when `higher_y_better`). Indices ordered by increasing x. A point tied with a front point on
// both axes is on the front too.
[[nodiscard]] std::vector<std::size_t> pareto_front(const std::vector<PlotPoint>& points, bool higher_y_better);

struct Box {
  double x = 0, y = 0, w = 0, h = 0;  // top-left corner, size
  [[nodiscard]] bool overlaps(const Box& o) const noexcept {
    return x < o.x + o.w && o.x < x + w && y < o.y + o.h && o.y < y + h;
  }
};
// Text boxes for labels of `text` (estimated at 7 px per character, 13 px high) beside anchors
// (x, y), none overlapping another label, a marker (the anchors themselves, radius 5), one of
// `obstacles` (e.g. the Pareto line) or leaving `bounds`. Tries eight spots around the anchor,
// then slides further up and down on either side (drawn with a leader line). A label with no
// free spot is placed at its first choice anyway.
[[nodiscard]] std::vector<Box> place_labels(const std::vector<std::string>& text,
                                            const std::vector<std::pair<double, double>>& anchors, const Box& bounds,
                                            std::vector<Box> obstacles = {});

struct ScatterSpec {
  std::string title, x_label, y_label;
  Axis x, y;
  std::string x_unit = "x", y_unit;
  bool higher_y_better = false;  // for the Pareto front
};
// The full plot: frame, grid, ticks, axis labels, the Pareto front as a step line, one marker per
// point (class "point"; a value below a log axis's floor is drawn on the floor, hollow, with
// data-pinned="1") and its label. 800 x 500 px.
[[nodiscard]] std::string scatter_svg(const ScatterSpec& spec, const std::vector<PlotPoint>& points);

}  // namespace kvc::engine
