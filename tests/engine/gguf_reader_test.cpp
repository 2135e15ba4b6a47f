// The GGUF reader: files written here (valid, truncated, lying), and the real SmolLM2 file.
#include "engine/gguf_writer.hpp"
#include "engine/models.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/gguf.hpp"

#include <gmock/gmock.h>

#include <limits>
#include <random>

namespace kvc::test {
namespace {

using engine::GgmlType;
using engine::GgufFile;
using engine::GgufType;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string open_error(const std::filesystem::path& p) {
  try {
    (void)GgufFile::open(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::string open_error(const std::string& bytes) {
  const auto p = temp_dir() / "f.gguf";
  write_bytes(p, bytes);
  return open_error(p);
}

// A small valid file: every scalar type, three array types, two tensors.
GgufWriter sample() {
  GgufWriter w;
  w.scalar("u8", GgufType::u8, std::uint8_t{200})
      .scalar("i8", GgufType::i8, std::int8_t{-100})
      .scalar("u16", GgufType::u16, std::uint16_t{60000})
      .scalar("i16", GgufType::i16, std::int16_t{-30000})
      .u32("u32", 4000000000u)
      .scalar("i32", GgufType::i32, std::int32_t{-2000000000})
      .f32("f32", 0.25f)
      .scalar("bool", GgufType::boolean, std::uint8_t{1})
      .string("string", "llama")
      .scalar("u64", GgufType::u64, std::uint64_t{1} << 63)
      .scalar("i64", GgufType::i64, std::int64_t{-5})
      .scalar("f64", GgufType::f64, 1e-5)
      .strings("tokens", {"<s>", "", "hello"})
      .array("ids", GgufType::i32, std::vector<std::int32_t>{3, -1, 7})
      .array("scores", GgufType::f32, std::vector<float>{0.5f, -1.0f});
  w.tensor("a", {4, 2}, GgmlType::f32, f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  w.tensor("b", {3}, GgmlType::f32, f32_bytes({9, 10, 11}));
  return w;
}

GgufFile open_bytes(const std::string& bytes) {
  const auto p = temp_dir() / "ok.gguf";
  write_bytes(p, bytes);
  return GgufFile::open(p);
}

TEST(GgufReader, ReadsEveryValueType) {
  for (const std::uint32_t version : {2u, 3u}) {
    const GgufFile f = open_bytes(sample().bytes(version));
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.keys().size(), 15u);
    EXPECT_EQ(f.keys().front(), "u8");
    EXPECT_EQ(f.get_u32("u8"), 200u);
    EXPECT_EQ(f.get_i32("i8"), -100);
    EXPECT_EQ(f.get_u32("u16"), 60000u);
    EXPECT_EQ(f.get_i32("i16"), -30000);
    EXPECT_EQ(f.get_u32("u32"), 4000000000u);
    EXPECT_EQ(f.get_i32("i32"), -2000000000);
    EXPECT_EQ(f.get_f32("f32"), 0.25f);
    EXPECT_TRUE(f.get_bool("bool"));
    EXPECT_EQ(f.get_string("string"), "llama");
    EXPECT_EQ(f.get_u64("u64"), std::uint64_t{1} << 63);
    EXPECT_EQ(f.get_i32("i64"), -5);
    EXPECT_EQ(f.get_f32("f64"), 1e-5f);
    EXPECT_EQ(f.get_string_array("tokens"), (std::vector<std::string>{"<s>", "", "hello"}));
    EXPECT_EQ(f.get_i32_array("ids"), (std::vector<std::int32_t>{3, -1, 7}));
    EXPECT_EQ(f.get_f32_array("scores"), (std::vector<float>{0.5f, -1.0f}));
    ASSERT_NE(f.find("ids"), nullptr);
    EXPECT_TRUE(f.find("ids")->is_array);
    EXPECT_EQ(f.find("ids")->type, GgufType::i32);
    EXPECT_EQ(f.find("absent"), nullptr);
  }
}

TEST(GgufReader, GettersNameTheFileAndTheKey) {
  const GgufFile f = open_bytes(sample().bytes());
  const auto error = [&](auto&& get) {
    try {
      get();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error([&] { (void)f.get_u32("absent"); }), AllOf(HasSubstr("ok.gguf"), HasSubstr("'absent' is missing")));
  EXPECT_THAT(error([&] { (void)f.get_u32("string"); }), HasSubstr("'string' is string, not u32"));
  EXPECT_THAT(error([&] { (void)f.get_u32("i8"); }), HasSubstr("'i8' = -100 does not fit u32"));
  EXPECT_THAT(error([&] { (void)f.get_i32("u32"); }), HasSubstr("'u32' = 4000000000 does not fit i32"));
  EXPECT_THAT(error([&] { (void)f.get_i32("u64"); }), HasSubstr("'u64' = 9223372036854775808 does not fit i32"));
  EXPECT_THAT(error([&] { (void)f.get_f32("u32"); }), HasSubstr("'u32' is u32, not f32"));
  EXPECT_THAT(error([&] { (void)f.get_string("tokens"); }), HasSubstr("'tokens' is an array of string, not string"));
  EXPECT_THAT(error([&] { (void)f.get_string_array("string"); }), HasSubstr("not an array of string"));
  EXPECT_THAT(error([&] { (void)f.get_i32_array("scores"); }), HasSubstr("not an array of i32"));
  EXPECT_THAT(error([&] { (void)f.get_f32_array("ids"); }), HasSubstr("not an array of f32"));
  EXPECT_THAT(error([&] { (void)f.get_bool("u8"); }), HasSubstr("not bool"));
}

TEST(GgufReader, MapsTensorData) {
  const GgufFile f = open_bytes(sample().bytes());
  ASSERT_EQ(f.tensors().size(), 2u);
  const auto* a = f.tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->n_dims, 2u);
  EXPECT_EQ(a->dims[0], 4u);
  EXPECT_EQ(a->dims[1], 2u);
  EXPECT_EQ(a->elements, 8u);
  EXPECT_EQ(a->bytes, 32u);
  EXPECT_EQ(f.data(*a).size(), 32u);
  EXPECT_EQ(std::memcmp(f.data(*a).data(), f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}).data(), 32), 0);
  const auto* b = f.tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->offset, 32u);
  EXPECT_EQ(std::memcmp(f.data(*b).data(), f32_bytes({9, 10, 11}).data(), 12), 0);
  EXPECT_EQ(f.tensor("c"), nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.data(*b).data()) % 32, 0u) << "data section aligned in the mapping";
}

TEST(GgufReader, HonoursGeneralAlignment) {
  GgufWriter w = sample();
  w.u32("general.alignment", 64);
  const GgufFile f = open_bytes(w.bytes(3, 64));
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.tensor("b")->offset, 64u);
  EXPECT_EQ(std::memcmp(f.data(*f.tensor("b")).data(), f32_bytes({9, 10, 11}).data(), 12), 0);
  GgufWriter bad = sample();
  bad.u32("general.alignment", 48);
  EXPECT_THAT(open_error(bad.bytes(3, 48)), HasSubstr("'general.alignment': must be an integer power of two"));
}

