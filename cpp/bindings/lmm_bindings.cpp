// Python binding of the linear-mixed-model core.
#include <pybind11/eigen.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "array_views.hpp"
#include "multilevel/lmm.hpp"

namespace py = pybind11;
using namespace multilevel;
using namespace multilevel::bindings;

namespace multilevel::bindings {

py::dict solution_dict(const LmmSolution& sol) {
  py::dict d;
  d["beta"] = sol.beta;
  d["RX"] = sol.RX;
  d["pwrss"] = sol.pwrss;
  d["sigma"] = sol.sigma;
  d["objective"] = sol.objective;
  d["logdet_re"] = sol.logdet_re;
  d["b"] = sol.b;
  d["u"] = sol.u;
  return d;
}

constexpr int kCoreStateVersion = 1;

namespace {

py::tuple sparse_state(const SparseMatrix& m) {
  const Index nnz = m.nonZeros();
  std::vector<int> outer(m.outerIndexPtr(), m.outerIndexPtr() + m.outerSize() + 1);
  std::vector<int> inner(m.innerIndexPtr(), m.innerIndexPtr() + nnz);
  std::vector<double> values(m.valuePtr(), m.valuePtr() + nnz);
  return py::make_tuple(to_array(outer), to_array(inner), to_array(values));
}

// A compressed-column matrix (rows, cols) from a saved (outer, inner, values), every index checked.
SparseMatrix sparse_from_state(const py::handle& h, Index rows, Index cols, const char* what) {
  const auto t = h.cast<py::tuple>();
  const auto outer = from_array<int>(t[0]);
  const auto inner = from_array<int>(t[1]);
  const auto values = from_array<double>(t[2]);
  bool ok = static_cast<Index>(outer.size()) == cols + 1 && outer.front() == 0 &&
            outer.back() == static_cast<int>(inner.size()) && inner.size() == values.size();
  for (Index c = 0; ok && c < cols; ++c) {
    ok = outer[c + 1] >= outer[c];
    for (int k = outer[c]; ok && k < outer[c + 1]; ++k)
      ok = inner[k] >= 0 && inner[k] < rows && (k == outer[c] || inner[k] > inner[k - 1]);
  }
  if (!ok) throw std::invalid_argument(std::string("saved state: ") + what + " is not a valid sparse matrix");
  SparseMatrix m = Eigen::Map<const SparseMatrix>(rows, cols, static_cast<Index>(values.size()), outer.data(),
                                                  inner.data(), values.data());
  return m;
}

}  // namespace

py::tuple core_state(const LinearMixedModel& model) {
  const NormalEquations& a = model.normal_equations();
  std::vector<Index> p_k, nlev;
  for (const TermLayout& t : a.terms) {
    p_k.push_back(t.p);
    nlev.push_back(t.nlevels);
  }
  return py::make_tuple(kCoreStateVersion, a.n, a.p, a.sum_log_weights, p_k, nlev, a.A00, a.AX0, a.AXR, a.AXX,
                        sparse_state(a.AR0), sparse_state(a.ARR), static_cast<int>(model.rest_storage()));
}

// The model from core_state's tuple. The blocked Cholesky reads AR0 level by level,
// so the columns of one level must share one row list: checked before anything is built.
std::unique_ptr<LinearMixedModel> core_from_state(const py::tuple& t) {
  if (t.size() != 13 || t[0].cast<int>() != kCoreStateVersion)
    throw std::invalid_argument("not an LmmCore state of this version");
  NormalEquations a{NormalEquationsAccumulator(t[2].cast<Index>(), saved_shapes(t))};
  load_row_blocks(t, a);
  const TermLayout& t0 = a.terms[0];
  a.AR0 = sparse_from_state(t[10], a.q_rest, t0.size(), "AR0");
  a.ARR = sparse_from_state(t[11], a.q_rest, a.q_rest, "ARR");
  const int* outer = a.AR0.outerIndexPtr();
  const int* inner = a.AR0.innerIndexPtr();
  for (Index j = 0; j < t0.nlevels; ++j)
    for (Index d = 1; d < t0.p; ++d) {
      const Index c0 = j * t0.p, c = c0 + d;
      const bool same = outer[c + 1] - outer[c] == outer[c0 + 1] - outer[c0] &&
                        std::equal(inner + outer[c], inner + outer[c + 1], inner + outer[c0]);
      if (!same) throw std::invalid_argument("saved state: AR0 does not have one row list per level");
    }
  const int storage = t[12].cast<int>();
  const RestStorage prefer = storage == static_cast<int>(RestStorage::Dense)    ? RestStorage::Dense
                             : storage == static_cast<int>(RestStorage::Sparse) ? RestStorage::Sparse
                                                                                 : RestStorage::Auto;
  return std::make_unique<LinearMixedModel>(std::move(a), prefer);
}

}  // namespace multilevel::bindings

