// Fuzzes GGUF files end to end: the reader, the tokenizer built from the metadata (then encoding
// and decoding a fixed text), the llama model built from the tensors, and one forward step of
// that model. Every hostile file must fail with kvc::Error at load time; a model that loads must
// run (a non-finite weight that reached the cache would abort on its finiteness contract).
#include "fuzz_input.hpp"
#include "kvc/core/error.hpp"
#include "kvc_engine/gguf.hpp"
#include "kvc_engine/model.hpp"
#include "kvc_engine/plain_cache.hpp"
#include "kvc_engine/tokenizer_gguf.hpp"
#include "kvc_engine/transformer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::engine;
  try {
    GgufFile file = GgufFile::open(kvc::fuzz::write_input(data, size));
    try {
      const Tokenizer tokenizer = tokenizer_from_gguf(file);
      const auto ids = tokenizer.encode("Hello w\xc3\xb6rld 12345 <|im_start|>user\n  \xf0\x9f\x98\x80",
                                        EncodeOptions{.add_bos = true, .parse_special = true});
      for (const std::int32_t id : ids)
        if (id < 0 || id >= tokenizer.vocab_size()) __builtin_trap();  // an id the model cannot embed
      (void)tokenizer.decode(ids);
    } catch (const kvc::Error&) {
    }
    const Model model = Model::from_gguf(std::move(file));
    Transformer transformer(model);
    PlainCache cache(model.config().attention_shape());
    for (std::int32_t t = 0; t < 2; ++t) (void)transformer.forward(cache, t % model.config().vocab_size, t);
  } catch (const kvc::Error&) {
  }
  return 0;
}