TEST(GgufReader, EveryTruncationIsAnError) {
  const std::string good = sample().bytes();
  EXPECT_EQ(open_error(good), "no error");
  for (std::size_t n = 0; n < good.size(); ++n)
    EXPECT_THAT(open_error(good.substr(0, n)), HasSubstr("f.gguf")) << "prefix of " << n << " bytes";
  EXPECT_THAT(open_error(good.substr(0, 20)), HasSubstr("metadata count: truncated file"));
  EXPECT_THAT(open_error(good.substr(0, good.size() - 1)), HasSubstr("tensor 'b': data [32, 44) lies beyond"));
}

// Random byte changes and cuts of a valid file: each either opens (and its tensor data can be
// read) or throws kvc::Error; never another exception, never a crash. (Run under ASan and UBSan
// with 20,000 cases when written: clean.)
TEST(GgufReader, RandomCorruptionsOpenOrThrowKvcError) {
  const std::string good = sample().bytes();
  const auto p = temp_dir() / "fuzz.gguf";
  std::mt19937 rng(5);
  int opened = 0;
  for (int i = 0; i < 500; ++i) {
    std::string b = good;
    for (int f = 0, flips = 1 + int(rng() % 4); f < flips; ++f) {
      const std::size_t at = rng() % b.size();
      b[at] = rng() % 2 ? char(rng()) : char(b[at] ^ char(1u << (rng() % 8)));
    }
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    write_bytes(p, b);
    try {
      const GgufFile f = GgufFile::open(p);
      std::size_t bytes = 0;
      for (const auto& t : f.tensors()) bytes += f.data(t).size();
      EXPECT_LE(bytes, b.size());
      ++opened;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("fuzz.gguf"));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "case " << i << ": " << e.what();
    }
  }
  EXPECT_GT(opened, 0) << "some changes (in string contents, tensor values) leave a valid file";
}

