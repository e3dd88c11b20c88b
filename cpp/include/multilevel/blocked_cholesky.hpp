// Blocked Cholesky factor of the penalized system of a linear mixed model,
//
//   [ Lambda'Z'WZ Lambda + I   Lambda'Z'W[X y] ]  =  L L'
//   [ [X y]'WZ Lambda          [X y]'W[X y]    ]
//
// in three block rows: term 0 (block diagonal, stays so), the rest of the
// random effects (dense or sparse, chosen once from the fill-in pattern), and
// [X y] (dense, (p+1) x (p+1)). Only the diagonals and the last element are
// needed for the objective: log|L_theta|^2, log|R_X|^2 and the penalized
// residual sum of squares; no solve for beta or b happens while optimizing.
#pragma once

#include <Eigen/SparseCholesky>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "multilevel/mutants.hpp"
#include "multilevel/dense_cholesky.hpp"
#include "multilevel/normal_equations.hpp"
#include "multilevel/parallel.hpp"
#include "multilevel/relative_covariance.hpp"

namespace multilevel {

/// How the rest block (terms 1..K-1 after elimination of term 0) is factored.
enum class RestStorage { None, Dense, Sparse, Auto };

class BlockedCholesky {
 public:
  using SparseLLT = Eigen::SimplicialLLT<SparseMatrix, Eigen::Lower, Eigen::AMDOrdering<int>>;

  /// Symbolic set-up: copies the pattern of the term-0 coupling block and
  /// decides dense or sparse storage for the rest block from its fill-in.
  /// `prefer` forces Dense or Sparse (for tests and benchmarks); Auto decides.
  explicit BlockedCholesky(const NormalEquations& A, RestStorage prefer = RestStorage::Auto)
      : A_(A), L_R0(A.AR0) {
    const TermLayout& t0 = A.terms[0];
    L00.resize(t0.p, t0.size());
    LX0.resize(A.p + 1, t0.size());
    if (A.q_rest == 0) {
      storage_ = RestStorage::None;
      return;
    }
    if (prefer == RestStorage::Dense || prefer == RestStorage::Sparse) {
      storage_ = prefer;
      return;
    }
    // Small rest blocks are dense whatever their fill-in: skip the (costly) pattern product.
    if (A.q_rest <= kDenseUpTo) {
      storage_ = RestStorage::Dense;
      return;
    }
    // Fill-in of the rest block: pattern of ARR plus that of AR0 AR0'.
    const SparseMatrix fill = SparseMatrix(A.AR0 * A.AR0.transpose()) + A.ARR;
    const double density = static_cast<double>(fill.nonZeros()) /
                           (static_cast<double>(A.q_rest) * static_cast<double>(A.q_rest));
    storage_ = density > 0.05 ? RestStorage::Dense : RestStorage::Sparse;
  }

  /// Rest blocks up to this size are always stored dense.
  static constexpr Index kDenseUpTo = 256;

  RestStorage storage() const { return storage_; }

  /// Numeric factorization at theta (ntheta,). Returns false when a block is
  /// not positive definite (X rank deficient given the random effects).
  bool factor(const Eigen::Ref<const VectorXd>& theta) {
    lambdas_.clear();
    for (const TermLayout& t : A_.terms) lambdas_.push_back(term_lambda(t, theta));
    logdet_re = 0.0;
    switch (A_.terms[0].p) {
      case 1: factor_term0<1>(); break;
      case 2: factor_term0<2>(); break;
      case 3: factor_term0<3>(); break;
      case 4: factor_term0<4>(); break;
      default: factor_term0<Eigen::Dynamic>(); break;
    }
    MatrixXd schur = A_.AXX;
    schur.noalias() -= LX0 * LX0.transpose();
    if (storage_ == RestStorage::Dense) {
      if (!factor_rest()) return false;
      // B' S^-1 B = W'W with W = L_RR^-1 B: one triangular solve, not two.
      MatrixXd w = B_R;
      dense_s_.triangularView<Eigen::Lower>().solveInPlace(w);
      schur.noalias() -= w.transpose() * w;
    } else if (storage_ == RestStorage::Sparse) {
      if (!factor_rest()) return false;
      schur.noalias() -= B_R.transpose() * solve_rest(B_R);
    }
    Eigen::LLT<MatrixXd> llt(schur);
    if (llt.info() != Eigen::Success) return false;
    LXX = llt.matrixL();
    const Index p = A_.p;
    logdet_x = 2.0 * LXX.diagonal().head(p).array().log().sum();
    pwrss = ML_MUTANT(2) ? std::abs(LXX(p, p)) : LXX(p, p) * LXX(p, p);  // mutant 2: the square forgotten
    return std::isfinite(logdet_re) && std::isfinite(logdet_x);
  }

