// The blocks of A = [Z X y]' W [Z X y] for a linear mixed model, built in one
// pass over the rows, plus one per pair of random-effect terms (after a
// grouped pass, reusable across weights, that finds which level pairs occur).
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

/// Which pairs of levels (level of term k, level of term l) occur together
/// in some row, grouped by the level of term l, and each row's pair. It
/// depends on the grouping codes only, so a model refitted with new weights
/// (each PIRLS iteration of a GLMM) computes it once.
struct LevelPairPattern {
  std::vector<Index> col_start;         // (nlevels_l + 1,) pairs of column level j: [col_start[j], col_start[j+1])
  std::vector<std::int32_t> row_level;  // (npairs,) level of term k, ascending within a column level
  std::vector<std::int32_t> row_pair;   // (n,) the pair each row belongs to
  Index npairs() const { return static_cast<Index>(row_level.size()); }
};

/// Patterns of the term pairs one NormalEquations needs, in the order it
/// needs them: (k, 0) for k = 1..K-1, then (k, l) for l = 1..K-2, k = l+1..K-1.
using PairPatterns = std::vector<LevelPairPattern>;

/// Sums of w z_k z_l' over rows, one p_k x p_l block per pair of a pattern.
struct LevelPairBlocks {
  const LevelPairPattern* pattern = nullptr;
  Index pk = 0, pl = 0;
  std::vector<double> values;  // (npairs * pk * pl,) each block pk x pl, column-major
  const double* block(Index e) const { return values.data() + e * pk * pl; }
};

