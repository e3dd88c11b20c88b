// Penalized iteratively reweighted least squares (PIRLS) for generalized
// linear mixed models, on the linear mixed model's blocked Cholesky.
//
// Each iteration forms the GLM working weights and response at the current
// linear predictor, builds the weighted normal equations in one pass over the
// rows, and solves the penalized least-squares problem at theta; steps that
// raise the penalized deviance are halved. The last system stays available
// for the fixed-effect factor RX and the conditional variances.
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "multilevel/glm.hpp"
#include "multilevel/lmm.hpp"
#include "multilevel/mutants.hpp"
#include "multilevel/relative_covariance.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

/// PIRLS for one model. Holds copies of the rows (so Python arrays may go away).
class GlmmPirls {
 public:
  struct Result {
    VectorXd eta;             // (n,) linear predictor at the modes (offset included)
    VectorXd beta;            // (p,)
    VectorXd u;               // spherical modes, terms concatenated, level-major within a term
    std::vector<MatrixXd> b;  // per term (p_k, nlevels_k)
    double deviance = 0.0;    // sum of prior-weighted unit deviances at the modes
    double logdet = 0.0;      // log det(Lambda' Z' W Z Lambda + I) at the modes' weights
    int iterations = 0;
  };

  /// y, prior weights, offset: (n,); x: (n, p); per term codes (n,) and z (n, p_k).
  GlmmPirls(const VectorXd& y, const MatrixXd& x, const VectorXd& prior, const VectorXd& offset,
            std::vector<Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> codes, std::vector<MatrixXd> z,
            std::vector<Index> nlevels, Glm glm)
      : y_(y), x_(x), prior_(prior), offset_(offset), codes_(std::move(codes)), z_(std::move(z)),
        nlevels_(std::move(nlevels)), glm_(glm), empty_x_(y.size(), 0) {
    const Index n = y_.size();
    if (x_.rows() != n || prior_.size() != n || offset_.size() != n)
      throw std::invalid_argument("y, x, prior weights and offset must have the same number of rows");
    if (codes_.size() != z_.size() || codes_.size() != nlevels_.size() || codes_.empty())
      throw std::invalid_argument("codes, z and nlevels must have one entry per term (at least one)");
    // The mu-free part of the unit deviance: y log y + (1-y) log(1-y) (binomial), y log y - y (poisson).
    saturated_.resize(n);
    binary_ = ((y_.array() == 0.0) || (y_.array() == 1.0)).all();
    for (Index i = 0; i < n; ++i) {
      const double yi = y_[i];
      saturated_[i] = glm_.family == GlmFamily::Binomial
                          ? (yi > 0.0 ? yi * std::log(yi) : 0.0) + (yi < 1.0 ? (1.0 - yi) * std::log1p(-yi) : 0.0)
                          : (yi > 0.0 ? yi * std::log(yi) : 0.0) - yi;
    }
  }

  Index nobs() const { return y_.size(); }

  /// Replace the prior weights (n,): the dispersion of the Gamma family enters as prior / phi.
  void set_prior(const VectorXd& prior) {
    if (prior.size() != nobs()) throw std::invalid_argument("prior weights must have one value per row");
    prior_ = prior;
  }

  /// The negative binomial shape k (> 0).
  void set_shape(double shape) {
    if (!(shape > 0.0)) throw std::invalid_argument("the negative binomial shape must be positive");
    glm_.shape = shape;
  }

