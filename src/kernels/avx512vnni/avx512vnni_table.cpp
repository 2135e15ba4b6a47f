// The AVX-512 table plus AVX512-VNNI: the same codecs and exact attention as avx512 (its
// entries), and Precision::fast attention over quantized rows with int8 dot products. Only this
// file is compiled with -mavx512vnni, so no other code can pick up VNNI instructions.
#include "../simd/tu_begin.hpp"

namespace kvc::kernels {
namespace {

#include "../simd/ops_avx2-inl.hpp"
#include "../simd/ops_avx512-inl.hpp"
#include "../simd/kernels-inl.hpp"
#include "../simd/logits_int8-inl.hpp"
#include "../simd/values_int8-inl.hpp"
#include "../simd/int8_generic-inl.hpp"

void attend_avx512vnni(const AttendArgs& a) noexcept {
  if (a.precision != Precision::fast) return isa_table<Isa::avx512>().attend(a);
  StageOverride over;
  ScratchOf<Int8Query, GenericInt8Query> scratch;  // on the stack: attend does not allocate
  int8_stages(a, scratch, over);
  attend<Ops512>(a, over, isa_table<Isa::avx512>().attend);
}

}  // namespace

template <>
const Table& isa_table<Isa::avx512vnni>() noexcept {
  static const Table table = [] {
    Table t = isa_table<Isa::avx512>();
    t.isa = Isa::avx512vnni;
    t.attend = &attend_avx512vnni;
    return t;
  }();
  return table;
}

}  // namespace kvc::kernels
