// The blocks of A = [Z X y]' W [Z X y] for a linear mixed model, built in one
// pass over the rows (plus one grouped pass per pair of random-effect terms).
//
// Everything the profiled (RE)ML objective needs at any theta is in these
// blocks; their size depends on the numbers of levels and columns, never on
// the number of rows n. Z is never formed.
//
// Random-effect index space. Term 0 (the one with the most levels) is kept
// apart because its diagonal block is block diagonal and stays so in the
// Cholesky factor. Terms 1..K-1 ("the rest") share one index space of size
// q_rest, term k occupying [offset_k, offset_k + nlevels_k * p_k), level g's
// coefficients at offset_k + g * p_k + c.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/group_index.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

/// One random-effects term `(z | g)` as arrays.
struct TermInput {
  CodesMap codes;      // (n,) level of each row in [0, nlevels)
  StridedMatrixMap z;  // (n, p) the term's model-matrix columns
  Index nlevels;       // number of levels of the grouping factor
};

/// Where a term lives in theta and in the random-effect index space.
struct TermLayout {
  Index p = 0;             // columns per level
  Index nlevels = 0;       // levels of the grouping factor
  Index offset = 0;        // first index in its space (0 for term 0; rest space otherwise)
  Index theta_offset = 0;  // first element of theta belonging to this term
  Index ntheta() const { return p * (p + 1) / 2; }
  Index size() const { return p * nlevels; }
};

/// Sums of w z_k z_l' over rows, one p_k x p_l block per co-occurring pair of
/// levels (level of term k, level of term l), grouped by the level of term l.
struct LevelPairBlocks {
  Index pk = 0, pl = 0;
  std::vector<Index> col_start;   // (nlevels_l + 1,) pairs of column level j: [col_start[j], col_start[j+1])
  std::vector<std::int32_t> row_level;  // (npairs,) level of term k, ascending within a column level
  std::vector<double> values;     // (npairs * pk * pl,) each block pk x pl, column-major
  Index npairs() const { return static_cast<Index>(row_level.size()); }
  const double* block(Index e) const { return values.data() + e * pk * pl; }
};

namespace detail {

/// Accumulate LevelPairBlocks for (row term k, column term l).
/// zk_scaled (n, pk) and zl_scaled (n, pl) already carry sqrt(w).
inline LevelPairBlocks accumulate_level_pairs(const CodesMap& codes_k, const MatrixXd& zk_scaled,
                                              Index nlevels_k, const GroupIndex& by_l,
                                              const MatrixXd& zl_scaled) {
  LevelPairBlocks out;
  out.pk = zk_scaled.cols();
  out.pl = zl_scaled.cols();
  const Index bs = out.pk * out.pl;
  const Index nl = by_l.nlevels();
  out.col_start.assign(nl + 1, 0);
  // Sparse accumulator over the levels of term k: position of a level's block
  // in the current column, valid when stamp == current column level.
  std::vector<Index> stamp(nlevels_k, -1), slot(nlevels_k, 0);
  std::vector<std::int32_t> levels;  // levels met in the current column
  std::vector<double> local;         // their blocks
  std::vector<Index> order;
  for (Index j = 0; j < nl; ++j) {
    levels.clear();
    local.clear();
    for (Index t = by_l.start[j]; t < by_l.start[j + 1]; ++t) {
      const Index i = by_l.rows[t];
      const std::int32_t g = codes_k[i];
      if (stamp[g] != j) {
        stamp[g] = j;
        slot[g] = static_cast<Index>(levels.size());
        levels.push_back(g);
        local.resize(local.size() + bs, 0.0);
      }
      double* blk = local.data() + slot[g] * bs;
      for (Index d = 0; d < out.pl; ++d)
        for (Index c = 0; c < out.pk; ++c) blk[d * out.pk + c] += zk_scaled(i, c) * zl_scaled(i, d);
    }
    order.resize(levels.size());
    std::iota(order.begin(), order.end(), Index(0));
    std::sort(order.begin(), order.end(), [&](Index a, Index b) { return levels[a] < levels[b]; });
    for (Index e : order) {
      out.row_level.push_back(levels[e]);
      out.values.insert(out.values.end(), local.begin() + e * bs, local.begin() + (e + 1) * bs);
    }
    out.col_start[j + 1] = out.npairs();
  }
  return out;
}

/// Rows [begin, end) of `m` (n, p) times sqrt(w), as a dense (end-begin, p) matrix.
template <class M>
inline MatrixXd scaled_rows(const M& m, const VectorXd& sqrt_w, Index begin, Index end) {
  return sqrt_w.segment(begin, end - begin).asDiagonal() * m.middleRows(begin, end - begin);
}

}  // namespace detail

