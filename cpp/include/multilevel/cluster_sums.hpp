// Per-cluster sums over clustered rows with a working correlation: the
// information, score and sandwich meat of GEE, and the whitened cross
// products and log-determinants of GLS.
//
// With V_j = S_j R_j S_j (S_j = diag sqrt(phi v(mu) / w)), the caller passes
// rows already divided by S: a_i = (dmu/deta)_i / s_i and e_i = (y_i - mu_i) / s_i,
// so that D_j = diag(a) X_j in those units and every sum below is a cross
// product of whitened rows W_j [diag(a) X_j | e_j] (W_j' W_j = R_j^{-1}).
// Clusters are summed in parallel with a fixed reduction order.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/mutants.hpp"
#include "multilevel/parallel.hpp"
#include "multilevel/types.hpp"
#include "multilevel/working_correlation.hpp"

namespace multilevel {

/// Rows grouped into clusters: a view of GroupIndex's (ptr, order) (group_index.hpp, through
/// Python's clusters.py) with each row's position in its cluster.
struct ClusterLayout {
  /// (n,) row indices of the data, cluster by cluster, within a cluster by position.
  Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> order;
  /// (J+1,) offsets into `order`: cluster j is order[ptr[j] .. ptr[j+1]).
  Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>> ptr;
  /// (n,) 0-based position of each data row within its cluster (indexed by data row).
  Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> position;
  /// (n,) continuous time of each data row (Car1 only; empty otherwise).
  Eigen::Map<const VectorXd> time{nullptr, 0};

  Index nclusters() const { return ptr.size() - 1; }
  Index size(Index j) const { return static_cast<Index>(ptr[j + 1] - ptr[j]); }
};

/// What cluster_sums accumulates besides H and U.
enum class MeatKind : int {
  Robust = 0,        ///< M = sum U_j U_j'
  BiasReduced = 1,   ///< Mancl-DeRouen: U_j = D_j' V_j^-1 (I - D_j H^-1 D_j' V_j^-1)^-1 e_j
  OneStepJack = 2,   ///< M = sum d_j d_j', d_j = (H - H_j)^-1 U_j (one-step leave-cluster-out change)
};

/// Sums over clusters at the current estimates.
struct ClusterSums {
  MatrixXd H;  ///< (p, p) information sum_j D_j' V_j^-1 D_j
  VectorXd U;  ///< (p,) quasi-score sum_j D_j' V_j^-1 (y_j - mu_j)
  MatrixXd M;  ///< (p, p) meat, by MeatKind
  double ee = 0.0;      ///< sum_j e_j' R_j^-1 e_j
  double logdet = 0.0;  ///< sum_j log det R_j
  Index failed_cluster = -1;  ///< first cluster whose R_j is not positive definite, or -1
};

namespace detail {

/// Positions (and continuous times) of one cluster's rows, reused across clusters.
struct ClusterRows {
  Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1> pos;
  VectorXd times;

  /// Fill pos/times for cluster j; returns its data rows (layout.size(j) of them).
  const std::int32_t* gather(const ClusterLayout& layout, Index j) {
    const Index nj = layout.size(j);
    const std::int32_t* rows = layout.order.data() + layout.ptr[j];
    pos.resize(nj);
    times.resize(layout.time.size() ? nj : 0);
    for (Index i = 0; i < nj; ++i) {
      pos[i] = layout.position[rows[i]];
      if (times.size()) times[i] = layout.time[rows[i]];
    }
    return rows;
  }

