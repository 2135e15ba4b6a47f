// Kernel benchmarks on one core: quantize throughput, fused decode attention per storage format
// and ISA (warm: one layer's cache over and over; cold: a cycle of layers totalling > 512 MiB, so
// every read comes from DRAM), and a STREAM-like read bandwidth that is the floor they are
// compared with (docs/performance.md). ISAs are registered for each one this CPU supports.
//
//   kvc_bench_kernels                                   # everything, a few minutes
//   kvc_bench_kernels --benchmark_filter='attend/.*/4096/cold'
#include "kvc/kernels/format.hpp"
#include "kvc/kernels/table.hpp"

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using kvc::kernels::AttendArgs;
using kvc::kernels::Dtype;
using kvc::kernels::Isa;
using kvc::kernels::RowFormat;
using kvc::kernels::Segment;

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr double kMinTime = 0.2;

// Page-aligned, zeroed, first-touched buffer (the benchmark measures memory, not page faults).
struct Buffer {
  std::unique_ptr<std::byte, decltype(&std::free)> data{nullptr, &std::free};
  std::size_t size = 0;
  explicit Buffer(std::size_t bytes) : size(bytes) {
    const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
    data.reset(static_cast<std::byte*>(std::aligned_alloc(4096, rounded)));
    std::memset(data.get(), 0, rounded);
  }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(data.get());
  }
};

// Deterministic, cheap pseudo-gaussian values (sum of uniforms), fast enough for 256 MiB.
void fill_random(float* x, std::size_t n, std::uint64_t seed) {
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const auto a = static_cast<float>(s & 0xFFFF), b = static_cast<float>((s >> 16) & 0xFFFF),
               c = static_cast<float>((s >> 32) & 0xFFFF);
    x[i] = (a + b + c) * (1.0f / 65536.0f) - 1.5f;
  }
}

std::string format_name(RowFormat f) {
  std::string s = kvc::kernels::dtype_name(f.dtype);
  if (kvc::kernels::is_quantized(f.dtype)) s.append("g").append(std::to_string(f.group));
  return s;
}

// ---- read bandwidth ----

// The input as GCC vectors of V (64 bytes for AVX-512, 32 for AVX2: a 64-byte vector compiled
// for AVX2 left GCC 12's accumulators on the stack, at 9 GB/s from L2), summed with four
// accumulators: one vector load per 64 or 32 bytes, and the loads are the only limit. Vector
// loads matter: on an Emerald Rapids core 8-byte loads stream 6-9 GB/s from DRAM where 64-byte
// ones stream 12-14, and a slow probe would flatter every "fraction of the bandwidth" quoted
// against it.
using V64 = std::uint64_t __attribute__((vector_size(64)));
using V32 = std::uint64_t __attribute__((vector_size(32)));

// By reference: a vector returned by value would have one ABI here and another in the callers.
// bytes: a multiple of 4 vectors.
template <class V>
__attribute__((always_inline)) inline void sum_vectors(const std::byte* p, std::size_t bytes, V& sum) {
  const auto* x = reinterpret_cast<const V*>(p);
  V a0{}, a1{}, a2{}, a3{};
  for (std::size_t i = 0; i < bytes / sizeof(V); i += 4) {
    a0 += x[i], a1 += x[i + 1], a2 += x[i + 2], a3 += x[i + 3];
  }
  sum = a0 + a1 + a2 + a3;
}

template <class V>
__attribute__((always_inline)) inline std::uint64_t read_all(const std::byte* p, std::size_t bytes) {
  V s;
  sum_vectors(p, bytes, s);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < sizeof(V) / 8; ++i) total += s[i];
  return total;
}

// Per 512 bytes read, the first `written` bytes of {their sum, zeros} written.
template <class V>
__attribute__((always_inline)) inline void read_write(const std::byte* in, std::byte* out, std::size_t chunks,
                                                      std::size_t written) {
  alignas(64) V block[512 / sizeof(V)] = {};
  for (std::size_t c = 0; c < chunks; ++c) {
    sum_vectors(in + 512 * c, 512, block[0]);
    std::memcpy(out + written * c, block, written);
  }
}