  // Results of the last successful factor().
  double logdet_re = 0.0;  // log det(Lambda'Z'WZ Lambda + I)
  double logdet_x = 0.0;   // log det(R_X' R_X)
  double pwrss = 0.0;      // penalized weighted residual sum of squares
  MatrixXd L00;            // (p0, p0 q0) lower Cholesky blocks of term 0
  SparseMatrix L_R0;       // (q_rest, p0 q0) rest x term-0 block of L
  MatrixXd LX0;            // (p+1, p0 q0) [X y] x term-0 block of L
  MatrixXd B_R;            // (q_rest, p+1) Lambda_R'Z_R'W[X y] - L_R0 LX0'
  MatrixXd LXX;            // (p+1, p+1) lower Cholesky factor of the [X y] Schur complement

  const std::vector<MatrixXd>& lambdas() const { return lambdas_; }
  const SparseMatrix& rest_lambda_matrix() const { return lambda_rest_; }
  const NormalEquations& normal_equations() const { return A_; }

  /// S^{-1} rhs where S = L_RR L_RR' is the rest block's Schur complement.
  /// rhs (q_rest, m).
  MatrixXd solve_rest(const MatrixXd& rhs) const {
    if (storage_ == RestStorage::Dense) {
      MatrixXd x = rhs;
      const auto l = dense_s_.triangularView<Eigen::Lower>();
      l.solveInPlace(x);
      l.transpose().solveInPlace(x);
      return x;
    }
    return sparse_llt_.solve(rhs);
  }

  /// Rows of L_R0 belonging to term-0 level j, and their dense block.
  /// Returns (first position in the inner-index array, number of rows).
  std::pair<Index, Index> level_rows(Index j) const {
    const Index p0 = A_.terms[0].p;
    const int* outer = L_R0.outerIndexPtr();
    return {outer[j * p0], outer[j * p0 + 1] - outer[j * p0]};
  }
  Eigen::Map<const MatrixXd> level_block(Index j) const {
    const auto [start, nr] = level_rows(j);
    return Eigen::Map<const MatrixXd>(L_R0.valuePtr() + start, nr, A_.terms[0].p);
  }

 private:
  // Term 0: L00_j = chol(lambda0' A00_j lambda0 + I), LX0_j = AX0_j lambda0 L00_j^-T,
  // L_R0_j = Lambda_R' AR0_j lambda0 L00_j^-T. Fixed-size P avoids heap work per level; levels are
  // split into fixed chunks (the same for any thread count), each summing its log determinant in
  // level order, the chunks added in order.
  template <int P>
  void factor_term0() {
    const Index nlev = A_.terms[0].nlevels;
    const Index nchunks = (nlev + kLevelChunk - 1) / kLevelChunk;
    std::vector<double> logdet(static_cast<std::size_t>(nchunks), 0.0);
    if (nchunks > 1) {
      ML_PARALLEL_FOR_DYNAMIC
      for (Index c = 0; c < nchunks; ++c) logdet[static_cast<std::size_t>(c)] = factor_term0_levels<P>(c);
    } else if (nchunks == 1) {
      logdet[0] = factor_term0_levels<P>(0);
    }
    for (double v : logdet) logdet_re += v;
  }

  /// Levels of term 0 factored together by one work item.
  static constexpr Index kLevelChunk = 4096;

