// Python binding of PIRLS for generalized linear mixed models.
#include <pybind11/eigen.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "array_views.hpp"
#include "multilevel/glmm.hpp"

namespace py = pybind11;
using namespace multilevel;
using namespace multilevel::bindings;

void bind_glmm(py::module_& m) {
  py::class_<GlmmPirls>(m, "GlmmPirls", R"doc(
Penalized iteratively reweighted least squares for a GLMM (copies the rows).

Parameters
----------
y : (n,) float64, binomial proportions or counts
x : (n, p) float64
prior : (n,) float64 prior weights (binomial: trials)
offset : (n,) float64
codes : list of (n,) int32, one per term
z : list of (n, p_k) float64, one per term
nlevels : list of int
family : 0 binomial, 1 poisson, 2 Gamma, 3 negative binomial (shape via set_shape)
link : 0 logit, 1 probit, 2 cloglog, 3 log, 4 identity, 5 sqrt
)doc")
      .def(py::init([](const Eigen::VectorXd& y, const Eigen::MatrixXd& x, const Eigen::VectorXd& prior,
                       const Eigen::VectorXd& offset,
                       std::vector<Eigen::Matrix<std::int32_t, Eigen::Dynamic, 1>> codes,
                       std::vector<Eigen::MatrixXd> z, std::vector<Index> nlevels, int family, int link) {
             if (family < 0 || family > 3)
               throw std::invalid_argument("family must be 0 (binomial), 1 (poisson), 2 (Gamma) or 3 (negative binomial)");
             if (link < 0 || link > 5) throw std::invalid_argument("link must be 0..5");
             return std::make_unique<GlmmPirls>(y, x, prior, offset, std::move(codes), std::move(z),
                                                std::move(nlevels),
                                                Glm{static_cast<GlmFamily>(family), static_cast<GlmLink>(link)});
           }),
           py::arg("y"), py::arg("x"), py::arg("prior"), py::arg("offset"), py::arg("codes"), py::arg("z"),
           py::arg("nlevels"), py::arg("family"), py::arg("link"))
      .def(
          "run",
          [](GlmmPirls& g, const Eigen::VectorXd& theta, const Eigen::VectorXd& beta, bool fixed_beta,
             const Eigen::VectorXd& eta_start, double tol, int maxiter) {
            GlmmPirls::Result r;
            {
              py::gil_scoped_release release;
              r = g.run(theta, beta, fixed_beta, eta_start, tol, maxiter);
            }
            py::dict d;
            d["eta"] = r.eta;
            d["beta"] = r.beta;
            d["u"] = r.u;
            d["b"] = r.b;
            d["deviance"] = r.deviance;
            d["logdet"] = r.logdet;
            d["iterations"] = r.iterations;
            return d;
          },
          py::arg("theta"), py::arg("beta"), py::arg("fixed_beta"), py::arg("eta_start"), py::arg("tol"),
          py::arg("maxiter"),
          "Conditional modes at theta from eta_start (n,); beta (p,) fixed if fixed_beta. Returns eta, beta, "
          "u, b (per term (p_k, nlevels_k)), deviance, logdet, iterations.")
      .def("set_prior", &GlmmPirls::set_prior, py::arg("prior"),
           "Replace the prior weights (n,) (the Gamma dispersion enters as prior / phi).")
      .def("set_shape", &GlmmPirls::set_shape, py::arg("shape"), "Set the negative binomial shape k > 0.")
      .def(
          "solve",
          [](GlmmPirls& g, const Eigen::VectorXd& theta, bool reml) {
            return solution_dict(g.last_system().solve(theta, reml));
          },
          py::arg("theta"), py::arg("reml"), "LmmCore.solve on the last penalized least-squares system.")
      .def(
          "conditional_variance",
          [](GlmmPirls& g, Index k, double sigma) { return g.last_system().conditional_variance(k, sigma); },
          py::arg("term"), py::arg("sigma"), "LmmCore.conditional_variance on the last system.")
      .def(
          "system_copy", [](GlmmPirls& g) { return core_from_state(core_state(g.last_system())); },
          "An independent LmmCore holding the last penalized least-squares system (later runs leave it as it is).");
}