// The probes compiled for the widest vectors this CPU has (buffers 64-byte aligned, sizes a
// multiple of 256 bytes).
struct Probes {
  std::uint64_t (*read)(const std::byte*, std::size_t bytes);
  void (*read_write)(const std::byte*, std::byte*, std::size_t chunks, std::size_t written);
};

#if KVC_ARCH_X86_64
__attribute__((target("avx512f"), noinline)) std::uint64_t read_avx512(const std::byte* p, std::size_t bytes) {
  return read_all<V64>(p, bytes);
}
__attribute__((target("avx512f"), noinline)) void read_write_avx512(const std::byte* in, std::byte* out,
                                                                    std::size_t chunks, std::size_t written) {
  read_write<V64>(in, out, chunks, written);
}
__attribute__((target("avx2"), noinline)) std::uint64_t read_avx2(const std::byte* p, std::size_t bytes) {
  return read_all<V32>(p, bytes);
}
__attribute__((target("avx2"), noinline)) void read_write_avx2(const std::byte* in, std::byte* out, std::size_t chunks,
                                                               std::size_t written) {
  read_write<V32>(in, out, chunks, written);
}

Probes probes() {
  if (kvc::kernels::isa_supported(Isa::avx512)) return {&read_avx512, &read_write_avx512};
  return {&read_avx2, &read_write_avx2};
}
#else
// Other architectures have no probe yet; the benchmarks below skip before asking for one.
Probes probes() { return {nullptr, nullptr}; }
#endif

