// KV capture files: round trip, validation, and what the real model's keys look like.
#include "engine/models.hpp"

#include "kvc/data/capture.hpp"
#include "kvc_engine/capture.hpp"

#include <gmock/gmock.h>

#include <cstring>
#include <limits>

namespace kvc::test {
namespace {

using data::KvCapture;
using ::testing::HasSubstr;

KvCapture small_capture() {
  KvCapture c(Shape{2, 4, 2, 8}, 5);
  std::vector<float> kv(16), q(32);
  for (std::size_t t = 0; t < 3; ++t)
    for (std::size_t l = 0; l < 2; ++l) {
      for (std::size_t i = 0; i < kv.size(); ++i) kv[i] = float(100 * l + 10 * t) + float(i);
      for (std::size_t i = 0; i < q.size(); ++i) q[i] = -float(i) - float(t);
      c.append_kv(l, kv, std::vector<float>(kv.rbegin(), kv.rend()));
      c.append_query(l, q);
    }
  return c;
}

std::string load_error(const std::filesystem::path& p) {
  try {
    (void)data::load_capture(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Capture, RoundTrips) {
  const auto p = temp_dir() / "c.kvc";
  const KvCapture c = small_capture();
  data::save_capture(p, c);
  EXPECT_EQ(std::filesystem::file_size(p), 64u + 4u * 2 * 3 * (2 * 2 + 4) * 8);
  const KvCapture d = data::load_capture(p);
  EXPECT_EQ(d.shape(), c.shape());
  EXPECT_EQ(d.tokens(), 3u);
  EXPECT_EQ(d.first_position(), 5);
  EXPECT_TRUE(d.rotated());
  for (std::size_t l = 0; l < 2; ++l) {
    EXPECT_TRUE(std::equal(c.keys(l).begin(), c.keys(l).end(), d.keys(l).begin()));
    EXPECT_TRUE(std::equal(c.values(l).begin(), c.values(l).end(), d.values(l).begin()));
    EXPECT_TRUE(std::equal(c.queries(l).begin(), c.queries(l).end(), d.queries(l).begin()));
  }
  EXPECT_EQ(d.key(1, 2, 1)[0], 100.0f + 20.0f + 8.0f);
}

TEST(Capture, RejectsCorruptFiles) {
  const auto dir = temp_dir();
  data::save_capture(dir / "good.kvc", small_capture());
  const std::string good = read_bytes(dir / "good.kvc");
  const auto variant = [&](const std::string& bytes) {
    write_bytes(dir / "bad.kvc", bytes);
    return load_error(dir / "bad.kvc");
  };
  EXPECT_THAT(variant(good.substr(0, good.size() - 4)), HasSubstr("truncated?"));
  EXPECT_THAT(variant(good + "xx"), HasSubstr("needs 1600"));
  EXPECT_THAT(variant(good.substr(0, 20)), HasSubstr("fewer than the 64-byte header"));
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_THAT(variant(magic), HasSubstr("bad magic"));
  std::string version = good;
  version[8] = 9;
  EXPECT_THAT(variant(version), HasSubstr("format version 9 is not supported"));
  std::string shape = good;
  const std::uint32_t three = 3;
  std::memcpy(shape.data() + 24, &three, 4);  // kv_heads 3 does not divide query_heads 4
  EXPECT_THAT(variant(shape), HasSubstr("bad shape in header"));
  std::string nan = good;
  const float q = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.data() + 64 + 4 * 20, &q, 4);
  EXPECT_THAT(variant(nan), HasSubstr("non-finite value nan in the keys of layer 0"));
  std::string zero = good;
  std::memset(zero.data() + 32, 0, 8);
  EXPECT_THAT(variant(zero), HasSubstr("holds 0 tokens"));
  std::string reserved = good;
  reserved[50] = 1;
  EXPECT_THAT(variant(reserved), HasSubstr("reserved header byte 50 is 0x1, not 0"));
  std::string late = good;
  const std::int32_t near_last = std::numeric_limits<std::int32_t>::max() - 1;
  std::memcpy(late.data() + 40, &near_last, 4);  // 3 tokens from INT32_MAX - 1 overflow the positions
  EXPECT_THAT(variant(late), HasSubstr("3 tokens from position 2147483646 would pass the largest position"));
  EXPECT_THAT(load_error(dir / "absent.kvc"), HasSubstr("cannot open"));
}

TEST(Capture, IncompleteCapturesAreNotSaved) {
  KvCapture c(Shape{1, 2, 1, 8});
  c.append_kv(0, std::vector<float>(8), std::vector<float>(8));
  EXPECT_THROW(data::save_capture(temp_dir() / "x.kvc", c), Error);
}

// The real model's keys have outlier channels (README: 2.7-9.7x over the whole text). Over the
// first window every (layer, KV head) has one channel at least twice the median channel's mean |k|.
TEST(Capture, RealModelKeysHaveOutlierChannels) {
  KVC_REQUIRE_MODELS();
  const Bundle& b = bundle();
  const KvCapture c = engine::capture_window(b.model, engine::make_windows(corpus_head(), 511, 1)[0]);
  EXPECT_EQ(c.tokens(), 511u);
  double lowest = 1e9, highest = 0;
  for (std::size_t l = 0; l < c.shape().layers; ++l)
    for (std::size_t h = 0; h < c.shape().kv_heads; ++h) {
      const auto r = data::key_channel_ratios(c, l, h);
      const double top = *std::max_element(r.begin(), r.end());
      lowest = std::min(lowest, top);
      highest = std::max(highest, top);
    }
  EXPECT_GT(lowest, 2.0);
  EXPECT_LT(highest, 12.0);
}

}  // namespace
}  // namespace kvc::test
