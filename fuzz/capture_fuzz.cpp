// Fuzzes the KV capture reader (kvc/data/capture.hpp): any bytes either load into a capture
// whose shape and sizes agree with its header or fail with kvc::Error.
#include "fuzz_input.hpp"
#include "kvc/core/error.hpp"
#include "kvc/data/capture.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto capture = kvc::data::load_capture(kvc::fuzz::write_input(data, size));
    capture.shape().validate();
    if (capture.tokens() == 0) __builtin_trap();
  } catch (const kvc::Error&) {
  }
  return 0;
}
