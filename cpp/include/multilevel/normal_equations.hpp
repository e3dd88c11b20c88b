// The blocks of A = [Z X y]' W [Z X y] for a linear mixed model, as an
// explicit pipeline: an accumulator that adds rows chunk by chunk
// (`add_rows`), merges with another accumulator over other rows (`merge`),
// and whose state is plain arrays (so it can be saved and shipped between
// processes); then `NormalEquations`, the finished blocks the Cholesky
// factor works on.
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
//
// Order of summation. Rows are added in the order given within a chunk, and
// chunks in the order they are added or merged, so a given chunking always
// gives bit-identical blocks; another chunking agrees to rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "multilevel/group_index.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

/// One random-effects term `(z | g)` as arrays over the rows of one chunk.
struct TermInput {
  CodesMap codes;      // (n,) level of each row in [0, nlevels)
  StridedMatrixMap z;  // (n, p) the term's model-matrix columns
  Index nlevels;       // number of levels of the grouping factor
};

/// The shape of one random-effects term, fixed before any row is added.
struct TermShape {
  Index p = 0;        // columns per level
  Index nlevels = 0;  // levels of the grouping factor (all chunks share them)
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

/// Patterns of the term pairs one accumulator needs, in the order it needs
/// them: (k, 0) for k = 1..K-1, then (k, l) for l = 1..K-2, k = l+1..K-1.
using PairPatterns = std::vector<LevelPairPattern>;

/// Sums of w z_k z_l' over rows, one p_k x p_l block per occurring pair of
/// levels, in compressed-column form by the level of term l. Sums over
/// disjoint sets of rows merge by their (level_l, level_k) keys.
struct LevelPairSums {
  Index pk = 0, pl = 0;
  std::vector<Index> col_start;         // (nlevels_l + 1,) pairs of column level j: [col_start[j], col_start[j+1])
  std::vector<std::int32_t> row_level;  // (npairs,) level of term k, ascending within a column level
  std::vector<double> values;           // (npairs * pk * pl,) each block pk x pl, column-major

  Index npairs() const { return static_cast<Index>(row_level.size()); }
  Index block_size() const { return pk * pl; }
  const double* block(Index e) const { return values.data() + e * block_size(); }

  /// Add the sums of other rows: blocks of a pair present in both are added
  /// (this one's first), others are inserted in key order.
  void merge(const LevelPairSums& other) {
    if (other.pk != pk || other.pl != pl || other.col_start.size() != col_start.size())
      throw std::invalid_argument("level-pair sums of different terms cannot be merged");
    if (other.row_level == row_level && other.col_start == col_start) {  // same pairs: add in place
      for (std::size_t i = 0; i < values.size(); ++i) values[i] += other.values[i];
      return;
    }
    const Index bs = block_size(), nl = static_cast<Index>(col_start.size()) - 1;
    std::vector<Index> start(nl + 1, 0);
    std::vector<std::int32_t> rows;
    std::vector<double> vals;
    rows.reserve(std::max(row_level.size(), other.row_level.size()));
    vals.reserve(std::max(values.size(), other.values.size()));
    for (Index j = 0; j < nl; ++j) {
      Index a = col_start[j], b = other.col_start[j];
      const Index a_end = col_start[j + 1], b_end = other.col_start[j + 1];
      while (a < a_end || b < b_end) {
        const bool take_a = b >= b_end || (a < a_end && row_level[a] <= other.row_level[b]);
        const bool take_b = a >= a_end || (b < b_end && other.row_level[b] <= row_level[a]);
        rows.push_back(take_a ? row_level[a] : other.row_level[b]);
        const std::size_t at = vals.size();
        vals.resize(at + bs, 0.0);
        if (take_a) std::copy(block(a), block(a) + bs, vals.begin() + at);
        if (take_b)
          for (Index c = 0; c < bs; ++c) vals[at + c] += other.block(b)[c];
        a += take_a;
        b += take_b;
      }
      start[j + 1] = static_cast<Index>(rows.size());
    }
    col_start = std::move(start);
    row_level = std::move(rows);
    values = std::move(vals);
  }
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
    for (Index t = by_l.ptr[j]; t < by_l.ptr[j + 1]; ++t) {
      const std::int32_t g = codes_k[by_l.order[t]];
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
    for (Index t = by_l.ptr[j]; t < by_l.ptr[j + 1]; ++t) {
      const Index i = by_l.order[t];
      out.row_pair[i] = static_cast<std::int32_t>(rank[slot[codes_k[i]]]);
    }
    out.col_start[j + 1] = out.npairs();
  }
  return out;
}

/// Sums of a pattern: over rows of (sqrt(w) z_k)' (sqrt(w) z_l).
/// zk (n, pk), zl (n, pl), sqrt_w (n,). Rows are added in ascending order.
template <class MK, class ML>
inline LevelPairSums level_pair_sums(const LevelPairPattern& pattern, const MK& zk, const ML& zl,
                                     const VectorXd& sqrt_w) {
  LevelPairSums out;
  out.pk = zk.cols();
  out.pl = zl.cols();
  out.col_start = pattern.col_start;
  out.row_level = pattern.row_level;
  const Index bs = out.block_size();
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

/// Offsets in theta and in the rest index space for terms of these shapes.
inline std::vector<TermLayout> layout_terms(const std::vector<TermShape>& shapes, Index& q_rest) {
  std::vector<TermLayout> out;
  Index theta_offset = 0, rest_offset = 0;
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    TermLayout t;
    t.p = shapes[k].p;
    t.nlevels = shapes[k].nlevels;
    if (t.p < 1) throw std::invalid_argument("random-effects term " + std::to_string(k) + " has no columns");
    if (t.nlevels < 1) throw std::invalid_argument("random-effects term " + std::to_string(k) + " has no levels");
    t.theta_offset = theta_offset;
    theta_offset += t.ntheta();
    if (k > 0) {
      t.offset = rest_offset;
      rest_offset += t.size();
    }
    out.push_back(t);
  }
  q_rest = rest_offset;
  return out;
}

}  // namespace detail

