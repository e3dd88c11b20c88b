// Python binding of the per-cluster sums (GEE and GLS) and row whitening.
#include <pybind11/eigen.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "array_views.hpp"
#include "multilevel/cluster_sums.hpp"
#include "multilevel/correlation_basis.hpp"
#include "multilevel/glm.hpp"
#include "multilevel/group_index.hpp"

namespace py = pybind11;
using namespace multilevel;
using namespace multilevel::bindings;

namespace {

using Int32Vector = Eigen::Ref<const Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>>;
using Int64Vector = Eigen::Ref<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>;

using TimeVector = Eigen::Ref<const Eigen::VectorXd>;

ClusterLayout make_layout(const Int32Vector& order, const Int64Vector& ptr, const Int32Vector& position,
                          const TimeVector& time) {
  if (ptr.size() < 1 || ptr[0] != 0 || ptr[ptr.size() - 1] != order.size())
    throw std::invalid_argument("ptr must start at 0 and end at len(order)");
  if (position.size() != order.size()) throw std::invalid_argument("position must have one entry per row");
  if (time.size() != 0 && time.size() != order.size())
    throw std::invalid_argument("time must be empty or have one entry per row");
  return ClusterLayout{{order.data(), order.size()}, {ptr.data(), ptr.size()}, {position.data(), position.size()},
                       {time.data(), time.size()}};
}

WorkingCorrelation make_correlation(int kind, double alpha, const Eigen::MatrixXd& table, Index nrows_time) {
  if (kind < 0 || kind > 4) throw std::invalid_argument("correlation kind must be 0..4");
  if (kind == 4 && nrows_time == 0) throw std::invalid_argument("continuous AR(1) (kind 4) needs time");
  return WorkingCorrelation{static_cast<CorrelationKind>(kind), alpha, table};
}

}  // namespace

