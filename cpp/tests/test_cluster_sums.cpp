// GEE cluster sums and pair moments against explicit dense per-cluster algebra.
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "checks.hpp"
#include "multilevel/cluster_sums.hpp"
#include "multilevel/correlation_basis.hpp"
#include "multilevel/glm.hpp"

using namespace multilevel;
using namespace multilevel::testing;

namespace {

using IntVector32 = Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>;
using IntVector64 = Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>;

struct GeeProblem {
  MatrixXd x;
  VectorXd a, e, time;  // time: position plus jitter (increasing within a cluster), for Car1
  IntVector32 order, position;
  IntVector64 ptr;
  std::vector<std::vector<Index>> clusters;  // data rows of each cluster, by position
  Index npositions = 8;
};

// Clusters of 1..6 rows at increasing random positions in 0..7, rows shuffled in the data.
GeeProblem random_gee_problem(std::mt19937& rng, Index nclusters, Index p) {
  GeeProblem g;
  std::uniform_real_distribution<double> jitter(0.0, 0.9);
  std::uniform_int_distribution<int> size_dist(1, 6);
  std::normal_distribution<double> normal;
  std::vector<std::pair<Index, int>> cluster_pos;  // (cluster, position) per row
  for (Index j = 0; j < nclusters; ++j) {
    std::vector<int> slots(static_cast<std::size_t>(g.npositions));
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    const int nj = size_dist(rng);
    std::sort(slots.begin(), slots.begin() + nj);
    for (int i = 0; i < nj; ++i) cluster_pos.emplace_back(j, slots[static_cast<std::size_t>(i)]);
  }
  std::shuffle(cluster_pos.begin(), cluster_pos.end(), rng);  // interleaved data rows
  const Index n = static_cast<Index>(cluster_pos.size());
  g.x = MatrixXd::NullaryExpr(n, p, [&]() { return normal(rng); });
  g.a = VectorXd::NullaryExpr(n, [&]() { return 0.5 + std::abs(normal(rng)); });
  g.e = VectorXd::NullaryExpr(n, [&]() { return normal(rng); });
  g.position.resize(n);
  g.clusters.assign(static_cast<std::size_t>(nclusters), {});
  g.time.resize(n);
  for (Index r = 0; r < n; ++r) {
    g.position[r] = cluster_pos[static_cast<std::size_t>(r)].second;
    g.time[r] = g.position[r] + jitter(rng);
  }
  for (Index r = 0; r < n; ++r) g.clusters[static_cast<std::size_t>(cluster_pos[static_cast<std::size_t>(r)].first)].push_back(r);
  g.order.resize(n);
  g.ptr = IntVector64::Zero(nclusters + 1);
  Index k = 0;
  for (Index j = 0; j < nclusters; ++j) {
    auto& rows = g.clusters[static_cast<std::size_t>(j)];
    std::sort(rows.begin(), rows.end(), [&](Index u, Index v) { return g.position[u] < g.position[v]; });
    for (Index r : rows) g.order[k++] = static_cast<std::int32_t>(r);
    g.ptr[j + 1] = k;
  }
  return g;
}

MatrixXd correlation_of(const WorkingCorrelation& c, const std::vector<Index>& rows, const IntVector32& position,
                        const VectorXd& g_time) {
  const Index nj = static_cast<Index>(rows.size());
  MatrixXd r = MatrixXd::Identity(nj, nj);
  for (Index i = 0; i < nj; ++i)
    for (Index k = 0; k < nj; ++k) {
      if (i == k) continue;
      const int ti = position[rows[static_cast<std::size_t>(i)]], tk = position[rows[static_cast<std::size_t>(k)]];
      switch (c.kind) {
        case CorrelationKind::Independence: r(i, k) = 0.0; break;
        case CorrelationKind::Exchangeable: r(i, k) = c.alpha; break;
        case CorrelationKind::Ar1: r(i, k) = std::pow(c.alpha, std::abs(ti - tk)); break;
        case CorrelationKind::Table: r(i, k) = c.table(ti, tk); break;
        case CorrelationKind::Car1:
          r(i, k) = std::pow(c.alpha, std::abs(g_time[rows[static_cast<std::size_t>(i)]] - g_time[rows[static_cast<std::size_t>(k)]]));
          break;
      }
    }
  return r;
}

// Dense reference of cluster_sums.
ClusterSums dense_sums(const GeeProblem& g, const WorkingCorrelation& c, MeatKind meat, const MatrixXd& h_full) {
  const Index p = g.x.cols();
  ClusterSums s{MatrixXd::Zero(p, p), VectorXd::Zero(p), MatrixXd::Zero(p, p), 0.0, 0.0, -1};
  for (const auto& rows : g.clusters) {
    const Index nj = static_cast<Index>(rows.size());
    MatrixXd d(nj, p);
    VectorXd e(nj);
    for (Index i = 0; i < nj; ++i) {
      d.row(i) = g.a[rows[static_cast<std::size_t>(i)]] * g.x.row(rows[static_cast<std::size_t>(i)]);
      e[i] = g.e[rows[static_cast<std::size_t>(i)]];
    }
    const MatrixXd rj = correlation_of(c, rows, g.position, g.time);
    const MatrixXd rinv = rj.inverse();
    s.logdet += std::log(rj.determinant());
    s.ee += e.dot(rinv * e);
    const MatrixXd hj = d.transpose() * rinv * d;
    VectorXd uj = d.transpose() * rinv * e;
    s.H += hj;
    s.U += uj;
    if (meat == MeatKind::BiasReduced) {
      const MatrixXd hat = d * h_full.inverse() * d.transpose() * rinv;
      uj = d.transpose() * rinv * (MatrixXd::Identity(nj, nj) - hat).inverse() * e;
    } else if (meat == MeatKind::OneStepJack) {
      uj = (h_full - hj).inverse() * uj;
    }
    s.M += uj * uj.transpose();
  }
  return s;
}

MatrixXd random_correlation(std::mt19937& rng, Index t) {
  std::normal_distribution<double> normal;
  MatrixXd b = MatrixXd::NullaryExpr(t, t + 3, [&]() { return normal(rng); });
  MatrixXd s = b * b.transpose();
  VectorXd d = s.diagonal().cwiseSqrt().cwiseInverse();
  return d.asDiagonal() * s * d.asDiagonal();
}

}  // namespace