void BM_ReadBandwidth(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0)) * kMiB;
  if (!kvc::kernels::isa_supported(Isa::avx2)) return state.SkipWithError("needs AVX2");
  const Buffer buf(bytes);
  const Probes p = probes();
  for (auto _ : state) benchmark::DoNotOptimize(p.read(buf.data.get(), bytes));
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Reads like BM_ReadBandwidth and writes `state.range(1)` <= 512 bytes per 512 read, as quantizing
// rows of 128 floats does (int8 group 32: 144, int4 group 32: 80): what a plain stream reaches
// with quantize's traffic, in GB/s of bytes read.
void BM_ReadWriteBandwidth(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0)) * kMiB;
  const auto written = static_cast<std::size_t>(state.range(1));
  if (written > 512) return state.SkipWithError("at most 512 bytes written per 512 read");
  if (!kvc::kernels::isa_supported(Isa::avx2)) return state.SkipWithError("needs AVX2");
  const Buffer in(bytes), out(bytes / 512 * written);
  const Probes p = probes();
  for (auto _ : state) {
    p.read_write(in.data.get(), out.data.get(), bytes / 512, written);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- quantize ----

constexpr std::size_t kQuantizeDim = 128;
constexpr std::size_t kQuantizeBytes = 256 * kMiB;

const Buffer& quantize_input() {
  static const Buffer input = [] {
    Buffer b(kQuantizeBytes);
    fill_random(b.as<float>(), kQuantizeBytes / 4, 1);
    return b;
  }();
  return input;
}

// `l2`: the first 64 KiB of the input over and over, as an engine encodes the K and V rows its
// projection has just written; otherwise the whole DRAM-resident input.
void BM_Quantize(benchmark::State& state, Isa isa, RowFormat f, bool l2) {
  const auto& t = kvc::kernels::table(isa);
  const Buffer& input = quantize_input();
  const std::size_t bytes = l2 ? 64 * 1024 : kQuantizeBytes, rows = bytes / 4 / kQuantizeDim;
  const std::size_t rb = kvc::kernels::row_bytes(f, kQuantizeDim);
  const Buffer out(rows * rb);
  for (auto _ : state) {
    t.encode_rows(f, kQuantizeDim, input.as<const float>(), kQuantizeDim, rows, out.as<std::byte>(), rb);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] =
      benchmark::Counter(static_cast<double>(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_QuantizeChannels(benchmark::State& state, Isa isa, Dtype d, std::size_t tokens, bool l2) {
  const auto& t = kvc::kernels::table(isa);
  const Buffer& input = quantize_input();
  const std::size_t blocks = l2 ? 1 : kQuantizeBytes / 4 / kQuantizeDim / tokens;
  const std::size_t bb = kvc::kernels::channel_block_bytes(d, kQuantizeDim, tokens);
  const Buffer out(blocks * bb);
  for (auto _ : state) {
    for (std::size_t b = 0; b < blocks; ++b)
      t.encode_channels(d, kQuantizeDim, tokens, input.as<const float>() + b * tokens * kQuantizeDim, kQuantizeDim,
                        out.as<std::byte>() + b * bb);
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(blocks * tokens * kQuantizeDim * 4);
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- decode attention: head_dim 128, 32 query heads sharing 8 KV heads ----

constexpr std::size_t kHeadDim = 128, kQueryHeads = 32, kKvHeads = 8;
constexpr std::size_t kColdBytes = 512 * kMiB;

void BM_Attend(benchmark::State& state, Isa isa, RowFormat f, std::size_t tokens, bool cold,
               kvc::kernels::Precision precision) {
  const auto& t = kvc::kernels::table(isa);
  const std::size_t rb = kvc::kernels::row_bytes(f, kHeadDim);
  const std::size_t head_bytes = tokens * rb;                  // K (or V) rows of one KV head
  const std::size_t layer_bytes = 2 * kKvHeads * head_bytes;  // what one layer's attention reads
  const std::size_t layers = cold ? kColdBytes / layer_bytes + 1 : 1;
  const Buffer cache(layers * layer_bytes);
  {  // encode one head's rows once, copy them everywhere (every page is written)
    std::vector<float> rows(tokens * kHeadDim);
    fill_random(rows.data(), rows.size(), 2);
    t.encode_rows(f, kHeadDim, rows.data(), kHeadDim, tokens, cache.as<std::byte>(), rb);
    for (std::size_t off = head_bytes; off < cache.size; off += head_bytes)
      std::memcpy(cache.as<std::byte>() + off, cache.as<std::byte>(), head_bytes);
  }
  std::vector<float> q(kQueryHeads * kHeadDim);
  fill_random(q.data(), q.size(), 3);
  std::vector<float> m(kQueryHeads), l(kQueryHeads), acc(kQueryHeads * kHeadDim);
  const std::size_t group = kQueryHeads / kKvHeads;

  std::size_t layer = 0;
  for (auto _ : state) {
    std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
    std::fill(l.begin(), l.end(), 0.0f);
    std::fill(acc.begin(), acc.end(), 0.0f);
    const std::byte* base = cache.as<std::byte>() + layer * layer_bytes;
    for (std::size_t h = 0; h < kKvHeads; ++h) {
      const Segment seg{base + 2 * h * head_bytes, base + (2 * h + 1) * head_bytes, tokens};
      AttendArgs a;
      a.q = q.data() + h * group * kHeadDim;
      a.n_q = group;
      a.k_dim = a.v_dim = kHeadDim;
      a.k_format = a.v_format = f;
      a.k_stride = a.v_stride = rb;
      a.segments = &seg;
      a.n_segments = 1;
      a.rows = tokens;
      a.scale = 0.0883883f;
      a.precision = precision;
      a.m = m.data() + h * group;
      a.l = l.data() + h * group;
      a.acc = acc.data() + h * group * kHeadDim;
      t.attend(a);
    }
    benchmark::DoNotOptimize(acc.data());
    layer = layer + 1 == layers ? 0 : layer + 1;
  }
  const auto it = benchmark::Counter::kIsIterationInvariantRate;
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(layer_bytes) * 1e-9, it);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), it);
  state.counters["layer_MiB"] = static_cast<double>(layer_bytes) / static_cast<double>(kMiB);
}

// KIVI's keys (Table::attend_channels): per head, the key code rows, then the value rows, then
// one key_dim {scale, min} pair per channel for each group of kChannelGroup tokens; the same
// heads, queries and layer cycle as BM_Attend, so "attend_channels/avx2/int4/4096/warm" compares
// with "attend/avx2/int4g32/4096/warm" (per-token int4 keys and values, the same bytes per token).
constexpr std::size_t kChannelGroup = 32;

void BM_AttendChannels(benchmark::State& state, Isa isa, Dtype kd, std::size_t tokens, bool cold) {
  const auto& t = kvc::kernels::table(isa);
  const RowFormat vf{kd, 32};
  const std::size_t kb = kvc::kernels::code_bytes({kd, 0}, kHeadDim), vb = kvc::kernels::row_bytes(vf, kHeadDim);
  const std::size_t groups = tokens / kChannelGroup, pb = kHeadDim * 4;
  const std::size_t head_bytes = tokens * (kb + vb) + groups * pb;
  const std::size_t layer_bytes = kKvHeads * head_bytes;
  const std::size_t layers = cold ? kColdBytes / layer_bytes + 1 : 1;
  const Buffer cache(layers * layer_bytes);
  {
    std::vector<float> rows(tokens * kHeadDim);
    fill_random(rows.data(), rows.size(), 2);
    std::vector<std::byte> block(kvc::kernels::channel_block_bytes(kd, kHeadDim, kChannelGroup));
    std::byte* head = cache.as<std::byte>();
    for (std::size_t g = 0; g < groups; ++g) {
      t.encode_channels(kd, kHeadDim, kChannelGroup, rows.data() + g * kChannelGroup * kHeadDim, kHeadDim, block.data());
      std::memcpy(head + g * kChannelGroup * kb, block.data(), kChannelGroup * kb);
      std::memcpy(head + tokens * (kb + vb) + g * pb, block.data() + kChannelGroup * kb, pb);
    }
    t.encode_rows(vf, kHeadDim, rows.data(), kHeadDim, tokens, head + tokens * kb, vb);
    for (std::size_t off = head_bytes; off < cache.size; off += head_bytes)
      std::memcpy(cache.as<std::byte>() + off, head, head_bytes);
  }
  std::vector<float> q(kQueryHeads * kHeadDim);
  fill_random(q.data(), q.size(), 3);
  std::vector<float> m(kQueryHeads), l(kQueryHeads), acc(kQueryHeads * kHeadDim);
  const std::size_t group = kQueryHeads / kKvHeads;
  std::size_t layer = 0;
  for (auto _ : state) {
    std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
    std::fill(l.begin(), l.end(), 0.0f);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (std::size_t h = 0; h < kKvHeads; ++h) {
      const std::byte* base = cache.as<std::byte>() + layer * layer_bytes + h * head_bytes;
      const Segment seg{base, base + tokens * kb, tokens};
      AttendArgs a;
      a.q = q.data() + h * group * kHeadDim;
      a.n_q = group;
      a.k_dim = a.v_dim = kHeadDim;
      a.k_format = {kd, 0};
      a.v_format = vf;
      a.k_stride = kb;
      a.v_stride = vb;
      a.segments = &seg;
      a.n_segments = 1;
      a.rows = tokens;
      a.scale = 0.0883883f;
      a.m = m.data() + h * group;
      a.l = l.data() + h * group;
      a.acc = acc.data() + h * group * kHeadDim;
      t.attend_channels(a, base + tokens * (kb + vb), kChannelGroup);
    }
    benchmark::DoNotOptimize(acc.data());
    layer = layer + 1 == layers ? 0 : layer + 1;
  }
  const auto it = benchmark::Counter::kIsIterationInvariantRate;
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(layer_bytes) * 1e-9, it);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), it);
  state.counters["layer_MiB"] = static_cast<double>(layer_bytes) / static_cast<double>(kMiB);
}

