// Math written once over the op set (Highway's math-inl.h idea), compiled by each SIMD
// translation unit inside its anonymous namespace.

// Cephes expf: |relative error| < 2e-7 on [-87, 0]; below -87.3 (and -inf) gives exactly 0; NaN
// gives NaN, as std::exp in the reference does (a NaN logit must not turn into a finite weight).
template <class O>
inline typename O::F vexp(typename O::F x) noexcept {
  using F = typename O::F;
  const auto tiny = O::less(x, O::set1(-87.3f));
  const auto nan = O::unordered(x);
  const F c = O::min(O::max(x, O::set1(-87.3f)), O::set1(88.0f));
  const F n = O::round_nearest(O::mul(c, O::set1(1.44269504088896341f)));
  F r = O::fnmadd(n, O::set1(0.693359375f), c);
  r = O::fnmadd(n, O::set1(-2.12194440e-4f), r);
  F y = O::set1(1.9875691500e-4f);
  y = O::fmadd(y, r, O::set1(1.3981999507e-3f));
  y = O::fmadd(y, r, O::set1(8.3334519073e-3f));
  y = O::fmadd(y, r, O::set1(4.1665795894e-2f));
  y = O::fmadd(y, r, O::set1(1.6666665459e-1f));
  y = O::fmadd(y, r, O::set1(5.0000001201e-1f));
  y = O::fmadd(y, O::mul(r, r), O::add(r, O::set1(1.0f)));
  return O::select(nan, x, O::zero_where(tiny, O::mul(y, O::pow2(n))));
}
