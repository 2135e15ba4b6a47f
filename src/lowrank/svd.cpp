// The basis fit of kvc::lowrank::SVD, compiled once. The right singular vectors of the n x D
// calibration matrix M are the eigenvectors of its Gram matrix M^T M, so the fit is one symmetric
// eigensolve of a D x D matrix in double precision: Householder reduction to tridiagonal form,
// then implicit QL iterations with Wilkinson-style shifts (Golub & Van Loan, "Matrix
// Computations", 8.3). Not Eigen: compiled into this library, Eigen's inline code would meet an
// application's own copy of it, built with other SIMD flags (and so other alignment rules), in
// one link; in the header, its SVD had taken half the compile time of every includer.
#include "kvc/lowrank/svd.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace kvc::lowrank::detail {
namespace {

// Row-major n x n matrix of doubles.
struct Square {
  std::size_t n;
  std::vector<double> at;
  explicit Square(std::size_t size) : n(size), at(size * size, 0.0) {}
  double& operator()(std::size_t i, std::size_t j) { return at[i * n + j]; }
};

// A = Q T Q^T with T tridiagonal (diagonal d, off-diagonal e[i] = T(i, i + 1), e[n - 1] = 0).
// A is overwritten; qt = Q^T is accumulated as the product of the Householder reflections.
// Vectors are kept as rows (of Q^T here, of Z^T below) so that every update runs along memory.
void tridiagonalize(Square& a, Square& qt, std::vector<double>& d, std::vector<double>& e) {
  const std::size_t n = a.n;
  for (std::size_t i = 0; i < n; ++i) qt(i, i) = 1.0;
  std::vector<double> v(n), p(n);
  for (std::size_t k = 0; k + 2 < n; ++k) {
    // Reflect x = A(k+1.., k) onto alpha e_1; the sign of alpha avoids cancellation in v_0.
    const std::size_t m = n - k - 1;
    double sigma = 0.0;
    for (std::size_t i = 1; i < m; ++i) sigma += a(k + 1 + i, k) * a(k + 1 + i, k);
    const double x0 = a(k + 1, k);
    if (sigma == 0.0) continue;  // already tridiagonal in this column
    const double norm = std::sqrt(x0 * x0 + sigma), alpha = x0 > 0.0 ? -norm : norm;
    const double beta = 1.0 / (norm * (norm + std::abs(x0)));  // 2 / v^T v
    v[0] = x0 - alpha;
    for (std::size_t i = 1; i < m; ++i) v[i] = a(k + 1 + i, k);
    // Trailing block: A22 -= v w^T + w v^T with p = beta A22 v, w = p - (beta/2)(p^T v) v.
    double pv = 0.0;
    for (std::size_t i = 0; i < m; ++i) {
      double s = 0.0;
      for (std::size_t j = 0; j < m; ++j) s += a(k + 1 + i, k + 1 + j) * v[j];
      p[i] = beta * s;
      pv += p[i] * v[i];
    }
    for (std::size_t i = 0; i < m; ++i) p[i] -= 0.5 * beta * pv * v[i];
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < m; ++j) a(k + 1 + i, k + 1 + j) -= v[i] * p[j] + p[i] * v[j];
    a(k + 1, k) = a(k, k + 1) = alpha;
    for (std::size_t i = 1; i < m; ++i) a(k + 1 + i, k) = a(k, k + 1 + i) = 0.0;
    // Q^T <- H Q^T: rows k+1.. less beta v (v^T rows).
    std::fill(p.begin(), p.end(), 0.0);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t c = 0; c < n; ++c) p[c] += v[i] * qt(k + 1 + i, c);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t c = 0; c < n; ++c) qt(k + 1 + i, c) -= beta * v[i] * p[c];
  }
  d.assign(n, 0.0);
  e.assign(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    d[i] = a(i, i);
    if (i + 1 < n) e[i] = a(i + 1, i);
  }
}

