// How the targets of kIsaTraits (table.hpp) meet the dispatch: each target's translation unit
// defines the explicit specialization of isa_table for its Isa, and dispatch.cpp collects them
// by walking kIsaTraits; a target without its translation unit fails to link. The
// specializations are declared here because a use must see one (a TU may use another's table).
#pragma once
#include "kvc/kernels/table.hpp"

#include <cstdint>

namespace kvc::kernels {

template <Isa I>
const Table& isa_table() noexcept;
template <>
const Table& isa_table<Isa::scalar>() noexcept;
template <>
const Table& isa_table<Isa::avx2>() noexcept;
template <>
const Table& isa_table<Isa::avx512>() noexcept;
template <>
const Table& isa_table<Isa::avx512vnni>() noexcept;
template <>
const Table& isa_table<Isa::avx512bf16>() noexcept;

namespace detail {
// The CpuFeature bits this CPU and OS support (cpu_features.cpp).
std::uint32_t cpu_features() noexcept;
}  // namespace detail

}  // namespace kvc::kernels
