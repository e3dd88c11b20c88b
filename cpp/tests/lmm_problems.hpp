// Small linear mixed-model problems as plain arrays, shared by the C++ unit
// tests: the rows, the core's normal equations built from them and, for the
// brute-force references, Z and Lambda formed densely (here and only here).
#pragma once

#include <cstdint>
#include <vector>

#include "multilevel/normal_equations.hpp"

namespace multilevel::testing {

/// y, w (n,) (w empty: unweighted); x (n, p); per term codes (n,), z (n, p_k) and its number of levels,
/// terms sorted by decreasing number of levels (as the core expects); ntheta = sum p_k (p_k + 1) / 2.
struct Problem {
  VectorXd y, w;
  MatrixXd x;
  std::vector<Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> codes;
  std::vector<MatrixXd> z;
  std::vector<Index> nlevels;
  Index ntheta = 0;
};

/// The core's normal equations of the problem's rows.
inline NormalEquations normal_equations(const Problem& pr, PairPatterns* patterns = nullptr) {
  std::vector<TermInput> terms;
  using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  for (std::size_t k = 0; k < pr.z.size(); ++k)
    terms.push_back(TermInput{CodesMap(pr.codes[k].data(), pr.codes[k].size(), Eigen::InnerStride<>(1)),
                              StridedMatrixMap(pr.z[k].data(), pr.z[k].rows(), pr.z[k].cols(), S(pr.z[k].rows(), 1)),
                              pr.nlevels[k]});
  return NormalEquations(StridedVectorMap(pr.y.data(), pr.y.size(), Eigen::InnerStride<>(1)),
                         StridedMatrixMap(pr.x.data(), pr.x.rows(), pr.x.cols(), S(pr.x.rows(), 1)),
                         StridedVectorMap(pr.w.data(), pr.w.size(), Eigen::InnerStride<>(1)), terms, patterns);
}

/// Dense Z (n, q) and Lambda (q, q) in the core's term order.
inline void dense_z_lambda(const Problem& pr, const VectorXd& theta, MatrixXd& Z, MatrixXd& Lam) {
  const Index n = pr.y.size();
  Index q = 0;
  for (std::size_t k = 0; k < pr.z.size(); ++k) q += pr.nlevels[k] * pr.z[k].cols();
  Z = MatrixXd::Zero(n, q);
  Lam = MatrixXd::Zero(q, q);
  Index off = 0, th = 0;
  for (std::size_t k = 0; k < pr.z.size(); ++k) {
    const Index pk = pr.z[k].cols();
    MatrixXd lam = MatrixXd::Zero(pk, pk);
    for (Index c = 0; c < pk; ++c)
      for (Index r = c; r < pk; ++r) lam(r, c) = theta[th++];
    for (Index i = 0; i < n; ++i) Z.block(i, off + pr.codes[k][i] * pk, 1, pk) = pr.z[k].row(i);
    for (Index g = 0; g < pr.nlevels[k]; ++g) Lam.block(off + g * pk, off + g * pk, pk, pk) = lam;
    off += pr.nlevels[k] * pk;
  }
}

}  // namespace multilevel::testing