namespace detail {

/// The level pairs of (row term k, column term l), from the rows grouped by term l.
inline LevelPairPattern level_pair_pattern(const CodesMap& codes_k, Index nlevels_k, const GroupIndex& by_l) {
  LevelPairPattern out;
  const Index nl = by_l.nlevels();
  out.col_start.assign(nl + 1, 0);
  out.row_pair.assign(codes_k.size(), 0);
  // Sparse accumulator over the levels of term k: a level's slot in the
  // current column, valid when stamp == current column level.
  std::vector<Index> stamp(nlevels_k, -1), slot(nlevels_k, 0);
  std::vector<std::int32_t> levels;  // levels met in the current column, in order of first meeting
  std::vector<Index> order, rank;
  for (Index j = 0; j < nl; ++j) {
    levels.clear();
    for (Index t = by_l.start[j]; t < by_l.start[j + 1]; ++t) {
      const std::int32_t g = codes_k[by_l.rows[t]];
      if (stamp[g] != j) {
        stamp[g] = j;
        slot[g] = static_cast<Index>(levels.size());
        levels.push_back(g);
      }
    }
    order.resize(levels.size());
    std::iota(order.begin(), order.end(), Index(0));
    std::sort(order.begin(), order.end(), [&](Index a, Index b) { return levels[a] < levels[b]; });
    rank.resize(levels.size());
    const Index first = out.npairs();
    for (Index e = 0; e < static_cast<Index>(order.size()); ++e) {
      rank[order[e]] = first + e;
      out.row_level.push_back(levels[order[e]]);
    }
    for (Index t = by_l.start[j]; t < by_l.start[j + 1]; ++t) {
      const Index i = by_l.rows[t];
      out.row_pair[i] = static_cast<std::int32_t>(rank[slot[codes_k[i]]]);
    }
    out.col_start[j + 1] = out.npairs();
  }
  return out;
}

/// Blocks of a pattern: sum over rows of (sqrt(w) z_k)' (sqrt(w) z_l).
/// zk (n, pk), zl (n, pl), sqrt_w (n,). Rows are added in ascending order.
template <class MK, class ML>
inline LevelPairBlocks level_pair_sums(const LevelPairPattern& pattern, const MK& zk, const ML& zl,
                                       const VectorXd& sqrt_w) {
  LevelPairBlocks out;
  out.pattern = &pattern;
  out.pk = zk.cols();
  out.pl = zl.cols();
  const Index bs = out.pk * out.pl;
  out.values.assign(pattern.npairs() * bs, 0.0);
  for (Index i = 0; i < zk.rows(); ++i) {
    double* blk = out.values.data() + static_cast<Index>(pattern.row_pair[i]) * bs;
    const double sw = sqrt_w[i];
    for (Index d = 0; d < out.pl; ++d)
      for (Index c = 0; c < out.pk; ++c) blk[d * out.pk + c] += (sw * zk(i, c)) * (sw * zl(i, d));
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
  /// patterns: the level-pair patterns of these terms' codes, reused when
  /// given non-empty (they must come from the same codes, e.g. the previous
  /// PIRLS iteration: only their sizes are checked), filled in when given
  /// empty; nullptr computes them for this system only. Not for sharing
  /// between threads while being filled.
  NormalEquations(const StridedVectorMap& y, const StridedMatrixMap& x,
                  const StridedVectorMap& weights, const std::vector<TermInput>& term_inputs,
                  PairPatterns* patterns = nullptr) {
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
    PairPatterns local;
    PairPatterns& pats = patterns ? *patterns : local;
    if (pats.empty()) pats = pair_patterns(term_inputs);
    accumulate_term_pairs(sqrt_w, term_inputs, pats);
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

  // The level-pair patterns of every term pair, in PairPatterns' order.
  PairPatterns pair_patterns(const std::vector<TermInput>& in) const {
    const Index K = static_cast<Index>(terms.size());
    PairPatterns out;
    for (Index l = 0; l + 1 < K; ++l) {
      const GroupIndex by_l(in[l].codes, terms[l].nlevels);
      for (Index k = l + 1; k < K; ++k) out.push_back(detail::level_pair_pattern(in[k].codes, terms[k].nlevels, by_l));
    }
    return out;
  }

  // Off-diagonal blocks between terms: Z_k'W Z_0 for k >= 1 (AR0) and
  // Z_k'W Z_l for k > l >= 1 (into ARR).
  void accumulate_term_pairs(const VectorXd& sqrt_w, const std::vector<TermInput>& in, const PairPatterns& pats) {
    const Index K = static_cast<Index>(terms.size());
    if (static_cast<Index>(pats.size()) != K * (K - 1) / 2)
      throw std::invalid_argument("level-pair patterns do not match the random-effects terms");
    for (Index l = 0, next = 0; l + 1 < K; ++l)
      for (Index k = l + 1; k < K; ++k, ++next)
        if (static_cast<Index>(pats[next].row_pair.size()) != n ||
            static_cast<Index>(pats[next].col_start.size()) != terms[l].nlevels + 1)
          throw std::invalid_argument("level-pair patterns were made for other rows or levels");
    std::vector<LevelPairBlocks> with0;
    Index next = 0;
    for (Index k = 1; k < K; ++k) with0.push_back(detail::level_pair_sums(pats[next++], in[k].z, in[0].z, sqrt_w));
    build_AR0(with0);

    for (Index l = 1; l + 1 < K; ++l) {
      for (Index k = l + 1; k < K; ++k) {
        const LevelPairBlocks pairs = detail::level_pair_sums(pats[next++], in[k].z, in[l].z, sqrt_w);
        const LevelPairPattern& pat = *pairs.pattern;
        const TermLayout &tk = terms[k], &tl = terms[l];
        for (Index j = 0; j < tl.nlevels; ++j)
          for (Index e = pat.col_start[j]; e < pat.col_start[j + 1]; ++e) {
            const double* blk = pairs.block(e);
            for (Index d = 0; d < tl.p; ++d)
              for (Index c = 0; c < tk.p; ++c) {
                const Index r = tk.offset + pat.row_level[e] * tk.p + c;
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
        const LevelPairPattern& pr = *with0[kk].pattern;
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
          const LevelPairPattern& pr = *with0[kk].pattern;
          const TermLayout& tk = terms[kk + 1];
          for (Index e = pr.col_start[j]; e < pr.col_start[j + 1]; ++e)
            for (Index c = 0; c < tk.p; ++c) {
              inner[pos] = static_cast<int>(tk.offset + pr.row_level[e] * tk.p + c);
              val[pos] = with0[kk].block(e)[d * tk.p + c];
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
