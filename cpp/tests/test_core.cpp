// C++ unit tests of the core against brute-force dense linear algebra on
// small random problems (Z formed densely by lmm_problems.hpp, in the tests only).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "multilevel/group_index.hpp"
#include "multilevel/lmm.hpp"
#include "checks.hpp"
#include "lmm_problems.hpp"

using namespace multilevel;
using namespace multilevel::testing;

void test_cluster_sums(std::mt19937& rng);  // test_cluster_sums.cpp
void test_glmm_pirls(std::mt19937& rng);   // test_glmm_pirls.cpp
void test_residual_lmm(std::mt19937& rng);  // test_residual_lmm.cpp

namespace {

Problem random_problem(std::mt19937& rng, bool weighted) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> unif(0.5, 2.0);
  Problem pr;
  const Index n = 40 + rng() % 60, p = 1 + rng() % 3, K = 1 + rng() % 3;
  pr.y = VectorXd::NullaryExpr(n, [&] { return normal(rng); });
  pr.x = MatrixXd::NullaryExpr(n, p, [&] { return normal(rng); });
  pr.x.col(0).setOnes();
  pr.w = weighted ? VectorXd::NullaryExpr(n, [&] { return unif(rng); }) : VectorXd();
  for (Index k = 0; k < K; ++k) {
    const Index q = 2 + rng() % 9, pk = 1 + rng() % 2;
    pr.nlevels.push_back(q);
    pr.codes.emplace_back(n);
    for (Index i = 0; i < n; ++i) pr.codes.back()[i] = static_cast<std::int32_t>(rng() % q);
    MatrixXd zk = MatrixXd::NullaryExpr(n, pk, [&] { return normal(rng); });
    zk.col(0).setOnes();
    pr.z.push_back(zk);
    pr.ntheta += pk * (pk + 1) / 2;
  }
  // The core expects terms sorted by decreasing number of levels.
  std::vector<Index> order(K);
  for (Index k = 0; k < K; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return pr.nlevels[a] > pr.nlevels[b]; });
  Problem sorted = pr;
  for (Index k = 0; k < K; ++k) {
    sorted.codes[k] = pr.codes[order[k]];
    sorted.z[k] = pr.z[order[k]];
    sorted.nlevels[k] = pr.nlevels[order[k]];
  }
  return sorted;
}

// Level-pair patterns found with one set of weights and reused with another
// give exactly the system built from scratch (what PIRLS relies on).
void test_reused_pair_patterns(std::mt19937& rng) {
  std::uniform_real_distribution<double> unif(0.5, 2.0);
  for (int trial = 0; trial < 20; ++trial) {
    Problem pr = random_problem(rng, true);
    PairPatterns patterns;
    normal_equations(pr, &patterns);
    const std::size_t K = pr.z.size();
    check(patterns.size() == K * (K - 1) / 2, "one pattern per pair of terms");
    pr.w = VectorXd::NullaryExpr(pr.y.size(), [&] { return unif(rng); });
    const NormalEquations fresh = normal_equations(pr), reused = normal_equations(pr, &patterns);
    const bool same = MatrixXd(fresh.AR0) == MatrixXd(reused.AR0) && MatrixXd(fresh.ARR) == MatrixXd(reused.ARR) &&
                      fresh.AXX == reused.AXX && fresh.A00 == reused.A00;
    check(same, "reused level-pair patterns give the same normal equations, trial " + std::to_string(trial));
  }
}