TEST(GgufReader, RejectsBadMagicAndVersion) {
  std::string bytes = sample().bytes();
  EXPECT_THAT(open_error(sample().bytes(1)), HasSubstr("GGUF version 1 is not supported"));
  EXPECT_THAT(open_error(sample().bytes(4)), HasSubstr("GGUF version 4 is not supported"));
  bytes[0] = 'X';
  EXPECT_THAT(open_error(bytes), HasSubstr("not a GGUF file"));
  EXPECT_THAT(open_error(temp_dir() / "absent.gguf"), HasSubstr("cannot open the file"));
}

TEST(GgufReader, RejectsAbsurdCounts) {
  const GgufWriter w = sample();
  EXPECT_THAT(open_error(w.bytes(3, 32, std::uint64_t{1} << 40)), HasSubstr("tensor count: 1099511627776 exceeds"));
  EXPECT_THAT(open_error(w.bytes(3, 32, std::nullopt, ~std::uint64_t{0})), HasSubstr("metadata count: 18446744073709551615 exceeds"));
  // One tensor more than written: the reader takes the padding for a name.
  EXPECT_THAT(open_error(w.bytes(3, 32, 3)), HasSubstr("tensor #2 name: string length"));

  std::string huge_string;
  GgufWriter::put<std::uint32_t>(huge_string, std::uint32_t(GgufType::string));
  GgufWriter::put<std::uint64_t>(huge_string, std::uint64_t{1} << 60);
  EXPECT_THAT(open_error(GgufWriter().raw("k", huge_string).bytes()), HasSubstr("metadata 'k': string length 1152921504606846976 exceeds"));

  std::string long_string;
  GgufWriter::put<std::uint32_t>(long_string, std::uint32_t(GgufType::string));
  GgufWriter::put<std::uint64_t>(long_string, 1000);
  EXPECT_THAT(open_error(GgufWriter().raw("k", long_string).bytes()), HasSubstr("metadata 'k': truncated file: 1000 bytes needed"));

  const auto array_of = [](GgufType t, std::uint64_t n) {
    std::string s;
    GgufWriter::put<std::uint32_t>(s, std::uint32_t(GgufType::array));
    GgufWriter::put<std::uint32_t>(s, std::uint32_t(t));
    GgufWriter::put<std::uint64_t>(s, n);
    return s;
  };
  EXPECT_THAT(open_error(GgufWriter().raw("k", array_of(GgufType::i32, std::uint64_t{1} << 50)).bytes()),
              HasSubstr("metadata 'k': array length 1125899906842624 exceeds"));
  EXPECT_THAT(open_error(GgufWriter().raw("k", array_of(GgufType::string, 100000)).bytes()),
              HasSubstr("an array of 100000 string needs at least 800000 bytes"));
  EXPECT_THAT(open_error(GgufWriter().raw("k", array_of(GgufType::array, 1)).bytes()), HasSubstr("nested arrays are not supported"));

  std::string unknown_type;
  GgufWriter::put<std::uint32_t>(unknown_type, 13);
  EXPECT_THAT(open_error(GgufWriter().raw("k", unknown_type).bytes()), HasSubstr("metadata 'k': unknown value type 13"));
  std::string bad_bool;
  GgufWriter::put<std::uint32_t>(bad_bool, std::uint32_t(GgufType::boolean));
  bad_bool += '\x02';
  EXPECT_THAT(open_error(GgufWriter().raw("k", bad_bool).bytes()), HasSubstr("boolean byte is 2"));
  EXPECT_THAT(open_error(GgufWriter().u32("k", 1).u32("k", 2).bytes()), HasSubstr("'k': the key appears twice"));
}