  bool whiten(const WorkingCorrelation& corr, Eigen::Ref<MatrixXd> block, double& logdet) const {
    return corr.whiten(pos.data(), times.data(), block, logdet);
  }
};

/// Accumulator of one chunk of clusters, with its own scratch block.
struct ClusterAccumulator {
  MatrixXd H, M, block, hj;                    // sums, and scratch reused across clusters
  VectorXd U, uj;
  ClusterRows cluster;
  double ee = 0.0, logdet = 0.0;
  Index failed = -1;
  explicit ClusterAccumulator(Index p)
      : H(MatrixXd::Zero(p, p)), M(MatrixXd::Zero(p, p)), hj(p, p), U(VectorXd::Zero(p)), uj(p) {}
  void merge(const ClusterAccumulator& o) {
    H += o.H;
    M += o.M;
    U += o.U;
    ee += o.ee;
    logdet += o.logdet;
    if (failed < 0 || (o.failed >= 0 && o.failed < failed)) failed = o.failed;
  }
};

}  // namespace detail

/// Information, score and meat of a GEE at the current estimates.
///
/// @param x       (n, p) model matrix, any strides, data row order
/// @param a       (n,) (dmu/deta) / sqrt(phi v(mu) / w) per data row
/// @param e       (n,) (y - mu) / sqrt(phi v(mu) / w) per data row
/// @param layout  clusters and positions
/// @param corr    working correlation
/// @param meat    what M holds
/// @param h_full  (p, p) H at the estimates; needed for BiasReduced (its inverse
///                is taken) and OneStepJack; ignored for Robust
inline ClusterSums cluster_sums(const StridedMatrixMap& x, const StridedVectorMap& a, const StridedVectorMap& e,
                                const ClusterLayout& layout, const WorkingCorrelation& corr, MeatKind meat,
                                const MatrixXd& h_full) {
  const Index p = x.cols();
  MatrixXd h_inv;
  if (meat == MeatKind::BiasReduced) h_inv = h_full.ldlt().solve(MatrixXd::Identity(p, p));
  const Index chunk = 2048;
  auto acc = chunked_sum(
      layout.nclusters(), chunk, [p] { return detail::ClusterAccumulator(p); },
      [&](detail::ClusterAccumulator& s, Index j) {
        const Index nj = layout.size(j);
        const std::int32_t* rows = s.cluster.gather(layout, j);
        s.block.resize(nj, p + 1);
        for (Index i = 0; i < nj; ++i) {
          s.block.row(i).head(p) = a[rows[i]] * x.row(rows[i]);
          s.block(i, p) = e[rows[i]];
        }
        if (!s.cluster.whiten(corr, s.block, s.logdet)) {
          if (s.failed < 0) s.failed = j;
          return;
        }
        const auto d = s.block.leftCols(p);
        const auto r = s.block.col(p);
        // Clusters are small: lazy (coefficient-wise) products avoid the GEMM dispatch overhead.
        s.hj.noalias() = d.transpose().lazyProduct(d);
        s.uj.noalias() = d.transpose().lazyProduct(r);
        s.H += s.hj;
        s.U += s.uj;
        s.ee += r.squaredNorm();
        if (meat == MeatKind::BiasReduced) {
          // d' (I - d H^-1 d')^-1 r by Woodbury, a p x p solve instead of an n_j x n_j one:
          // (I - d H^-1 d')^-1 r = r + d (I - H^-1 d'd)^-1 H^-1 d'r, so the meat's U_j = u_j + h_j v.
          MatrixXd g = -h_inv * s.hj;
          g.diagonal().array() += 1.0;
          const VectorXd v = g.partialPivLu().solve(h_inv * s.uj);
          s.uj.noalias() += s.hj * v;
        } else if (meat == MeatKind::OneStepJack) {
          s.uj = (h_full - s.hj).ldlt().solve(s.uj);
        }
        if (ML_MUTANT(6)) {  // mutant 6: the model-based information in place of the meat
          s.M += s.hj;
        } else {
          s.M.noalias() += s.uj.lazyProduct(s.uj.transpose());
        }
      });
  return ClusterSums{acc.H, acc.U, acc.M, acc.ee, acc.logdet, acc.failed};
}

/// How pair_moments groups the pairs of rows within a cluster.
enum class PairGrouping : int {
  All = 0,       ///< one group (exchangeable)
  Lag = 1,       ///< by |t_i - t_k| in 1..T-1 (AR(1), m-dependent); index = lag
  Position = 2,  ///< by (t_i, t_k) (unstructured); index = t_i * T + t_k, t_i < t_k
};

/// Sums of products of residuals over pairs of rows in the same cluster.
struct PairMoments {
  VectorXd sum;    ///< per group: sum of r_i r_k over its pairs
  VectorXd count;  ///< per group: number of pairs
  void merge(const PairMoments& o) {
    sum += o.sum;
    count += o.count;
  }
};

/// Pair sums of residuals `r` (n,) by grouping; `T` is the number of positions
/// (groups: All 1, Lag T, Position T*T).
inline PairMoments pair_moments(const StridedVectorMap& r, const ClusterLayout& layout, PairGrouping grouping,
                                Index T) {
  const Index ngroups = grouping == PairGrouping::All ? 1 : grouping == PairGrouping::Lag ? T : T * T;
  return chunked_sum(
      layout.nclusters(), 4096,
      [ngroups] { return PairMoments{VectorXd::Zero(ngroups), VectorXd::Zero(ngroups)}; },
      [&](PairMoments& s, Index j) {
        const Index nj = layout.size(j);
        const std::int32_t* rows = layout.order.data() + layout.ptr[j];
        if (grouping == PairGrouping::All) {
          double total = 0.0, squares = 0.0;
          for (Index i = 0; i < nj; ++i) {
            total += r[rows[i]];
            squares += r[rows[i]] * r[rows[i]];
          }
          s.sum[0] += 0.5 * (total * total - squares);
          s.count[0] += 0.5 * static_cast<double>(nj) * static_cast<double>(nj - 1);
          return;
        }
        for (Index i = 0; i < nj; ++i) {
          const Index ti = layout.position[rows[i]];
          for (Index k = i + 1; k < nj; ++k) {
            const Index tk = layout.position[rows[k]];
            const Index g = grouping == PairGrouping::Lag ? std::abs(tk - ti)
                                                          : std::min(ti, tk) * T + std::max(ti, tk);
            s.sum[g] += r[rows[i]] * r[rows[k]];
            s.count[g] += 1.0;
          }
        }
      });
}

/// Rows whitened cluster by cluster, and the log determinant that comes with them.
struct WhitenedRows {
  MatrixXd rows;              // (n, k) W_j [values]_j, data order
  double logdet = 0.0;        // sum_j log det R_j (summed in cluster-chunk order)
  Index failed_cluster = -1;  // first cluster whose R_j is not positive definite, or -1
};

/// The rows of `values` (n, k), data order, each cluster multiplied by its W_j
/// (W_j' W_j = R_j^{-1}), and log det R (a by-product of the factor of each R_j,
/// so a caller needs no second pass for the likelihood's Jacobian term).
inline WhitenedRows whiten_rows(const StridedMatrixMap& values, const ClusterLayout& layout,
                                const WorkingCorrelation& corr) {
  WhitenedRows out;
  out.rows.resize(values.rows(), values.cols());
  const Index nclusters = layout.nclusters(), chunk = 1024;
  const Index nchunks = (nclusters + chunk - 1) / chunk;
  std::vector<Index> failed(static_cast<std::size_t>(nchunks), -1);  // per chunk: deterministic first failure
  std::vector<double> logdet(static_cast<std::size_t>(nchunks), 0.0);
  ML_PARALLEL_FOR_DYNAMIC
  for (Index c = 0; c < nchunks; ++c) {
    MatrixXd block;
    detail::ClusterRows cluster;
    for (Index j = c * chunk; j < std::min(nclusters, (c + 1) * chunk); ++j) {
      const std::int32_t* rows = cluster.gather(layout, j);
      const Index nj = layout.size(j);
      block.resize(nj, values.cols());
      for (Index i = 0; i < nj; ++i) block.row(i) = values.row(rows[i]);
      double ld = 0.0;
      if (!cluster.whiten(corr, block, ld)) {
        if (failed[static_cast<std::size_t>(c)] < 0) failed[static_cast<std::size_t>(c)] = j;
        continue;
      }
      logdet[static_cast<std::size_t>(c)] += ld;
      for (Index i = 0; i < nj; ++i) out.rows.row(rows[i]) = block.row(i);
    }
  }
  for (Index c = 0; c < nchunks; ++c) {
    out.logdet += logdet[static_cast<std::size_t>(c)];
    if (out.failed_cluster < 0 && failed[static_cast<std::size_t>(c)] >= 0)
      out.failed_cluster = failed[static_cast<std::size_t>(c)];
  }
  return out;
}

}  // namespace multilevel