// Rows added in chunks (some empty) and merged in a tree give the blocks of
// one pass to rounding; the same chunking twice gives identical blocks; and
// dropping fixed columns from the sums equals building without them.
void test_accumulate_merge(std::mt19937& rng) {
  using S = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  for (int trial = 0; trial < 20; ++trial) {
    const Problem pr = random_problem(rng, trial % 2 == 0);
    const Index n = pr.y.size(), p = pr.x.cols();
    std::vector<TermShape> shapes;
    for (std::size_t k = 0; k < pr.z.size(); ++k) shapes.push_back(TermShape{pr.z[k].cols(), pr.nlevels[k]});
    // Accumulator over rows [begin, end) only.
    const auto part = [&](Index begin, Index end) {
      NormalEquationsAccumulator acc(p, shapes);
      const Index m = end - begin;
      std::vector<TermInput> terms;
      for (std::size_t k = 0; k < pr.z.size(); ++k)
        terms.push_back(TermInput{CodesMap(pr.codes[k].data() + begin, m, Eigen::InnerStride<>(1)),
                                  StridedMatrixMap(pr.z[k].data() + begin, m, pr.z[k].cols(), S(n, 1)),
                                  pr.nlevels[k]});
      acc.add_rows(StridedVectorMap(pr.y.data() + begin, m, Eigen::InnerStride<>(1)),
                   StridedMatrixMap(pr.x.data() + begin, m, p, S(n, 1)),
                   pr.w.size() ? StridedVectorMap(pr.w.data() + begin, m, Eigen::InnerStride<>(1))
                               : StridedVectorMap(pr.w.data(), 0, Eigen::InnerStride<>(1)),
                   terms);
      return acc;
    };
    const Index c1 = n / 3, c2 = n / 3 + 1 + static_cast<Index>(rng() % (n / 2));
    const auto tree = [&]() {
      NormalEquationsAccumulator left = part(0, c1);
      left.merge(part(c1, c1));  // an empty chunk
      NormalEquationsAccumulator right = part(c1, c2);
      right.merge(part(c2, n));
      left.merge(right);
      return NormalEquations(std::move(left));
    };
    const NormalEquations whole = normal_equations(pr), chunked = tree(), again = tree();
    const std::string tag = "trial " + std::to_string(trial);
    const double scale = std::max(1.0, max_abs(whole.AXX));
    check(chunked.n == n && std::abs(chunked.sum_log_weights - whole.sum_log_weights) < 1e-10,
          tag + ": merged row count and log weights");
    check(max_abs(chunked.AXX - whole.AXX) < 1e-12 * scale && max_abs(chunked.AX0 - whole.AX0) < 1e-12 * scale &&
              max_abs(chunked.AXR - whole.AXR) < 1e-12 * scale && max_abs(chunked.A00 - whole.A00) < 1e-12 * scale &&
              max_abs(MatrixXd(chunked.AR0) - MatrixXd(whole.AR0)) < 1e-12 * scale &&
              max_abs(MatrixXd(chunked.ARR) - MatrixXd(whole.ARR)) < 1e-12 * scale,
          tag + ": chunked and merged blocks equal one pass");
    check(chunked.AXX == again.AXX && MatrixXd(chunked.ARR) == MatrixXd(again.ARR) &&
              MatrixXd(chunked.AR0) == MatrixXd(again.AR0),
          tag + ": the same chunking gives identical blocks");
    // AR0 keeps the structure the blocked Cholesky expects: one row list per level.
    LinearMixedModel a(normal_equations(pr)), b(tree());
    const VectorXd theta = VectorXd::Constant(pr.ntheta, 0.7);
    check(rel_diff(a.objective(theta, true), b.objective(theta, true)) < 1e-12, tag + ": same objective");
    if (p > 1) {
      NormalEquationsAccumulator dropped = part(0, n);
      dropped.keep_fixed_columns({0});
      Problem first = pr;
      first.x = pr.x.leftCols(1);
      const NormalEquations direct = normal_equations(first), kept(std::move(dropped));
      check(kept.p == 1 && max_abs(kept.AXX - direct.AXX) < 1e-12 * scale &&
                max_abs(kept.AX0 - direct.AX0) < 1e-12 * scale,
            tag + ": keep_fixed_columns equals building without the columns");
    }
  }
  bool threw = false;
  try {
    NormalEquationsAccumulator a(2, {TermShape{1, 3}}), b(2, {TermShape{1, 4}});
    a.merge(b);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "merging accumulators of different models is refused");
}

struct Dense {
  double objective;
  VectorXd beta, b;
  MatrixXd cond_cov_b;  // sigma^2 Lambda (Lambda'Z'WZ Lambda + I)^-1 Lambda'
};

Dense brute_force(const Problem& pr, const VectorXd& theta, bool reml) {
  MatrixXd Z, Lam;
  dense_z_lambda(pr, theta, Z, Lam);
  const Index n = pr.y.size(), p = pr.x.cols();
  const VectorXd w = pr.w.size() ? pr.w : VectorXd::Ones(n);
  const VectorXd sw = w.cwiseSqrt();
  const MatrixXd zl = sw.asDiagonal() * Z * Lam;
  const MatrixXd xw = sw.asDiagonal() * pr.x;
  const VectorXd yw = sw.asDiagonal() * pr.y;
  const MatrixXd v0 = MatrixXd::Identity(n, n) + zl * zl.transpose();
  const MatrixXd vinv = v0.inverse();
  const MatrixXd xvx = xw.transpose() * vinv * xw;
  Dense d;
  d.beta = xvx.ldlt().solve(xw.transpose() * vinv * yw);
  const VectorXd r = yw - xw * d.beta;
  const double r2 = r.dot(vinv * r);
  const double nu = reml ? double(n - p) : double(n);
  d.objective = std::log(v0.determinant()) + nu * (1.0 + std::log(2.0 * M_PI * r2 / nu)) -
                w.array().log().sum();
  if (reml) d.objective += std::log(xvx.determinant());
  const MatrixXd c = zl.transpose() * zl + MatrixXd::Identity(Z.cols(), Z.cols());
  d.b = Lam * c.ldlt().solve(zl.transpose() * r);
  const double sigma2 = r2 / nu;
  d.cond_cov_b = sigma2 * Lam * c.inverse() * Lam.transpose();
  return d;
}

