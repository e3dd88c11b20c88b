// Elementwise GLM quantities shared by GLMM PIRLS and the GEE working arrays:
// means and their derivatives by link, variances by family (R's conventions).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "multilevel/mutants.hpp"
#include "multilevel/parallel.hpp"
#include "multilevel/types.hpp"

namespace multilevel {

enum class GlmFamily : int { Binomial = 0, Poisson = 1, Gamma = 2, NegativeBinomial = 3, Gaussian = 4 };
enum class GlmLink : int { Logit = 0, Probit = 1, Cloglog = 2, Log = 3, Identity = 4, Sqrt = 5 };

/// Elementwise GLM quantities (R's conventions, probabilities kept inside (eps, 1 - eps)).
struct Glm {
  GlmFamily family;
  GlmLink link;
  double shape = 1.0;  ///< negative binomial k: Var = mu + mu^2 / k

  /// Mean and d mu / d eta at eta.
  void mean(double eta, double& mu, double& dmu) const {
    constexpr double eps = 2.220446049250313e-16;
    switch (link) {
      case GlmLink::Logit: {
        const double e = std::exp(-std::abs(eta));
        const double p = eta >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        mu = std::min(std::max(p, eps), 1.0 - eps);
        dmu = std::max(p * (1.0 - p), eps);
        return;
      }
      case GlmLink::Probit:
        mu = std::min(std::max(0.5 * std::erfc(-eta / std::sqrt(2.0)), eps), 1.0 - eps);
        // Mutant 1: the 1/2 dropped from the exponent of the normal density.
        dmu = std::max(std::exp((ML_MUTANT(1) ? -1.0 : -0.5) * eta * eta) / std::sqrt(2.0 * M_PI), eps);
        return;
      case GlmLink::Cloglog: {
        const double e = std::exp(std::min(eta, 700.0));
        mu = std::min(std::max(-std::expm1(-e), eps), 1.0 - eps);
        // Mutant 9: the chain rule's exp(eta) forgotten in the cloglog derivative.
        dmu = std::max(std::exp((ML_MUTANT(9) ? 0.0 : std::min(eta, 700.0)) - e), eps);
        return;
      }
      case GlmLink::Log:
        mu = std::max(std::exp(eta), eps);
        dmu = mu;
        return;
      case GlmLink::Identity:
        mu = eta;
        dmu = 1.0;
        return;
      case GlmLink::Sqrt:
        mu = eta * eta;
        dmu = 2.0 * eta;
        return;
    }
  }

  double variance(double mu) const {
    switch (family) {
      case GlmFamily::Binomial: return mu * (1.0 - mu);
      case GlmFamily::Poisson: return mu;
      case GlmFamily::Gamma: return mu * mu;
      case GlmFamily::NegativeBinomial: return mu + mu * mu / shape;
      case GlmFamily::Gaussian: return 1.0;
    }
    return mu;
  }

  /// Unit deviance d(y, mu) (per unit prior weight).
  double deviance(double y, double mu) const {
    if (family == GlmFamily::Binomial) {
      double d = 0.0;
      if (y > 0.0) d += y * std::log(y / mu);
      if (y < 1.0) d += (1.0 - y) * std::log((1.0 - y) / (1.0 - mu));
      return 2.0 * d;
    }
    if (family == GlmFamily::Gamma) return 2.0 * (-std::log(y / mu) + (y - mu) / mu);
    if (family == GlmFamily::NegativeBinomial)
      return 2.0 * ((y > 0.0 ? y * std::log(y / mu) : 0.0) - (y + shape) * std::log((y + shape) / (mu + shape)));
    return 2.0 * ((y > 0.0 ? y * std::log(y / mu) : 0.0) - (y - mu));
  }
};

/// Means and d mu / d eta of a block of rows: packet (SIMD) expressions for the logit, log and
/// identity links, Glm::mean row by row for the others. `mu`, `dmu` are resized to eta's length.
inline void mean_block(const Glm& glm, const Eigen::ArrayXd& eta, Eigen::ArrayXd& mu, Eigen::ArrayXd& dmu) {
  constexpr double eps = 2.220446049250313e-16;
  switch (glm.link) {
    case GlmLink::Logit: {
      const Eigen::ArrayXd p = 1.0 / (1.0 + (-eta).exp());
      mu = p.max(eps).min(1.0 - eps);
      dmu = (p * (1.0 - p)).max(eps);
      return;
    }
    case GlmLink::Log:
      mu = eta.exp().max(eps);
      dmu = mu;
      return;
    case GlmLink::Identity:
      mu = eta;
      dmu = Eigen::ArrayXd::Ones(eta.size());
      return;
    default:
      mu.resize(eta.size());
      dmu.resize(eta.size());
      for (Index i = 0; i < eta.size(); ++i) glm.mean(eta[i], mu[i], dmu[i]);
  }
}

/// Variances v(mu) of a block of rows (packet expressions).
inline Eigen::ArrayXd variance_block(const Glm& glm, const Eigen::ArrayXd& mu) {
  switch (glm.family) {
    case GlmFamily::Binomial: return mu * (1.0 - mu);
    case GlmFamily::Poisson: return mu;
    case GlmFamily::Gamma: return mu * mu;
    case GlmFamily::NegativeBinomial: return mu + mu * mu / glm.shape;
    case GlmFamily::Gaussian: return Eigen::ArrayXd::Ones(mu.size());
  }
  return mu;
}

/// The GEE's per-row arrays at the linear predictor, with phi = 1 (gee/scoring.py's WorkingArrays).
///
/// @param eta        (n,) linear predictor
/// @param y          (n,) response
/// @param w          (n,) prior weights, or empty for ones
/// @param mu         (n,) out: mean
/// @param pearson    (n,) out: (y - mu) sqrt(w / v(mu))
/// @param root_info  (n,) out: (dmu/deta) sqrt(w / v(mu))
/// @return the first row whose mean is not finite or whose variance is not positive (the mean left
///         the family's range), or -1. Rows are independent: the result does not depend on threads.
inline Index gee_working_arrays(const StridedVectorMap& eta, const StridedVectorMap& y, const StridedVectorMap& w,
                                const Glm& glm, Eigen::Ref<VectorXd> mu, Eigen::Ref<VectorXd> pearson,
                                Eigen::Ref<VectorXd> root_info) {
  const Index n = eta.size(), block = 1 << 14, nblocks = (n + block - 1) / block;
  std::vector<Index> bad(static_cast<std::size_t>(nblocks), -1);
  ML_PARALLEL_FOR_DYNAMIC
  for (Index b = 0; b < nblocks; ++b) {
    const Index start = b * block, len = std::min(n, start + block) - start;
    Eigen::ArrayXd m, dmu;
    mean_block(glm, eta.segment(start, len).array(), m, dmu);
    const Eigen::ArrayXd v = variance_block(glm, m);
    if (!(m.isFinite() && v > 0.0).all()) {
      for (Index i = 0; i < len; ++i)
        if (!std::isfinite(m[i]) || !(v[i] > 0.0)) {
          bad[static_cast<std::size_t>(b)] = start + i;
          break;
        }
    }
    const Eigen::ArrayXd root = w.size() ? (w.segment(start, len).array() / v).sqrt().eval() : (1.0 / v).sqrt().eval();
    mu.segment(start, len) = m.matrix();
    pearson.segment(start, len) = ((y.segment(start, len).array() - m) * root).matrix();
    root_info.segment(start, len) = (dmu * root).matrix();
  }
  for (Index first : bad)
    if (first >= 0) return first;
  return -1;
}

}  // namespace multilevel