void bind_cluster_sums(py::module_& m) {
  m.def(
      "cluster_sums",
      [](const MatrixArg& x, const VectorArg& a, const VectorArg& e, const Int32Vector& order,
         const Int64Vector& ptr, const Int32Vector& position, int corr_kind, double alpha,
         const Eigen::MatrixXd& table, int meat, const Eigen::MatrixXd& h_full, const TimeVector& time) {
        if (a.size() != x.rows() || e.size() != x.rows() || order.size() != x.rows())
          throw std::invalid_argument("x, a, e and order must have the same number of rows");
        if (meat < 0 || meat > 2) throw std::invalid_argument("meat must be 0 (robust), 1 (bias-reduced) or 2 (jackknife)");
        if (meat != 0 && (h_full.rows() != x.cols() || h_full.cols() != x.cols()))
          throw std::invalid_argument("h_full must be (p, p)");
        const ClusterLayout layout = make_layout(order, ptr, position, time);
        const WorkingCorrelation corr = make_correlation(corr_kind, alpha, table, time.size());
        ClusterSums sums;
        {
          py::gil_scoped_release release;
          sums = cluster_sums(as_map(x), as_map(a), as_map(e), layout, corr, static_cast<MeatKind>(meat), h_full);
        }
        py::dict d;
        d["H"] = sums.H;
        d["U"] = sums.U;
        d["M"] = sums.M;
        d["ee"] = sums.ee;
        d["logdet"] = sums.logdet;
        d["failed_cluster"] = sums.failed_cluster;
        return d;
      },
      py::arg("x"), py::arg("a"), py::arg("e"), py::arg("order"), py::arg("ptr"), py::arg("position"),
      py::arg("corr_kind"), py::arg("alpha"), py::arg("table"), py::arg("meat"), py::arg("h_full"),
      py::arg("time") = Eigen::VectorXd(),
      R"doc(
Information H (p, p), quasi-score U (p,) and meat M (p, p) of a GEE, summed over clusters.

Parameters
----------
x : (n, p) float64, any strides, data row order
a : (n,) float64, (dmu/deta) / sqrt(phi v(mu) / w)
e : (n,) float64, (y - mu) / sqrt(phi v(mu) / w)
order : (n,) int32, data rows cluster by cluster, within a cluster by position
ptr : (J+1,) int64, cluster j is order[ptr[j]:ptr[j+1]]
position : (n,) int32, 0-based position of each data row in its cluster
corr_kind : 0 independence, 1 exchangeable, 2 AR(1), 3 table, 4 continuous-time AR(1)
alpha : float, parameter of exchangeable and the AR(1) kinds
table : (T, T) float64, correlation by position pair (kind 3), else any
meat : 0 robust sum U_j U_j', 1 bias-reduced (Mancl-DeRouen), 2 one-step jackknife
h_full : (p, p) float64, H at the estimates (meat 1 and 2)
time : (n,) float64 continuous times (kind 4; rows of a cluster ordered by it), else empty

Returns a dict with H, U, M, ee (sum e_j' R_j^-1 e_j), logdet (sum log det R_j)
and failed_cluster (first cluster whose working correlation is not positive
definite, or -1).
)doc");
  m.def(
      "group_index",
      [](const CodesArg& codes, Index nlevels) {
        if (nlevels < 0) throw std::invalid_argument("nlevels must be >= 0");
        std::unique_ptr<GroupIndex> index;
        {
          py::gil_scoped_release release;
          index = std::make_unique<GroupIndex>(as_map(codes), nlevels);
        }
        return py::make_tuple(to_array(index->ptr), to_array(index->order));
      },
      py::arg("codes"), py::arg("nlevels"),
      R"doc(
Rows grouped by level, by a counting sort: (ptr (nlevels + 1,) int64, order (n,) int32), the
rows of level j being order[ptr[j]:ptr[j+1]] in data order (the layout cluster_sums takes).

codes : (n,) int32, each in [0, nlevels) (else a ValueError naming the row)
)doc");
  m.def(
      "gee_working_arrays",
      [](const VectorArg& eta, const VectorArg& y, const VectorArg& w, int family, int link) {
        if (y.size() != eta.size() || (w.size() != 0 && w.size() != eta.size()))
          throw std::invalid_argument("eta, y and w (or an empty w) must have the same length");
        if (family < 0 || family > 4 || family == 3) throw std::invalid_argument("family must be 0, 1, 2 or 4");
        if (link < 0 || link > 5) throw std::invalid_argument("link must be 0..5");
        const Glm glm{static_cast<GlmFamily>(family), static_cast<GlmLink>(link)};
        // Written straight into new numpy arrays (no copy of n-long results on the way out).
        const auto n = static_cast<py::ssize_t>(eta.size());
        py::array_t<double> mu(n), pearson(n), root_info(n);
        Eigen::Map<Eigen::VectorXd> mu_out(mu.mutable_data(), n), pearson_out(pearson.mutable_data(), n),
            root_info_out(root_info.mutable_data(), n);
        Index bad;
        {
          py::gil_scoped_release release;
          bad = gee_working_arrays(as_map(eta), as_map(y), as_map(w), glm, mu_out, pearson_out, root_info_out);
        }
        return py::make_tuple(mu, pearson, root_info, bad);
      },
      py::arg("eta"), py::arg("y"), py::arg("w"), py::arg("family"), py::arg("link"),
      R"doc(
A GEE's per-row arrays at the linear predictor (phi = 1), in one pass over the rows.

eta, y (n,) float64; w (n,) prior weights or empty; family 0 binomial, 1 poisson, 2 gamma,
4 gaussian; link 0 logit, 1 probit, 2 cloglog, 3 log, 4 identity, 5 sqrt. Returns (mu,
pearson = (y - mu) sqrt(w / v(mu)), root_info = (dmu/deta) sqrt(w / v(mu)), bad): bad is the
first row whose mean is not finite or whose variance is not positive, or -1.
)doc");
  m.def(
      "correlation_basis",
      [](const MatrixArg& x, const VectorArg& a, const VectorArg& e, const Int32Vector& order,
         const Int64Vector& ptr, const Int32Vector& position, int kind) {
        if (a.size() != x.rows() || e.size() != x.rows() || order.size() != x.rows())
          throw std::invalid_argument("x, a, e and order must have the same number of rows");
        if (kind < 0 || kind > 3)
          throw std::invalid_argument("kind must be 0 (independence), 1 (exchangeable), 2 (AR(1)) or 3 (patterns)");
        const ClusterLayout layout = make_layout(order, ptr, position, Eigen::VectorXd());
        CorrelationBasis basis;
        {
          py::gil_scoped_release release;
          basis = correlation_basis(as_map(x), as_map(a), as_map(e), layout, static_cast<BasisKind>(kind));
        }
        py::array_t<std::int64_t> classes(static_cast<py::ssize_t>(basis.terms.size()));
        py::list terms;
        py::ssize_t k = 0;
        for (const auto& [cls, mats] : basis.terms) {
          classes.mutable_data()[k++] = cls;
          const auto nterms = static_cast<py::ssize_t>(mats.size()), width = static_cast<py::ssize_t>(mats[0].rows());
          py::array_t<double> block({nterms, width, width});
          auto out = block.mutable_unchecked<3>();
          for (py::ssize_t m = 0; m < nterms; ++m)
            for (py::ssize_t r = 0; r < width; ++r)
              for (py::ssize_t c = 0; c < width; ++c) out(m, r, c) = mats[static_cast<std::size_t>(m)](r, c);
          terms.append(block);
        }
        return py::make_tuple(basis.free, classes, terms);
      },
      py::arg("x"), py::arg("a"), py::arg("e"), py::arg("order"), py::arg("ptr"), py::arg("position"),
      py::arg("kind"),
      R"doc(
The alpha-free sums of a GEE's cross products [D e]' R(alpha)^-1 [D e] (see correlation_basis.hpp).

x, a, e, order, ptr, position as in cluster_sums; kind 0 independence, 1 exchangeable,
2 AR(1), 3 patterns of positions (positions increasing within a cluster; for 3, all < 63).
Returns (free (p+1, p+1), classes (K,) int64: the cluster sizes (exchangeable), gaps (AR(1))
or position bit masks (patterns) present, terms: a list of K arrays (m, w, w): m = 1,
w = p+1 (exchangeable: sum s s'); m = 3, w = p+1 (AR(1): sum b_i b_i', sum b_i b_{i-1}',
sum b_{i-1} b_{i-1}'); m = 1, w = (number of positions) (p+1) (patterns: sum v v')).
)doc");
  m.def(
      "pair_moments",
      [](const VectorArg& r, const Int32Vector& order, const Int64Vector& ptr, const Int32Vector& position,
         int grouping, Index npositions) {
        if (grouping < 0 || grouping > 2) throw std::invalid_argument("grouping must be 0 (all), 1 (lag) or 2 (position)");
        const ClusterLayout layout = make_layout(order, ptr, position, Eigen::VectorXd());
        PairMoments pm;
        {
          py::gil_scoped_release release;
          pm = pair_moments(as_map(r), layout, static_cast<PairGrouping>(grouping), npositions);
        }
        return py::make_tuple(pm.sum, pm.count);
      },
      py::arg("r"), py::arg("order"), py::arg("ptr"), py::arg("position"), py::arg("grouping"),
      py::arg("npositions"),
      R"doc(
Sums of r_i r_k over pairs of rows in the same cluster, and pair counts, by group.

grouping 0: one group; 1: by lag |t_i - t_k| (npositions groups, index = lag);
2: by position pair (npositions**2 groups, index t_i * T + t_k with t_i < t_k).
r is (n,) float64 in data row order; order, ptr, position as in cluster_sums.
)doc");
  m.def(
      "whiten_rows",
      [](const MatrixArg& values, const Int32Vector& order, const Int64Vector& ptr, const Int32Vector& position,
         int corr_kind, double alpha, const Eigen::MatrixXd& table, const TimeVector& time) {
        if (order.size() != values.rows()) throw std::invalid_argument("values and order must have the same rows");
        const ClusterLayout layout = make_layout(order, ptr, position, time);
        const WorkingCorrelation corr = make_correlation(corr_kind, alpha, table, time.size());
        WhitenedRows out;
        {
          py::gil_scoped_release release;
          out = whiten_rows(as_map(values), layout, corr);
        }
        return py::make_tuple(out.rows, out.failed_cluster, out.logdet);
      },
      py::arg("values"), py::arg("order"), py::arg("ptr"), py::arg("position"), py::arg("corr_kind"),
      py::arg("alpha"), py::arg("table"), py::arg("time") = Eigen::VectorXd(),
      R"doc(
Rows of values (n, k) multiplied cluster by cluster by W_j (W_j' W_j = R_j^-1), in
data order; returns (whitened (n, k), failed_cluster, log det R) where log det R is
sum_j log det R_j over the clusters (meaningful when failed_cluster is -1). W_j is the inverse Cholesky
factor L_j^-1 (R_j = L_j L_j') for the AR(1) and table kinds, and the symmetric
square root of R_j^-1 for exchangeable (pass the table kind for a Cholesky one).
Arguments as in cluster_sums.
)doc");
}
