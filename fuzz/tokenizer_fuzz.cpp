// Fuzzes the llama2.c tokenizer loader and then the encoder and decoder on text taken from the
// same input: the first byte chooses the vocabulary size the file is checked against (1..512),
// the next two bytes how much of the rest is the file (the remainder is text to encode).
#include "fuzz_input.hpp"
#include "kvc/core/error.hpp"
#include "kvc_engine/tokenizer.hpp"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::int32_t vocab = 1 + std::int32_t(data[0]) * 2;
  const std::size_t file_bytes = std::min<std::size_t>(size - 3, std::size_t(data[1]) << 8 | data[2]);
  const std::uint8_t* file = data + 3;
  const std::string_view text(reinterpret_cast<const char*>(file + file_bytes), size - 3 - file_bytes);
  try {
    const auto tokenizer = kvc::engine::Tokenizer::load(kvc::fuzz::write_input(file, file_bytes), vocab);
    const auto ids = tokenizer.encode(text, true);
    for (const std::int32_t id : ids)
      if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();  // an id the model cannot embed
    (void)tokenizer.decode(ids);
  } catch (const kvc::Error&) {
  }
  return 0;
}
