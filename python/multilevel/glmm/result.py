"""The fitted GLMM: the linear mixed model's result (theta, varcorr, ranef,
prediction of the random part) with GLM likelihood, scale and residuals."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from multilevel.families import Family
from multilevel.inference import coefficient_table, normal_pvalues
from multilevel.inference.ddf import NormalDdf, check_contrasts, check_ddf, f_table
from multilevel.inference.wald import covariance_from_rx
from multilevel.lmm.design import LmmDesign
from multilevel.lmm.result import LmmResult
from multilevel.numdiff import hessian, hessian_from_gradient
from multilevel.optimize import OptSummary

#: PIRLS tolerance while differencing the deviance for the Hessian covariance (see ``_hessian_cov``).
_HESSIAN_PIRLS_TOL = 1e-13


def rx_covariance(core: Any, theta: np.ndarray) -> np.ndarray:
    """``(RX RX')^-1`` from a PIRLS factorization that estimated beta: the covariance given theta."""
    return covariance_from_rx(np.asarray(core.solve(np.asarray(theta, dtype=float), False)["RX"]))


class GlmmResult(LmmResult):
    """A fitted generalized linear mixed model (see :func:`multilevel.glmm`).

    Inherits the mixed-model accessors (``theta``, ``varcorr``, ``ranef``,
    ``ranef_condvar()``, ``ngroups``, ``singular``); the dispersion is 1.
    """

    has_residual = False

    def __init__(self, design: LmmDesign, family: Family, objective: Any, optsum: OptSummary, nagq: int,
                 stage1: OptSummary) -> None:
        self.design = design
        self.family = family
        self.reml = False
        self.nagq = nagq
        self.optsum = optsum
        self.stage1 = stage1
        self._objective = objective
        nt, p = design.ntheta, design.X.shape[1]
        self._theta = np.asarray(optsum.final[:nt], dtype=float)
        self._log_dispersion = np.asarray(optsum.final[nt + p:], dtype=float)  # empty without a dispersion
        if nagq > 0:
            self.objective = float(objective(optsum.final))  # leaves PIRLS and its modes at the optimum
            self.state = objective.last_state
        else:
            self.state = objective.pirls.run(self._theta)
            self.objective = self.state.laplace
        self._beta = self.state.beta
        self._b = self.state.b
        # The result is a snapshot: its own copy of the final penalized system (later PIRLS runs on the
        # shared objective leave it as it is), and the warm start every later computation begins from,
        # so no accessor's value depends on which accessors ran before it.
        self._core = self.state.core.system_copy()
        self._warm_start = objective.pirls.warm_start()
        self._pirls_family = objective.pirls.family
        self.sigma = 1.0

    def _at_optimum(self) -> Any:
        """The objective, with PIRLS warm-started and the dispersion set as at the optimum."""
        f = self._objective
        if f is None:
            raise ValueError("this result was unpickled without its objective; the value was not computed "
                             "before pickling")
        f.pirls.set_warm_start(self._warm_start)
        if f.has_dispersion:
            f.set_dispersion(float(np.exp(self._log_dispersion[0])))
        return f

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as a snapshot: what needs the objective is computed first, the live C++ PIRLS is left out."""
        for name in ("_hessian_cov", "_conditional_cov", "saturated_loglik"):
            getattr(self, name)
        state = dict(self.__dict__)
        state["_objective"] = None
        state["state"] = replace(self.state, core=None)
        return state

    # ----- likelihood -------------------------------------------------------
    @property
    def dispersion(self) -> float | None:
        """Gamma: phi (variance phi mu^2); negative binomial: the shape k (variance mu + mu^2/k); else None."""
        return float(np.exp(self._log_dispersion[0])) if self._log_dispersion.size else None

    @cached_property
    def saturated_loglik(self) -> float:
        """``sum log p(y | saturated)``: the constant between the deviance scale and the log-likelihood
        (0 for families with a dispersion, whose objective is already the full -2 log-likelihood)."""
        if self._objective.has_dispersion:
            return 0.0
        d, fam = self.design, self.family
        w = d.weights if d.weights is not None else np.ones(self.nobs)
        mu = self.state.mu
        return float(np.sum(fam.log_density(d.y, mu, w) + 0.5 * w * fam.unit_deviance(d.y, mu)))

    @property
    def loglik(self) -> float:
        """Laplace (or AGQ) approximation to the marginal log-likelihood."""
        return self.saturated_loglik - 0.5 * self.objective

    @property
    def deviance(self) -> float:
        """``-2 loglik``."""
        return -2.0 * self.loglik

    @property
    def df_model(self) -> int:
        return len(self._beta) + self._theta.size + self._log_dispersion.size

    @property
    def aic(self) -> float:
        return self.deviance + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        return self.deviance + np.log(self.nobs) * self.df_model

    # ----- fixed effects ------------------------------------------------------
    def cov_params(self, kind: str = "hessian") -> pd.DataFrame:
        """Covariance of the fixed effects.

        ``"hessian"`` (default, as lme4): the beta block of ``2 H^-1`` with
        ``H`` the finite-difference Hessian of the deviance in
        ``(theta, beta)``; ``"conditional"``: ``(RX RX')^-1``, the
        covariance given theta from the PIRLS factorization.
        """
        names = self.design.fixed_names
        if kind == "conditional":
            cov = self._conditional_cov
        elif kind == "hessian":
            cov = self._hessian_cov
        else:
            raise ValueError(f"kind must be 'hessian' or 'conditional', not {kind!r}")
        return pd.DataFrame(cov, index=names, columns=names)

    @cached_property
    def _conditional_cov(self) -> np.ndarray:
        """``(RX RX')^-1`` at theta with beta re-estimated by PIRLS (the covariance given theta)."""
        joint = self._at_optimum().pirls.run(self._theta)
        return rx_covariance(joint.core, self._theta)

    @cached_property
    def _hessian_cov(self) -> np.ndarray:
        """Beta block of ``2 H^-1``; ``H`` by central differences of the exact gradient where there is
        one, else of the deviance (steps 1e-4, as lme4's ``deriv12``)."""
        from multilevel.glmm.pirls import PirlsError

        f = self._at_optimum()
        x0 = np.concatenate([self._theta, self._beta, self._log_dispersion])
        nt, p = self._theta.size, self._beta.size

        def differenced() -> np.ndarray:
            if f.has_gradient:
                return hessian_from_gradient(lambda x: f.value_and_gradient(x)[1], x0)
            return hessian(f, x0)

        # The Laplace term depends on the modes to first order, so PIRLS's stopping error enters the
        # differences divided by step^2: at the fitting tolerance (eta to 1e-10 relative) a poisson
        # identity fit's standard errors were 2% off (tests/test_glmm_links_reference.py). Difference
        # with PIRLS converged to 1e-13 instead, falling back to the fitting tolerance if it cannot be met.
        fit_tol = f.pirls.tol
        try:
            f.pirls.tol = min(fit_tol, _HESSIAN_PIRLS_TOL)
            hess = differenced()
        except PirlsError:
            f.pirls.tol = fit_tol
            hess = differenced()
        finally:
            f.pirls.tol = fit_tol
        try:
            cov = 2.0 * np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            cov = np.full(hess.shape, np.nan)
        block = cov[nt:nt + p, nt:nt + p]
        if not np.all(np.isfinite(block)) or np.any(np.diag(block) <= 0):
            # Not positive definite (a boundary fit): the covariance given theta, as lme4 falls back.
            return self._conditional_cov
        return 0.5 * (block + block.T)

    def unadjusted_cov(self) -> np.ndarray:
        """The covariance of :meth:`cov_params` (Wald tests of GLMMs use the normal distribution)."""
        return self._hessian_cov

    def _ddf_method(self, method: str | None = None) -> Any:
        if method is not None and check_ddf(method) != "normal":
            raise ValueError(f"ddf={method!r} is defined for linear mixed models; the tests of a GLMM use "
                             "the normal distribution (ddf='normal'), as glmer's")
        return NormalDdf(self.unadjusted_cov())

    def profile(self) -> Any:
        """The profiled deviance in lme4's parameters (one scalar random-effect term; see
        :class:`multilevel.inference.profile.GlmmProfile`)."""
        from multilevel.inference.profile import GlmmProfile

        cache = self.__dict__.setdefault("_profile_cache", {})
        if "profile" not in cache:
            cache["profile"] = GlmmProfile(self)
        return cache["profile"]

    def bootstrap(self, nsim: int, **kwargs: Any) -> Any:
        raise ValueError("the parametric bootstrap is available for lmm fits")

    def with_cov_type(self, kind: str, cluster: Any = None) -> GlmmResult:
        """Cluster-robust covariances are defined here for linear mixed models only."""
        if kind != "model":
            raise ValueError(f"cov_type {kind!r} is available for lmm fits; a GLMM reports its model-based "
                             "covariance (cov_params(kind='hessian' | 'conditional'))")
        return self

    def with_ddf(self, method: str) -> GlmmResult:
        """Only ``"normal"`` applies to GLMMs (their Wald tests are z tests, as glmer's)."""
        self._ddf_method(method)
        return self

    def anova(self, ddf: str = "normal", type: int | str = 3) -> pd.DataFrame:
        """Wald chi-square / q tests of the model's fixed terms (``DenDF`` infinite); see
        :meth:`multilevel.lmm.result.LmmResult.anova`. ``Sum Sq`` and ``Mean Sq`` are on the
        scale of the linear predictor (sigma 1)."""
        from multilevel.inference.term_contrasts import term_contrasts

        self._ddf_method(ddf)
        return f_table(self._ddf_method(), term_contrasts(self.design, type), self._beta, 1.0)

    def ftest(self, L: Any, *, ddf: str | None = None) -> pd.DataFrame:
        """Wald test of ``L beta = 0`` (F = chi-square / q, ``DenDF`` infinite)."""
        self._ddf_method(ddf)
        return f_table(self._ddf_method(), {"L": check_contrasts(L, self.design.fixed_names)}, self._beta, 1.0)

    @property
    def zvalues(self) -> pd.Series:
        return (self.params / self.bse).rename("z")

    @property
    def tvalues(self) -> pd.Series:
        return self.zvalues

    @property
    def pvalues(self) -> pd.Series:
        return normal_pvalues(self.zvalues).rename("pvalues")

    def coef_table(self) -> pd.DataFrame:
        return coefficient_table(self.params, self.bse, "z value")

    # ----- fitted values, prediction, residuals ----------------------------------
    def fitted(self) -> pd.Series:
        """Conditional means ``g^-1(X beta + Z b + offset)`` for the rows used."""
        return pd.Series(self.state.mu, index=self._index(), name="fitted")

    def predict(self, newdata: Any = None, *, re: bool = True, offset: Any = None,  # type: ignore[override]
                scale: str = "response", allow_new_levels: bool = False) -> pd.Series:
        """Predictions on the ``"link"`` or ``"response"`` scale (random effects of known levels if ``re``)."""
        if scale not in ("link", "response"):
            raise ValueError(f"scale must be 'link' or 'response', not {scale!r}")
        if newdata is None and re:
            eta = pd.Series(self.state.eta, index=self._index())
        else:
            eta = super().predict(newdata, re=re, offset=offset, allow_new_levels=allow_new_levels)
        values = eta.to_numpy() if scale == "link" else self.family.link.inverse(eta.to_numpy())
        return pd.Series(values, index=eta.index, name=scale)

    def resid(self, kind: str = "response") -> pd.Series:  # type: ignore[override]
        """``"response"`` ``y - mu``, ``"pearson"`` ``(y - mu) sqrt(w / v(mu))``,
        ``"deviance"`` ``sign(y - mu) sqrt(w d(y, mu))``."""
        d, fam, mu = self.design, self._pirls_family, self.state.mu
        w = d.weights if d.weights is not None else np.ones(self.nobs)
        if kind == "response":
            r = d.y - mu
        elif kind == "pearson":
            r = (d.y - mu) * np.sqrt(w / fam.variance(mu))
        elif kind == "deviance":
            r = np.sign(d.y - mu) * np.sqrt(np.maximum(w * fam.unit_deviance(d.y, mu), 0.0))
        else:
            raise ValueError(f"kind must be 'response', 'pearson' or 'deviance', not {kind!r}")
        return pd.Series(r, index=self._index(), name=kind)

    def icc(self) -> pd.Series:
        raise ValueError("the intraclass correlation of a GLMM depends on the latent scale; it is not computed")

    def marginal_cov(self, level: Any, group: str | None = None) -> pd.DataFrame:
        raise ValueError("a GLMM has no closed-form marginal covariance of the responses")

    def summary(self) -> Any:
        from multilevel.glmm.summary import GlmmSummary

        return GlmmSummary(self)

    def __repr__(self) -> str:
        return (f"<GlmmResult {self.family.name}({self.family.link.name}), nagq={self.nagq}: "
                f"{self.design.formula or 'array design'}, nobs={self.nobs}>")