/// Sums over rows of everything the normal equations need, chunk by chunk.
///
/// State (all sizes independent of the number of rows):
///   A00 (p0, p0 q0): diagonal blocks of Z0'WZ0;  AX0 (p + 1, p0 q0): [X y]'WZ0;
///   AXR (p + 1, q_rest): [X y]'WZ_rest;  AXX (p + 1, p + 1): [X y]'W[X y], lower triangle;
///   rest_diag[k] (p_k, p_k nlevels_k) for k >= 1: diagonal blocks of Z_k'WZ_k (rest_diag[0] empty);
///   pairs: Z_k'WZ_l per occurring level pair, in PairPatterns' order.
struct NormalEquationsAccumulator {
  Index n = 0;                   // rows added so far
  Index p = 0;                   // fixed-effect columns
  double sum_log_weights = 0.0;  // sum_i log w_i, part of the likelihood
  std::vector<TermShape> shapes;  // (K,) terms sorted by decreasing number of levels
  std::vector<TermLayout> terms;  // (K,) derived from shapes
  Index q_rest = 0;
  MatrixXd A00, AX0, AXR, AXX;
  std::vector<MatrixXd> rest_diag;
  std::vector<LevelPairSums> pairs;

  NormalEquationsAccumulator() = default;

  /// An empty accumulator for p fixed-effect columns and terms of these shapes (K >= 1).
  NormalEquationsAccumulator(Index p_, std::vector<TermShape> shapes_) : p(p_), shapes(std::move(shapes_)) {
    if (shapes.empty()) throw std::invalid_argument("a mixed model needs at least one random-effects term");
    if (p < 0) throw std::invalid_argument("the number of fixed-effect columns is negative");
    terms = detail::layout_terms(shapes, q_rest);
    const TermLayout& t0 = terms[0];
    A00 = MatrixXd::Zero(t0.p, t0.size());
    AX0 = MatrixXd::Zero(p + 1, t0.size());
    AXR = MatrixXd::Zero(p + 1, q_rest);
    AXX = MatrixXd::Zero(p + 1, p + 1);
    rest_diag.assign(terms.size(), MatrixXd());
    for (std::size_t k = 1; k < terms.size(); ++k) rest_diag[k] = MatrixXd::Zero(terms[k].p, terms[k].size());
    const Index K = static_cast<Index>(terms.size());
    for (Index l = 0; l + 1 < K; ++l)
      for (Index k = l + 1; k < K; ++k) {
        LevelPairSums s;
        s.pk = terms[k].p;
        s.pl = terms[l].p;
        s.col_start.assign(terms[l].nlevels + 1, 0);
        pairs.push_back(std::move(s));
      }
  }

  Index nterms() const { return static_cast<Index>(terms.size()); }

