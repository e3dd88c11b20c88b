// Working correlation matrices R_j of clustered rows, applied through a
// whitening transform W_j with W_j' W_j = R_j^{-1}.
//
// Whitening instead of inverting keeps every per-cluster quantity a cross
// product of whitened rows (D' R^-1 D = (W D)'(W D)), symmetric by
// construction, and costs O(n_j p) for the closed forms (exchangeable, AR(1)).
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <cstdint>

#include "multilevel/mutants.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

enum class CorrelationKind : int {
  Independence = 0,  ///< R = I
  Exchangeable = 1,  ///< R = (1 - alpha) I + alpha 1 1'
  Ar1 = 2,           ///< R_ik = alpha^|t_i - t_k| (gaps in t allowed)
  Table = 3,         ///< R_ik = table(t_i, t_k): unstructured, m-dependent, fixed
  Car1 = 4,          ///< R_ik = alpha^|s_i - s_k| for continuous times s (alpha > 0)
};

/// A working correlation structure and its current parameter(s).
struct WorkingCorrelation {
  CorrelationKind kind = CorrelationKind::Independence;
  double alpha = 0.0;  ///< Exchangeable and Ar1
  MatrixXd table;      ///< Table: (T, T) symmetric, unit diagonal; indexed by position

  /// Replace the rows of `block` (n_j, k) by W_j block, where W_j' W_j = R_j^{-1}.
  ///
  /// `position` points to the cluster's n_j integer positions (0-based, in
  /// the block's row order, increasing for Ar1); `time` to its n_j
  /// continuous times (Car1 only, increasing; may be null otherwise). Adds
  /// log det R_j to `logdet`. Returns false if R_j is not positive definite
  /// (the block is then left unspecified).
  bool whiten(const std::int32_t* position, const double* time, Eigen::Ref<MatrixXd> block,
              double& logdet) const {
    const Index n = block.rows();
    switch (kind) {
      case CorrelationKind::Independence:
        return true;
      case CorrelationKind::Exchangeable: {
        // W = (I - c 1 1'/n) / sqrt(1 - alpha) with (2c - c^2)/n = alpha / (1 + (n-1) alpha);
        // det R = (1 - alpha)^(n-1) (1 + (n-1) alpha).
        const double denom = 1.0 + static_cast<double>(n - 1) * alpha;
        if (!(alpha < 1.0) || !(denom > 0.0)) return false;
        const double c = 1.0 - std::sqrt((1.0 - alpha) / denom);
        const Eigen::RowVectorXd mean = block.colwise().mean();
        block.rowwise() -= c * mean;
        block /= std::sqrt(1.0 - alpha);
        // Mutant 3: the log(1 + (n-1) alpha) factor of det R forgotten.
        logdet += static_cast<double>(n - 1) * std::log1p(-alpha) + (ML_MUTANT(3) ? 0.0 : std::log(denom));
        return true;
      }
      case CorrelationKind::Ar1:
      case CorrelationKind::Car1: {
        // Innovations of an AR(1) sampled at increasing times: row i becomes
        // (b_i - rho_i b_{i-1}) / sqrt(1 - rho_i^2), rho_i = alpha^(t_i - t_{i-1});
        // det R = prod (1 - rho_i^2).
        if (!(std::abs(alpha) < 1.0) || (kind == CorrelationKind::Car1 && !(alpha > 0.0))) return false;
        for (Index i = n - 1; i >= 1; --i) {
          const double gap = kind == CorrelationKind::Ar1 ? static_cast<double>(position[i] - position[i - 1])
                                                          : time[i] - time[i - 1];
          if (!(gap > 0.0)) return false;
          const double rho = ML_MUTANT(4) ? alpha : std::pow(alpha, gap);  // mutant 4: gaps ignored
          const double root = std::sqrt(1.0 - rho * rho);
          if (!(root > 0.0)) return false;
          block.row(i) = (block.row(i) - rho * block.row(i - 1)) / root;
          logdet += (ML_MUTANT(5) ? 1.0 : 2.0) * std::log(root);  // mutant 5: det of W, not of R
        }
        return true;
      }
      case CorrelationKind::Table: {
        MatrixXd r(n, n);
        for (Index i = 0; i < n; ++i)
          for (Index k = 0; k < n; ++k) r(i, k) = table(position[i], position[k]);
        Eigen::LLT<MatrixXd> llt(r);
        if (llt.info() != Eigen::Success) return false;
        llt.matrixL().solveInPlace(block);
        logdet += 2.0 * llt.matrixLLT().diagonal().array().log().sum();
        return true;
      }
    }
    return false;
  }
};

}  // namespace multilevel