  /// Conditional modes at theta, from the linear predictor eta_start (n,).
  /// beta (p,) is held fixed when fixed_beta, else estimated jointly.
  Result run(const VectorXd& theta, const VectorXd& beta, bool fixed_beta, const VectorXd& eta_start,
             double tol, int maxiter) {
    const Index n = nobs(), p = x_.cols();
    VectorXd eta = eta_start, w(n), work(n), fixed_part;
    if (fixed_beta) fixed_part = x_ * beta;
    double pdev_old = std::numeric_limits<double>::infinity();
    VectorXd coef_old;
    Result res;
    deviance(eta);  // fills mu_ and dmu_ at eta
    for (int it = 1; it <= maxiter; ++it) {
      for (Index i = 0; i < n; ++i) {
        const double mu = mu_[i], dmu = dmu_[i];
        w[i] = prior_[i] * dmu * dmu / glm_.variance(mu);
        work[i] = eta[i] - offset_[i] + (y_[i] - mu) / dmu - (fixed_beta ? fixed_part[i] : 0.0);
        if (!std::isfinite(w[i]) || !std::isfinite(work[i]))
          throw std::runtime_error("PIRLS: non-finite working weight or response at row " + std::to_string(i) +
                                   " (the mean left its range)");
      }
      last_ = std::make_unique<LinearMixedModel>(normal_equations(work, fixed_beta ? empty_x_ : x_, w),
                                                 rest_storage_);
      rest_storage_ = last_->rest_storage();
      const LmmSolution sol = last_->solve(theta, false);
      VectorXd coef(p + total_random());
      coef.head(p) = fixed_beta ? beta : sol.beta;
      Index off = p;
      for (const MatrixXd& uk : sol.u) {
        coef.segment(off, uk.size()) = Eigen::Map<const VectorXd>(uk.data(), uk.size());
        off += uk.size();
      }
      const VectorXd proposed = linear_predictor(theta, coef);
      double step = 1.0, dev = 0.0, pdev = 0.0;
      VectorXd trial_coef, trial_eta;
      while (true) {
        trial_coef = coef_old.size() ? VectorXd(coef_old + step * (coef - coef_old)) : coef;
        trial_eta = coef_old.size() ? VectorXd(eta + step * (proposed - eta)) : proposed;
        dev = deviance(trial_eta);
        pdev = dev + trial_coef.tail(coef.size() - p).squaredNorm();
        if (!coef_old.size() || pdev <= pdev_old * (1.0 + 1e-10) + 1e-10) break;
        step *= 0.5;
        if (step < 1e-10)
          throw std::runtime_error("PIRLS step-halving could not reduce the penalized deviance (iteration " +
                                   std::to_string(it) + "); the data may be separated or the model too "
                                   "complex for them");
      }
      if (!std::isfinite(pdev)) throw std::runtime_error("PIRLS: the penalized deviance is not finite");
      // The Laplace term depends on the modes themselves (the penalized deviance is flat there),
      // and the optimizers difference this function: converge on the linear predictor.
      const double change = (trial_eta - eta).cwiseAbs().maxCoeff();
      const bool converged = step == 1.0 && change <= tol * (1.0 + eta.cwiseAbs().maxCoeff());
      eta = trial_eta;
      pdev_old = pdev;
      coef_old = trial_coef;
      res.logdet = sol.logdet_re;
      res.deviance = dev;
      res.iterations = it;
      if (converged) break;
      if (it == maxiter)
        throw std::runtime_error("PIRLS did not converge in " + std::to_string(maxiter) + " iterations (largest |eta| " +
                                 std::to_string(eta.cwiseAbs().maxCoeff()) + "); with a binomial response this "
                                 "usually means (quasi-)complete separation: some covariate or group predicts the "
                                 "outcome perfectly");
    }
    res.eta = eta;
    res.beta = coef_old.head(p);
    res.u = coef_old.tail(coef_old.size() - p);
    res.b = random_effects(theta, res.u);
    return res;
  }

  /// The last penalized least-squares system (RX, conditional variances).
  LinearMixedModel& last_system() {
    if (!last_) throw std::runtime_error("PIRLS has not run yet");
    return *last_;
  }

 private:
  Index total_random() const {
    Index q = 0;
    for (std::size_t k = 0; k < z_.size(); ++k) q += z_[k].cols() * nlevels_[k];
    return q;
  }

  NormalEquations normal_equations(const VectorXd& work, const MatrixXd& x, const VectorXd& w) {
    std::vector<TermInput> terms;
    for (std::size_t k = 0; k < z_.size(); ++k)
      terms.push_back(TermInput{CodesMap(codes_[k].data(), codes_[k].size(), Eigen::InnerStride<Eigen::Dynamic>(1)),
                                StridedMatrixMap(z_[k].data(), z_[k].rows(), z_[k].cols(),
                                                 Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(z_[k].rows(), 1)),
                                nlevels_[k]});
    return NormalEquations(StridedVectorMap(work.data(), work.size(), Eigen::InnerStride<Eigen::Dynamic>(1)),
                           StridedMatrixMap(x.data(), x.rows(), x.cols(),
                                            Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(x.rows(), 1)),
                           StridedVectorMap(w.data(), w.size(), Eigen::InnerStride<Eigen::Dynamic>(1)), terms,
                           &pair_patterns_);
  }

