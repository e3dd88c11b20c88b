// PIRLS against a dense Newton solve of the penalized log-likelihood on small random problems.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "checks.hpp"
#include "multilevel/glmm.hpp"

using namespace multilevel;
using namespace multilevel::testing;

namespace {

// Dense reference: modes u of sum_i prior_i d(y_i, mu_i) + |u|^2 with eta = X beta + Z theta u + offset
// (beta fixed), by Newton with the expected (= observed, canonical link) weights; returns u and log det.
void dense_modes(const Glm& glm, const VectorXd& y, const MatrixXd& x, const VectorXd& beta, const MatrixXd& z,
                 double theta, VectorXd& u, double& logdet) {
  const Index n = y.size(), q = z.cols();
  u = VectorXd::Zero(q);
  MatrixXd h(q, q);
  for (int it = 0; it < 100; ++it) {
    const VectorXd eta = x * beta + theta * z * u;
    VectorXd grad = -u, w(n);
    for (Index i = 0; i < n; ++i) {
      double mu, dmu;
      glm.mean(eta[i], mu, dmu);
      w[i] = dmu * dmu / glm.variance(mu);
      grad += theta * z.row(i).transpose() * (y[i] - mu) * dmu / glm.variance(mu);
    }
    h = theta * theta * z.transpose() * w.asDiagonal() * z + MatrixXd::Identity(q, q);
    u += h.ldlt().solve(grad);
  }
  logdet = std::log(h.determinant());
}

}  // namespace

void test_glmm_pirls(std::mt19937& rng) {
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 4; ++trial) {
    const bool binomial = trial % 2 == 0;
    const Index nlevels = 6 + trial, n = 60;
    std::uniform_int_distribution<int> level(0, static_cast<int>(nlevels) - 1);
    MatrixXd x(n, 2), z = MatrixXd::Zero(n, nlevels), zcol = MatrixXd::Ones(n, 1);
    VectorXd y(n), prior = VectorXd::Ones(n), offset = VectorXd::Zero(n);
    Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1> codes(n);
    for (Index i = 0; i < n; ++i) {
      x(i, 0) = 1.0;
      x(i, 1) = normal(rng);
      codes[i] = level(rng);
      z(i, codes[i]) = 1.0;
      const double eta = 0.3 * x(i, 1) + 0.5 * normal(rng);
      y[i] = binomial ? (normal(rng) < eta ? 1.0 : 0.0) : std::floor(std::exp(eta) + 0.5 + std::abs(normal(rng)));
    }
    const Glm glm{binomial ? GlmFamily::Binomial : GlmFamily::Poisson, binomial ? GlmLink::Logit : GlmLink::Log};
    GlmmPirls pirls(y, x, prior, offset, {codes}, {zcol}, {nlevels}, glm);
    VectorXd theta(1), beta(2);
    theta << 0.8;
    beta << 0.1, 0.2;
    const GlmmPirls::Result r = pirls.run(theta, beta, true, x * beta, 1e-12, 100);
    VectorXd u;
    double logdet = 0.0;
    dense_modes(glm, y, x, beta, z, theta[0], u, logdet);
    const std::string tag = std::string("glmm pirls ") + (binomial ? "binomial" : "poisson") + " trial " +
                            std::to_string(trial);
    check(max_abs(r.u - u) < 1e-8, tag + ": conditional modes");
    check(rel_diff(r.logdet, logdet) < 1e-8, tag + ": log det of the Laplace factor");
    // The deviance PIRLS reports (and halves its steps on): twice the log-likelihood lost against the
    // saturated model, from the log-likelihoods themselves (not the unit-deviance formula).
    double lost = 0.0;
    for (Index i = 0; i < n; ++i) {
      double mu, dmu;
      glm.mean(r.eta[i], mu, dmu);
      const auto loglik = [&](double m) {
        const double hits = y[i] > 0.0 ? y[i] * std::log(m) : 0.0;
        if (!binomial) return hits - m;
        return hits + (y[i] < 1.0 ? (1.0 - y[i]) * std::log(1.0 - m) : 0.0);
      };
      lost += loglik(binomial ? std::min(std::max(y[i], 1e-300), 1.0) : y[i]) - loglik(mu);
    }
    check(rel_diff(r.deviance, 2.0 * lost) < 1e-10, tag + ": deviance = 2 (saturated - fitted log-likelihood)");
    // Joint beta: the modes then also solve X' (score) = 0.
    const GlmmPirls::Result j = pirls.run(theta, beta, false, x * beta, 1e-12, 100);
    VectorXd score = VectorXd::Zero(2);
    for (Index i = 0; i < n; ++i) {
      double mu, dmu;
      glm.mean(j.eta[i], mu, dmu);
      score += x.row(i).transpose() * (y[i] - mu) * dmu / glm.variance(mu);
    }
    check(score.cwiseAbs().maxCoeff() < 1e-8, tag + ": joint PIRLS solves the fixed-effect score");
  }
}