void register_all() {
  benchmark::RegisterBenchmark("read_bandwidth/1024MiB", BM_ReadBandwidth)->Arg(1024)->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
  for (std::int64_t written : {80, 144})
    benchmark::RegisterBenchmark(("read_write_bandwidth/256MiB/512to" + std::to_string(written)).c_str(), BM_ReadWriteBandwidth)
        ->Args({256, written})
        ->MinTime(kMinTime)
        ->Unit(benchmark::kMillisecond);

  // Every format of the table: grouped ones at three group sizes, element ones but f32 (a copy).
  std::vector<RowFormat> quantized, formats, fast_formats;
  for (const kvc::kernels::FormatTraits& t : kvc::kernels::kFormatTraits) {
    formats.push_back(kvc::kernels::sample_format(t.dtype));
    if (t.family == kvc::kernels::Family::element) {
      if (t.bits < 32) quantized.push_back({t.dtype, 0});
      continue;
    }
    for (std::uint16_t g : {std::uint16_t{32}, std::uint16_t{64}, std::uint16_t{128}}) {
      quantized.push_back({t.dtype, g});
      // Precision::fast is the kernel the group size matters to most (per-group int32 -> fp32
      // steps and weights): its larger groups too, but for the 2-bit codes.
      if (t.bits > 2 || g == 32) fast_formats.push_back({t.dtype, g});
    }
  }
  std::vector<Dtype> grouped;
  for (const kvc::kernels::FormatTraits& t : kvc::kernels::kFormatTraits)
    if (t.family == kvc::kernels::Family::grouped) grouped.push_back(t.dtype);
  for (Isa isa : kvc::kernels::supported_isas()) {
    if (isa == Isa::avx512vnni || isa == Isa::avx512bf16) continue;  // their codecs are the avx512 ones
    const std::string in = kvc::kernels::isa_name(isa);
    for (RowFormat f : quantized) {
      if (isa == Isa::scalar && f.group != 0 && f.group != 32) continue;  // the reference is slow
      for (bool l2 : {false, true})
        benchmark::RegisterBenchmark(("quantize/" + in + "/" + format_name(f) + (l2 ? "/l2" : "/dram")).c_str(),
                                     BM_Quantize, isa, f, l2)
            ->MinTime(kMinTime)
            ->Unit(benchmark::kMillisecond);
    }
    // T32: KIVI's group flush (G = 32 tokens); T128: larger blocks.
    if (isa != Isa::scalar)
      for (Dtype d : grouped)
        for (std::size_t tokens : {32, 128})
          for (bool l2 : {false, true})
            benchmark::RegisterBenchmark(("quantize_channels/" + in + "/" + kvc::kernels::dtype_name(d) + "/T" +
                                          std::to_string(tokens) + (l2 ? "/l2" : "/dram"))
                                             .c_str(),
                                         BM_QuantizeChannels, isa, d, tokens, l2)
                ->MinTime(kMinTime)
                ->Unit(benchmark::kMillisecond);
    if (isa != Isa::scalar)
      for (Dtype d : {Dtype::q4, Dtype::q2})
        for (std::size_t tokens : {4096, 16384})
          for (bool cold : {false, true})
            benchmark::RegisterBenchmark(("attend_channels/" + in + "/" + kvc::kernels::dtype_name(d) + "/" +
                                          std::to_string(tokens) + (cold ? "/cold" : "/warm"))
                                             .c_str(),
                                         BM_AttendChannels, isa, d, tokens, cold)
                ->MinTime(kMinTime)
                ->Unit(benchmark::kMillisecond);
  }

  const std::vector<RowFormat> half_formats{{Dtype::f16, 0}, {Dtype::bf16, 0}};  // the bf16 dot products' rows
  // avx512vnni differs from avx512 only in Precision::fast over quantized rows, avx512bf16 from
  // avx512vnni only in Precision::fast over float rows: "+fast" only.
  const auto formats_of = [&](Isa isa) -> const std::vector<RowFormat>& {
    return isa == Isa::avx512vnni ? fast_formats : isa == Isa::avx512bf16 ? half_formats : formats;
  };
  for (Isa isa : kvc::kernels::supported_isas())
    for (RowFormat f : formats_of(isa))
      for (std::size_t tokens : {1024, 4096, 16384, 65536})
        for (bool cold : {false, true}) {
          if (isa == Isa::scalar && (tokens != 4096 || cold)) continue;  // one reference point
          const bool fast = isa == Isa::avx512vnni || isa == Isa::avx512bf16;
          const std::string name = "attend/" + std::string(kvc::kernels::isa_name(isa)) + (fast ? "+fast/" : "/") +
                                   format_name(f) + "/" + std::to_string(tokens) + (cold ? "/cold" : "/warm");
          benchmark::RegisterBenchmark(name.c_str(), BM_Attend, isa, f, tokens, cold,
                                       fast ? kvc::kernels::Precision::fast : kvc::kernels::Precision::exact)
              ->MinTime(kMinTime)
              ->Unit(benchmark::kMillisecond);
        }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::string isas;
  for (Isa isa : kvc::kernels::supported_isas()) isas += std::string(isas.empty() ? "" : ",") + kvc::kernels::isa_name(isa);
  try {
    benchmark::AddCustomContext("kvc_active_isa", kvc::kernels::active_isa_name());
  } catch (const std::exception& e) {  // an unusable KVC_ISA: say so instead of terminating
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  benchmark::AddCustomContext("kvc_supported_isas", isas);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