TEST(GgufReader, RejectsBadTensorInfos) {
  const auto one = [](std::vector<std::uint64_t> dims, GgmlType type, std::string data,
                      std::optional<std::uint64_t> offset = std::nullopt) {
    return open_error(GgufWriter().tensor("t", std::move(dims), type, std::move(data), offset).bytes());
  };
  EXPECT_THAT(one({1, 1, 1, 1, 1}, GgmlType::f32, f32_bytes({1})), HasSubstr("tensor 't': n_dims is 5, must be 1 to 4"));
  EXPECT_THAT(one({}, GgmlType::f32, f32_bytes({1})), HasSubstr("n_dims is 0"));
  EXPECT_THAT(one({4, 0}, GgmlType::f32, f32_bytes({1})), HasSubstr("dimension 1 is 0"));
  EXPECT_THAT(one({std::uint64_t{1} << 40, std::uint64_t{1} << 40}, GgmlType::f32, ""),
              HasSubstr("tensor 't': the element count overflows"));
  EXPECT_THAT(one({std::uint64_t{1} << 40, std::uint64_t{1} << 21}, GgmlType::f32, ""), HasSubstr("byte size overflows"));
  EXPECT_THAT(one({4}, GgmlType(99), f32_bytes({1, 2, 3, 4})), HasSubstr("tensor 't': unknown tensor type 99"));
  EXPECT_THAT(one({16}, GgmlType::q8_0, std::string(34, '\0')), HasSubstr("row length 16 is not a multiple of the Q8_0 block size 32"));
  EXPECT_THAT(one({4}, GgmlType::f32, f32_bytes({1, 2, 3, 4}), 8), HasSubstr("offset 8 is not a multiple of the alignment 32"));
  EXPECT_THAT(one({4}, GgmlType::f32, "", std::uint64_t{1} << 61), HasSubstr("lies beyond the end of the data section"));

  GgufWriter overlap;
  overlap.tensor("a", {16}, GgmlType::f32, std::string(64, '\0'));
  overlap.tensor("b", {4}, GgmlType::f32, f32_bytes({1, 2, 3, 4}), 32);
  EXPECT_THAT(open_error(overlap.bytes()), HasSubstr("tensor 'b': data at offset 32 overlaps tensor 'a' at [0, 64)"));
  GgufWriter twice;
  twice.tensor("a", {4}, GgmlType::f32, f32_bytes({1, 2, 3, 4}));
  twice.tensor("a", {4}, GgmlType::f32, f32_bytes({1, 2, 3, 4}));
  EXPECT_THAT(open_error(twice.bytes()), HasSubstr("tensor 'a': the name appears twice"));
}

TEST(GgufReader, ReadsSmolLM2) {
  const auto path = engine::find_smollm2(models_dir());
  if (path.empty())
    GTEST_SKIP() << engine::smollm2_file << " not found in " << models_dir() << " nor " << engine::download_cache_dir()
                 << "; scripts/fetch_models.sh downloads it";
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.tensors().size(), 272u);  // 30 layers of 9 tensors, token_embd, output_norm
  const auto* emb = f.tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, GgmlType::q8_0);
  EXPECT_EQ(emb->dims[0], 576u);
  EXPECT_EQ(emb->dims[1], 49152u);
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight")->type, GgmlType::q4_1);
  EXPECT_EQ(f.tensor("output_norm.weight")->type, GgmlType::f32);
  EXPECT_EQ(f.tensor("output.weight"), nullptr) << "tied classifier";
}

}  // namespace
}  // namespace kvc::test
