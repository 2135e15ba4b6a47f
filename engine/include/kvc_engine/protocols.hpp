#pragma once
// What kvc-eval's three protocols share: the protocol names, budgets written as a share of the
// context, and the evaluation text read from one or more files.
//
//   decode   teacher-forced lockstep over whole windows; compression acts while decoding
//   context  prefill C tokens, compress, score the next N tokens (SnapKV / kvpress)
//   passkey  a 5-digit key hidden at a depth of C tokens of filler, retrieved greedily
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

enum class Protocol { decode, context, passkey };

[[nodiscard]] std::string_view protocol_name(Protocol p) noexcept;
// Throws kvc::Error listing the valid names.
[[nodiscard]] Protocol parse_protocol(std::string_view name);

// Rewrites the token-count parameters of a stack spec written as a percentage of the context
// ("h2o:budget=12.5%" at context 1024 -> "h2o:budget=128"), rounding to the nearest token and to
// at least 1. Parameters that are not token counts (h2o's `recent` share, quantizer groups...)
// may not take '%': kvc::Error says which. A spec without '%' is returned unchanged.
[[nodiscard]] std::string resolve_context_shares(std::string_view stack, std::size_t context);

// Reads every file (read_text_file, each within its size limit) and joins them with a blank
// line, so each file starts a new paragraph. Throws kvc::Error if `paths` is empty.
[[nodiscard]] std::string read_texts(const std::vector<std::filesystem::path>& paths);

}  // namespace kvc::engine
