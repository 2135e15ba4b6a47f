#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "tuning.hpp"

#include <array>
#include <cstdlib>
#include <string_view>

namespace kvc::kernels {

const Table& scalar_table() noexcept;
const Table& avx2_table() noexcept;
const Table& avx512_table() noexcept;
const Table& avx512vnni_table() noexcept;
const Table& avx512bf16_table() noexcept;

namespace detail {
bool cpu_supports(Isa isa) noexcept;
}

namespace {

constexpr std::array<Isa, 5> kAllIsas{Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512vnni, Isa::avx512bf16};

struct SupportedIsas {
  std::array<Isa, kAllIsas.size()> list{};
  std::size_t size = 0;
};

const SupportedIsas& supported() noexcept {
  static const SupportedIsas s = [] {
    SupportedIsas r;
    for (Isa isa : kAllIsas)
      if (detail::cpu_supports(isa)) r.list[r.size++] = isa;
    return r;
  }();
  return s;
}

}  // namespace

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::avx512bf16: return "avx512bf16";
  }
  return "?";
}

bool isa_supported(Isa isa) noexcept { return detail::cpu_supports(isa); }

std::span<const Isa> supported_isas() noexcept {
  const SupportedIsas& s = supported();
  return {s.list.data(), s.size};
}

const Table& table(Isa isa) noexcept {
  KVC_CONTRACT(isa_supported(isa), "kernel table requested for an ISA this CPU does not support");
  switch (isa) {
    case Isa::avx2: return avx2_table();
    case Isa::avx512: return avx512_table();
    case Isa::avx512vnni: return avx512vnni_table();
    case Isa::avx512bf16: return avx512bf16_table();
    case Isa::scalar: break;
  }
  return scalar_table();
}

Isa preferred_isa() noexcept {
  const Isa widest = supported_isas().back();
  return widest == Isa::avx512bf16 && detail::bf16_dot_slower_than_fma() ? Isa::avx512vnni : widest;
}

Isa resolve_isa(const char* forced) {
  if (forced == nullptr || *forced == '\0') return preferred_isa();
  for (Isa isa : kAllIsas) {
    if (std::string_view(forced) != isa_name(isa)) continue;
    if (!isa_supported(isa)) fail("KVC_ISA", "'{}' is not supported by this CPU or OS", forced);
    return isa;
  }
  fail("KVC_ISA", "'{}' is not one of scalar, avx2, avx512, avx512vnni, avx512bf16", forced);
}

const Table& active() {
  static const Table& chosen = table(resolve_isa(std::getenv("KVC_ISA")));
  return chosen;
}

const char* active_isa_name() { return isa_name(active().isa); }

}  // namespace kvc::kernels
