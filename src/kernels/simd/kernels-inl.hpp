// The generic kernels, written once against an op set (Ops256, Ops512) and compiled by each
// SIMD translation unit inside its anonymous namespace, after tu_begin.hpp and its op set.
#include "math-inl.hpp"
#include "formats-inl.hpp"
#include "fp8-inl.hpp"
#include "codec-inl.hpp"
#include "attend-inl.hpp"
#include "softmax-inl.hpp"
#include "attend_channels-inl.hpp"
