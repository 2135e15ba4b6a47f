#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"

#include <cstdlib>
#include <string_view>

namespace kvc::kernels {

const Table& scalar_table() noexcept;

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) noexcept { return isa == Isa::scalar; }

const Table& table(Isa isa) noexcept {
  KVC_CONTRACT(isa_supported(isa), "kernel table requested for an ISA this CPU does not support");
  return scalar_table();
}

const Table& active() {
  static const Table& chosen = [&]() -> const Table& {
    const char* forced = std::getenv("KVC_ISA");
    if (forced == nullptr || *forced == '\0') return scalar_table();
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
      if (std::string_view(forced) != isa_name(isa)) continue;
      if (!isa_supported(isa)) fail("KVC_ISA", "'{}' is not supported by this CPU", forced);
      return table(isa);
    }
    fail("KVC_ISA", "'{}' is not one of scalar, avx2, avx512", forced);
  }();
  return chosen;
}

}  // namespace kvc::kernels