void test_group_index() {
  Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1> codes(7);
  codes << 2, 0, 1, 2, 0, 2, 1;
  const GroupIndex gi(CodesMap(codes.data(), 7, Eigen::InnerStride<>(1)), 3);
  const std::vector<std::int64_t> ptr{0, 2, 4, 7};
  const std::vector<std::int32_t> order{1, 4, 2, 6, 0, 3, 5};
  check(gi.ptr == ptr && gi.order == order, "GroupIndex sorts rows stably by level");
  bool threw = false;
  try {
    GroupIndex bad(CodesMap(codes.data(), 7, Eigen::InnerStride<>(1)), 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "GroupIndex rejects a code outside [0, nlevels)");
}

void test_against_dense(std::mt19937& rng, int trial) {
  const Problem pr = random_problem(rng, trial % 2 == 1);
  std::uniform_real_distribution<double> unif(0.1, 1.5);
  for (RestStorage storage : {RestStorage::Dense, RestStorage::Sparse}) {
    LinearMixedModel model(normal_equations(pr), storage);
    for (bool reml : {false, true}) {
      const VectorXd theta = VectorXd::NullaryExpr(pr.ntheta, [&] { return unif(rng); });
      const Dense ref = brute_force(pr, theta, reml);
      const std::string tag = "trial " + std::to_string(trial) + (reml ? " REML" : " ML") +
                              (storage == RestStorage::Dense ? " dense" : " sparse");
      check(rel_diff(model.objective(theta, reml), ref.objective) < 1e-10, tag + ": objective");
      const LmmSolution sol = model.solve(theta, reml);
      check(max_abs(sol.beta - ref.beta) < 1e-8, tag + ": beta");
      VectorXd b(ref.b.size());
      Index off = 0;
      for (const MatrixXd& bk : sol.b) {
        b.segment(off, bk.size()) = Eigen::Map<const VectorXd>(bk.data(), bk.size());
        off += bk.size();
      }
      check(max_abs(b - ref.b) < 1e-8, tag + ": conditional modes");
      off = 0;
      double worst = 0.0;
      for (std::size_t k = 0; k < sol.b.size(); ++k) {
        const Index pk = sol.b[k].rows(), q = sol.b[k].cols();
        const MatrixXd cv = model.conditional_variance(static_cast<Index>(k), sol.sigma);
        for (Index g = 0; g < q; ++g)
          worst = std::max(worst, max_abs(cv.middleCols(g * pk, pk) -
                                          ref.cond_cov_b.block(off + g * pk, off + g * pk, pk, pk)));
        off += pk * q;
      }
      check(worst < 1e-8, tag + ": conditional variances");
    }
  }
}

// The panel-blocked Cholesky against Eigen's, on both sides of the panel-width switch.
void test_dense_cholesky(std::mt19937& rng) {
  std::normal_distribution<double> normal;
  for (Index n : {Index(7), Index(250), Index(3001)}) {
    MatrixXd r = MatrixXd::NullaryExpr(n, 40, [&]() { return normal(rng); });
    MatrixXd a = r * r.transpose();
    a.diagonal().array() += 1.0;
    MatrixXd l = a;
    check(cholesky_in_place(l), "cholesky_in_place succeeds, n = " + std::to_string(n));
    const MatrixXd ours = l.triangularView<Eigen::Lower>();
    const MatrixXd eigen = Eigen::LLT<MatrixXd>(a).matrixL();
    check(max_abs(ours - eigen) < 1e-10 * std::max(1.0, max_abs(eigen)),
          "cholesky_in_place = Eigen LLT, n = " + std::to_string(n));
  }
  MatrixXd indefinite = MatrixXd::Identity(300, 300);
  indefinite(299, 299) = -1.0;
  check(!cholesky_in_place(indefinite), "cholesky_in_place reports an indefinite matrix");
}

}  // namespace

int main() {
  test_group_index();
  std::mt19937 rng(20261125);
  for (int trial = 0; trial < 40; ++trial) test_against_dense(rng, trial);
  test_cluster_sums(rng);
  test_glmm_pirls(rng);
  test_dense_cholesky(rng);
  test_reused_pair_patterns(rng);
  test_accumulate_merge(rng);
  test_residual_lmm(rng);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