  // The levels of chunk c; returns the sum of their log det(L00_j L00_j').
  template <int P>
  double factor_term0_levels(Index c) {
    using Block = Eigen::Matrix<double, P, P>;
    const TermLayout& t0 = A_.terms[0];
    const Index p0 = t0.p, rows_x = A_.p + 1;
    const Block lam = lambdas_[0];
    const int* outer = L_R0.outerIndexPtr();
    const double* a_r0 = A_.AR0.valuePtr();
    double* l_r0 = L_R0.valuePtr();
    double logdet = 0.0;
    for (Index j = c * kLevelChunk; j < std::min(t0.nlevels, (c + 1) * kLevelChunk); ++j) {
      const Eigen::Map<const Block> a(A_.A00.data() + j * p0 * p0, p0, p0);
      Block m = ML_MUTANT(8) ? Block(lam * a * lam.transpose()) : Block(lam.transpose() * a * lam);  // mutant 8
      m.diagonal().array() += 1.0;
      Eigen::LLT<Block> llt(m);
      Block l = llt.matrixL();
      Eigen::Map<Block>(L00.data() + j * p0 * p0, p0, p0) = l;
      // The diagonal of L00_j is at least one (m >= I), so its product cannot underflow: one log per level.
      const double det = l.diagonal().prod();
      logdet += std::isfinite(det) ? 2.0 * std::log(det) : 2.0 * l.diagonal().array().log().sum();
      Eigen::Map<MatrixXd> lx(LX0.data() + j * p0 * rows_x, rows_x, p0);
      times_lambda_over_l(A_.AX0.data() + j * p0 * rows_x, rows_x, lam, l, lx);
      if (storage_ == RestStorage::None) continue;
      const Index start = outer[j * p0], nr = outer[j * p0 + 1] - start;
      Eigen::Map<MatrixXd> d(l_r0 + start, nr, p0);
      times_lambda_over_l(a_r0 + start, nr, lam, l, d);
      scale_rows_by_rest_lambda(L_R0.innerIndexPtr() + start, d);
    }
    return logdet;
  }

  // d = a lam l^-T for a (nr, p0) read from a_vals, lam and l (p0, p0), l lower.
  // Plain loops in a fixed order: d lives inside the sparse factor's value
  // array, whose address alignment varies between runs, and Eigen's
  // vectorized kernels would then group the sums differently from run to run.
  template <class Block>
  static void times_lambda_over_l(const double* a_vals, Index nr, const Block& lam, const Block& l,
                                  Eigen::Map<MatrixXd>& d) {
    const Index p0 = lam.rows();
    for (Index c = 0; c < p0; ++c)
      for (Index r = 0; r < nr; ++r) {
        double v = 0.0;
        for (Index k = c; k < p0; ++k) v += a_vals[k * nr + r] * lam(k, c);  // lam is lower triangular
        d(r, c) = v;
      }
    for (Index c = 0; c < p0; ++c)  // d <- d l^-T, column by column (forward substitution)
      for (Index r = 0; r < nr; ++r) {
        double v = d(r, c);
        for (Index k = 0; k < c; ++k) v -= d(r, k) * l(c, k);
        d(r, c) = v / l(c, c);
      }
  }

  // d (nr, p0) rows listed by rest index; runs of p_k rows belong to one level.
  void scale_rows_by_rest_lambda(const int* rows, Eigen::Map<MatrixXd>& d) const {
    for (Index a = 0; a < d.rows();) {
      const int k = A_.rest_term[rows[a]];
      const Index pk = A_.terms[k].p;
      if (pk == 1) {
        d.row(a) *= lambdas_[k](0, 0);
      } else {  // plain loops, for the same reason as in times_lambda_over_l
        const MatrixXd run = d.middleRows(a, pk);
        const MatrixXd& lam = lambdas_[k];
        for (Index c = 0; c < d.cols(); ++c)
          for (Index r = 0; r < pk; ++r) {
            double v = 0.0;
            for (Index m = r; m < pk; ++m) v += lam(m, r) * run(m, c);  // (lam' run)(r, c), lam lower
            d(a + r, c) = v;
          }
      }
      a += pk;
    }
  }

