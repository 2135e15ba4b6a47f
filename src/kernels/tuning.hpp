// Facts about the running CPU that no CPUID bit gives, chosen by vendor from measurements
// (cpu_features.cpp says which): what the kernels and the dispatch tune by, besides the ISA.
#pragma once
#include <cstddef>

namespace kvc::kernels::detail {
// True where `vdpbf16ps` issues at a lower rate of products than `vfmadd231ps`.
bool bf16_dot_slower_than_fma() noexcept;
// How many rows ahead encode_rows prefetches its DRAM-resident input into L2 (0: none).
std::size_t encode_prefetch_rows() noexcept;
}  // namespace kvc::kernels::detail
