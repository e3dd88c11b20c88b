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
          "Conditional covariance of b for term k: (p_k, p_k * nlevels_k). Call after solve().");
}
