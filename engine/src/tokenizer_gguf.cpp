#include "kvc_engine/tokenizer_gguf.hpp"

#include "kvc/core/error.hpp"

#include <limits>

namespace kvc::engine {

TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& file) {
  const std::string where = fmt::format("kvc::engine::tokenizer_spec_from_gguf({})", file.path().string());
  TokenizerSpec spec;
  const std::string& model = file.get_string("tokenizer.ggml.model");
  if (model == "llama") {
    spec.model = TokenizerModel::spm;
    spec.bos_id = 1, spec.eos_id = 2, spec.unk_id = 0;
    spec.add_bos = spec.add_space_prefix = true;
  } else if (model == "gpt2") {
    spec.model = TokenizerModel::bpe;
  } else {
    fail(where, "tokenizer.ggml.model = \"{}\" is not supported (llama or gpt2)", model);
  }
  spec.tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (file.find("tokenizer.ggml.scores")) spec.scores = file.get_f32_array("tokenizer.ggml.scores");
  if (file.find("tokenizer.ggml.token_type")) {
    const std::vector<std::int32_t> types = file.get_i32_array("tokenizer.ggml.token_type");
    spec.token_types.reserve(types.size());
    for (const std::int32_t t : types) spec.token_types.push_back(TokenType(t));  // range checked by from_spec
  }
  if (spec.model == TokenizerModel::bpe) {
    spec.merges = file.get_string_array("tokenizer.ggml.merges");
    if (file.find("tokenizer.ggml.pre")) spec.pre = file.get_string("tokenizer.ggml.pre");
  }
  const auto id = [&](std::string_view key, std::int32_t& out) {
    if (!file.find(key)) return;
    const std::uint32_t value = file.get_u32(key);
    if (value > std::uint32_t(std::numeric_limits<std::int32_t>::max()))
      fail(where, "{} = {} is not a token id", key, value);
    out = std::int32_t(value);
  };
  id("tokenizer.ggml.bos_token_id", spec.bos_id);
  id("tokenizer.ggml.eos_token_id", spec.eos_id);
  id("tokenizer.ggml.unknown_token_id", spec.unk_id);
  id("tokenizer.ggml.padding_token_id", spec.pad_id);
  if (file.find("tokenizer.ggml.add_bos_token")) spec.add_bos = file.get_bool("tokenizer.ggml.add_bos_token");
  if (file.find("tokenizer.ggml.add_space_prefix"))
    spec.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix");
  return spec;
}

Tokenizer tokenizer_from_gguf(const GgufFile& file) { return Tokenizer::from_spec(tokenizer_spec_from_gguf(file)); }

}  // namespace kvc::engine
