// The AVX-512 table plus AVX512-VNNI and AVX512-BF16: the avx512vnni table, whose
// Precision::fast attention here also runs f16 and bf16 rows as bf16 dot products.
// Only this file is compiled with -mavx512bf16, so no other code can pick up BF16 instructions.
#include "../simd/tu_begin.hpp"

namespace kvc::kernels {
namespace {

#include "../simd/ops_avx2-inl.hpp"
#include "../simd/ops_avx512-inl.hpp"
#include "../simd/kernels-inl.hpp"
#include "../simd/logits_int8-inl.hpp"
#include "../simd/values_int8-inl.hpp"
#include "../simd/int8_generic-inl.hpp"
#include "../simd/attend_bf16-inl.hpp"

void attend_avx512bf16(const AttendArgs& a) noexcept {
  if (a.precision != Precision::fast) return isa_table<Isa::avx512>().attend(a);
  ScratchOf<Int8Query, GenericInt8Query, Bf16Query> scratch;  // on the stack: attend does not allocate
  if (!int8_rows(a.k_format.dtype) && !int8_rows(a.v_format.dtype)) {
    StageOverrideOf<kGenericBlock> over;  // no int8 stage: the generic stages' block
    bf16_stages(a, scratch, over);
    return attend<Ops512>(a, over, isa_table<Isa::avx512>().attend);
  }
  StageOverride over;
  int8_stages(a, scratch, over);
  bf16_stages(a, scratch, over);
  attend<Ops512>(a, over, isa_table<Isa::avx512>().attend);
}

}  // namespace

template <>
const Table& isa_table<Isa::avx512bf16>() noexcept {
  static const Table table = [] {
    Table t = isa_table<Isa::avx512vnni>();
    t.isa = Isa::avx512bf16;
    t.attend = &attend_avx512bf16;
    return t;
  }();
  return table;
}

}  // namespace kvc::kernels
