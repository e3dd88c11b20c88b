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

std::unique_ptr<LinearMixedModel> make_lmm(const VectorArg& y, const MatrixArg& x,
                                           const VectorArg& weights,
                                           const std::vector<CodesArg>& codes,
                                           const std::vector<MatrixArg>& z,
                                           const std::vector<Index>& nlevels,
                                           const std::string& storage) {
  RestStorage prefer = RestStorage::Auto;
  if (storage == "dense") prefer = RestStorage::Dense;
  else if (storage == "sparse") prefer = RestStorage::Sparse;
  else if (storage != "auto")
    throw std::invalid_argument("storage must be 'auto', 'dense' or 'sparse', not '" + storage + "'");
  if (codes.size() != z.size() || codes.size() != nlevels.size())
    throw std::invalid_argument("codes, z and nlevels must have one entry per term");
  std::vector<TermInput> terms;
  for (std::size_t k = 0; k < codes.size(); ++k)
    terms.push_back(TermInput{as_map(codes[k]), as_map(z[k]), nlevels[k]});
  py::gil_scoped_release release;
  return std::make_unique<LinearMixedModel>(
      NormalEquations(as_map(y), as_map(x), as_map(weights), terms), prefer);
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
