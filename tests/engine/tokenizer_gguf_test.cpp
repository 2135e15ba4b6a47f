// The GGUF tokenizers: SmolLM2's byte-level BPE token for token against llama.cpp
// (golden/tokenizer_smollm2.json, written by scripts/oracle/tokenizer_golden.py), round trips,
// special tokens, small hand-made vocabularies, and corrupt metadata.
#include "engine/models.hpp"

#include "kvc/core/error.hpp"
#include "kvc_engine/tokenizer_gguf.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

namespace kvc::test {
namespace {

using engine::EncodeOptions;
using engine::Tokenizer;
using engine::TokenizerModel;
using engine::TokenizerSpec;
using engine::TokenType;
using ::testing::HasSubstr;

const Tokenizer& smollm2_tokenizer() {
  static const Tokenizer t = engine::tokenizer_from_gguf(engine::GgufFile::open(engine::find_smollm2(models_dir())));
  return t;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

nlohmann::json golden_cases() {
  std::ifstream in(golden_dir() / "tokenizer_smollm2.json");
  const auto doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return doc.is_discarded() ? nlohmann::json::array() : doc.at("cases");
}

TEST(TokenizerGguf, ReadsSmolLM2Metadata) {
  KVC_REQUIRE_SMOLLM2();
  const Tokenizer& t = smollm2_tokenizer();
  EXPECT_EQ(t.model(), TokenizerModel::bpe);
  EXPECT_EQ(t.vocab_size(), 49152);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.pad_id(), 2);
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.piece(1), "<|im_start|>");
  EXPECT_EQ(t.token_type(1), TokenType::control);
  EXPECT_EQ(t.token_type(17), TokenType::normal);
  EXPECT_EQ(t.lookup("\xC4\xA0the"), t.encode(" the").front()) << "U+0120 spells the space";
}

TEST(TokenizerGguf, MatchesLlamaCppOnEveryGoldenText) {
  KVC_REQUIRE_SMOLLM2();
  const auto cases = golden_cases();
  ASSERT_GE(cases.size(), 40u) << "cannot read " << golden_dir() / "tokenizer_smollm2.json";
  for (const auto& c : cases) {
    const std::string bytes = from_hex(c.at("hex").get<std::string>());
    const auto ids = smollm2_tokenizer().encode(bytes, {.parse_special = c.at("parse_special").get<bool>()});
    EXPECT_EQ(ids, c.at("ids").get<std::vector<std::int32_t>>()) << "case " << c.at("name");
  }
}

TEST(TokenizerGguf, DecodeInvertsEncodeOnValidUtf8) {
  KVC_REQUIRE_SMOLLM2();
  const Tokenizer& t = smollm2_tokenizer();
  std::size_t checked = 0;
  for (const auto& c : golden_cases()) {
    if (!c.contains("text")) continue;  // invalid UTF-8 becomes U+FFFD: not invertible
    const std::string text = c.at("text").get<std::string>();
    EXPECT_EQ(t.decode(t.encode(text, {.parse_special = c.at("parse_special").get<bool>()})), text)
        << "case " << c.at("name");
    ++checked;
  }
  EXPECT_GE(checked, 38u);
  EXPECT_EQ(t.decode(t.encode("bad \xFF byte")), "bad \xEF\xBF\xBD byte") << "an invalid byte reads as U+FFFD";
}

TEST(TokenizerGguf, MatchesControlTokensOnlyWhenAsked) {
  KVC_REQUIRE_SMOLLM2();
  const Tokenizer& t = smollm2_tokenizer();
  const std::string chat = "<|im_start|>user\nHi<|im_end|>";
  const auto parsed = t.encode(chat, {.parse_special = true});
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const auto plain = t.encode(chat);
  EXPECT_THAT(plain, ::testing::Not(::testing::Contains(1)));
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_EQ(t.decode(parsed), chat);
  EXPECT_EQ(t.decode(plain), chat);
  EXPECT_EQ(t.encode("Hi", {.add_bos = true}).front(), t.bos_id());
}

// A byte-level vocabulary: the 256 byte tokens (GPT-2 spelling), then `extra`, then <|end|>.
TokenizerSpec tiny_bpe(std::vector<std::string> extra, std::vector<std::string> merges) {
  TokenizerSpec spec;
  spec.model = TokenizerModel::bpe;
  spec.pre = "gpt2";
  for (unsigned b = 0; b < 256; ++b) {
    const unsigned cpt = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174 ? b : 0;
    if (cpt) spec.tokens.push_back(cpt < 0x80 ? std::string(1, char(cpt))
                                              : std::string{char(0xC0 | (cpt >> 6)), char(0x80 | (cpt & 0x3F))});
  }
  for (unsigned n = 0; spec.tokens.size() < 256; ++n) {  // the 68 others: U+0100 + n
    const unsigned cpt = 0x100 + n;
    spec.tokens.push_back(std::string{char(0xC0 | (cpt >> 6)), char(0x80 | (cpt & 0x3F))});
  }
  for (auto& e : extra) spec.tokens.push_back(std::move(e));
  spec.tokens.push_back("<|end|>");
  spec.token_types.assign(spec.tokens.size(), TokenType::normal);
  spec.token_types.back() = TokenType::control;
  spec.eos_id = std::int32_t(spec.tokens.size() - 1);
  spec.merges = std::move(merges);
  return spec;
}

TEST(TokenizerBpe, MergesLowestRankFirst) {
  // "abc": rank 0 merges b+c, so a+b (rank 1) never applies.
  const Tokenizer t = Tokenizer::from_spec(tiny_bpe({"ab", "bc"}, {"b c", "a b"}));
  EXPECT_EQ(t.encode("abc"), (std::vector<std::int32_t>{t.lookup("a"), t.lookup("bc")}));
  const Tokenizer swapped = Tokenizer::from_spec(tiny_bpe({"ab", "bc"}, {"a b", "b c"}));
  EXPECT_EQ(swapped.encode("abc"), (std::vector<std::int32_t>{swapped.lookup("ab"), swapped.lookup("c")}));
  // Equal pairs: the leftmost merges first, so "aaa" is "aa" + "a".
  const Tokenizer runs = Tokenizer::from_spec(tiny_bpe({"aa"}, {"a a"}));
  EXPECT_EQ(runs.encode("aaa"), (std::vector<std::int32_t>{runs.lookup("aa"), runs.lookup("a")}));
  EXPECT_EQ(runs.encode(std::string(10001, 'a')).size(), 5001u) << "a long word merges in pairs";
}

TEST(TokenizerBpe, SplitsWordsBeforeMerging) {
  // "Ġb" exists, but the pre-tokenizer keeps "a" and " b" apart, so "a" never merges with the space.
  const Tokenizer t = Tokenizer::from_spec(tiny_bpe({"\xC4\xA0" "b", "a\xC4\xA0"}, {"a \xC4\xA0", "\xC4\xA0 b"}));
  EXPECT_EQ(t.encode("a b"), (std::vector<std::int32_t>{t.lookup("a"), t.lookup("\xC4\xA0" "b")}));
  EXPECT_EQ(t.decode(t.encode("a b")), "a b");
  EXPECT_EQ(t.encode("x<|end|>", {.parse_special = true}), (std::vector<std::int32_t>{t.lookup("x"), t.eos_id()}));
}

TEST(TokenizerSpm, EncodesWithScoresSpacePrefixAndByteFallback) {
  TokenizerSpec spec;
  spec.model = TokenizerModel::spm;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  for (unsigned b = 0; b < 256; ++b) spec.tokens.push_back(fmt::format("<0x{:02X}>", b));
  for (const char* piece : {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi"}) spec.tokens.push_back(piece);
  spec.scores.assign(spec.tokens.size(), -10.0f);
  spec.scores.back() = -1.0f;  // ▁hi
  spec.token_types.assign(spec.tokens.size(), TokenType::normal);
  spec.token_types[0] = TokenType::unknown;
  spec.token_types[1] = spec.token_types[2] = TokenType::control;
  for (std::size_t i = 3; i < 259; ++i) spec.token_types[i] = TokenType::byte;
  spec.bos_id = 1, spec.eos_id = 2, spec.unk_id = 0;
  spec.add_bos = spec.add_space_prefix = true;
  const Tokenizer t = Tokenizer::from_spec(spec);
  EXPECT_EQ(t.lookup(" hi"), 263) << "pieces hold U+2581 as a space";
  const auto tokens = t.encode("hi\xC3\xA9", {.add_bos = true});
  EXPECT_EQ(tokens, (std::vector<std::int32_t>{1, 263, 0xC3 + 3, 0xA9 + 3}));
  EXPECT_EQ(t.decode(std::vector<std::int32_t>(tokens.begin() + 1, tokens.end())), "hi\xC3\xA9");
  EXPECT_EQ(t.encode("hi", {.space_prefix = false}), (std::vector<std::int32_t>{260, 261}));
}

std::string spec_error(TokenizerSpec spec) {
  try {
    (void)Tokenizer::from_spec(std::move(spec));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(TokenizerSpecErrors, NameTheField) {
  const auto base = [] { return tiny_bpe({"ab"}, {"a b"}); };
  EXPECT_EQ(spec_error(base()), "no error");
  {
    auto s = base();
    s.merges.push_back("a zz");
    EXPECT_THAT(spec_error(s), HasSubstr("merge 1 (\"a zz\"): its right part \"zz\" is not a token"));
  }
  {
    auto s = base();
    s.merges.push_back("b c");  // "bc" is not a token
    EXPECT_THAT(spec_error(s), HasSubstr("its result \"bc\" is not a token"));
  }
  {
    auto s = base();
    s.merges.push_back("abc");
    EXPECT_THAT(spec_error(s), HasSubstr("merge 1 (\"abc\") is not two tokens"));
  }
  {
    auto s = base();
    s.tokens.push_back("ab");
    s.token_types.push_back(TokenType::normal);
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.tokens[258] (\"ab\") repeats token 256"));
  }
  {
    auto s = base();
    s.bos_id = 258;
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.bos_token_id = 258 is outside the vocabulary of 258 tokens"));
  }
  {
    auto s = base();
    s.unk_id = -7;
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.unknown_token_id = -7"));
  }
  {
    auto s = base();
    s.token_types.pop_back();
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.token_type has 257 entries for 258 tokens"));
  }
  {
    auto s = base();
    s.token_types[5] = TokenType(9);
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.token_type[5] = 9 is not a token type"));
  }
  {
    auto s = base();
    s.pre = "no-such-pre";
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.pre names an unsupported pre-tokenizer"));
  }
  {
    auto s = base();
    s.tokens[0] = "xx";  // byte 0x21 '!' loses its token, and there is no unknown token
    EXPECT_THAT(spec_error(s), HasSubstr("no token \"!\" for byte 0x21"));
  }
  {
    auto s = base();
    s.add_bos = true;
    EXPECT_THAT(spec_error(s), HasSubstr("add_bos_token is true but there is no tokenizer.ggml.bos_token_id"));
  }
  {
    auto s = base();
    s.tokens.clear();
    s.token_types.clear();
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.tokens is empty"));
  }
  {
    auto s = base();
    s.model = TokenizerModel::spm;
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.scores has 0 entries for 258 tokens"));
  }
  {
    auto s = base();
    s.scores.assign(s.tokens.size(), 0.0f);
    s.scores[3] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT(spec_error(s), HasSubstr("tokenizer.ggml.scores[3] is not finite"));
  }
}

}  // namespace
}  // namespace kvc::test