/// The blocks of [Z X y]' W [Z X y]. Terms must come sorted by the caller
/// (term 0 with the most levels); p below is the number of columns of X.
struct NormalEquations {
  Index n = 0;                    // rows
  Index p = 0;                    // fixed-effect columns
  double sum_log_weights = 0.0;   // sum_i log w_i, part of the likelihood
  std::vector<TermLayout> terms;  // (K,)
  Index q_rest = 0;               // size of the index space of terms 1..K-1
  std::vector<int> rest_term;     // (q_rest,) which term each rest index belongs to

  MatrixXd A00;       // (p0, p0 * q0) diagonal blocks of Z0'WZ0: level j at cols [j p0, (j+1) p0)
  MatrixXd AX0;       // (p + 1, p0 * q0) [X y]' W Z0
  SparseMatrix AR0;   // (q_rest, p0 * q0) Z_rest' W Z0; columns of one level share a row pattern
  SparseMatrix ARR;   // (q_rest, q_rest) Z_rest' W Z_rest, both triangles stored
  MatrixXd AXR;       // (p + 1, q_rest) [X y]' W Z_rest
  MatrixXd AXX;       // (p + 1, p + 1) [X y]' W [X y], lower triangle filled

  /// y (n,), x (n, p), weights (n,) or empty for unit weights, terms (K >= 1).
  NormalEquations(const StridedVectorMap& y, const StridedMatrixMap& x,
                  const StridedVectorMap& weights, const std::vector<TermInput>& term_inputs) {
    n = y.size();
    p = x.cols();
    const Index K = static_cast<Index>(term_inputs.size());
    if (K == 0) throw std::invalid_argument("a mixed model needs at least one random-effects term");
    if (x.rows() != n) throw std::invalid_argument("X and y have different numbers of rows");
    if (weights.size() != 0 && weights.size() != n)
      throw std::invalid_argument("weights and y have different numbers of rows");
    layout_terms(term_inputs);

    VectorXd sqrt_w(n);
    if (weights.size() == 0) {
      sqrt_w.setOnes();
    } else {
      for (Index i = 0; i < n; ++i) {
        if (!(weights[i] > 0.0) || !std::isfinite(weights[i]))
          throw std::invalid_argument("weight at row " + std::to_string(i) +
                                      " is not a positive finite number");
        sqrt_w[i] = std::sqrt(weights[i]);
        sum_log_weights += std::log(weights[i]);
      }
    }

    accumulate_row_blocks(y, x, sqrt_w, term_inputs);
    accumulate_term_pairs(sqrt_w, term_inputs);
  }