  /// The (row term k, column term l) of pairs[e], in PairPatterns' order.
  std::pair<Index, Index> pair_terms(Index e) const {
    for (Index l = 0, next = 0; l + 1 < nterms(); ++l)
      for (Index k = l + 1; k < nterms(); ++k, ++next)
        if (next == e) return {k, l};
    throw std::out_of_range("no such pair of random-effects terms");
  }

  /// Add the rows of one chunk: y (m,), x (m, p), weights (m,) or empty for
  /// unit weights, one TermInput per term with codes (m,) and z (m, p_k).
  /// patterns: the level-pair patterns of these codes, reused when given
  /// non-empty (from the same codes, e.g. the previous PIRLS iteration: only
  /// their sizes are checked), filled in when given empty; nullptr computes
  /// them for this chunk only. Not for sharing between threads while being filled.
  void add_rows(const StridedVectorMap& y, const StridedMatrixMap& x, const StridedVectorMap& weights,
                const std::vector<TermInput>& in, PairPatterns* patterns = nullptr) {
    const Index m = y.size();
    check_chunk(y, x, weights, in);
    VectorXd sqrt_w(m);
    double chunk_log_w = 0.0;
    if (weights.size() == 0) {
      sqrt_w.setOnes();
    } else {
      for (Index i = 0; i < m; ++i) {
        if (!(weights[i] > 0.0) || !std::isfinite(weights[i]))
          throw std::invalid_argument("weight at row " + std::to_string(n + i) +
                                      " is not a positive finite number");
        sqrt_w[i] = std::sqrt(weights[i]);
        chunk_log_w += std::log(weights[i]);
      }
    }
    accumulate_row_blocks(y, x, sqrt_w, in);
    PairPatterns local;
    PairPatterns& pats = patterns ? *patterns : local;
    if (pats.empty()) pats = pair_patterns(in);
    accumulate_term_pairs(sqrt_w, in, pats);
    sum_log_weights += chunk_log_w;
    n += m;
  }

  /// Add the sums of another accumulator (over other rows, same terms and columns).
  void merge(const NormalEquationsAccumulator& other) {
    if (other.p != p || other.shapes.size() != shapes.size())
      throw std::invalid_argument("accumulators of different models cannot be merged");
    for (std::size_t k = 0; k < shapes.size(); ++k)
      if (other.shapes[k].p != shapes[k].p || other.shapes[k].nlevels != shapes[k].nlevels)
        throw std::invalid_argument("accumulators of different models cannot be merged (term " +
                                    std::to_string(k) + " differs)");
    n += other.n;
    sum_log_weights += other.sum_log_weights;
    A00 += other.A00;
    AX0 += other.AX0;
    AXR += other.AXR;
    AXX += other.AXX;
    for (std::size_t k = 1; k < rest_diag.size(); ++k) rest_diag[k] += other.rest_diag[k];
    for (std::size_t e = 0; e < pairs.size(); ++e) pairs[e].merge(other.pairs[e]);
  }

  /// Keep only these fixed-effect columns (ascending indices into 0..p-1),
  /// e.g. after aliased columns were found; the response row stays last.
  void keep_fixed_columns(const std::vector<Index>& kept) {
    std::vector<Index> rows(kept);
    for (std::size_t i = 0; i < kept.size(); ++i)
      if (kept[i] < 0 || kept[i] >= p || (i > 0 && kept[i] <= kept[i - 1]))
        throw std::invalid_argument("kept fixed-effect columns must be ascending indices below p");
    rows.push_back(p);
    const Index q = static_cast<Index>(rows.size());
    MatrixXd ax0(q, AX0.cols()), axr(q, AXR.cols()), axx(q, q);
    for (Index i = 0; i < q; ++i) {
      ax0.row(i) = AX0.row(rows[i]);
      axr.row(i) = AXR.row(rows[i]);
      for (Index j = 0; j < q; ++j) axx(i, j) = AXX(rows[i], rows[j]);
    }
    AX0 = std::move(ax0);
    AXR = std::move(axr);
    AXX = std::move(axx);
    p = q - 1;
  }