namespace {

RestStorage parse_storage(const std::string& storage) {
  if (storage == "dense") return RestStorage::Dense;
  if (storage == "sparse") return RestStorage::Sparse;
  if (storage != "auto")
    throw std::invalid_argument("storage must be 'auto', 'dense' or 'sparse', not '" + storage + "'");
  return RestStorage::Auto;
}

std::unique_ptr<LinearMixedModel> make_lmm(const VectorArg& y, const MatrixArg& x,
                                           const VectorArg& weights,
                                           const std::vector<CodesArg>& codes,
                                           const std::vector<MatrixArg>& z,
                                           const std::vector<Index>& nlevels,
                                           const std::string& storage) {
  const RestStorage prefer = parse_storage(storage);
  const std::vector<TermInput> terms = term_inputs(codes, z, nlevels);
  py::gil_scoped_release release;
  return std::make_unique<LinearMixedModel>(
      NormalEquations(as_map(y), as_map(x), as_map(weights), terms), prefer);
}

std::unique_ptr<LinearMixedModel> lmm_from_accumulator(const NormalEquationsAccumulator& acc,
                                                       const std::string& storage) {
  const RestStorage prefer = parse_storage(storage);
  if (acc.n == 0) throw std::invalid_argument("no rows were added to the accumulator");
  py::gil_scoped_release release;
  return std::make_unique<LinearMixedModel>(NormalEquations(acc), prefer);
}

const char* storage_name(RestStorage s) {
  switch (s) {
    case RestStorage::Dense: return "dense";
    case RestStorage::Sparse: return "sparse";
    default: return "none";
  }
}

}  // namespace

void bind_lmm(py::module_& m) {
  py::class_<LinearMixedModel>(m, "LmmCore", R"doc(
Sufficient statistics and profiled objective of a linear mixed model.

Built once from the rows (one pass); every later call works on blocks whose
size depends on the random-effect levels and fixed-effect columns only.

Parameters
----------
y : (n,) float64
x : (n, p) float64, any strides
weights : (n,) float64, or an empty array for unit weights
codes : list of (n,) int32, one per term, levels in [0, nlevels[k])
z : list of (n, p_k) float64, one per term
nlevels : list of int
    Terms must come sorted by decreasing number of levels.
storage : {"auto", "dense", "sparse"}
    Storage of the random-effects block after term 0; "auto" picks by fill-in.
)doc")
      .def(py::init(&make_lmm), py::arg("y"), py::arg("x"), py::arg("weights"), py::arg("codes"),
           py::arg("z"), py::arg("nlevels"), py::arg("storage") = "auto")
      .def_static("from_accumulator", &lmm_from_accumulator, py::arg("accumulator"), py::arg("storage") = "auto",
                  "The model from the sums of a NormalEquationsAccumulator (which stays usable).")
      .def_property_readonly("ntheta", &LinearMixedModel::ntheta)
      .def_property_readonly("nobs", [](const LinearMixedModel& s) { return s.normal_equations().n; })
      .def_property_readonly("rest_storage",
                             [](const LinearMixedModel& s) { return storage_name(s.rest_storage()); })
      .def(
          "objective",
          [](LinearMixedModel& s, const Eigen::VectorXd& theta, bool reml) {
            py::gil_scoped_release release;
            return s.objective(theta, reml);
          },
          py::arg("theta"), py::arg("reml"),
          "Profiled deviance (ML) or REML criterion at theta (ntheta,); inf if not positive definite.")
      .def(
          "solve",
          [](LinearMixedModel& s, const Eigen::VectorXd& theta, bool reml) {
            LmmSolution sol;
            {
              py::gil_scoped_release release;
              sol = s.solve(theta, reml);
            }
            return solution_dict(sol);
          },
          py::arg("theta"), py::arg("reml"),
          "Estimates at theta: beta (p,), RX (p, p), pwrss, sigma, objective, logdet_re, and per term "
          "b and u (p_k, nlevels_k).")
      .def(
          "conditional_variance",
          [](const LinearMixedModel& s, Index k, double sigma) {
            py::gil_scoped_release release;
            return s.conditional_variance(k, sigma);
          },
          py::arg("term"), py::arg("sigma"),
          "Conditional covariance of b for term k: (p_k, p_k * nlevels_k). Call after solve().")
      .def("copy", [](const LinearMixedModel& s) { return core_from_state(core_state(s)); },
           "An independent copy (its own factorization).")
      .def(py::pickle(&core_state, &core_from_state));
}
