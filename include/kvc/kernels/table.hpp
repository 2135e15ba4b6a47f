#pragma once
// The typed kernel table: one instance per instruction set, chosen once at run time.
// Every entry is noexcept and allocation-free; preconditions are the caller's contract.
#include "kvc/kernels/format.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvc::kernels {

// avx512vnni: the avx512 kernels plus AVX512-VNNI int8 dot products for Precision::fast.
// avx512bf16: avx512vnni plus AVX512-BF16 dot products for Precision::fast over f16/bf16 rows.
enum class Isa : std::uint8_t { scalar, avx2, avx512, avx512vnni, avx512bf16 };

// CPU features a kernel table needs, each with the OS support for its registers
// (src/cpu_features.cpp detects them). Every feature implies the ones above it.
enum CpuFeature : std::uint32_t {
  kCpuAvx2 = 1u << 0,        // AVX2, FMA, F16C; YMM state
  kCpuAvx512 = 1u << 1,      // AVX-512 F, DQ, BW, VL; ZMM and opmask state
  kCpuAvx512Vnni = 1u << 2,  // AVX512-VNNI
  kCpuAvx512Bf16 = 1u << 3,  // AVX512-BF16
};

// The architectures a target's kernels compile for: `any` is portable C++, x86_64 needs x86-64
// intrinsics and -m flags. kArch is the one this translation unit is compiled for (the library
// and its users are, so both agree on which tables exist).
enum class Arch : std::uint8_t { any, x86_64, other };
// KVC_ARCH_X86_64 guards the code that only x86-64 compilers accept (<cpuid.h>, intrinsics).
#if defined(__x86_64__) || defined(_M_X64)
#define KVC_ARCH_X86_64 1
inline constexpr Arch kArch = Arch::x86_64;
#else
#define KVC_ARCH_X86_64 0
inline constexpr Arch kArch = Arch::other;
#endif

// The targets, one row per Isa in its order (simdjson's implementation list): the name KVC_ISA
// and the logs use, the architecture whose builds compile it, and the CPU features the target's
// translation unit is compiled for (src/CMakeLists.txt builds src/kernels/<name>/<name>_table.cpp
// on that architecture only, with the matching -m flags). Every Isa is named on every
// architecture, so KVC_ISA=avx2 on aarch64 is "not supported" rather than unknown.
// Dispatch, the supported-ISA query and the tests derive from this table.
struct IsaTraits {
  Isa isa;
  const char* name;
  Arch arch;
  std::uint32_t features;  // CpuFeature bits
};

inline constexpr IsaTraits kIsaTraits[] = {
    {Isa::scalar, "scalar", Arch::any, 0},
    {Isa::avx2, "avx2", Arch::x86_64, kCpuAvx2},
    {Isa::avx512, "avx512", Arch::x86_64, kCpuAvx2 | kCpuAvx512},
    {Isa::avx512vnni, "avx512vnni", Arch::x86_64, kCpuAvx2 | kCpuAvx512 | kCpuAvx512Vnni},
    {Isa::avx512bf16, "avx512bf16", Arch::x86_64, kCpuAvx2 | kCpuAvx512 | kCpuAvx512Vnni | kCpuAvx512Bf16},
};
inline constexpr std::size_t kIsaCount = sizeof(kIsaTraits) / sizeof(kIsaTraits[0]);

namespace detail {
// As for Dtype (format.hpp): a new enumerator must be named here, and then needs its row.
static constexpr bool is_named(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar:
    case Isa::avx2:
    case Isa::avx512:
    case Isa::avx512vnni:
    case Isa::avx512bf16: return true;
  }
  return false;
}
}  // namespace detail
static_assert(detail::rows_in_enum_order<&IsaTraits::isa>(kIsaTraits),
              "kIsaTraits must list the targets in the order of Isa.");