 private:
  void check_chunk(const StridedVectorMap& y, const StridedMatrixMap& x, const StridedVectorMap& weights,
                   const std::vector<TermInput>& in) const {
    const Index m = y.size();
    if (static_cast<Index>(in.size()) != nterms())
      throw std::invalid_argument("the chunk has " + std::to_string(in.size()) + " random-effects terms; the " +
                                  "model has " + std::to_string(nterms()));
    if (x.rows() != m) throw std::invalid_argument("X and y have different numbers of rows");
    if (x.cols() != p)
      throw std::invalid_argument("X has " + std::to_string(x.cols()) + " columns; the model has " +
                                  std::to_string(p));
    if (weights.size() != 0 && weights.size() != m)
      throw std::invalid_argument("weights and y have different numbers of rows");
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (in[k].codes.size() != m || in[k].z.rows() != m)
        throw std::invalid_argument("random-effects term " + std::to_string(k) +
                                    " has a different number of rows than y");
      if (in[k].z.cols() != terms[k].p || in[k].nlevels != terms[k].nlevels)
        throw std::invalid_argument("random-effects term " + std::to_string(k) +
                                    " has another shape than the model's");
      for (Index i = 0; i < m; ++i)
        if (in[k].codes[i] < 0 || in[k].codes[i] >= in[k].nlevels)
          throw std::invalid_argument("random-effects term " + std::to_string(k) + ": level code at row " +
                                      std::to_string(n + i) + " is outside [0, nlevels)");
    }
  }

  // Per-row sums: [X y]'W[X y], [X y]'W Z_k and the diagonal blocks Z_k'W Z_k.
  // Processed in sub-chunks of rows so the products run as small dense GEMMs.
  void accumulate_row_blocks(const StridedVectorMap& y, const StridedMatrixMap& x, const VectorXd& sqrt_w,
                             const std::vector<TermInput>& in) {
    const Index m_all = y.size();
    const Index chunk = 4096;
    MatrixXd xy(chunk, p + 1);
    for (Index begin = 0; begin < m_all; begin += chunk) {
      const Index end = std::min(m_all, begin + chunk), m = end - begin;
      xy.resize(m, p + 1);
      xy.leftCols(p) = detail::scaled_rows(x, sqrt_w, begin, end);
      xy.col(p) = sqrt_w.segment(begin, m).cwiseProduct(y.segment(begin, m));
      AXX.selfadjointView<Eigen::Lower>().rankUpdate(xy.transpose());
      for (std::size_t k = 0; k < terms.size(); ++k) {
        const Index pk = terms[k].p;
        const MatrixXd zs = detail::scaled_rows(in[k].z, sqrt_w, begin, end);
        MatrixXd& diag = (k == 0) ? A00 : rest_diag[k];
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
  }

  // The level-pair patterns of every term pair of one chunk, in PairPatterns' order.
  PairPatterns pair_patterns(const std::vector<TermInput>& in) const {
    const Index K = nterms();
    PairPatterns out;
    for (Index l = 0; l + 1 < K; ++l) {
      const GroupIndex by_l(in[l].codes, terms[l].nlevels);
      for (Index k = l + 1; k < K; ++k) out.push_back(detail::level_pair_pattern(in[k].codes, terms[k].nlevels, by_l));
    }
    return out;
  }

  // Off-diagonal blocks between terms, Z_k'W Z_l for k > l, of one chunk.
  void accumulate_term_pairs(const VectorXd& sqrt_w, const std::vector<TermInput>& in, const PairPatterns& pats) {
    const Index K = nterms(), m = sqrt_w.size();
    if (static_cast<Index>(pats.size()) != K * (K - 1) / 2)
      throw std::invalid_argument("level-pair patterns do not match the random-effects terms");
    for (Index l = 0, next = 0; l + 1 < K; ++l)
      for (Index k = l + 1; k < K; ++k, ++next)
        if (static_cast<Index>(pats[next].row_pair.size()) != m ||
            static_cast<Index>(pats[next].col_start.size()) != terms[l].nlevels + 1)
          throw std::invalid_argument("level-pair patterns were made for other rows or levels");
    for (Index l = 0, next = 0; l + 1 < K; ++l)
      for (Index k = l + 1; k < K; ++k, ++next) {
        LevelPairSums sums = detail::level_pair_sums(pats[next], in[k].z, in[l].z, sqrt_w);
        if (pairs[next].npairs() == 0)
          pairs[next] = std::move(sums);  // first rows of this pair: take them as they are
        else
          pairs[next].merge(sums);
      }
  }
};

/// The blocks of [Z X y]' W [Z X y], finished from an accumulator. Terms
/// come sorted by the caller (term 0 with the most levels); p is the number
/// of columns of X.
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

  /// The finished blocks of an accumulator (which is left as it was).
  explicit NormalEquations(const NormalEquationsAccumulator& acc) { finish(NormalEquationsAccumulator(acc)); }
  /// The finished blocks of an accumulator, taking over its storage.
  explicit NormalEquations(NormalEquationsAccumulator&& acc) { finish(std::move(acc)); }

  /// All rows at once: y (n,), x (n, p), weights (n,) or empty for unit
  /// weights, terms (K >= 1); patterns as in NormalEquationsAccumulator::add_rows.
  NormalEquations(const StridedVectorMap& y, const StridedMatrixMap& x, const StridedVectorMap& weights,
                  const std::vector<TermInput>& term_inputs, PairPatterns* patterns = nullptr) {
    std::vector<TermShape> shapes;
    for (const TermInput& t : term_inputs) shapes.push_back(TermShape{t.z.cols(), t.nlevels});
    NormalEquationsAccumulator acc(x.cols(), shapes);
    acc.add_rows(y, x, weights, term_inputs, patterns);
    finish(std::move(acc));
  }

 private:
  void finish(NormalEquationsAccumulator acc) {
    n = acc.n;
    p = acc.p;
    sum_log_weights = acc.sum_log_weights;
    terms = acc.terms;
    q_rest = acc.q_rest;
    for (std::size_t k = 1; k < terms.size(); ++k) rest_term.insert(rest_term.end(), terms[k].size(), static_cast<int>(k));
    A00 = std::move(acc.A00);
    AX0 = std::move(acc.AX0);
    AXR = std::move(acc.AXR);
    AXX = std::move(acc.AXX);
    AXX.triangularView<Eigen::StrictlyUpper>() = AXX.transpose();
    const Index K = static_cast<Index>(terms.size());
    build_AR0(acc.pairs);
    build_ARR(acc.rest_diag, acc.pairs, K);
  }

  // AR0 in compressed column form; the p0 columns of level j share the row
  // list (all rest terms' rows, ascending), so each level's values form a
  // dense column-major (rows_j, p0) block. pairs[k - 1] holds (k, 0).
  void build_AR0(const std::vector<LevelPairSums>& pairs) {
    const TermLayout& t0 = terms[0];
    const Index p0 = t0.p, nwith0 = static_cast<Index>(terms.size()) - 1;
    AR0.resize(q_rest, t0.size());
    if (nwith0 == 0) {
      AR0.makeCompressed();
      return;
    }
    Index nnz = 0;
    for (Index kk = 0; kk < nwith0; ++kk) nnz += pairs[kk].npairs() * terms[kk + 1].p * p0;
    AR0.resizeNonZeros(nnz);
    int* outer = AR0.outerIndexPtr();
    int* inner = AR0.innerIndexPtr();
    double* val = AR0.valuePtr();
    Index pos = 0;
    for (Index j = 0; j < t0.nlevels; ++j) {
      for (Index d = 0; d < p0; ++d) {
        outer[j * p0 + d] = static_cast<int>(pos);
        for (Index kk = 0; kk < nwith0; ++kk) {
          const LevelPairSums& pr = pairs[kk];
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

  // ARR from the rest terms' diagonal blocks and their pairs (k, l >= 1).
  void build_ARR(const std::vector<MatrixXd>& rest_diag, const std::vector<LevelPairSums>& pairs, Index K) {
    std::vector<Eigen::Triplet<double>> triplets;
    for (Index k = 1; k < K; ++k) {
      const TermLayout& t = terms[k];
      for (Index g = 0; g < t.nlevels; ++g)
        for (Index c = 0; c < t.p; ++c)
          for (Index r = 0; r < t.p; ++r)
            triplets.emplace_back(t.offset + g * t.p + r, t.offset + g * t.p + c, rest_diag[k](r, g * t.p + c));
    }
    Index next = K - 1;  // pairs (k, 0) come first
    for (Index l = 1; l + 1 < K; ++l)
      for (Index k = l + 1; k < K; ++k) {
        const LevelPairSums& pr = pairs[next++];
        const TermLayout &tk = terms[k], &tl = terms[l];
        for (Index j = 0; j < tl.nlevels; ++j)
          for (Index e = pr.col_start[j]; e < pr.col_start[j + 1]; ++e) {
            const double* blk = pr.block(e);
            for (Index d = 0; d < tl.p; ++d)
              for (Index c = 0; c < tk.p; ++c) {
                const Index r = tk.offset + pr.row_level[e] * tk.p + c;
                const Index s = tl.offset + j * tl.p + d;
                triplets.emplace_back(r, s, blk[d * tk.p + c]);
                triplets.emplace_back(s, r, blk[d * tk.p + c]);
              }
          }
      }
    ARR.resize(q_rest, q_rest);
    ARR.setFromTriplets(triplets.begin(), triplets.end());
  }
};

}  // namespace multilevel