namespace {

// The packet-expression working arrays equal Glm's row-by-row formulas; a mean outside the family's
// range is reported at its first row.
void test_gee_working_arrays(std::mt19937& rng) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> unit(0.2, 2.0);
  const Index n = 40000;  // more than one block
  VectorXd eta = VectorXd::NullaryExpr(n, [&]() { return 1.5 * normal(rng); }), y(n), w(n);
  for (Index i = 0; i < n; ++i) {
    y[i] = unit(rng) > 1.1 ? 1.0 : 0.0;
    w[i] = unit(rng);
  }
  eta[7] = 40.0;  // the tails of the logistic
  eta[8] = -40.0;
  const StridedVectorMap e(eta.data(), n, Eigen::InnerStride<Eigen::Dynamic>(1));
  const StridedVectorMap yy(y.data(), n, Eigen::InnerStride<Eigen::Dynamic>(1));
  const StridedVectorMap ww(w.data(), n, Eigen::InnerStride<Eigen::Dynamic>(1));
  const StridedVectorMap none(w.data(), 0, Eigen::InnerStride<Eigen::Dynamic>(1));
  const std::vector<Glm> glms = {{GlmFamily::Binomial, GlmLink::Logit}, {GlmFamily::Binomial, GlmLink::Probit},
                                 {GlmFamily::Binomial, GlmLink::Cloglog}, {GlmFamily::Poisson, GlmLink::Log},
                                 {GlmFamily::Poisson, GlmLink::Sqrt}, {GlmFamily::Gamma, GlmLink::Log},
                                 {GlmFamily::Gaussian, GlmLink::Identity}};
  for (std::size_t k = 0; k < glms.size(); ++k) {
    for (bool weighted : {false, true}) {
      VectorXd mu(n), pearson(n), root_info(n);
      const Index bad = gee_working_arrays(e, yy, weighted ? ww : none, glms[k], mu, pearson, root_info);
      double worst = 0.0;
      for (Index i = 0; i < n; ++i) {
        double m, dmu;
        glms[k].mean(eta[i], m, dmu);
        const double root = std::sqrt((weighted ? w[i] : 1.0) / glms[k].variance(m));
        worst = std::max({worst, rel_diff(mu[i], m), rel_diff(pearson[i], (y[i] - m) * root),
                          rel_diff(root_info[i], dmu * root)});
      }
      const std::string tag = "gee working arrays " + std::to_string(k) + (weighted ? " weighted" : "");
      check(bad == -1, tag + ": no row out of range");
      check(worst < 1e-12, tag + ": the row-by-row formulas (" + std::to_string(worst) + ")");
    }
  }
  VectorXd mu(n), pearson(n), root_info(n);
  VectorXd bent = (eta.array().abs() + 0.5).matrix();
  bent[20000] = -1.0;  // a negative Poisson mean under the identity link, after positive ones
  const StridedVectorMap b(bent.data(), n, Eigen::InnerStride<Eigen::Dynamic>(1));
  check(gee_working_arrays(b, yy, none, {GlmFamily::Poisson, GlmLink::Identity}, mu, pearson, root_info) == 20000,
        "gee working arrays: the first row with a mean outside the family's range");
}

}  // namespace