  // Rest block: S = Lambda_R' ARR Lambda_R + I - L_R0 L_R0', then its Cholesky.
  bool factor_rest() {
    lambda_rest_ = rest_lambda(A_.terms, lambdas_, A_.q_rest);
    const SparseMatrix lal = lambda_rest_.transpose() * A_.ARR * lambda_rest_;
    B_R.noalias() = lambda_rest_.transpose() * A_.AXR.transpose();
    B_R.noalias() -= L_R0 * LX0.transpose();
    if (storage_ == RestStorage::Dense) {
      assemble_dense_rest(lal);
      // In place: dense_s_ then holds its lower Cholesky factor.
      if (!cholesky_in_place(dense_s_)) return false;
      logdet_re += (ML_MUTANT(7) ? 1.0 : 2.0) * dense_s_.diagonal().array().log().sum();
      return true;
    }
    SparseMatrix ident(A_.q_rest, A_.q_rest);
    ident.setIdentity();
    const SparseMatrix s = lal + ident - SparseMatrix(L_R0 * L_R0.transpose());
    if (!analyzed_) {
      sparse_llt_.analyzePattern(s);
      analyzed_ = true;
    }
    sparse_llt_.factorize(s);
    if (sparse_llt_.info() != Eigen::Success) return false;
    const SparseMatrix& l = sparse_llt_.matrixL().nestedExpression();
    logdet_re += (ML_MUTANT(7) ? 1.0 : 2.0) * l.diagonal().array().log().sum();  // mutant 7: log det of L only
    return true;
  }

  // dense_s_ (q_rest, q_rest), lower triangle = lal + I - sum_j D_j D_j' over
  // term-0 levels. Work items own fixed blocks of columns (so no two threads
  // write one entry, and each entry sums its terms in the same order); rows
  // of each D_j ascend, so a block's rows are found by binary search.
  void assemble_dense_rest(const SparseMatrix& lal) {
    const Index q = A_.q_rest, p0 = A_.terms[0].p, nlev0 = A_.terms[0].nlevels;
    const Index width = 64, nblocks = (q + width - 1) / width;
    dense_s_.resize(q, q);
    const int* inner = L_R0.innerIndexPtr();
    ML_PARALLEL_FOR_DYNAMIC
    for (Index t = 0; t < nblocks; ++t) {
      const Index c0 = t * width, c1 = std::min(q, c0 + width);
      dense_s_.middleCols(c0, c1 - c0).setZero();
      for (Index c = c0; c < c1; ++c) {
        for (SparseMatrix::InnerIterator it(lal, c); it; ++it) dense_s_(it.row(), c) += it.value();
        dense_s_(c, c) += 1.0;
      }
      for (Index j = 0; j < nlev0; ++j) {
        const auto [start, nr] = level_rows(j);
        const int* rows = inner + start;
        const Index b0 = std::lower_bound(rows, rows + nr, static_cast<int>(c0)) - rows;
        const Index b1 = std::lower_bound(rows + b0, rows + nr, static_cast<int>(c1)) - rows;
        if (b0 == b1) continue;
        const Eigen::Map<const MatrixXd> d(L_R0.valuePtr() + start, nr, p0);
        for (Index b = b0; b < b1; ++b) {
          double* col = dense_s_.data() + static_cast<Index>(rows[b]) * q;
          for (Index a = b; a < nr; ++a) {
            double v = 0.0;
            for (Index c = 0; c < p0; ++c) v += d(a, c) * d(b, c);
            col[rows[a]] -= v;
          }
        }
      }
    }
  }

  const NormalEquations& A_;
  RestStorage storage_ = RestStorage::None;
  std::vector<MatrixXd> lambdas_;
  SparseMatrix lambda_rest_;
  MatrixXd dense_s_;  // dense rest block, then (after factor) its lower Cholesky factor
  SparseLLT sparse_llt_;
  bool analyzed_ = false;
};

}  // namespace multilevel
