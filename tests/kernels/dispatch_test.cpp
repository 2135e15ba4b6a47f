// Run-time selection: CPUID/XGETBV support, the KVC_ISA override and its errors.
#include "isa_test_util.hpp"

#include "kvc/core/error.hpp"
#include "../../src/kernels/tuning.hpp"  // the library's private vendor rules

#if KVC_ARCH_X86_64
#include <cpuid.h>
#endif

#include <cstdlib>
#include <cstring>
#include <string>

namespace kvc::kernels::testing {
namespace {

TEST(Dispatch, SupportedIsasStartWithScalarAndAgreeWithIsaSupported) {
  const auto isas = supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::scalar);
  std::size_t count = 0;
  for (Isa isa : kAllIsas) count += isa_supported(isa) ? 1 : 0;
  EXPECT_EQ(isas.size(), count);
  for (Isa isa : isas) {
    EXPECT_TRUE(isa_supported(isa)) << isa_name(isa);
    EXPECT_EQ(table(isa).isa, isa) << isa_name(isa);
  }
  // A supported target's features cover those of every target whose features are a subset
  // (avx512 needs avx2's: the AVX-512 table also runs 8-lane code).
  for (const IsaTraits& a : kIsaTraits)
    for (const IsaTraits& b : kIsaTraits)
      if (isa_supported(a.isa) && (b.features & a.features) == b.features) {
        EXPECT_TRUE(isa_supported(b.isa)) << a.name << " without " << b.name;
      }
  std::string list;
  for (Isa isa : isas) list += std::string(isa_name(isa)) + " ";
  RecordProperty("supported_isas", list);
  std::printf("supported ISAs: %s; active: %s\n", list.c_str(), active_isa_name());
}

// The vendor as CPUID leaf 0 spells it (EBX, EDX, ECX), read here independently of the library;
// empty off x86-64, where no vendor rule applies.
std::string cpu_vendor() {
#if KVC_ARCH_X86_64
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return {};
  char name[12];
  std::memcpy(name, &b, 4);
  std::memcpy(name + 4, &d, 4);
  std::memcpy(name + 8, &c, 4);
  return std::string(name, 12);
#else
  return {};
#endif
}

// The targets a build has, by architecture, written out: the scalar table everywhere, the x86
// tables in x86-64 builds only (whose source files other compilers cannot build).
TEST(Dispatch, EachArchitectureBuildsItsTargetsOnly) {
#if defined(__x86_64__) || defined(_M_X64)
  const bool x86 = true;
#else
  const bool x86 = false;
#endif
  EXPECT_EQ(kArch == Arch::x86_64, x86);
  EXPECT_TRUE(isa_built(Isa::scalar));
  EXPECT_TRUE(isa_supported(Isa::scalar));
  for (const Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512vnni, Isa::avx512bf16}) {
    EXPECT_EQ(isa_built(isa), x86) << isa_name(isa);
    if (!x86) {
      EXPECT_FALSE(isa_supported(isa)) << isa_name(isa);
    }
  }
  if (!x86) {
    ASSERT_EQ(supported_isas().size(), 1u);
    EXPECT_EQ(preferred_isa(), Isa::scalar);
    EXPECT_EQ(detail::encode_prefetch_rows(), 0u);
    EXPECT_FALSE(detail::bf16_dot_slower_than_fma());
  }
}

TEST(Dispatch, PreferredIsaIsTheWidestSaveBf16OnIntel) {
  const Isa preferred = preferred_isa(), widest = supported_isas().back();
  const bool intel = cpu_vendor() == "GenuineIntel";
  EXPECT_EQ(preferred, widest == Isa::avx512bf16 && intel ? Isa::avx512vnni : widest);
  EXPECT_TRUE(isa_supported(preferred));
  std::printf("vendor %s; widest ISA: %s; preferred: %s\n", cpu_vendor().c_str(), isa_name(widest),
              isa_name(preferred));
}

TEST(Dispatch, QuantizerPrefetchesAheadOnIntelOnly) {
  EXPECT_EQ(detail::encode_prefetch_rows(), cpu_vendor() == "GenuineIntel" ? 32u : 0u);
}

TEST(Dispatch, ResolveIsaPicksThePreferredOrTheForcedOne) {
  EXPECT_EQ(resolve_isa(nullptr), preferred_isa());
  EXPECT_EQ(resolve_isa(""), preferred_isa());
  for (Isa isa : supported_isas()) EXPECT_EQ(resolve_isa(isa_name(isa)), isa);
}

TEST(Dispatch, ResolveIsaRejectsUnknownAndUnsupportedNames) {
  try {
    resolve_isa("avx9000");
    FAIL() << "an unknown ISA name must throw";
  } catch (const kvc::Error& e) {
    std::string names;
    for (const IsaTraits& t : kIsaTraits) names.append(names.empty() ? "" : ", ").append(t.name);
    EXPECT_NE(std::string(e.what()).find("KVC_ISA: 'avx9000' is not one of " + names), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_isa("AVX2"), kvc::Error);  // names are exact
  for (Isa isa : kAllIsas) {
    if (isa_supported(isa)) continue;
    EXPECT_THROW(resolve_isa(isa_name(isa)), kvc::Error) << isa_name(isa);
  }
}

// active() resolves KVC_ISA once per process, so each case runs in a fresh child process:
// the "threadsafe" death-test style re-executes this binary for the statement.
int active_in_child(const char* value) {
  setenv("KVC_ISA", value, 1);
  try {
    const Table& t = active();
    std::fprintf(stderr, "active ISA: %s\n", active_isa_name());
    std::exit(static_cast<int>(t.isa));
  } catch (const kvc::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(42);
  }
}

// Named *DeathTest (GoogleTest's convention) like every test that re-executes its binary: the
// aarch64 build, whose tests run under qemu-user, cannot re-execute one (scripts/test.sh).
TEST(DispatchDeathTest, KvcIsaForcesTheActiveTableInAFreshProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (Isa isa : supported_isas()) {
    const std::string pattern = std::string("active ISA: ") + isa_name(isa);
    EXPECT_EXIT(active_in_child(isa_name(isa)), ::testing::ExitedWithCode(static_cast<int>(isa)), pattern);
  }
  EXPECT_EXIT(active_in_child(""), ::testing::ExitedWithCode(static_cast<int>(preferred_isa())),
              std::string("active ISA: ") + isa_name(preferred_isa()));
  EXPECT_EXIT(active_in_child("sse9"), ::testing::ExitedWithCode(42), "KVC_ISA: 'sse9' is not one of");
}

}  // namespace
}  // namespace kvc::kernels::testing
