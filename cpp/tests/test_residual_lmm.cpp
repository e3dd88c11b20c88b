// The residual-structure LMM (python/multilevel/lmm/residual.py) rests on one
// identity: whitening each residual group's rows by W_j G_j^-1 (W_j' W_j =
// R_j^-1, G_j the variance function's standard deviations) and adding the
// Jacobian log det R + 2 sum log g to the whitened model's profiled
// deviance gives the (restricted) deviance of y ~ N(X beta, sigma^2 (Z
// Lambda Lambda' Z' + G R G)). Checked here against that marginal
// likelihood formed densely, on small random nested problems with gaps in
// the time positions, for AR(1), CAR(1), exchangeable and unstructured R.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "multilevel/cluster_sums.hpp"
#include "multilevel/lmm.hpp"
#include "checks.hpp"
#include "lmm_problems.hpp"

using namespace multilevel;
using namespace multilevel::testing;

namespace {

/// A nested problem: rows in classes (the residual groups) inside schools, random
/// (1 + x | class) and (1 | school), data rows shuffled; per class its rows ordered by
/// increasing integer position (with gaps) and continuous time.
struct NestedRows {
  Problem pr;                                        // terms: class (p = 2), school (p = 1)
  std::vector<std::int32_t> order, position;         // ClusterLayout arrays (classes = clusters)
  std::vector<std::int64_t> ptr;
  VectorXd time, g;                                  // (n,) continuous times; standard-deviation factors
  Index npositions = 0;
};

NestedRows nested_rows(std::mt19937& rng) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> unif(0.2, 1.5);
  const Index nclass = 5 + rng() % 6, nschool = 2 + rng() % 2;
  std::vector<Index> cls_of_slot;  // one entry per row before shuffling
  std::vector<std::int32_t> pos_of_slot;
  std::vector<double> time_of_slot;
  for (Index c = 0; c < nclass; ++c) {
    const Index m = 2 + rng() % 5;
    std::int32_t pos = static_cast<std::int32_t>(rng() % 2);
    double t = unif(rng);
    for (Index i = 0; i < m; ++i) {
      cls_of_slot.push_back(c);
      pos_of_slot.push_back(pos);
      time_of_slot.push_back(t);
      pos += 1 + static_cast<std::int32_t>(rng() % 3 == 0);  // a gap now and then
      t += unif(rng);
    }
  }
  const Index n = static_cast<Index>(cls_of_slot.size());
  std::vector<Index> shuffled(n);
  std::iota(shuffled.begin(), shuffled.end(), Index(0));
  std::shuffle(shuffled.begin(), shuffled.end(), rng);  // data row r holds slot shuffled[r]

  NestedRows d;
  Problem& pr = d.pr;
  pr.y = VectorXd::NullaryExpr(n, [&] { return normal(rng); });
  pr.x = MatrixXd::NullaryExpr(n, 2, [&] { return normal(rng); });
  pr.x.col(0).setOnes();
  pr.codes.assign(2, Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>(n));
  pr.z = {MatrixXd(n, 2), MatrixXd::Ones(n, 1)};
  pr.nlevels = {nclass, nschool};
  pr.ntheta = 3 + 1;
  d.position.resize(n);
  d.time.resize(n);
  d.g = VectorXd::NullaryExpr(n, [&] { return std::exp(0.3 * normal(rng)); });
  for (Index r = 0; r < n; ++r) {
    const Index slot = shuffled[r], c = cls_of_slot[slot];
    pr.codes[0][r] = static_cast<std::int32_t>(c);
    pr.codes[1][r] = static_cast<std::int32_t>(c % nschool);  // each class inside one school
    pr.z[0](r, 0) = 1.0;
    pr.z[0](r, 1) = pr.x(r, 1);
    d.position[r] = pos_of_slot[slot];
    d.time[r] = time_of_slot[slot];
    d.npositions = std::max<Index>(d.npositions, pos_of_slot[slot] + 1);
  }
  d.ptr.assign(1, 0);
  for (Index c = 0; c < nclass; ++c) {  // rows of class c by increasing position
    std::vector<std::int32_t> rows;
    for (Index r = 0; r < n; ++r)
      if (pr.codes[0][r] == c) rows.push_back(static_cast<std::int32_t>(r));
    std::sort(rows.begin(), rows.end(), [&](std::int32_t a, std::int32_t b) { return d.position[a] < d.position[b]; });
    d.order.insert(d.order.end(), rows.begin(), rows.end());
    d.ptr.push_back(static_cast<std::int64_t>(d.order.size()));
  }
  return d;
}

/// R_j's entry between two rows of one class.
double correlation(const WorkingCorrelation& corr, const NestedRows& d, Index a, Index b) {
  if (a == b) return 1.0;
  switch (corr.kind) {
    case CorrelationKind::Independence: return 0.0;
    case CorrelationKind::Exchangeable: return corr.alpha;
    case CorrelationKind::Ar1: return std::pow(corr.alpha, std::abs(d.position[a] - d.position[b]));
    case CorrelationKind::Car1: return std::pow(corr.alpha, std::abs(d.time[a] - d.time[b]));
    case CorrelationKind::Table: return corr.table(d.position[a], d.position[b]);
  }
  return 0.0;
}

