// CPUID + XGETBV: an instruction set is usable only if the CPU has it and the OS saves its
// register state on context switches (a kernel or hypervisor may disable AVX-512 state).
// x86-64 only: other architectures build the scalar table alone, which needs no detection.
#include "kernels/target.hpp"
#include "kernels/tuning.hpp"
#include "kvc/kernels/table.hpp"

#if KVC_ARCH_X86_64
#include <cpuid.h>
#endif

#include <cstdint>

namespace kvc::kernels::detail {
namespace {

struct Features {
  std::uint32_t bits = 0;  // CpuFeature
  bool intel = false;
};

#if KVC_ARCH_X86_64
struct Regs {
  std::uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(std::uint32_t leaf, std::uint32_t subleaf) noexcept {
  Regs r;
  if (__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d) == 0) return {};
  return r;
}

// The intrinsic would need -mxsave on this translation unit; the instruction does not.
std::uint64_t xgetbv0() noexcept {
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

constexpr bool bit(std::uint32_t r, unsigned i) noexcept { return ((r >> i) & 1u) != 0; }

Features detect() noexcept {
  Features f;
  const Regs l0 = cpuid(0, 0);  // vendor "GenuineIntel" in EBX, EDX, ECX
  f.intel = l0.b == 0x756E6547u && l0.d == 0x49656E69u && l0.c == 0x6C65746Eu;
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27);
  if (!osxsave || !bit(l1.c, 28) || !bit(l1.c, 12) || !bit(l1.c, 29)) return f;  // AVX, FMA, F16C
  const std::uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6u) == 0x6u;             // SSE and AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xE0u) == 0xE0u;  // opmask, ZMM0-15 upper, ZMM16-31
  const Regs l7 = cpuid(7, 0);
  if (!ymm_state || !bit(l7.b, 5)) return f;
  f.bits |= kCpuAvx2;
  // F, DQ, BW, VL: the avx512 table uses nothing else.
  if (!zmm_state || !bit(l7.b, 16) || !bit(l7.b, 17) || !bit(l7.b, 30) || !bit(l7.b, 31)) return f;
  f.bits |= kCpuAvx512;
  if (!bit(l7.c, 11)) return f;  // VNNI: not implied by F/DQ/BW/VL (Skylake-X lacks it)
  f.bits |= kCpuAvx512Vnni;
  // Cooper Lake, Sapphire Rapids and Zen 4 on have both; Ice Lake has VNNI without BF16.
  if (l7.a >= 1 && bit(cpuid(7, 1).a, 5)) f.bits |= kCpuAvx512Bf16;  // sub-leaf 1 must exist
  return f;
}
#else
// Elsewhere only the portable scalar table is built, and it needs no CPU feature.
Features detect() noexcept { return {}; }
#endif

const Features& features() noexcept {
  static const Features f = detect();
  return f;
}

}  // namespace

std::uint32_t cpu_features() noexcept { return features().bits; }

// No CPUID bit tells how fast vdpbf16ps is, so the rule is by vendor, from measurements: Zen 4
// issues it at the rate of vfmadd231ps (3.67 G/s each, twice the products per instruction), an
// Emerald Rapids core at a quarter of that rate (1.2 against 4.8 G/s), where `fast` attention over
// f16 rows ran 5-20 % slower than the exact kernel and over bf16 rows no faster.
bool bf16_dot_slower_than_fma() noexcept { return (features().bits & kCpuAvx512Bf16) != 0 && features().intel; }

// Intel's L2 streamer stops at every 4 KiB page, which a batch of 8 rows of 128 floats fills: on
// Emerald Rapids, quantizing DRAM-resident rows waited on memory at each batch (0.5-0.6x of the
// read-and-write stream), and fetching the rows 32 ahead into L2 changed it by -15 to +68 %,
// +35 % in the median, over 12 interleaved pairs (16 to 64 ahead alike). On Zen 4 the encoder ran
// at the stream's rate without it, and prefetching 8 to 64 rows ahead lost 15-50 %. Intel client
// cores and other vendors' CPUs are unmeasured. docs/performance.md has the figures.
std::size_t encode_prefetch_rows() noexcept { return features().intel ? 32 : 0; }

}  // namespace kvc::kernels::detail
