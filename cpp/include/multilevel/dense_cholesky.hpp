// Dense Cholesky factorization, parallel over fixed-width panels.
//
// Right-looking blocked algorithm: factor a diagonal block, solve the panel
// below it, update the trailing matrix column-panel by column-panel. Panel
// widths are fixed (not derived from the thread count) and Eigen itself runs
// single-threaded (EIGEN_DONT_PARALLELIZE), so every floating-point operation
// is the same whatever the number of threads: results do not depend on it.
#pragma once

#include <algorithm>

#include "multilevel/parallel.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

/// Panel width for an n x n factorization: wide panels make the trailing
/// updates better matrix products on big matrices (5,000 x 5,000: 256 is
/// 27% faster than 96 on 2 cores), narrow ones keep small matrices split
/// into enough work items for the threads. Depends on n only, never on the
/// thread count.
inline Index cholesky_panel_width(Index n) { return n >= 3000 ? 256 : 96; }

/// Lower Cholesky factor of the symmetric positive definite a (n, n), in
/// place: the lower triangle of a is read and overwritten by L; the strict
/// upper triangle of the diagonal panels is used as scratch. Returns false
/// if a is not (numerically) positive definite. panel 0 picks
/// cholesky_panel_width(n).
inline bool cholesky_in_place(MatrixXd& a, Index panel = 0) {
  const Index n = a.rows();
  if (panel <= 0) panel = cholesky_panel_width(n);
  for (Index k = 0; k < n; k += panel) {
    const Index kb = std::min(panel, n - k);
    Eigen::Ref<MatrixXd> akk = a.block(k, k, kb, kb);
    Eigen::LLT<Eigen::Ref<MatrixXd>, Eigen::Lower> llt(akk);
    if (llt.info() != Eigen::Success) return false;
    const Index below = n - k - kb;
    if (below == 0) break;
    const auto l11t = akk.triangularView<Eigen::Lower>().transpose();
    const Index nblocks = (below + panel - 1) / panel;
    // Panel below the diagonal block: A21 <- A21 L11^-T, by row blocks.
    ML_PARALLEL_FOR_DYNAMIC
    for (Index t = 0; t < nblocks; ++t) {
      const Index r = k + kb + t * panel, rb = std::min(panel, n - r);
      auto blk = a.block(r, k, rb, kb);
      l11t.solveInPlace<Eigen::OnTheRight>(blk);
    }
    // Trailing update A22 <- A22 - L21 L21', one column panel at a time.
    ML_PARALLEL_FOR_DYNAMIC
    for (Index t = 0; t < nblocks; ++t) {
      const Index j = k + kb + t * panel, jb = std::min(panel, n - j);
      a.block(j, j, n - j, jb).noalias() -= a.block(j, k, n - j, kb) * a.block(j, k, jb, kb).transpose();
    }
  }
  return true;
}

}  // namespace multilevel