/// -2 (restricted) log-likelihood profiled over beta and sigma, from V0 = Z Lambda Lambda' Z' + G R G formed densely.
double dense_deviance(const NestedRows& d, const WorkingCorrelation& corr, const VectorXd& theta, bool reml) {
  const Problem& pr = d.pr;
  const Index n = pr.y.size(), p = pr.x.cols();
  MatrixXd Z, Lam;
  dense_z_lambda(pr, theta, Z, Lam);
  MatrixXd v0 = Z * Lam * Lam.transpose() * Z.transpose();
  for (Index a = 0; a < n; ++a)
    for (Index b = 0; b < n; ++b)
      if (pr.codes[0][a] == pr.codes[0][b]) v0(a, b) += d.g[a] * d.g[b] * correlation(corr, d, a, b);
  const Eigen::LLT<MatrixXd> llt(v0);
  const MatrixXd vx = llt.solve(pr.x);
  const MatrixXd xvx = pr.x.transpose() * vx;
  const VectorXd beta = xvx.ldlt().solve(vx.transpose() * pr.y);
  const VectorXd r = pr.y - pr.x * beta;
  const double r2 = r.dot(llt.solve(r));
  const double nu = reml ? double(n - p) : double(n);
  double dev = 2.0 * MatrixXd(llt.matrixL()).diagonal().array().log().sum() +
               nu * (1.0 + std::log(2.0 * M_PI * r2 / nu));
  if (reml) dev += std::log(xvx.determinant());
  return dev;
}

/// The same from the whitened rows: the core's objective on them plus the Jacobian.
double whitened_deviance(const NestedRows& d, const WorkingCorrelation& corr, const VectorXd& theta, bool reml,
                         Index& failed) {
  const Problem& pr = d.pr;
  const Index n = pr.y.size();
  const ClusterLayout layout{Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>>(d.order.data(), n),
                             Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(d.ptr.data(),
                                                                                               d.ptr.size()),
                             Eigen::Map<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>>(d.position.data(), n),
                             Eigen::Map<const VectorXd>(d.time.data(), corr.kind == CorrelationKind::Car1 ? n : 0)};
  MatrixXd columns(n, 1 + pr.x.cols() + pr.z[0].cols() + pr.z[1].cols());  // [y | X | z_class | z_school] / g
  columns << pr.y, pr.x, pr.z[0], pr.z[1];
  columns.array().colwise() /= d.g.array();
  const WhitenedRows whitened = whiten_rows(
      StridedMatrixMap(columns.data(), n, columns.cols(), Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(n, 1)),
      layout, corr);
  failed = whitened.failed_cluster;
  const MatrixXd& white = whitened.rows;
  Problem w = pr;
  w.y = white.col(0);
  w.x = white.middleCols(1, pr.x.cols());
  w.z[0] = white.middleCols(1 + pr.x.cols(), 2);
  w.z[1] = white.rightCols(1);
  LinearMixedModel model(normal_equations(w), RestStorage::Dense);
  return model.objective(theta, reml) + whitened.logdet + 2.0 * d.g.array().log().sum();
}

/// A random correlation matrix (T, T) with unit diagonal.
MatrixXd random_table(std::mt19937& rng, Index T) {
  std::normal_distribution<double> normal;
  const MatrixXd a = MatrixXd::NullaryExpr(T, T + 2, [&] { return normal(rng); });
  MatrixXd c = a * a.transpose();
  const VectorXd s = c.diagonal().cwiseSqrt().cwiseInverse();
  return s.asDiagonal() * c * s.asDiagonal();
}

}  // namespace

void test_residual_lmm(std::mt19937& rng) {
  std::uniform_real_distribution<double> unif(0.2, 1.2);
  for (int trial = 0; trial < 12; ++trial) {
    const NestedRows d = nested_rows(rng);
    const std::vector<WorkingCorrelation> structures = {
        {CorrelationKind::Ar1, 0.55, {}},        {CorrelationKind::Ar1, -0.3, {}},
        {CorrelationKind::Car1, 0.4, {}},        {CorrelationKind::Exchangeable, 0.3, {}},
        {CorrelationKind::Table, 0.0, random_table(rng, d.npositions)},
    };
    for (std::size_t s = 0; s < structures.size(); ++s)
      for (bool reml : {false, true}) {
        const VectorXd theta = VectorXd::NullaryExpr(d.pr.ntheta, [&] { return unif(rng); });
        Index failed = 0;
        const double got = whitened_deviance(d, structures[s], theta, reml, failed);
        const double want = dense_deviance(d, structures[s], theta, reml);
        const std::string tag = "residual LMM trial " + std::to_string(trial) + " structure " + std::to_string(s) +
                                (reml ? " REML" : " ML");
        check(failed == -1, tag + ": every residual group positive definite");
        check(rel_diff(got, want) < 1e-10, tag + ": whitened deviance = dense marginal deviance");
      }
  }
}
