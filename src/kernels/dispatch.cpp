#include "kvc/core/error.hpp"
#include "kvc/kernels/table.hpp"
#include "target.hpp"
#include "tuning.hpp"

#include <array>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

namespace kvc::kernels {
namespace {

using Getter = const Table& (*)() noexcept;

// Only the targets this build compiles are referenced (the others' tables are not linked in).
template <Isa I>
constexpr Getter getter() noexcept {
  if constexpr (isa_built(I))
    return &isa_table<I>;
  else
    return nullptr;
}

template <std::size_t... I>
constexpr std::array<Getter, kIsaCount> getters(std::index_sequence<I...>) noexcept {
  return {getter<static_cast<Isa>(I)>()...};
}
constexpr std::array<Getter, kIsaCount> kGetters = getters(std::make_index_sequence<kIsaCount>{});

struct SupportedIsas {
  std::array<Isa, kIsaCount> list{};
  std::size_t size = 0;
};

const SupportedIsas& supported() noexcept {
  static const SupportedIsas s = [] {
    SupportedIsas r;
    for (const IsaTraits& t : kIsaTraits)
      if (isa_supported(t.isa)) r.list[r.size++] = t.isa;
    return r;
  }();
  return s;
}

}  // namespace

const char* isa_name(Isa isa) noexcept { return traits(isa).name; }

bool isa_supported(Isa isa) noexcept {
  const std::uint32_t needed = traits(isa).features;
  return isa_built(isa) && (detail::cpu_features() & needed) == needed;
}

std::span<const Isa> supported_isas() noexcept {
  const SupportedIsas& s = supported();
  return {s.list.data(), s.size};
}

const Table& table(Isa isa) noexcept {
  KVC_CONTRACT(isa_supported(isa), "kernel table requested for an ISA this CPU does not support");
  return kGetters[static_cast<std::size_t>(isa)]();
}

Isa preferred_isa() noexcept {
  const Isa widest = supported_isas().back();
  return widest == Isa::avx512bf16 && detail::bf16_dot_slower_than_fma() ? Isa::avx512vnni : widest;
}

Isa resolve_isa(const char* forced) {
  if (forced == nullptr || *forced == '\0') return preferred_isa();
  std::string names;
  for (const IsaTraits& t : kIsaTraits) {
    names.append(names.empty() ? "" : ", ").append(t.name);
    if (std::string_view(forced) != t.name) continue;
    if (!isa_supported(t.isa)) fail("KVC_ISA", "'{}' is not supported by this CPU or OS", forced);
    return t.isa;
  }
  fail("KVC_ISA", "'{}' is not one of {}", forced, names);
}

const Table& active() {
  static const Table& chosen = table(resolve_isa(std::getenv("KVC_ISA")));
  return chosen;
}

const char* active_isa_name() { return isa_name(active().isa); }

}  // namespace kvc::kernels
