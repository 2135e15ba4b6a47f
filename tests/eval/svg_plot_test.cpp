// The report plots' shared drawing code: axes, Pareto front, non-colliding labels.
#include "kvc_engine/svg_plot.hpp"

#include <gmock/gmock.h>

#include <string>
#include <vector>

namespace kvc::test {
namespace {

using engine::Axis;
using engine::Box;
using engine::PlotPoint;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> labels(const std::vector<engine::Tick>& ticks) {
  std::vector<std::string> out;
  for (const auto& t : ticks) out.push_back(t.label);
  return out;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(SvgPlot, LogAxesSnapToOneTwoFiveAndKeepAFloor) {
  // Compression ratios of an f32 full cache (0.47) to H2O + int4 (12.3).
  const Axis ratio = engine::log_axis({0.47, 1.14, 12.3}, 1e-3);
  EXPECT_DOUBLE_EQ(ratio.lo, 0.2);
  EXPECT_DOUBLE_EQ(ratio.hi, 20);
  EXPECT_TRUE(ratio.log);
  EXPECT_THAT(labels(engine::ticks(ratio, "x")), ElementsAre("0.2x", "0.5x", "1x", "2x", "5x", "10x", "20x"));
  // Perplexity changes in %: zero and negative changes are below the axis, whose floor is 0.01 %.
  const Axis change = engine::log_axis({0.0, -2.0, 0.16, 40.9}, 0.01);
  EXPECT_DOUBLE_EQ(change.lo, 0.1);
  EXPECT_DOUBLE_EQ(change.hi, 50);
  EXPECT_DOUBLE_EQ(engine::log_axis({0.003, 5}, 0.01).lo, 0.01) << "the floor bounds the axis";
  EXPECT_DOUBLE_EQ(engine::log_axis({0.0, -1.0}, 0.01).hi, 0.1) << "no positive value: one decade above the floor";
  EXPECT_DOUBLE_EQ(change.fraction(-2.0), 0.0);
  const Axis hundred{1, 100, true};
  EXPECT_NEAR(hundred.fraction(10), 0.5, 1e-12);
  // Past three decades only powers of ten are labelled.
  EXPECT_THAT(labels(engine::ticks(Axis{0.01, 1000, true}, "%")), ElementsAre("0.01%", "0.1%", "1%", "10%", "100%", "1000%"));
  EXPECT_THAT(labels(engine::ticks(Axis{-4, 104, false}, "%")), ElementsAre("0%", "20%", "40%", "60%", "80%", "100%"));
}

TEST(SvgPlot, ParetoFrontKeepsThePointsNoOtherBeatsOnBothAxes) {
  // Larger ratio and smaller error are better. B and C are beaten by D (more compression, less
  // error); F by D too. A has the least error, E the most compression.
  const std::vector<PlotPoint> error = {{"A", 1, 0.01, ""}, {"B", 2, 0.5, ""}, {"C", 2, 1.0, ""},
                                        {"D", 4, 0.4, ""},  {"E", 8, 20, ""},  {"F", 3, 30, ""}};
  EXPECT_THAT(engine::pareto_front(error, false), ElementsAre(0u, 3u, 4u));
  // Accuracy, larger is better: A is beaten by B (same accuracy, more compression), D by C.
  const std::vector<PlotPoint> accuracy = {
      {"A", 1, 100, ""}, {"B", 2, 100, ""}, {"C", 4, 66, ""}, {"D", 4, 33, ""}, {"E", 8, 0, ""}};
  EXPECT_THAT(engine::pareto_front(accuracy, true), ElementsAre(1u, 2u, 4u));
  // Two identical points are both on the front.
  EXPECT_THAT(engine::pareto_front({{"x", 2, 1, ""}, {"y", 2, 1, ""}}, false), ElementsAre(0u, 1u));
}

TEST(SvgPlot, LabelsOfACrowdedClusterNeitherOverlapNorCoverMarkersNorLeaveThePlot) {
  // Twelve stacks within 12 px of each other, as the quantizers are on a ratio/error plot.
  std::vector<std::string> text;
  std::vector<std::pair<double, double>> anchors;
  for (int i = 0; i < 12; ++i) {
    text.push_back("stack-number-" + std::to_string(i));
    anchors.emplace_back(300 + (i % 4) * 4, 200 + (i / 4) * 4);
  }
  const Box bounds{80, 50, 690, 390};
  const std::vector<Box> boxes = engine::place_labels(text, anchors, bounds);
  ASSERT_EQ(boxes.size(), text.size());
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    const Box& b = boxes[i];
    EXPECT_GE(b.x, bounds.x);
    EXPECT_GE(b.y, bounds.y);
    EXPECT_LE(b.x + b.w, bounds.x + bounds.w);
    EXPECT_LE(b.y + b.h, bounds.y + bounds.h);
    for (std::size_t j = 0; j < boxes.size(); ++j) {
      if (j != i) {
        EXPECT_FALSE(b.overlaps(boxes[j])) << i << " and " << j;
      }
      const Box marker{anchors[j].first - 5, anchors[j].second - 5, 10, 10};
      EXPECT_FALSE(b.overlaps(marker)) << "label " << i << " covers marker " << j;
    }
  }
  // A lone point's label goes right of it, vertically centred.
  const Box lone = engine::place_labels({"full"}, {{100, 100}}, bounds)[0];
  EXPECT_DOUBLE_EQ(lone.x, 107);
  EXPECT_DOUBLE_EQ(lone.y + lone.h / 2, 100);
}

TEST(SvgPlot, ScatterDrawsEveryPointTheFrontAndPinsValuesBelowTheAxis) {
  const engine::ScatterSpec spec{
      .title = "t & <u>", .x_label = "ratio", .y_label = "change", .x = {0.2, 20, true}, .y = {0.1, 100, true},
      .x_unit = "x", .y_unit = "%", .higher_y_better = false};
  const std::vector<PlotPoint> points = {
      {"full", 0.47, 0.0, "exact"}, {"int8", 1.14, 0.16, ""}, {"h2o", 3.5, 4.7, ""}, {"h2o+int4", 10.2, 46.8, ""}};
  const std::string svg = engine::scatter_svg(spec, points);
  EXPECT_EQ(count(svg, "<circle class=\"point\""), 4u);
  EXPECT_EQ(count(svg, "data-pinned=\"1\""), 1u) << "0 % is below a log axis";
  EXPECT_THAT(svg, HasSubstr(">\u2264 0.1%</text>")) << "the floor tick says values sit on it";
  EXPECT_THAT(svg, HasSubstr("t &amp; &lt;u&gt;"));
  for (const auto& p : points) EXPECT_EQ(count(svg, ">" + p.label + "</text>"), 1u) << p.label;
  // Every point is on this front: each one trades more compression for more error.
  const std::size_t at = svg.find("<polyline class=\"pareto\" points=\"");
  ASSERT_NE(at, std::string::npos);
  const std::string coords = svg.substr(at, svg.find('"', at + 34) - at);
  EXPECT_EQ(count(coords, ","), 4u);
}

}  // namespace
}  // namespace kvc::test
