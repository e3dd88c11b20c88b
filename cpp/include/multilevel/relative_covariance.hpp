// theta -> Lambda: the relative covariance factor of each random-effects term.
#pragma once

#include <vector>

#include "multilevel/normal_equations.hpp"

namespace multilevel {

/// Lower-triangular lambda_k (p, p) of one term from theta, whose segment for
/// the term holds the lower triangle by column (lme4's order).
inline MatrixXd term_lambda(const TermLayout& t, const Eigen::Ref<const VectorXd>& theta) {
  MatrixXd lam = MatrixXd::Zero(t.p, t.p);
  Index idx = t.theta_offset;
  for (Index c = 0; c < t.p; ++c)
    for (Index r = c; r < t.p; ++r) lam(r, c) = theta[idx++];
  return lam;
}

/// Block-diagonal Lambda over the rest index space (q_rest, q_rest): level g
/// of term k carries lambda_k at [offset_k + g p_k, ...). Entries equal to
/// zero stay in the pattern, so products keep a fixed structure.
inline SparseMatrix rest_lambda(const std::vector<TermLayout>& terms,
                                const std::vector<MatrixXd>& lambdas, Index q_rest) {
  std::vector<Eigen::Triplet<double>> trip;
  for (std::size_t k = 1; k < terms.size(); ++k) {
    const TermLayout& t = terms[k];
    for (Index g = 0; g < t.nlevels; ++g)
      for (Index c = 0; c < t.p; ++c)
        for (Index r = c; r < t.p; ++r)
          trip.emplace_back(t.offset + g * t.p + r, t.offset + g * t.p + c, lambdas[k](r, c));
  }
  SparseMatrix lam(q_rest, q_rest);
  lam.setFromTriplets(trip.begin(), trip.end());
  return lam;
}

}  // namespace multilevel