static_assert(!detail::is_named(static_cast<Isa>(kIsaCount)), "Every Isa needs its row in kIsaTraits.");

static constexpr const IsaTraits& traits(Isa isa) noexcept { return kIsaTraits[static_cast<std::size_t>(isa)]; }

// Whether this build has `isa`'s kernel table: portable targets everywhere, the others on
// their architecture only. isa_supported() is false for the rest.
static constexpr bool isa_built(Isa isa) noexcept { return traits(isa).arch == Arch::any || traits(isa).arch == kArch; }

// How attention may compute. ISAs without int8 or bf16 dot products always compute exactly.
//   exact: q.K and weights.V in fp32 on the dequantized rows (ref::attend within 2e-5).
//   fast, quantized rows (q8, q4, q2) on avx512vnni and avx512bf16: q is quantized to int8 once
//          per call (per head: step = max|q| / 127) and each block of softmax weights times the
//          rows' value scales to u8 (per head, group and block: step = max / 255), so both
//          products run as int8 dot products (AVX512-VNNI vpdpbusd, 64 multiply-adds per
//          instruction instead of 16); the error this adds is of the order of int8
//          quantization of the cache itself (docs/formats.md).
//   fast, f16 and bf16 rows on avx512bf16: q, the softmax weights and f16 rows are rounded to
//          bf16 (relative error 2^-8 each: q and weights to nearest even, f16 half away from
//          zero) and multiplied with AVX512-BF16 vdpbf16ps (32 multiply-adds per instruction)
//          into fp32 sums. Subnormals (f16 below 2^-14, bf16 below 2^-126) read as zero; rows
//          must be finite (KVCache's are). f32 rows stay exact: their attention is bound by memory.
enum class Precision : std::uint8_t { exact, fast };

// A run of rows stored back to back: row i of the keys starts at k + i * k_stride.
struct Segment {
  const std::byte* k = nullptr;
  const std::byte* v = nullptr;
  std::size_t rows = 0;
};

// Decode attention of the query heads of one KV group over encoded rows, as an online-softmax
// update: m (running max), l (running normalizer) and acc (unnormalized output) are read and
// written, so a head's rows can be fed in several calls (pages, a full-precision tail).
// Start with m = -inf, l = 0, acc = 0; the attention output is acc / l.
struct AttendArgs {
  const float* q = nullptr;  // [n_q][k_dim], row stride k_dim
  std::size_t n_q = 0;
  std::size_t k_dim = 0;  // stored key and value dims (smaller than head_dim under low rank)
  std::size_t v_dim = 0;
  RowFormat k_format{};
  RowFormat v_format{};
  std::size_t k_stride = 0;  // bytes between consecutive rows of one segment
  std::size_t v_stride = 0;
  const Segment* segments = nullptr;
  std::size_t n_segments = 0;
  std::size_t rows = 0;  // attend to the first `rows` rows of the segments (causal limit)
  float scale = 1.0f;    // logit = scale * dot(q, k)
  Precision precision = Precision::exact;
  float* m = nullptr;    // [n_q]
  float* l = nullptr;    // [n_q]
  float* acc = nullptr;  // [n_q][v_dim]
  // Optional: raw logits of every attended row, logits[i * logits_stride + r]; nullptr when
  // no policy observes attention, which then costs nothing.
  float* logits = nullptr;
  std::size_t logits_stride = 0;
};

// Bytes of a per-channel block (KIVI-style keys): `tokens` rows of codes, each packed like the
// codes of a row of `format` (q8/q4/q2), then one {f16 scale, f16 min} pair per channel:
//   [codes of token 0 | ... | codes of token tokens-1][scale,min of channel 0 | ... channel dim-1]
// The quantization group of a channel is the block's `tokens` values; RowFormat::group is unused.
static constexpr std::size_t channel_block_bytes(Dtype dtype, std::size_t dim, std::size_t tokens) noexcept {
  return tokens * code_bytes(RowFormat{dtype, 0}, dim) + dim * kGroupParamBytes;
}