  /// b_k = Lambda_k u_k per term, from the concatenated spherical modes.
  std::vector<MatrixXd> random_effects(const VectorXd& theta, const VectorXd& u) const {
    std::vector<MatrixXd> out;
    Index off = 0;
    for (std::size_t k = 0; k < z_.size(); ++k) {
      const TermLayout& t = last_->normal_equations().terms[k];
      out.push_back(term_lambda(t, theta) * Eigen::Map<const MatrixXd>(u.data() + off, t.p, t.nlevels));
      off += t.p * t.nlevels;
    }
    return out;
  }

  /// X beta + Z Lambda u + offset for coef = (beta, u).
  VectorXd linear_predictor(const VectorXd& theta, const VectorXd& coef) const {
    const Index p = x_.cols();
    VectorXd eta = x_ * coef.head(p) + offset_;
    const std::vector<MatrixXd> b = random_effects(theta, coef.tail(coef.size() - p));
    const Index n = eta.size();
    for (std::size_t k = 0; k < z_.size(); ++k) {
      const Index pk = z_[k].cols();
      const double* z = z_[k].data();  // column-major (n, pk)
      const double* bk = b[k].data();  // column-major (pk, nlevels)
      const std::int32_t* code = codes_[k].data();
      for (Index i = 0; i < n; ++i) {
        const double* bj = bk + static_cast<Index>(code[i]) * pk;
        double s = 0.0;
        for (Index c = 0; c < pk; ++c) s += z[c * n + i] * bj[c];
        eta[i] += s;
      }
    }
    return eta;
  }

  /// Sum of prior-weighted unit deviances at eta; leaves mu_ and dmu_ at eta.
  /// Vectorized (Eigen array functions) for the logit and log links.
  double deviance(const VectorXd& eta) {
    constexpr double eps = 2.220446049250313e-16;
    const Index n = eta.size();
    mu_.resize(n);
    dmu_.resize(n);
    if (glm_.link == GlmLink::Logit) {
      const Eigen::ArrayXd e = (-eta.array().abs()).exp();
      const Eigen::ArrayXd p = (eta.array() >= 0.0).select(1.0 / (1.0 + e), e / (1.0 + e));
      mu_ = p.max(eps).min(1.0 - eps).matrix();
      dmu_ = (p * (1.0 - p)).max(eps).matrix();
    } else if (glm_.link == GlmLink::Log) {
      mu_ = eta.array().exp().max(eps).matrix();
      dmu_ = mu_;
    } else {
      for (Index i = 0; i < n; ++i) glm_.mean(eta[i], mu_[i], dmu_[i]);
    }
    if (glm_.family == GlmFamily::Gamma || glm_.family == GlmFamily::NegativeBinomial) {
      double total = 0.0;
      for (Index i = 0; i < n; ++i) total += prior_[i] * glm_.deviance(y_[i], mu_[i]);
      return total;
    }
    const Eigen::ArrayXd mu = mu_.array(), y = y_.array();
    Eigen::ArrayXd d;
    if (glm_.family == GlmFamily::Binomial && binary_)
      // 0/1 responses: one logarithm per row, of y mu + (1 - y)(1 - mu) (exactly mu or 1 - mu); written
      // as arithmetic, not select(), because Eigen vectorizes the logarithm only of packet expressions.
      d = -2.0 * (y * mu + (1.0 - y) * (1.0 - mu)).log();
    else if (glm_.family == GlmFamily::Binomial)
      d = 2.0 * (saturated_.array() - y * mu.log() - (1.0 - y) * (1.0 - mu).log());
    else  // Poisson; mutant 10: the sign of mu flipped
      d = 2.0 * (saturated_.array() - y * mu.log() + (ML_MUTANT(10) ? -1.0 : 1.0) * mu);
    return (prior_.array() * d).sum();
  }

  VectorXd y_;
  MatrixXd x_;
  VectorXd prior_, offset_;
  std::vector<Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> codes_;
  std::vector<MatrixXd> z_;
  std::vector<Index> nlevels_;
  Glm glm_;
  MatrixXd empty_x_;
  VectorXd saturated_;  // (n,) the part of the unit deviance that does not depend on mu
  bool binary_ = false;  // every response is 0 or 1
  VectorXd mu_, dmu_;  // mean and d mu / d eta at the last eta passed to deviance()
  std::unique_ptr<LinearMixedModel> last_;
  // What depends on the grouping codes only, found by the first system and reused by the next ones.
  RestStorage rest_storage_ = RestStorage::Auto;
  PairPatterns pair_patterns_;
};

}  // namespace multilevel