 private:
  void layout_terms(const std::vector<TermInput>& in) {
    Index theta_offset = 0, rest_offset = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (in[k].codes.size() != n || in[k].z.rows() != n)
        throw std::invalid_argument("random-effects term " + std::to_string(k) +
                                    " has a different number of rows than y");
      for (Index i = 0; i < n; ++i)
        if (in[k].codes[i] < 0 || in[k].codes[i] >= in[k].nlevels)
          throw std::invalid_argument("random-effects term " + std::to_string(k) +
                                      ": level code at row " + std::to_string(i) +
                                      " is outside [0, nlevels)");
      TermLayout t;
      t.p = in[k].z.cols();
      t.nlevels = in[k].nlevels;
      if (t.p < 1) throw std::invalid_argument("random-effects term with no columns");
      t.theta_offset = theta_offset;
      theta_offset += t.ntheta();
      if (k > 0) {
        t.offset = rest_offset;
        rest_offset += t.size();
        rest_term.insert(rest_term.end(), t.size(), static_cast<int>(k));
      }
      terms.push_back(t);
    }
    q_rest = rest_offset;
  }

  // Per-row sums: [X y]'W[X y], [X y]'W Z_k and the diagonal blocks Z_k'W Z_k.
  // Processed in chunks of rows so the products run as small dense GEMMs.
  void accumulate_row_blocks(const StridedVectorMap& y, const StridedMatrixMap& x,
                             const VectorXd& sqrt_w, const std::vector<TermInput>& in) {
    const TermLayout& t0 = terms[0];
    A00 = MatrixXd::Zero(t0.p, t0.size());
    AX0 = MatrixXd::Zero(p + 1, t0.size());
    AXR = MatrixXd::Zero(p + 1, q_rest);
    AXX = MatrixXd::Zero(p + 1, p + 1);
    std::vector<Eigen::Triplet<double>> rest_diag;
    std::vector<MatrixXd> rest_blocks(terms.size());
    for (std::size_t k = 1; k < terms.size(); ++k)
      rest_blocks[k] = MatrixXd::Zero(terms[k].p, terms[k].size());

    const Index chunk = 4096;
    MatrixXd xy(chunk, p + 1);
    for (Index begin = 0; begin < n; begin += chunk) {
      const Index end = std::min(n, begin + chunk), m = end - begin;
      xy.resize(m, p + 1);
      xy.leftCols(p) = detail::scaled_rows(x, sqrt_w, begin, end);
      xy.col(p) = sqrt_w.segment(begin, m).cwiseProduct(y.segment(begin, m));
      AXX.selfadjointView<Eigen::Lower>().rankUpdate(xy.transpose());
      for (std::size_t k = 0; k < terms.size(); ++k) {
        const Index pk = terms[k].p;
        const MatrixXd zs = detail::scaled_rows(in[k].z, sqrt_w, begin, end);
        MatrixXd& diag = (k == 0) ? A00 : rest_blocks[k];
        MatrixXd& cross = (k == 0) ? AX0 : AXR;
        const Index base = (k == 0) ? 0 : terms[k].offset;
        if (pk == 1) {  // scalar terms (random intercepts): plain loops, no small dynamic products
          for (Index r = 0; r < m; ++r) {
            const Index g = in[k].codes[begin + r];
            const double zr = zs(r, 0);
            diag(0, g) += zr * zr;
            cross.col(base + g) += zr * xy.row(r).transpose();
          }
          continue;
        }
        for (Index r = 0; r < m; ++r) {
          const Index g = in[k].codes[begin + r];
          diag.middleCols(g * pk, pk).noalias() += zs.row(r).transpose() * zs.row(r);
          cross.middleCols(base + g * pk, pk).noalias() += xy.row(r).transpose() * zs.row(r);
        }
      }
    }
    AXX.triangularView<Eigen::StrictlyUpper>() = AXX.transpose();
    for (std::size_t k = 1; k < terms.size(); ++k) {
      const TermLayout& t = terms[k];
      for (Index g = 0; g < t.nlevels; ++g)
        for (Index c = 0; c < t.p; ++c)
          for (Index r = 0; r < t.p; ++r)
            rest_diag.emplace_back(t.offset + g * t.p + r, t.offset + g * t.p + c,
                                   rest_blocks[k](r, g * t.p + c));
    }
    rest_triplets_ = std::move(rest_diag);
  }

  // Off-diagonal blocks between terms: Z_k'W Z_0 for k >= 1 (AR0) and
  // Z_k'W Z_l for k > l >= 1 (into ARR), each from rows grouped by term l.
  void accumulate_term_pairs(const VectorXd& sqrt_w, const std::vector<TermInput>& in) {
    const Index K = static_cast<Index>(terms.size());
    const TermLayout& t0 = terms[0];
    std::vector<MatrixXd> zs(K);
    if (K > 1)  // a single term has no pairs: skip the copy of its columns
      for (Index k = 0; k < K; ++k) zs[k] = detail::scaled_rows(in[k].z, sqrt_w, 0, n);
    std::vector<LevelPairBlocks> with0;
    if (K > 1) {
      const GroupIndex by0(in[0].codes, t0.nlevels);
      for (Index k = 1; k < K; ++k)
        with0.push_back(detail::accumulate_level_pairs(in[k].codes, zs[k], terms[k].nlevels, by0, zs[0]));
    }
    build_AR0(with0);

    for (Index l = 1; l < K; ++l) {
      if (l + 1 >= K) break;
      const GroupIndex by_l(in[l].codes, terms[l].nlevels);
      for (Index k = l + 1; k < K; ++k) {
        const LevelPairBlocks pairs =
            detail::accumulate_level_pairs(in[k].codes, zs[k], terms[k].nlevels, by_l, zs[l]);
        const TermLayout &tk = terms[k], &tl = terms[l];
        for (Index j = 0; j < tl.nlevels; ++j)
          for (Index e = pairs.col_start[j]; e < pairs.col_start[j + 1]; ++e) {
            const double* blk = pairs.block(e);
            for (Index d = 0; d < tl.p; ++d)
              for (Index c = 0; c < tk.p; ++c) {
                const Index r = tk.offset + pairs.row_level[e] * tk.p + c;
                const Index s = tl.offset + j * tl.p + d;
                rest_triplets_.emplace_back(r, s, blk[d * tk.p + c]);
                rest_triplets_.emplace_back(s, r, blk[d * tk.p + c]);
              }
          }
      }
    }
    ARR.resize(q_rest, q_rest);
    ARR.setFromTriplets(rest_triplets_.begin(), rest_triplets_.end());
    rest_triplets_.clear();
    rest_triplets_.shrink_to_fit();
  }

  // AR0 in compressed column form; the p0 columns of level j share the row
  // list (all rest terms' rows, ascending), so each level's values form a
  // dense column-major (rows_j, p0) block.
  void build_AR0(const std::vector<LevelPairBlocks>& with0) {
    const TermLayout& t0 = terms[0];
    const Index p0 = t0.p;
    AR0.resize(q_rest, t0.size());
    if (with0.empty()) {
      AR0.makeCompressed();
      return;
    }
    std::vector<Index> rows_per_level(t0.nlevels, 0);
    Index nnz = 0;
    for (Index j = 0; j < t0.nlevels; ++j) {
      for (std::size_t kk = 0; kk < with0.size(); ++kk) {
        const auto& pr = with0[kk];
        rows_per_level[j] += (pr.col_start[j + 1] - pr.col_start[j]) * terms[kk + 1].p;
      }
      nnz += rows_per_level[j] * p0;
    }
    AR0.resizeNonZeros(nnz);
    int* outer = AR0.outerIndexPtr();
    int* inner = AR0.innerIndexPtr();
    double* val = AR0.valuePtr();
    Index pos = 0;
    for (Index j = 0; j < t0.nlevels; ++j) {
      for (Index d = 0; d < p0; ++d) {
        outer[j * p0 + d] = static_cast<int>(pos);
        for (std::size_t kk = 0; kk < with0.size(); ++kk) {
          const auto& pr = with0[kk];
          const TermLayout& tk = terms[kk + 1];
          for (Index e = pr.col_start[j]; e < pr.col_start[j + 1]; ++e)
            for (Index c = 0; c < tk.p; ++c) {
              inner[pos] = static_cast<int>(tk.offset + pr.row_level[e] * tk.p + c);
              val[pos] = pr.block(e)[d * tk.p + c];
              ++pos;
            }
        }
      }
    }
    outer[t0.size()] = static_cast<int>(pos);
  }

  std::vector<Eigen::Triplet<double>> rest_triplets_;
};

}  // namespace multilevel
