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

#include "multilevel/types.hpp"

namespace multilevel {

enum class CorrelationKind : int {
  Independence = 0,  ///< R = I
  Exchangeable = 1,  ///< R = (1 - alpha) I + alpha 1 1'
  Ar1 = 2,           ///< R_ik = alpha^|t_i - t_k| (gaps in t allowed)
  Table = 3,         ///< R_ik = table(t_i, t_k): unstructured, m-dependent, fixed
};

/// A working correlation structure and its current parameter(s).
struct WorkingCorrelation {
  CorrelationKind kind = CorrelationKind::Independence;
  double alpha = 0.0;  ///< Exchangeable and Ar1
  MatrixXd table;      ///< Table: (T, T) symmetric, unit diagonal; indexed by position

  /// Replace the rows of `block` (n_j, k) by W_j block, where W_j' W_j = R_j^{-1}.
  ///
  /// `position` points to the cluster's n_j integer positions (0-based, in
  /// the block's row order, increasing for Ar1). Returns false if R_j is not
  /// positive definite (the block is then left unspecified).
  bool whiten(const std::int32_t* position, Eigen::Ref<MatrixXd> block) const {
    const Index n = block.rows();
    switch (kind) {
      case CorrelationKind::Independence:
        return true;
      case CorrelationKind::Exchangeable: {
        // W = (I - c 1 1'/n) / sqrt(1 - alpha) with (2c - c^2)/n = alpha / (1 + (n-1) alpha).
        const double denom = 1.0 + static_cast<double>(n - 1) * alpha;
        if (!(alpha < 1.0) || !(denom > 0.0)) return false;
        const double c = 1.0 - std::sqrt((1.0 - alpha) / denom);
        const Eigen::RowVectorXd mean = block.colwise().mean();
        block.rowwise() -= c * mean;
        block /= std::sqrt(1.0 - alpha);
        return true;
      }
      case CorrelationKind::Ar1: {
        // Innovations of an AR(1) sampled at increasing times t: row i becomes
        // (b_i - rho_i b_{i-1}) / sqrt(1 - rho_i^2), rho_i = alpha^(t_i - t_{i-1}).
        if (!(std::abs(alpha) < 1.0)) return false;
        for (Index i = n - 1; i >= 1; --i) {
          const int gap = position[i] - position[i - 1];
          if (gap <= 0) return false;
          const double rho = std::pow(alpha, gap);
          block.row(i) = (block.row(i) - rho * block.row(i - 1)) / std::sqrt(1.0 - rho * rho);
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
        return true;
      }
    }
    return false;
  }
};

}  // namespace multilevel