void test_cluster_sums(std::mt19937& rng) {
  test_gee_working_arrays(rng);
  for (int trial = 0; trial < 4; ++trial) {
    const Index p = 1 + trial;
    GeeProblem g = random_gee_problem(rng, 30 + 10 * trial, p);
    const ClusterLayout layout{{g.order.data(), g.order.size()}, {g.ptr.data(), g.ptr.size()},
                               {g.position.data(), g.position.size()}, {g.time.data(), g.time.size()}};
    const StridedMatrixMap x(g.x.data(), g.x.rows(), g.x.cols(),
                             Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(g.x.rows(), 1));
    const StridedVectorMap a(g.a.data(), g.a.size(), Eigen::InnerStride<Eigen::Dynamic>(1));
    const StridedVectorMap e(g.e.data(), g.e.size(), Eigen::InnerStride<Eigen::Dynamic>(1));
    const std::vector<WorkingCorrelation> structures = {
        {CorrelationKind::Independence, 0.0, {}},
        {CorrelationKind::Exchangeable, 0.35, {}},
        {CorrelationKind::Exchangeable, -0.1, {}},
        {CorrelationKind::Ar1, 0.6, {}},
        {CorrelationKind::Ar1, -0.45, {}},
        {CorrelationKind::Table, 0.0, random_correlation(rng, g.npositions)},
        {CorrelationKind::Car1, 0.7, {}},
    };
    for (std::size_t s = 0; s < structures.size(); ++s) {
      const std::string tag = "gee trial " + std::to_string(trial) + " structure " + std::to_string(s);
      const ClusterSums got = cluster_sums(x, a, e, layout, structures[s], MeatKind::Robust, MatrixXd());
      const ClusterSums ref = dense_sums(g, structures[s], MeatKind::Robust, MatrixXd());
      const double scale = std::max(1.0, max_abs(ref.H));
      check(got.failed_cluster == -1, tag + ": every cluster positive definite");
      check(max_abs(got.H - ref.H) < 1e-10 * scale, tag + ": information H");
      check(max_abs(got.U - ref.U) < 1e-10 * scale, tag + ": score U");
      check(max_abs(got.M - ref.M) < 1e-10 * std::max(1.0, max_abs(ref.M)), tag + ": robust meat");
      check(rel_diff(got.ee, ref.ee) < 1e-10, tag + ": e' R^-1 e");
      check(rel_diff(got.logdet, ref.logdet) < 1e-10, tag + ": log det R");
      // whiten_rows: per-cluster W_j, so sum of squares of whitened e per cluster is e_j' R_j^-1 e_j.
      const WhitenedRows we = whiten_rows(
          StridedMatrixMap(g.e.data(), g.e.size(), 1, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(g.e.size(), 1)),
          layout, structures[s]);
      check(we.failed_cluster == -1 && rel_diff(we.rows.squaredNorm(), ref.ee) < 1e-10, tag + ": whitened rows");
      check(rel_diff(we.logdet, ref.logdet) < 1e-10, tag + ": whitened rows' log det R");
      for (MeatKind kind : {MeatKind::BiasReduced, MeatKind::OneStepJack}) {
        const ClusterSums gk = cluster_sums(x, a, e, layout, structures[s], kind, ref.H);
        const ClusterSums rk = dense_sums(g, structures[s], kind, ref.H);
        check(max_abs(gk.M - rk.M) < 1e-9 * std::max(1.0, max_abs(rk.M)),
              tag + (kind == MeatKind::BiasReduced ? ": bias-reduced meat" : ": jackknife meat"));
      }
    }
    // The alpha-free basis, evaluated at alpha, is the dense [D e]' R^-1 [D e] (H, U and e'R^-1 e).
    for (std::size_t s : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{4}}) {
      const WorkingCorrelation& c = structures[s];
      const BasisKind kind = c.kind == CorrelationKind::Ar1 ? BasisKind::Ar1
                             : c.kind == CorrelationKind::Exchangeable ? BasisKind::Exchangeable
                                                                       : BasisKind::Independence;
      const CorrelationBasis basis = correlation_basis(x, a, e, layout, kind);
      MatrixXd total = basis.free;
      for (const auto& [cls, t] : basis.terms) {
        if (kind == BasisKind::Exchangeable) {
          total -= c.alpha / (1.0 + static_cast<double>(cls - 1) * c.alpha) * t[0];
        } else {
          const double rho = std::pow(c.alpha, static_cast<double>(cls));
          total += (t[0] - rho * (t[1] + t[1].transpose()) + rho * rho * t[2]) / (1.0 - rho * rho);
        }
      }
      if (kind == BasisKind::Exchangeable) total /= 1.0 - c.alpha;
      const ClusterSums ref = dense_sums(g, c, MeatKind::Robust, MatrixXd());
      const double scale = std::max(1.0, max_abs(ref.H));
      const std::string tag = "gee trial " + std::to_string(trial) + " basis of structure " + std::to_string(s);
      check(max_abs(total.topLeftCorner(p, p) - ref.H) < 1e-10 * scale, tag + ": information H");
      check(max_abs(total.col(p).head(p) - ref.U) < 1e-10 * scale, tag + ": score U");
      check(rel_diff(total(p, p), ref.ee) < 1e-10, tag + ": e' R^-1 e");
    }
    // Pattern sums: with each pattern's R_P^-1 from the table they are the dense sums of the table structure.
    {
      const WorkingCorrelation& c = structures[5];
      const CorrelationBasis basis = correlation_basis(x, a, e, layout, BasisKind::Pattern);
      const Index width = p + 1;
      MatrixXd total = MatrixXd::Zero(width, width);
      for (const auto& [mask, t] : basis.terms) {
        std::vector<Index> pos;
        for (Index k = 0; k < g.npositions; ++k)
          if ((mask >> k) & 1) pos.push_back(k);
        const Index m = static_cast<Index>(pos.size());
        MatrixXd r(m, m);
        for (Index i = 0; i < m; ++i)
          for (Index k = 0; k < m; ++k) r(i, k) = c.table(pos[static_cast<std::size_t>(i)], pos[static_cast<std::size_t>(k)]);
        const MatrixXd rinv = r.inverse();
        for (Index i = 0; i < m; ++i)
          for (Index k = 0; k < m; ++k) total += rinv(i, k) * t[0].block(i * width, k * width, width, width);
      }
      const ClusterSums ref = dense_sums(g, c, MeatKind::Robust, MatrixXd());
      const double scale = std::max(1.0, max_abs(ref.H));
      const std::string tag = "gee trial " + std::to_string(trial) + " pattern sums";
      check(max_abs(total.topLeftCorner(p, p) - ref.H) < 1e-10 * scale, tag + ": information H");
      check(max_abs(total.col(p).head(p) - ref.U) < 1e-10 * scale, tag + ": score U");
      check(rel_diff(total(p, p), ref.ee) < 1e-10, tag + ": e' R^-1 e");
    }
    // A correlation that is not positive definite for some cluster is reported, not returned as numbers.
    const ClusterSums bad = cluster_sums(x, a, e, layout, {CorrelationKind::Exchangeable, -0.9, {}},
                                         MeatKind::Robust, MatrixXd());
    check(bad.failed_cluster >= 0, "gee: exchangeable alpha = -0.9 flags a cluster");

    // Pair moments against all pairs.
    for (PairGrouping grouping : {PairGrouping::All, PairGrouping::Lag, PairGrouping::Position}) {
      const Index t = g.npositions;
      const Index ngroups = grouping == PairGrouping::All ? 1 : grouping == PairGrouping::Lag ? t : t * t;
      VectorXd sum = VectorXd::Zero(ngroups), count = VectorXd::Zero(ngroups);
      for (const auto& rows : g.clusters)
        for (std::size_t i = 0; i < rows.size(); ++i)
          for (std::size_t k = i + 1; k < rows.size(); ++k) {
            const Index ti = g.position[rows[i]], tk = g.position[rows[k]];
            const Index grp = grouping == PairGrouping::All ? 0
                              : grouping == PairGrouping::Lag ? std::abs(tk - ti)
                                                              : std::min(ti, tk) * t + std::max(ti, tk);
            sum[grp] += g.e[rows[i]] * g.e[rows[k]];
            count[grp] += 1.0;
          }
      const PairMoments pm = pair_moments(e, layout, grouping, t);
      check(max_abs(pm.sum - sum) < 1e-10 && max_abs(pm.count - count) == 0.0,
            "gee trial " + std::to_string(trial) + ": pair moments, grouping " + std::to_string(static_cast<int>(grouping)));
    }
  }
}
