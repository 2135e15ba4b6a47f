// Fuzzes the llama2.c checkpoint loader: any bytes either load into a model that validates or
// fail with kvc::Error; a crash, a sanitizer report, another exception or an allocation past
// libFuzzer's -malloc_limit_mb is a defect.
#include "fuzz_input.hpp"
#include "kvc/core/error.hpp"
#include "kvc_engine/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto model = kvc::engine::Model::load(kvc::fuzz::write_input(data, size));
    model.config().validate();
  } catch (const kvc::Error&) {
  }
  return 0;
}
