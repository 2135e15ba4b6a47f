// The llama2.c tokenizer: encoding as llama2.c does, decoding, and rejecting bad files.
#include "engine/models.hpp"

#include "kvc/core/error.hpp"

#include <gmock/gmock.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace kvc::test {
namespace {

using engine::Tokenizer;
using ::testing::HasSubstr;

std::string load_error(const std::filesystem::path& p, std::int32_t vocab = 512) {
  try {
    (void)Tokenizer::load(p, vocab);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Tokenizer, RoundTripsText) {
  KVC_REQUIRE_MODELS();
  const Tokenizer& t = bundle().tokenizer;
  EXPECT_EQ(t.vocab_size(), 512);
  const std::string text = "Once upon a time, there was a little dog. \"Hi!\" said Tom.\nThe end.";
  const auto tokens = t.encode(text, /*add_bos=*/true);
  ASSERT_GE(tokens.size(), 3u);
  EXPECT_EQ(tokens[0], Tokenizer::bos);
  EXPECT_LT(tokens.size(), text.size() / 2) << "BPE merges should compress the text";
  // decode() drops the dummy-prefix space after BOS, so the text comes back exactly.
  EXPECT_EQ(t.decode(std::vector<std::int32_t>(tokens.begin() + 1, tokens.end())), text);
}

TEST(Tokenizer, UsesByteFallbackForUnknownCodePoints) {
  KVC_REQUIRE_MODELS();
  const Tokenizer& t = bundle().tokenizer;
  const std::string text = "\xF0\x9F\x98\x80";  // an emoji: not in a 512-token vocabulary
  ASSERT_EQ(t.lookup(text), -1);
  const auto tokens = t.encode(text, false, false);
  EXPECT_EQ(tokens, (std::vector<std::int32_t>{0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3}));
  EXPECT_EQ(t.decode(tokens), text);
  EXPECT_EQ(t.encode("\n", false, false), (std::vector<std::int32_t>{13}));
}

TEST(Tokenizer, DummyPrefixIsOneSpaceToken) {
  KVC_REQUIRE_MODELS();
  const Tokenizer& t = bundle().tokenizer;
  const auto with = t.encode("Lily", false, true), without = t.encode("Lily", false, false);
  EXPECT_EQ(t.decode(0, with.front()).front(), ' ');
  EXPECT_NE(with, without);
  EXPECT_TRUE(t.encode("", true).size() == 1) << "empty text: BOS only, no dummy prefix";
}

TEST(Tokenizer, RejectsBadFiles) {
  KVC_REQUIRE_MODELS();
  const std::string good = read_bytes(models_dir() / engine::tokenizer_file);
  const auto dir = temp_dir();
  write_bytes(dir / "truncated.bin", good.substr(0, good.size() - 100));
  EXPECT_THAT(load_error(dir / "truncated.bin"), HasSubstr("truncated"));
  write_bytes(dir / "empty.bin", "");
  EXPECT_THAT(load_error(dir / "empty.bin"), HasSubstr("shorter than the 4-byte max_token_length header"));
  std::string bad_length = good;
  const std::int32_t huge = 1 << 20;
  std::memcpy(bad_length.data() + 4 + 4, &huge, 4);  // length of token 0
  write_bytes(dir / "length.bin", bad_length);
  EXPECT_THAT(load_error(dir / "length.bin"), HasSubstr("token 0 has length 1048576"));
  std::string bad_max = good;
  const std::int32_t zero = 0;
  std::memcpy(bad_max.data(), &zero, 4);
  write_bytes(dir / "max.bin", bad_max);
  EXPECT_THAT(load_error(dir / "max.bin"), HasSubstr("max_token_length = 0"));
  write_bytes(dir / "good.bin", good);
  EXPECT_THAT(load_error(dir / "good.bin", 256), HasSubstr("wrong tokenizer for this model"));
  EXPECT_THAT(load_error(dir / "good.bin", 600), HasSubstr("truncated"));
  EXPECT_THAT(load_error(dir / "absent.bin"), HasSubstr("cannot open"));
}

// The first `count` entries of tok512.bin as a tokenizer.bin of its own.
std::string truncated_vocabulary(std::int32_t count) {
  const std::string good = read_bytes(models_dir() / engine::tokenizer_file);
  std::size_t end = 4;
  for (std::int32_t i = 0; i < count; ++i) {
    std::int32_t length = 0;
    std::memcpy(&length, good.data() + end + 4, 4);
    end += 8 + std::size_t(length);
  }
  return good.substr(0, end);
}

TEST(Tokenizer, RejectsVocabularyWithoutByteTokens) {
  KVC_REQUIRE_MODELS();
  // 64 tokens: ids 3..63 are the bytes 0x00..0x3C, so "~" (0x7E) has neither a token nor its
  // byte token 0x7E + 3 = 129, and llama2.c's fallback would read token 129 of 64.
  const auto dir = temp_dir();
  write_bytes(dir / "small.bin", truncated_vocabulary(64));
  try {
    const Tokenizer t = Tokenizer::load(dir / "small.bin", 64);
    (void)t.encode("a~b", false);
    ADD_FAILURE() << "a 64-token vocabulary without the byte tokens loaded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("token 64 must be the byte token <0x3D>"));
  }
}

TEST(Tokenizer, Llama2cIds) {
  KVC_REQUIRE_MODELS();
  const Tokenizer& t = bundle().tokenizer;
  EXPECT_EQ(t.bos_id(), Tokenizer::bos);
  EXPECT_EQ(t.eos_id(), Tokenizer::eos);
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.model(), engine::TokenizerModel::llama2c);
  EXPECT_EQ(t.lookup("<0x7E>"), 0x7E + Tokenizer::byte_offset);
}

// SepLLM's separators: a token is one when its text is made of . , ; : ! ? and whitespace with at
// least one of those marks or a line break; words are not (llama2.c's vocabulary has no control
// tokens to mark special).
TEST(Tokenizer, TagsSeparatorsAndSpecialTokens) {
  KVC_REQUIRE_MODELS();
  const Tokenizer& t = bundle().tokenizer;
  const std::vector<TokenTag> tags = engine::token_tags(t);
  ASSERT_EQ(tags.size(), std::size_t(t.vocab_size()));
  const auto separator = [](const std::string& text) {
    const std::string marks = ".,;:!?\n", blanks = " \t\r";
    return std::any_of(text.begin(), text.end(), [&](char c) { return marks.find(c) != std::string::npos; }) &&
           std::all_of(text.begin(), text.end(),
                       [&](char c) { return (marks + blanks).find(c) != std::string::npos; });
  };
  std::size_t separators = 0, words = 0;
  for (const std::int32_t id : t.encode("a dog. Hi, Tom!\nThe end; yes: no?", /*add_bos=*/false)) {
    const std::string text = t.decode(t.bos_id(), id);
    EXPECT_EQ(tags[std::size_t(id)], separator(text) ? tag::separator : tag::none) << "'" << text << "'";
    (separator(text) ? separators : words) += 1;
  }
  EXPECT_GE(separators, 5u);
  EXPECT_GE(words, 5u);
}

}  // namespace
}  // namespace kvc::test
