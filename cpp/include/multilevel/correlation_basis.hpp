// The GEE information and quasi-score as explicit functions of the working
// correlation's parameter, so that one pass over the rows serves whatever
// alpha the moment estimates of that same pass give.
//
// Take the augmented whitened-by-S rows b_i = [a_i x_i, e_i] (p + 1 wide, as
// cluster_sums.hpp defines a and e). A cluster's cross product
// B_j(alpha) = [D e]_j' R_j(alpha)^-1 [D e]_j (its information, score and
// e'R^-1 e at once) is a short sum of alpha-free matrices with scalar
// coefficients that depend on alpha and on one integer of the cluster:
//
//   exchangeable, n rows:  (sum_i b_i b_i' - c_n s s') / (1 - alpha),
//                          s = sum_i b_i, c_n = alpha / (1 + (n - 1) alpha);
//   AR(1), positions t_i:  b_1 b_1' + sum_{i >= 2} (b_i b_i' - rho (b_i b_{i-1}' + b_{i-1} b_i')
//                          + rho^2 b_{i-1} b_{i-1}') / (1 - rho^2),  rho = alpha^(t_i - t_{i-1}).
//
// So sum_j B_j(alpha) = free + sum_k sum_m f_km(alpha) terms[k][m] over the
// classes k present (cluster sizes n; gaps t_i - t_{i-1}), which the caller
// evaluates once alpha is known (python/multilevel/gee/basis.py).
//
// Any correlation given by a table over positions (unstructured,
// m-dependent, ...) splits by the set of positions a cluster has, its
// pattern P: with v_j the cluster's rows stacked in position order
// (m (p + 1) long), sum_{j in P} B_j = sum_{a,b} (R_P^-1)_ab S_P[block a, block b]
// for S_P = sum_{j in P} v_j v_j'; the class is P as a bit mask of positions.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <vector>

#include "multilevel/cluster_sums.hpp"
#include "multilevel/parallel.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

/// Which decomposition correlation_basis takes.
enum class BasisKind : int {
  Independence = 0,  ///< free only (R = I)
  Exchangeable = 1,  ///< classes: cluster sizes n; one term, sum s s'
  Ar1 = 2,           ///< classes: gaps g; terms sum b_i b_i', sum b_i b_{i-1}', sum b_{i-1} b_{i-1}'
  Pattern = 3,       ///< classes: bit masks of positions (all < 63); one term, S_P (m (p+1), m (p+1))
};

/// The alpha-free sums; every matrix is (p + 1, p + 1).
struct CorrelationBasis {
  /// Exchangeable and independence: sum_i b_i b_i'; AR(1): sum of each cluster's first-row b_1 b_1'.
  MatrixXd free;
  /// class -> its terms (1 for exchangeable and patterns, 3 for AR(1), in the order of BasisKind's
  /// description; the AR(1) cross term is b_i b_{i-1}', not symmetrized).
  std::map<Index, std::vector<MatrixXd>> terms;

  void merge(const CorrelationBasis& o) {
    free += o.free;
    for (const auto& [k, mats] : o.terms) {
      auto found = terms.find(k);
      if (found == terms.end()) {
        terms.emplace(k, mats);
      } else {
        for (std::size_t m = 0; m < mats.size(); ++m) found->second[m] += mats[m];
      }
    }
  }

  /// The terms of class k, created as `nterms` zero (width, width) matrices if new.
  std::vector<MatrixXd>& at(Index k, Index nterms, Index width) {
    auto found = terms.find(k);
    if (found != terms.end()) return found->second;
    return terms.emplace(k, std::vector<MatrixXd>(static_cast<std::size_t>(nterms), MatrixXd::Zero(width, width)))
        .first->second;
  }
};

namespace detail {

/// A chunk's basis with its scratch block.
struct BasisAccumulator {
  CorrelationBasis sums;
  MatrixXd block;
  VectorXd stacked;
  explicit BasisAccumulator(Index width) { sums.free = MatrixXd::Zero(width, width); }
  void merge(const BasisAccumulator& o) { sums.merge(o.sums); }
};

}  // namespace detail

