#pragma once
// Per-token tags: what an engine knows about a token that a class-based policy (SepLLM) needs and
// the keys cannot tell, given to KVCache::append / prefill. A tag is a set of bits.
#include <cstdint>

namespace kvc {

using TokenTag = std::uint8_t;

namespace tag {
inline constexpr TokenTag none = 0;
// Punctuation or a line break that closes a segment of text (. , ; : ! ? and newlines).
inline constexpr TokenTag separator = 1u << 0;
// A control token of the tokenizer (BOS, EOS, chat markers).
inline constexpr TokenTag special = 1u << 1;
}  // namespace tag

}  // namespace kvc
