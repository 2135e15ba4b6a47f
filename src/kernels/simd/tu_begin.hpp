// The start of every SIMD kernel translation unit (src/kernels/<isa>/<isa>_table.cpp): the
// headers the -inl.hpp bodies need, included before the TU opens its anonymous namespace, in
// which it then includes its op set (ops_<isa>-inl.hpp) and kernels-inl.hpp.
#pragma once
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics self-initialize their undefined vectors (__Y = __Y), which its
// -W(maybe-)uninitialized reports at every inlined use: a known false positive of the headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "kvc/kernels/format.hpp"
#include "kvc/kernels/table.hpp"  // plain structs and declarations: no inline code to leak
#include "../target.hpp"
#include "../tuning.hpp"
