// The start of every AVX-512 kernel translation unit (avx512, avx512vnni, avx512bf16): the
// headers the -inl.hpp bodies need, included before the TU opens its anonymous namespace.
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
#include "../tuning.hpp"