/// The alpha-free sums of the GEE cross products (file comment), summed over clusters.
///
/// @param x       (n, p) model matrix, any strides, data row order
/// @param a       (n,) (dmu/deta) / sqrt(phi v(mu) / w) per data row
/// @param e       (n,) (y - mu) / sqrt(phi v(mu) / w) per data row
/// @param layout  clusters and positions (AR(1), patterns: positions increasing within a cluster)
/// @param kind    which decomposition
/// Clusters are summed in fixed chunks merged in order, so the result does not
/// depend on the thread count.
inline CorrelationBasis correlation_basis(const StridedMatrixMap& x, const StridedVectorMap& a,
                                          const StridedVectorMap& e, const ClusterLayout& layout, BasisKind kind) {
  const Index p = x.cols(), width = p + 1;
  // Positions checked here, serially: an exception may not leave the parallel loop below.
  if (kind == BasisKind::Ar1 || kind == BasisKind::Pattern) {
    for (Index j = 0; j < layout.nclusters(); ++j) {
      const std::int32_t* rows = layout.order.data() + layout.ptr[j];
      for (Index i = 0; i < layout.size(j); ++i) {
        const std::int32_t t = layout.position[rows[i]];
        if (kind == BasisKind::Pattern && (t < 0 || t > 62))
          throw std::invalid_argument("pattern sums need positions in 0..62");
        if (i > 0 && !(t > layout.position[rows[i - 1]]))
          throw std::invalid_argument("positions must increase within a cluster");
      }
    }
  }
  auto acc = chunked_sum(
      layout.nclusters(), 2048, [width] { return detail::BasisAccumulator(width); },
      [&](detail::BasisAccumulator& s, Index j) {
        const Index nj = layout.size(j);
        const std::int32_t* rows = layout.order.data() + layout.ptr[j];
        s.block.resize(nj, width);
        for (Index i = 0; i < nj; ++i) {
          s.block.row(i).head(p) = a[rows[i]] * x.row(rows[i]);
          s.block(i, p) = e[rows[i]];
        }
        const auto& b = s.block;
        if (kind == BasisKind::Pattern) {
          std::int64_t mask = 0;
          for (Index i = 0; i < nj; ++i) mask |= std::int64_t{1} << layout.position[rows[i]];
          // v = the block's rows one after another (row-major), positions in increasing order.
          s.stacked.resize(nj * width);
          for (Index i = 0; i < nj; ++i) s.stacked.segment(i * width, width) = b.row(i).transpose();
          s.sums.at(mask, 1, nj * width)[0].noalias() += s.stacked * s.stacked.transpose();
          return;
        }
        if (kind != BasisKind::Ar1) {
          s.sums.free.noalias() += b.transpose().lazyProduct(b);
          if (kind == BasisKind::Exchangeable) {
            const Eigen::RowVectorXd total = b.colwise().sum();
            s.sums.at(nj, 1, width)[0].noalias() += total.transpose().lazyProduct(total);
          }
          return;
        }
        s.sums.free.noalias() += b.row(0).transpose().lazyProduct(b.row(0));
        // Runs of consecutive pairs with the same gap add as block products.
        Index start = 1;
        while (start < nj) {
          const Index gap = layout.position[rows[start]] - layout.position[rows[start - 1]];
          Index end = start + 1;
          while (end < nj && layout.position[rows[end]] - layout.position[rows[end - 1]] == gap) ++end;
          const Index len = end - start;
          auto& t = s.sums.at(gap, 3, width);
          const auto here = b.middleRows(start, len);
          const auto before = b.middleRows(start - 1, len);
          t[0].noalias() += here.transpose().lazyProduct(here);
          t[1].noalias() += here.transpose().lazyProduct(before);
          t[2].noalias() += before.transpose().lazyProduct(before);
          start = end;
        }
      });
  return acc.sums;
}

}  // namespace multilevel
