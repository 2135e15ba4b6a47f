// The Eigen half of kvc::lowrank::SVD, compiled once: Eigen's SVD alone had taken about half the
// compile time of every translation unit that included the header.
#include "kvc/lowrank/svd.hpp"

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <cmath>

namespace kvc::lowrank::detail {

std::vector<float> svd_basis(std::span<const float> rows, std::size_t n, std::size_t dim, std::size_t rank) {
  if (rank == 0 || rank > dim) fail("kvc::lowrank::SVD", "rank {} must be in [1, {}]", rank, dim);
  if (rows.size() != n * dim) fail("kvc::lowrank::SVD", "{} floats are not {} rows of {}", rows.size(), n, dim);
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!std::isfinite(rows[i])) fail("kvc::lowrank::SVD", "calibration row {} has a non-finite element", i / dim);
  // The right singular vectors of M are the eigenvectors of the Gram matrix M^T M (D x D): one
  // symmetric eigensolve, in double precision, whatever n is (for n < D the eigenvectors of the
  // zero eigenvalue complete the basis). Eigen's SVD solvers took 4-5x as long to compile.
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::MatrixXd m =
      Eigen::Map<const RowMajor>(rows.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(dim))
          .cast<double>();
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(m.cols(), m.cols());
  gram.selfadjointView<Eigen::Lower>().rankUpdate(m.transpose());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  if (eig.info() != Eigen::Success) fail("kvc::lowrank::SVD", "the eigensolver did not converge on {} rows", n);
  // Eigenvalues come in increasing order: the basis is the last `rank` columns, largest first.
  const Eigen::MatrixXd v = eig.eigenvectors().rowwise().reverse();
  std::vector<float> out(dim * rank);
  Eigen::Map<Eigen::MatrixXf>(out.data(), static_cast<Eigen::Index>(dim), static_cast<Eigen::Index>(rank)) =
      v.leftCols(static_cast<Eigen::Index>(rank)).cast<float>();
  return out;
}

namespace {
using ConstMatrix = Eigen::Map<const Eigen::MatrixXf>;
using ConstVector = Eigen::Map<const Eigen::VectorXf>;
using Vector = Eigen::Map<Eigen::VectorXf>;
}  // namespace

void project_onto(const float* basis, std::size_t dim, std::size_t rank, const float* in, float* out) noexcept {
  const auto d = static_cast<Eigen::Index>(dim), r = static_cast<Eigen::Index>(rank);
  Vector(out, r).noalias() = ConstMatrix(basis, d, r).transpose() * ConstVector(in, d);
}

void restore_from(const float* basis, std::size_t dim, std::size_t rank, const float* in, float* out) noexcept {
  const auto d = static_cast<Eigen::Index>(dim), r = static_cast<Eigen::Index>(rank);
  Vector(out, d).noalias() = ConstMatrix(basis, d, r) * ConstVector(in, r);
}

}  // namespace kvc::lowrank::detail
