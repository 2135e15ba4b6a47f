// Softmax weights of one query head for the observers (Table::softmax_weights), written once
// against an Ops type and compiled by each per-ISA translation unit in its anonymous namespace.
// Needs the Ops header and kvc/kernels/table.hpp to be included first.

template <class O>
inline void softmax_weights(const float* logits, std::size_t n, float max, float scale, kvc::kernels::Combine combine,
                            float* out) noexcept {
  using F = typename O::F;
  const F m = O::set1(max), s = O::set1(scale);
  const auto step = [&](std::size_t r, std::size_t k) __attribute__((always_inline)) {
    const F p = O::mul(vexp<O>(O::sub(O::load_n(logits + r, k), m)), s);
    switch (combine) {
      case kvc::kernels::Combine::assign: return O::store_n(out + r, p, k);
      case kvc::kernels::Combine::add: return O::store_n(out + r, O::add(O::load_n(out + r, k), p), k);
      // p first: O::max(a, b) is a > b ? a : b, the reference's std::max(out, p) with a NaN p too.
      case kvc::kernels::Combine::max: return O::store_n(out + r, O::max(p, O::load_n(out + r, k)), k);
    }
  };
  std::size_t r = 0;
  for (; r + O::W <= n; r += O::W) step(r, O::W);
  if (r < n) step(r, n - r);
}