// How softmax_weights combines a query head's weights into `out` (GQA reduction of the heads'
// attention for the observers).
enum class Combine : std::uint8_t { assign, add, max };

struct Table {
  Isa isa;
  // Encode n rows of `dim` floats (src rows src_stride floats apart) into `format`.
  void (*encode_rows)(RowFormat format, std::size_t dim, const float* src, std::size_t src_stride,
                      std::size_t n, std::byte* dst, std::size_t dst_stride) noexcept;
  // Decode n encoded rows into floats.
  void (*decode_rows)(RowFormat format, std::size_t dim, const std::byte* src, std::size_t src_stride,
                      std::size_t n, float* dst, std::size_t dst_stride) noexcept;
  void (*attend)(const AttendArgs& args) noexcept;
  // Per-channel quantization of `tokens` rows of `dim` floats (src rows src_stride floats apart)
  // into one block of channel_block_bytes(dtype, dim, tokens) bytes; dtype is q8, q4 or q2,
  // dim a multiple of 8, tokens >= 1. Codes and params are bitwise those of ref::encode_channels.
  void (*encode_channels)(Dtype dtype, std::size_t dim, std::size_t tokens, const float* src,
                          std::size_t src_stride, std::byte* dst) noexcept;
  void (*decode_channels)(Dtype dtype, std::size_t dim, std::size_t tokens, const std::byte* src,
                          float* dst, std::size_t dst_stride) noexcept;
  // attend over rows whose keys are per-channel codes (KIVI's frozen groups): the segments' key
  // rows are the codes of one token each (code_bytes of args.k_format = {q8|q4|q2, 0}, k_stride
  // apart), row r (counted from the first row of the segments) belongs to group r / group_tokens,
  // whose k_dim {f16 scale, f16 min} pairs, one per channel, start at key_params + g * k_dim *
  // kGroupParamBytes. Values are rows of args.v_format as for attend, with the same online-softmax
  // state and logits. Exact precision only (args.precision is ignored).
  void (*attend_channels)(const AttendArgs& args, const std::byte* key_params, std::size_t group_tokens) noexcept;
  // out[r] = combine(out[r], exp(logits[r] - max) * scale) for r < n: one query head's softmax
  // weights from the logits attend wrote and its final max and 1 / sum. Within 2 ulp of the
  // reference's std::exp (not bitwise).
  void (*softmax_weights)(const float* logits, std::size_t n, float max, float scale, Combine combine,
                          float* out) noexcept;
};

const char* isa_name(Isa isa) noexcept;

// Whether this build has `isa`'s kernels and this CPU and OS can run them.
bool isa_supported(Isa isa) noexcept;

// Every ISA this CPU and OS can run, scalar first, widest last.
std::span<const Isa> supported_isas() noexcept;

// The ISA active() runs unless KVC_ISA says otherwise: the widest supported one, except that
// avx512bf16 gives way to avx512vnni (the same table without bf16 `fast` attention over f16/bf16
// rows) on CPUs whose bf16 dot products are no faster than fp32 FMAs: Intel's, so far.
Isa preferred_isa() noexcept;

// The ISA that active() chooses for a value of KVC_ISA (nullptr or "" = preferred_isa()).
// Throws kvc::Error if `forced` names an unknown or unsupported ISA.
Isa resolve_isa(const char* forced);

// The table of one ISA; contract: isa_supported(isa).
const Table& table(Isa isa) noexcept;

// The table chosen once per process: preferred_isa(), or the one named by the
// environment variable KVC_ISA (a name of kIsaTraits). Throws kvc::Error on the first call if
// KVC_ISA names an unknown or unsupported ISA.
const Table& active();

// isa_name(active().isa): which kernels this process runs, for logs and benchmark contexts.
const char* active_isa_name();

}  // namespace kvc::kernels