// Diagonalizes T (d, e as above) by implicit QL steps, each shifted by the eigenvalue of the
// leading 2 x 2 block nearer to d[l]; the rotations are applied to the rows of zt, which holds
// Q^T on entry and the eigenvectors of A on return (row i for eigenvalue d[i]). False if an
// eigenvalue took more than 64 steps.
bool diagonalize(std::vector<double>& d, std::vector<double>& e, Square& zt) {
  const std::size_t n = d.size();
  // Negligible next to T's norm, not only to its neighbours: a cluster of zero eigenvalues (fewer
  // calibration rows than dims) has neighbours of the order of the rounding itself.
  double norm = 0.0;
  for (std::size_t i = 0; i < n; ++i) norm = std::max(norm, std::abs(d[i]) + std::abs(e[i]));
  const double tiny = std::numeric_limits<double>::epsilon() * norm;
  for (std::size_t l = 0; l < n; ++l) {
    for (int steps = 0;; ++steps) {
      std::size_t m = l;  // the first negligible off-diagonal at or after l splits T there
      while (m + 1 < n && std::abs(e[m]) > tiny) ++m;
      if (m == l) break;
      if (steps == 64) return false;
      double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
      double r = std::hypot(g, 1.0);
      g = d[m] - d[l] + e[l] / (g + std::copysign(r, g));
      double s = 1.0, c = 1.0, p = 0.0;
      bool underflow = false;
      for (std::size_t i = m; i-- > l;) {  // chase the bulge from m - 1 up to l
        const double f = s * e[i], b = c * e[i];
        r = std::hypot(f, g);
        e[i + 1] = r;
        if (r == 0.0) {  // the rotation is trivial: T splits, start over from l
          d[i + 1] -= p;
          e[m] = 0.0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2.0 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        for (std::size_t k = 0; k < n; ++k) {
          const double zi = zt(i, k), zi1 = zt(i + 1, k);
          zt(i + 1, k) = s * zi + c * zi1;
          zt(i, k) = c * zi - s * zi1;
        }
      }
      if (underflow) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0.0;
    }
  }
  return true;
}

}  // namespace

std::vector<float> svd_basis(std::span<const float> rows, std::size_t n, std::size_t dim, std::size_t rank) {
  if (rank == 0 || rank > dim) fail("kvc::lowrank::SVD", "rank {} must be in [1, {}]", rank, dim);
  if (n == 0) fail("kvc::lowrank::SVD", "needs at least one calibration row");
  if (rows.size() != n * dim) fail("kvc::lowrank::SVD", "{} floats are not {} rows of {}", rows.size(), n, dim);
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!std::isfinite(rows[i])) fail("kvc::lowrank::SVD", "calibration row {} has a non-finite element", i / dim);
  // M^T M as dot products of M's columns, a chunk of rows at a time, transposed to doubles
  // (products of floats are exact in double); four partial sums per dot so that it vectorizes.
  // Row by row, the rank-1 updates had stored the whole Gram matrix for every row: 2.5x slower.
  constexpr std::size_t kChunk = 256;
  Square gram(dim);
  std::vector<double> cols(dim * kChunk);
  for (std::size_t t0 = 0; t0 < n; t0 += kChunk) {
    const std::size_t len = std::min(kChunk, n - t0);
    for (std::size_t t = 0; t < len; ++t)
      for (std::size_t i = 0; i < dim; ++i) cols[i * kChunk + t] = rows[(t0 + t) * dim + i];
    for (std::size_t i = 0; i < dim; ++i) {
      const double* ci = cols.data() + i * kChunk;
      for (std::size_t j = 0; j <= i; ++j) {
        const double* cj = cols.data() + j * kChunk;
        double part[4] = {};
        std::size_t t = 0;
        for (; t + 4 <= len; t += 4)
          for (std::size_t l = 0; l < 4; ++l) part[l] += ci[t + l] * cj[t + l];
        double sum = (part[0] + part[2]) + (part[1] + part[3]);
        for (; t < len; ++t) sum += ci[t] * cj[t];
        gram(i, j) += sum;
      }
    }
  }
  for (std::size_t i = 0; i < dim; ++i)
    for (std::size_t j = 0; j < i; ++j) gram(j, i) = gram(i, j);
  Square vectors(dim);
  std::vector<double> values, off;
  tridiagonalize(gram, vectors, values, off);
  if (!diagonalize(values, off, vectors))
    fail("kvc::lowrank::SVD", "the eigensolver did not converge on {} calibration rows of {}", n, dim);
  // With fewer rows than dims the eigenvectors of the zero eigenvalue complete the basis.
  std::vector<std::size_t> order(dim);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return values[x] > values[y]; });
  std::vector<float> out(dim * rank);
  for (std::size_t j = 0; j < rank; ++j)
    for (std::size_t i = 0; i < dim; ++i) out[j * dim + i] = static_cast<float>(vectors(order[j], i));
  return out;
}

}  // namespace kvc::lowrank::detail
