// Python binding of the per-cluster sums (GEE and GLS) and row whitening.
#include <pybind11/eigen.h>
#include <pybind11/pybind11.h>

#include <string>

#include "array_views.hpp"
#include "multilevel/cluster_sums.hpp"
#include "multilevel/correlation_basis.hpp"

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
      "correlation_basis",
      [](const MatrixArg& x, const VectorArg& a, const VectorArg& e, const Int32Vector& order,
         const Int64Vector& ptr, const Int32Vector& position, int kind) {
        if (a.size() != x.rows() || e.size() != x.rows() || order.size() != x.rows())
          throw std::invalid_argument("x, a, e and order must have the same number of rows");
        if (kind < 0 || kind > 2) throw std::invalid_argument("kind must be 0 (independence), 1 (exchangeable) or 2 (AR(1))");
        const ClusterLayout layout = make_layout(order, ptr, position, Eigen::VectorXd());
        CorrelationBasis basis;
        {
          py::gil_scoped_release release;
          basis = correlation_basis(as_map(x), as_map(a), as_map(e), layout, static_cast<BasisKind>(kind));
        }
        const Index width = x.cols() + 1, nterms = kind == 2 ? 3 : 1;
        py::array_t<std::int64_t> classes(static_cast<py::ssize_t>(basis.terms.size()));
        py::array_t<double> terms({static_cast<py::ssize_t>(basis.terms.size()), static_cast<py::ssize_t>(nterms),
                                   static_cast<py::ssize_t>(width), static_cast<py::ssize_t>(width)});
        auto out = terms.mutable_unchecked<4>();
        py::ssize_t k = 0;
        for (const auto& [cls, mats] : basis.terms) {
          classes.mutable_data()[k] = cls;
          for (Index m = 0; m < nterms; ++m)
            for (Index r = 0; r < width; ++r)
              for (Index c = 0; c < width; ++c) out(k, m, r, c) = mats[static_cast<std::size_t>(m)](r, c);
          ++k;
        }
        return py::make_tuple(basis.free, classes, terms);
      },
      py::arg("x"), py::arg("a"), py::arg("e"), py::arg("order"), py::arg("ptr"), py::arg("position"),
      py::arg("kind"),
      R"doc(
The alpha-free sums of a GEE's cross products [D e]' R(alpha)^-1 [D e] (see correlation_basis.hpp).

x, a, e, order, ptr, position as in cluster_sums; kind 0 independence, 1 exchangeable,
2 AR(1) (positions increasing within a cluster). Returns (free (p+1, p+1), classes (K,)
int64: the cluster sizes (exchangeable) or gaps (AR(1)) present, terms (K, m, p+1, p+1):
m = 1 (exchangeable: sum s s') or 3 (AR(1): sum b_i b_i', sum b_i b_{i-1}', sum b_{i-1} b_{i-1}')).
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
