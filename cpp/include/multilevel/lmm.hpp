// Linear mixed model: profiled (RE)ML objective as a function of theta only,
// and the estimates (beta, conditional modes, conditional variances) at one
// theta. Follows Bates et al. (2015), JSS 67(1), section 3.
#pragma once

#include <cmath>
#include <stdexcept>
#include <vector>

#include "multilevel/blocked_cholesky.hpp"
#include "multilevel/normal_equations.hpp"

namespace multilevel {

/// Everything a fitted model reports that depends on theta.
struct LmmSolution {
  VectorXd beta;               // (p,) fixed effects
  MatrixXd RX;                 // (p, p) lower factor: X'V^-1 X / sigma^2 = RX RX'
  double pwrss = 0.0;          // penalized weighted residual sum of squares
  double sigma = 0.0;          // residual standard deviation
  double objective = 0.0;      // -2 log-likelihood (ML) or REML criterion
  double logdet_re = 0.0;      // log det(Lambda'Z'WZ Lambda + I) (the Laplace term of GLMMs)
  std::vector<MatrixXd> b;     // per term (p_k, nlevels_k): conditional modes of b
  std::vector<MatrixXd> u;     // per term (p_k, nlevels_k): spherical modes, b = Lambda u
};

class LinearMixedModel {
 public:
  /// Takes ownership of the normal equations (built once from the rows).
  explicit LinearMixedModel(NormalEquations A, RestStorage prefer = RestStorage::Auto)
      : A_(std::move(A)), chol_(A_, prefer) {}
  // chol_ refers to A_: neither may move.
  LinearMixedModel(const LinearMixedModel&) = delete;
  LinearMixedModel& operator=(const LinearMixedModel&) = delete;

  Index ntheta() const {
    Index m = 0;
    for (const auto& t : A_.terms) m += t.ntheta();
    return m;
  }
  const NormalEquations& normal_equations() const { return A_; }
  RestStorage rest_storage() const { return chol_.storage(); }

  /// Profiled deviance at theta (ntheta,): ML deviance, or REML criterion when
  /// reml. +inf where the system is not positive definite.
  double objective(const Eigen::Ref<const VectorXd>& theta, bool reml) {
    check_theta(theta);
    if (!chol_.factor(theta)) return std::numeric_limits<double>::infinity();
    return objective_from_factor(reml);
  }

  /// Estimates at theta (ntheta,).
  LmmSolution solve(const Eigen::Ref<const VectorXd>& theta, bool reml) {
    check_theta(theta);
    if (!chol_.factor(theta))
      throw std::runtime_error("the mixed-model system is not positive definite at this theta");
    LmmSolution s;
    const Index p = A_.p;
    s.objective = objective_from_factor(reml);
    s.pwrss = chol_.pwrss;
    s.logdet_re = chol_.logdet_re;
    s.sigma = std::sqrt(s.pwrss / dof(reml));
    s.RX = chol_.LXX.topLeftCorner(p, p);
    // beta solves RX' beta = l, where l is the y row of LXX below RX.
    s.beta = chol_.LXX.row(p).head(p).transpose();
    s.RX.triangularView<Eigen::Lower>().transpose().solveInPlace(s.beta);
    conditional_modes(s);
    return s;
  }

  /// Conditional covariance of b for every level of term k, given theta and
  /// beta: sigma^2 lambda_k [ (Lambda'Z'WZ Lambda + I)^-1 ]_block lambda_k'.
  /// Returns (p_k, p_k * nlevels_k), level g at columns [g p_k, (g+1) p_k).
  /// Call after solve() at the same theta.
  MatrixXd conditional_variance(Index k, double sigma) const {
    const TermLayout& t = A_.terms.at(k);
    const Index pk = t.p;
    MatrixXd out(pk, t.size());
    const MatrixXd& lam = chol_.lambdas()[k];
    if (k == 0) {
      for (Index j = 0; j < t.nlevels; ++j) {
        const MatrixXd l = chol_.L00.middleCols(j * pk, pk);
        // M00_j^-1 = L^-T L^-1
        MatrixXd linv = MatrixXd::Identity(pk, pk);
        l.triangularView<Eigen::Lower>().solveInPlace(linv);
        MatrixXd cinv = linv.transpose() * linv;
        if (chol_.storage() != RestStorage::None) {
          const auto [start, nr] = chol_.level_rows(j);
          if (nr > 0) {
            // Y_j = D_j L^-1 (q_rest rows, sparse), add Y_j' S^-1 Y_j.
            const MatrixXd yj = chol_.level_block(j) * linv;
            MatrixXd full = MatrixXd::Zero(A_.q_rest, pk);
            const int* rows = chol_.L_R0.innerIndexPtr() + start;
            for (Index a = 0; a < nr; ++a) full.row(rows[a]) = yj.row(a);
            cinv.noalias() += full.transpose() * chol_.solve_rest(full);
          }
        }
        out.middleCols(j * pk, pk) = sigma * sigma * lam * cinv * lam.transpose();
      }
      return out;
    }
    // Rest terms: diagonal blocks of S^-1, in batches of levels.
    const Index batch_levels = std::max<Index>(1, 512 / pk);
    for (Index g0 = 0; g0 < t.nlevels; g0 += batch_levels) {
      const Index g1 = std::min(t.nlevels, g0 + batch_levels), m = (g1 - g0) * pk;
      MatrixXd e = MatrixXd::Zero(A_.q_rest, m);
      for (Index c = 0; c < m; ++c) e(t.offset + g0 * pk + c, c) = 1.0;
      const MatrixXd sinv = chol_.solve_rest(e);
      for (Index g = g0; g < g1; ++g) {
        const MatrixXd blk = sinv.block(t.offset + g * pk, (g - g0) * pk, pk, pk);
        out.middleCols(g * pk, pk) = sigma * sigma * lam * blk * lam.transpose();
      }
    }
    return out;
  }

