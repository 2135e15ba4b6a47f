#pragma once
// The tokenizer a GGUF file describes (the tokenizer.ggml.* metadata).
#include "kvc_engine/gguf.hpp"
#include "kvc_engine/tokenizer.hpp"

namespace kvc::engine {

// Reads tokenizer.ggml.{model, tokens, scores, token_type, merges, pre, bos_token_id,
// eos_token_id, unknown_token_id, padding_token_id, add_bos_token, add_space_prefix}. Absent
// optional keys take llama.cpp's defaults (llama: BOS 1, EOS 2, UNK 0, BOS and space prefix
// added; gpt2: none of them). Throws kvc::Error naming the key when one is missing, mistyped or
// out of range; Tokenizer::from_spec validates the rest.
[[nodiscard]] TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& file);

// tokenizer_spec_from_gguf, then Tokenizer::from_spec.
[[nodiscard]] Tokenizer tokenizer_from_gguf(const GgufFile& file);

}  // namespace kvc::engine
