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
from multilevel.lmm.conditional import full_conditional_covariances
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

    # ----- random effects -------------------------------------------------------
    def ranef_condvar(self, full: bool = False) -> dict[str, pd.DataFrame] | dict[str, np.ndarray]:
        """Conditional (co)variances of the random effects at the modes (lme4's ``condVar``):
        ``Lambda (Lambda' Z' W Z Lambda + I)^-1 Lambda'`` with ``W`` PIRLS's working weights.

        ``full=False`` (default): the variances, laid out like :attr:`ranef`; ``full=True``: per grouping
        factor a ``(nlevels, p, p)`` array of each level's covariance matrix, as lme4's ``postVar``
        (layout and terms sharing a grouping factor as in
        :meth:`LmmResult.ranef_condvar <multilevel.lmm.result.LmmResult.ranef_condvar>`).

        Examples
        --------
        >>> from multilevel import glmm
        >>> from multilevel.datasets import load_dataset
        >>> cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"],
        ...                                    t=lambda d: d.period.cat.codes.astype(float))
        >>> fit = glmm("p ~ t + (1 + t | herd)", cbpp, family="binomial", weights="size")
        >>> fit.ranef_condvar(full=True)["herd"].shape
        (15, 2, 2)
        """
        if not full:
            return super().ranef_condvar()
        self._core.solve(self._theta, False)  # the core's factor must be at theta
        terms = self.design.terms

        def rows() -> tuple[list[np.ndarray], np.ndarray | None]:
            return [t.z for t in terms], self._working_weights()

        return full_conditional_covariances(terms, self._theta, 1.0, self._core, rows)

    def _working_weights(self) -> np.ndarray:
        """PIRLS's weights at the modes: ``prior mu_eta^2 / V(mu)`` (the Gamma's prior divided by phi)."""
        d, fam = self.design, self._pirls_family
        prior = d.weights if d.weights is not None else np.ones(self.nobs)
        if fam.name == "gamma":
            prior = prior / self.dispersion
        mu, mu_eta = fam.link.inverse_and_mu_eta(self.state.eta)
        return prior * mu_eta**2 / fam.variance(mu)

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

    def _difference_scales(self) -> np.ndarray:
        """The natural size of each parameter in ``(theta, beta, log dispersion)``, for the Hessian's steps
        ``1e-4 * max(|x|, scale)`` (see :func:`multilevel.numdiff.hessian`).

        beta: 10 standard errors given theta (``(RX RX')^-1``), so that a coefficient's steps follow a
        rescaling of its predictor and are at least 1e-3 standard errors. (A predictor of scale 1e6 has
        a coefficient and standard error near 1e-6: lme4's steps of 1e-4 moved the linear predictor by
        100, and the standard error came out 8x too large or PIRLS failed. Steps of 1e-4 standard errors
        amplify the deviance's rounding and PIRLS error: VerbAgg's standard errors moved 2e-4, against
        1e-5 at 1e-3.) theta: ``min(1, 1 / rms(z_r))`` for an element in row ``r`` of its term's lambda
        (1 for an intercept; a random slope on a large-scale column has a small theta). The log
        dispersion: 1.
        """
        from multilevel.glmm.pirls import PirlsError

        theta_scale = []
        for t in self.design.terms:
            rms = np.sqrt(np.mean(np.asarray(t.z, dtype=float) ** 2, axis=0))
            row_scale = np.minimum(1.0, 1.0 / np.where(rms > 0, rms, 1.0))
            theta_scale += [row_scale[r] for c in range(t.p) for r in range(c, t.p)]
        try:
            se = np.sqrt(np.abs(np.diag(self._conditional_cov)))
        except (PirlsError, np.linalg.LinAlgError):
            se = np.full(self._beta.size, np.nan)
        se = np.where(np.isfinite(se) & (se > 0), 10.0 * se, 1.0)  # none or degenerate: lme4's steps
        return np.concatenate([theta_scale, se, np.ones(self._log_dispersion.size)])

    @cached_property
    def _hessian_cov(self) -> np.ndarray:
        """Beta block of ``2 H^-1``; ``H`` by central differences of the exact gradient where there is
        one, else of the deviance, with steps ``1e-4 * max(|x|, scale)`` (lme4's ``deriv12`` takes
        1e-4; the scales, from :meth:`_difference_scales`, make them follow each parameter's size)."""
        from multilevel.glmm.pirls import PirlsError

        scale = self._difference_scales()
        f = self._at_optimum()
        x0 = np.concatenate([self._theta, self._beta, self._log_dispersion])
        nt, p = self._theta.size, self._beta.size

        def differenced() -> np.ndarray:
            if f.has_gradient:
                return hessian_from_gradient(lambda x: f.value_and_gradient(x)[1], x0, scale=scale)
            return hessian(f, x0, scale=scale)

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
        """Wald z statistics ``params / bse`` (their p-values use the normal distribution, as glmer's)."""
        return (self.params / self.bse).rename("zvalues")

    @property
    def tvalues(self) -> pd.Series:
        """The same numbers as :attr:`zvalues` (the name LmmResult's code uses)."""
        return (self.params / self.bse).rename("tvalues")

    @property
    def pvalues(self) -> pd.Series:
        return normal_pvalues(self.zvalues).rename("pvalues")

    def coef_table(self) -> pd.DataFrame:
        """``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)`` per fixed effect, as glmer's."""
        return coefficient_table(self.params, self.bse)

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
