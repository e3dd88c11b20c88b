"""Hand-written mutants of the numerical code: each one a plausible bug that a test must catch.

Each entry: the file (relative to python/multilevel), the exact text to replace (it must occur once),
the replacement, what the bug is, and the test files that should catch it (run in that order, -x).
A C++ mutant's ``tests`` may name ``test_core``: the C++ unit tests (cpp/tests), built with the mutant
and run before its Python tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    replacement: str
    bug: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("probit_mu_eta", "families.py",
           "lambda eta: np.maximum(stats.norm.pdf(eta), _EPS)),",
           "lambda eta: np.maximum(np.exp(-eta**2) / np.sqrt(2 * np.pi), _EPS)),",
           "probit dmu/deta with the 1/2 dropped from the exponent",
           ("test_gee_links_reference.py", "test_glmm_links_reference.py")),
    Mutant("binomial_variance", "families.py", '"binomial": lambda mu: mu * (1 - mu),',
           '"binomial": lambda mu: mu * (1 + mu),', "binomial variance function sign",
           ("test_gee_reference.py", "test_gee_links_reference.py", "test_glmm_reference.py", "test_glmm_api.py",
            "test_gee_api.py")),
    Mutant("mdependent_band", "correlation.py", "return np.where(lag < band.size,",
           "return np.where(lag <= band.size,", "MDependent keeps its last correlation one lag too far",
           ("test_gls_extra_reference.py", "test_gee_links_reference.py")),
    Mutant("gls_meat_from_y", "gls/result.py",
           "meat = self.objective.core_sums(self.corr_params, self.profile.sd_factors, residual=resid)[\"M\"]",
           "meat = self.objective.core_sums(self.corr_params, self.profile.sd_factors, residual=self.design.y)[\"M\"]",
           "GLS robust meat built from y instead of the residuals", ("test_gls_extra_reference.py",)),
    Mutant("gee_scale", "gee/moments.py", "phi = sums.squares / sums.weight if scale is None",
           "phi = sums.squares / (sums.weight + 1.0) if scale is None", "GEE scale estimate off by one row",
           ("test_gee_reference.py",)),
    Mutant("lmm_cov_sigma", "lmm/result.py", "return self.sigma**2 * covariance_from_rx(self._rx)",
           "return self.sigma * covariance_from_rx(self._rx)", "LMM covariance of beta scaled by sigma, not sigma^2",
           ("test_lmm_reference.py",)),
    Mutant("glmm_hessian_factor", "glmm/result.py", "cov = 2.0 * np.linalg.inv(hess)",
           "cov = np.linalg.inv(hess)", "GLMM covariance from H^-1 instead of 2 H^-1",
           ("test_glmm_reference.py",)),
    Mutant("wald_quantile", "inference/wald.py", "z = np.full(len(params), stats.norm.ppf(1.0 - alpha / 2.0))",
           "z = np.full(len(params), stats.norm.ppf(1.0 - alpha))", "one-sided quantile in Wald intervals",
           ("test_lmm_api.py", "test_gee_api.py", "test_tidy.py")),
    Mutant("lrt_chisq", "inference/lrt.py", "chisq = 2 * np.maximum(gain, 0.0)", "chisq = np.maximum(gain, 0.0)",
           "likelihood-ratio statistic without the factor 2", ("test_anova_reference.py",)),
    Mutant("satterthwaite_factor", "inference/satterthwaite.py", "return 2.0 * var**2 / denom if denom > 0",
           "return var**2 / denom if denom > 0", "Satterthwaite df without the factor 2",
           ("test_inference_ddf.py",)),
    Mutant("kr_w_factor", "inference/kenward_roger.py", "w = 2.0 * (np.linalg.inv(info)",
           "w = 1.0 * (np.linalg.inv(info)", "Kenward-Roger W without the factor 2", ("test_inference_ddf.py",)),
    Mutant("cr1_factor", "inference/cluster_robust.py", "a = a * np.sqrt(nclusters / (nclusters - 1.0))",
           "a = a * (nclusters / (nclusters - 1.0))", "CR1 small-sample factor not square-rooted",
           ("test_inference_cluster_robust.py",)),
    Mutant("containment_reversed", "inference/term_contrasts.py",
           "return a <= b and bool(b - a) and inner.numeric == outer.numeric",
           "return a >= b and bool(a - b) and inner.numeric == outer.numeric",
           "type 3 containment read the wrong way round (terms contained in lower-order ones)",
           ("test_inference_ddf.py",)),
    Mutant("profile_zeta", "inference/profile.py", "np.sqrt(max(deviance - self.base, 0.0))",
           "max(deviance - self.base, 0.0)", "profile zeta without the square root",
           ("test_inference_profile.py",)),
    Mutant("bootstrap_noise", "inference/bootstrap.py",
           "self.noise_scale = fit.sigma if d.weights is None", "self.noise_scale = fit.sigma**2 if d.weights is None",
           "bootstrap residuals drawn with variance sigma^4", ("test_inference_bootstrap.py",)),
    Mutant("tukey_range", "inference/emmeans.py", "abs(ti) * np.sqrt(2.0), nmeans, d)", "abs(ti), nmeans, d)",
           "Tukey adjustment without the sqrt(2) of the studentized range", ("test_emmeans.py",)),
    Mutant("residual_jacobian", "lmm/residual.py", "+ 2.0 * float(np.sum(np.log(g)))",
           "+ float(np.sum(np.log(g)))", "LMM residual variance function's Jacobian halved",
           ("test_lmm_residual.py",)),
]


#: C++ mutants, switched on by building with -Ccmake.define.MULTILEVEL_MUTANT=N (cpp/include/multilevel/mutants.hpp).
CPP_MUTANTS = {
    1: Mutant("cpp_probit_mu_eta", "cpp/include/multilevel/glm.hpp", "", "",
              "C++ probit dmu/deta (GLMM PIRLS, GEE working arrays) with the 1/2 dropped from the exponent",
              ("test_glmm_links_reference.py", "test_gee_links_reference.py")),
    2: Mutant("cpp_pwrss_square", "cpp/include/multilevel/blocked_cholesky.hpp", "", "",
              "penalized RSS taken as |L_yy| instead of L_yy^2", ("test_lmm_reference.py",)),
    3: Mutant("cpp_exchangeable_logdet", "cpp/include/multilevel/working_correlation.hpp", "", "",
              "exchangeable log det R without its log(1 + (n-1) alpha) term",
              ("test_gls_extra_reference.py", "test_gls_reference.py", "test_gls_api.py")),
    4: Mutant("cpp_ar1_gaps", "cpp/include/multilevel/working_correlation.hpp", "", "",
              "AR(1) whitening with rho = alpha whatever the gap in time",
              ("test_gls_api.py", "test_lmm_residual.py", "test_gee_api.py")),
    5: Mutant("cpp_ar1_logdet", "cpp/include/multilevel/working_correlation.hpp", "", "",
              "AR(1) log det R taken as log det of its whitening factor (half of it)",
              ("test_gls_reference.py", "test_gls_api.py")),
    6: Mutant("cpp_meat_is_information", "cpp/include/multilevel/cluster_sums.hpp", "", "",
              "GEE sandwich meat replaced by the model-based information (robust SE = naive SE)",
              ("test_gee_reference.py", "test_gee_api.py")),
    7: Mutant("cpp_rest_logdet", "cpp/include/multilevel/blocked_cholesky.hpp", "", "",
              "log det of the crossed terms' block taken once instead of twice",
              ("test_lmm_reference.py",)),
    8: Mutant("cpp_lambda_transposed", "cpp/include/multilevel/blocked_cholesky.hpp", "", "",
              "first term's block formed as Lambda A Lambda' instead of Lambda' A Lambda",
              ("test_lmm_reference.py",)),
    9: Mutant("cpp_cloglog_mu_eta", "cpp/include/multilevel/glm.hpp", "", "",
              "C++ cloglog dmu/deta (GLMM PIRLS, GEE working arrays) without the chain rule's exp(eta)",
              ("test_glmm_links_reference.py", "test_gee_links_reference.py")),
    10: Mutant("cpp_poisson_deviance", "cpp/include/multilevel/glmm.hpp", "", "",
               "C++ PIRLS Poisson deviance with the sign of mu flipped",
               ("test_core", "test_glmm_reference.py", "test_glmm_links_reference.py")),
}
