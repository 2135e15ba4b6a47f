// The dequantizers against the gguf Python package's (golden/make_dequant_golden.py), bit for bit.
#include "engine/models.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/dequant.hpp"

#include <gmock/gmock.h>

#include <cmath>
#include <cstring>
#include <map>
#include <sstream>

namespace kvc::test {
namespace {

using engine::GgmlType;

struct Golden {
  std::string blocks;
  std::vector<std::uint32_t> float_bits;
};

std::string unhex(const std::string& hex) {
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = char(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

const std::map<std::string, Golden>& golden() {
  static const std::map<std::string, Golden> table = [] {
    std::map<std::string, Golden> t;
    std::istringstream in(read_bytes(golden_dir() / "dequant.txt"));
    std::string line, name, blocks, values;
    std::size_t elements = 0;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream(line) >> name >> elements;
      std::getline(in, blocks);
      std::getline(in, values);
      Golden g{unhex(blocks), std::vector<std::uint32_t>(elements)};
      const std::string v = unhex(values);
      if (v.size() == elements * 4) std::memcpy(g.float_bits.data(), v.data(), v.size());
      t[name] = std::move(g);
    }
    return t;
  }();
  return table;
}

constexpr GgmlType all_types[] = {GgmlType::f32,  GgmlType::f16,  GgmlType::q4_0, GgmlType::q4_1, GgmlType::q5_0,
                                  GgmlType::q5_1, GgmlType::q8_0, GgmlType::q8_1, GgmlType::q2_k, GgmlType::q3_k,
                                  GgmlType::q4_k, GgmlType::q5_k, GgmlType::q6_k, GgmlType::q8_k, GgmlType::i8,
                                  GgmlType::i16,  GgmlType::i32,  GgmlType::i64,  GgmlType::f64,  GgmlType::bf16};

// Every type the engine can dequantize has golden data, and matches it in every bit.
TEST(Dequant, MatchesTheGgufPackageBitForBit) {
  ASSERT_FALSE(golden().empty()) << "cannot read " << golden_dir() / "dequant.txt";
  int checked = 0;
  for (const GgmlType type : all_types) {
    if (!engine::can_dequantize(type)) continue;
    const std::string name = engine::ggml_type_name(type);
    SCOPED_TRACE(name);
    const auto it = golden().find(name);
    ASSERT_NE(it, golden().end()) << "no golden data for " << name << "; run make_dequant_golden.py";
    const Golden& g = it->second;
    std::vector<float> out(g.float_bits.size());
    engine::dequantize(type, std::as_bytes(std::span(g.blocks)), out);
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, &out[i], 4);
      ASSERT_EQ(bits, g.float_bits[i]) << "element " << i << ": " << out[i];
    }
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

TEST(Dequant, HalfConversionIsExactForEveryValue) {
  // The value of each of the 65536 bit patterns by the IEEE 754 binary16 definition.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = engine::f16_to_f32(std::uint16_t(h));
    const int e = int((h >> 10) & 0x1F), m = int(h & 0x3FF);
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0x1F) {
      EXPECT_TRUE(m ? std::isnan(f) : f == float(sign * INFINITY)) << h;
      continue;
    }
    const double expected = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, e - 25);
    ASSERT_EQ(double(f), expected) << "half bits " << h;
    ASSERT_EQ(std::signbit(f), bool(h & 0x8000)) << h;
  }
}

TEST(Dequant, RejectsMismatchedSizes) {
  std::vector<float> out(32);
  const std::string bytes(34, '\0');
  EXPECT_NO_THROW(engine::dequantize(GgmlType::q8_0, std::as_bytes(std::span(bytes)), out));
  EXPECT_THAT([&] { engine::dequantize(GgmlType::q8_0, std::as_bytes(std::span(bytes).first(33)), out); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("32 elements of Q8_0 take 34 bytes, 33 given")));
  std::vector<float> odd(16);
  EXPECT_THAT([&] { engine::dequantize(GgmlType::q8_0, std::as_bytes(std::span(bytes)), odd); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("not a whole number of Q8_0 blocks")));
  EXPECT_THAT([&] { engine::dequantize(GgmlType::q2_k, std::as_bytes(std::span(bytes)), out); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no dequantizer for Q2_K")));
}

}  // namespace
}  // namespace kvc::test