 private:
  double dof(bool reml) const { return static_cast<double>(reml ? A_.n - A_.p : A_.n); }

  void check_theta(const Eigen::Ref<const VectorXd>& theta) const {
    if (theta.size() != ntheta())
      throw std::invalid_argument("theta has " + std::to_string(theta.size()) +
                                  " elements; the model has " + std::to_string(ntheta()));
  }

  double objective_from_factor(bool reml) const {
    const double nu = dof(reml);
    const double two_pi = 2.0 * M_PI;
    double val = chol_.logdet_re + nu * (1.0 + std::log(two_pi * chol_.pwrss / nu)) -
                 A_.sum_log_weights;
    if (reml) val += chol_.logdet_x;
    return val;
  }

  // u solves (Lambda'Z'WZ Lambda + I) u = Lambda'Z'W(y - X beta) by block
  // elimination of term 0: y0 = L00^-1 r0, u_R = S^-1 (r_R - L_R0 y0),
  // u0 = L00^-T (y0 - L_R0' u_R); then b = Lambda u.
  void conditional_modes(LmmSolution& s) const {
    const TermLayout& t0 = A_.terms[0];
    const Index p = A_.p, p0 = t0.p;
    const VectorXd coef = (VectorXd(p + 1) << -s.beta, 1.0).finished();
    // Lambda'Z'W(y - X beta) for term 0, (p0 q0,), and the rest, (q_rest,).
    VectorXd r0 = A_.AX0.transpose() * coef;
    for (Index j = 0; j < t0.nlevels; ++j)
      r0.segment(j * p0, p0) = chol_.lambdas()[0].transpose() * r0.segment(j * p0, p0);
    VectorXd y0(t0.size());
    for (Index j = 0; j < t0.nlevels; ++j) {
      const MatrixXd l = chol_.L00.middleCols(j * p0, p0);
      y0.segment(j * p0, p0) = l.triangularView<Eigen::Lower>().solve(r0.segment(j * p0, p0));
    }
    VectorXd u_rest;
    if (chol_.storage() != RestStorage::None) {
      const VectorXd r_rest = chol_.rest_lambda_matrix().transpose() * (A_.AXR.transpose() * coef);
      u_rest = chol_.solve_rest(r_rest - chol_.L_R0 * y0);
      y0 -= chol_.L_R0.transpose() * u_rest;
    }
    VectorXd u0(t0.size());
    for (Index j = 0; j < t0.nlevels; ++j) {
      const MatrixXd l = chol_.L00.middleCols(j * p0, p0);
      u0.segment(j * p0, p0) =
          l.triangularView<Eigen::Lower>().transpose().solve(y0.segment(j * p0, p0));
    }
    for (std::size_t k = 0; k < A_.terms.size(); ++k) {
      const TermLayout& t = A_.terms[k];
      const VectorXd& src = (k == 0) ? u0 : u_rest;
      const Index off = (k == 0) ? 0 : t.offset;
      MatrixXd uk = Eigen::Map<const MatrixXd>(src.data() + off, t.p, t.nlevels);
      s.b.push_back(chol_.lambdas()[k] * uk);
      s.u.push_back(std::move(uk));
    }
  }

  NormalEquations A_;
  BlockedCholesky chol_;
};

}  // namespace multilevel
