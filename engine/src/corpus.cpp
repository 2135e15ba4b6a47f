#include "kvc_engine/corpus.hpp"

#include "kvc/core/error.hpp"

#include <fstream>

namespace kvc::engine {

std::vector<std::string> split_paragraphs(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find("\n\n", start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.emplace_back(text.substr(start, end - start));
    std::size_t next = end;
    while (next < text.size() && text[next] == '\n') ++next;
    if (next == end) break;  // end of text
    start = next;
  }
  return out;
}

std::vector<std::int32_t> encode_corpus(const Tokenizer& tokenizer, std::string_view text) {
  // The tokenizer's own newline (the byte token 13 of llama2.c's vocabularies), so the corpus is
  // encoded the same way for any model's tokenizer.
  const std::vector<std::int32_t> newline = tokenizer.encode("\n", /*add_bos=*/false, /*dummy_prefix=*/false);
  std::vector<std::int32_t> tokens;
  const std::vector<std::string> paragraphs = split_paragraphs(text);
  for (std::size_t i = 0; i < paragraphs.size(); ++i) {
    if (i > 0) tokens.insert(tokens.end(), newline.begin(), newline.end());
    // The first paragraph takes the vocabulary's own space prefix (llama2.c: yes, GPT-2 BPE: no).
    EncodeOptions options;
    if (i > 0) options.space_prefix = false;
    const auto encoded = tokenizer.encode(paragraphs[i], options);
    tokens.insert(tokens.end(), encoded.begin(), encoded.end());
  }
  return tokens;
}

std::string read_text_file(const std::filesystem::path& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("kvc::engine::read_text_file", "cannot open {}", path.string());
  // Read in chunks and stop one byte past the limit: the file size cannot be trusted (pipes,
  // /dev/zero and growing files report none or a wrong one).
  std::string text;
  constexpr std::size_t chunk = std::size_t{1} << 20;
  while (in && text.size() <= max_bytes) {
    const std::size_t old_size = text.size();
    text.resize(old_size + chunk);
    in.read(text.data() + old_size, std::streamsize(chunk));
    text.resize(old_size + std::size_t(in.gcount()));
  }
  if (text.size() > max_bytes)
    fail("kvc::engine::read_text_file", "{} is larger than the {} MiB limit for an evaluation text", path.string(),
         max_bytes >> 20);
  if (in.bad()) fail("kvc::engine::read_text_file", "read error in {}", path.string());
  if (text.empty()) fail("kvc::engine::read_text_file", "{} is empty", path.string());
  return text;
}

Windows make_windows(std::vector<std::int32_t> tokens, std::size_t window, std::size_t max_windows,
                     std::int32_t bos) {
  if (window == 0) fail("kvc::engine::make_windows", "window length must be positive");
  Windows w{std::move(tokens), window, 0, bos};
  const std::size_t available = w.available();
  if (available == 0)
    fail("kvc::engine::make_windows", "the text has {} tokens, fewer than one window of {}",
         w.tokens.size(), window);
  w.count = max_windows == 0 ? available : std::min(max_windows, available);
  return w;
}

}  // namespace kvc::engine
