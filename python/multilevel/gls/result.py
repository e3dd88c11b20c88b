"""The fitted GLS model: estimates, t-based inference as nlme, intervals for
the correlation and variance parameters, likelihood-ratio comparison,
prediction and residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel import _core
from multilevel.correlation import KIND_EXCHANGEABLE, KIND_INDEPENDENCE
from multilevel.frames import as_pandas
from multilevel.inference import coefficient_table, standard_errors, wald_conf_int
from multilevel.inference.wald import prediction_with_se
from multilevel.numdiff import hessian
from multilevel.tidy_methods import TidyMethods

if TYPE_CHECKING:
    from multilevel.correlation import CorrelationStructure
    from multilevel.gls.design import GlsDesign
    from multilevel.gls.fit import GlsObjective, GlsProfile
    from multilevel.gls.summary import GlsSummary
    from multilevel.optimize import OptSummary


#: |unconstrained correlation parameter| from which it is at the edge of its range (see GlsResult.boundary).
CORRELATION_EDGE = 10.0


class GlsResult(TidyMethods):
    """A fitted GLS model (see :func:`multilevel.gls`).

    Attributes
    ----------
    params : Series of coefficients
    sigma : float, residual standard deviation (``sqrt(rss / (n - p))`` for REML, ``/ n`` for ML)
    corr_params : ndarray, correlation parameters (nlme's ``coef(corStruct, unconstrained = FALSE)``)
    variance_params : Series, variance-function parameters
    loglik, aic, bic : the (restricted) log-likelihood and criteria, as nlme
    method : "REML" or "ML"
    converged : bool
    boundary : bool, a parameter at the edge of its range (see :attr:`boundary`)
    """

    def __init__(self, design: GlsDesign, structure: CorrelationStructure, objective: GlsObjective,
                 profile: GlsProfile, unconstrained: np.ndarray, optsum: OptSummary) -> None:
        self.design = design
        self.structure = structure
        self.objective = objective
        self.profile = profile
        self.unconstrained = np.asarray(unconstrained, dtype=float)
        self.optsum = optsum
        self.method = "REML" if objective.reml else "ML"
        self.params = pd.Series(profile.beta, index=design.names, name="params")
        self.sigma = profile.sigma
        self.corr_params = profile.corr_params
        self.variance_params = pd.Series(profile.variance_params, index=design.variance.names, name="variance",
                                         dtype=float)
        self.loglik = profile.loglik

    # -- sizes and criteria ----------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def df_resid(self) -> int:
        return self.nobs - len(self.params)

    @property
    def df_model(self) -> int:
        """Parameters counted by AIC: coefficients, correlation, variance, sigma."""
        return len(self.params) + self.objective.nparams + 1

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        n = self.df_resid if self.method == "REML" else self.nobs
        return -2.0 * self.loglik + np.log(n) * self.df_model

    @property
    def converged(self) -> bool:
        return self.optsum.converged

    @property
    def boundary(self) -> bool:
        """True when a correlation or variance parameter ended at the edge of its range.

        On nlme's unconstrained scale the edge is at infinity: a correlation
        parameter beyond +-10 there is within about 5e-5 of the edge (relative
        to its range), and the optimizer stops every parameter at
        +-``UNCONSTRAINED_BOUND``. There the likelihood has no maximum inside
        the range (for example, an exchangeable correlation on unbalanced
        clusters whose likelihood grows without bound as rho goes to
        ``-1/(m - 1)`` for the largest cluster), so the estimates are a limit,
        not a maximum (and where exactly the optimizer stopped depends on
        rounding).
        """
        return bool(np.any(self._at_edge()))

    def _at_edge(self) -> np.ndarray:
        from multilevel.gls.fit import UNCONSTRAINED_BOUND

        u = np.abs(self.unconstrained)
        corr = np.arange(u.size) < self.objective.ncorr
        return (corr & (u >= CORRELATION_EDGE)) | (u >= UNCONSTRAINED_BOUND * (1 - 1e-9))

    def boundary_message(self) -> str:
        """What :attr:`boundary` means for this fit (the warning and the summary say it)."""
        at = self._at_edge()
        names = [f"correlation parameter {i + 1}" if i < self.objective.ncorr
                 else f"variance parameter {self.variance_params.index[i - self.objective.ncorr]!r}"
                 for i in np.flatnonzero(at)]
        hint = ""
        if self.structure.kind == KIND_EXCHANGEABLE and self.design.max_cluster_size > 1:
            hint = (f" (the exchangeable correlation is at -1/(m - 1) = {-1 / (self.design.max_cluster_size - 1):.4g} "
                    f"for the largest cluster, m = {self.design.max_cluster_size}; on unbalanced clusters the "
                    "likelihood grows without bound there)")
        return (f"boundary fit: {', '.join(names)} ended at the edge of the range{hint}; the likelihood has no "
                "maximum inside it, so the estimates and log-likelihood are a limit, not a maximum. Consider a "
                "simpler structure (corr=None, or a random intercept with multilevel.lmm)")

    # -- coefficients ------------------------------------------------------------
    def cov_params(self, kind: str = "model") -> pd.DataFrame:
        """``"model"``: ``rss / (n - p) (X' Sigma0^-1 X)^-1`` (nlme's, under ML too); ``"robust"``: the cluster sandwich,
        valid when the working correlation or variance is wrong."""
        names = self.design.names
        h_inv = np.linalg.inv(self.profile.information)
        if kind == "model":
            # nlme scales by rss / (n - p) under ML as well as REML.
            cov = self.profile.rss / self.df_resid * h_inv
        elif kind == "robust":
            resid = self.design.y - self.design.X @ self.params.to_numpy()
            meat = self.objective.core_sums(self.corr_params, self.profile.sd_factors, residual=resid)["M"]
            cov = h_inv @ meat @ h_inv
        else:
            raise ValueError(f"kind must be 'model' or 'robust', not {kind!r}")
        return pd.DataFrame(0.5 * (cov + cov.T), index=names, columns=names)

    @property
    def bse(self) -> pd.Series:
        return standard_errors(self.cov_params()).rename("bse")

    @property
    def tvalues(self) -> pd.Series:
        """t statistics ``params / bse`` (``n - p`` degrees of freedom, as nlme)."""
        return (self.params / self.bse).rename("tvalues")

    @property
    def zvalues(self) -> pd.Series:
        """The same numbers as :attr:`tvalues` (the name the z-test families use; the p-values stay t's)."""
        return (self.params / self.bse).rename("zvalues")

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values from the t distribution with ``n - p`` degrees of freedom (as nlme)."""
        return pd.Series(2 * stats.t.sf(np.abs(self.tvalues), self.df_resid), index=self.params.index,
                         name="pvalues")

    def conf_int(self, alpha: float = 0.05, kind: str = "model") -> pd.DataFrame:
        """t-based intervals for the coefficients (``n - p`` degrees of freedom, as nlme's ``intervals``).

        The columns are named by their probabilities, ``"0.025"`` and ``"0.975"`` for
        ``alpha=0.05``, as every family's ``conf_int()``.
        """
        se = standard_errors(self.cov_params(kind))
        return wald_conf_int(self.params, se, alpha, df=np.full(len(se), float(self.df_resid)))

    def coef_table(self) -> pd.DataFrame:
        """``Estimate``, ``Std. Error``, ``t value``, ``Pr(>|t|)`` per coefficient: t tests with
        ``n - p`` degrees of freedom, as nlme's (which names the columns ``Value``, ``Std.Error``,
        ``t-value``, ``p-value``; here R's ``coef(summary())`` names, as every family's)."""
        return coefficient_table(self.params, self.bse, float(self.df_resid), df_column=False)

    # -- intervals for the covariance parameters -----------------------------------
    def approx_cov_theta(self, step: float = 1e-4) -> np.ndarray:
        """Approximate covariance of (natural correlation parameters, unconstrained variance
        parameters, log sigma): the inverse negative Hessian of the log-likelihood (nlme's ``apVar``)."""
        return np.linalg.inv(-hessian(self._loglik_unprofiled, self._natural_estimates(), step))

    def _natural_estimates(self) -> np.ndarray:
        """(correlation parameters on nlme's natural scale, unconstrained variance parameters, log sigma)."""
        nc = self.objective.ncorr
        corr = self.structure.to_natural(self.corr_params, self.design.max_cluster_size) if nc else np.zeros(0)
        return np.concatenate([corr, self.unconstrained[nc:], [np.log(self.sigma)]])

    def _loglik_unprofiled(self, x: np.ndarray) -> float:
        """Log-likelihood at (natural parameters, log sigma) with beta profiled (REML: integrated)."""
        nc = self.objective.ncorr
        corr = self.structure.from_natural(x[:nc], self.design.max_cluster_size) if nc else np.zeros(0)
        var = self.design.variance.from_unconstrained(x[nc:-1])
        prof = self.objective.profile(self.objective.join(corr, var))
        if prof is None:
            return -np.inf
        sigma2 = np.exp(2 * x[-1])
        dof = self.nobs - len(self.params) if self.method == "REML" else self.nobs
        # Replace the profiled sigma^2 = rss/dof by a free sigma^2.
        return prof.loglik + 0.5 * dof * (np.log(prof.rss / dof) + 1.0) - 0.5 * dof * np.log(sigma2) \
            - 0.5 * prof.rss / sigma2

    def intervals(self, level: float = 0.95) -> dict[str, pd.DataFrame]:
        """Approximate confidence intervals as nlme's ``intervals(gls)``.

        Coefficients: t-based. Correlation and variance parameters and sigma:
        normal intervals on nlme's unconstrained ("natural") scale from
        :meth:`approx_cov_theta`, transformed back.
        """
        alpha = 1 - level
        ci = self.conf_int(alpha)
        out = {"coef": pd.DataFrame({"lower": ci.iloc[:, 0], "est": self.params, "upper": ci.iloc[:, 1]})}
        if self.objective.nparams == 0:  # nlme: the exact chi-square interval for sigma
            dof = self.df_resid if self.method == "REML" else self.nobs
            bounds = np.sqrt(dof * self.sigma**2 / stats.chi2.ppf([1 - alpha / 2, alpha / 2], dof))
            out["sigma"] = pd.DataFrame({"lower": [bounds[0]], "est": [self.sigma], "upper": [bounds[1]]},
                                        index=["sigma"])
            return out
        cov = self.approx_cov_theta()
        z = stats.norm.ppf(1 - alpha / 2)
        x = self._natural_estimates()
        se = np.sqrt(np.diag(cov))
        lo, hi = x - z * se, x + z * se
        nc, nv = self.objective.ncorr, self.objective.nvar
        if nc:
            back = self.structure.from_natural
            size = self.design.max_cluster_size
            names = self.structure.param_names(self.design.layout.npositions)
            out["corr"] = pd.DataFrame({"lower": back(lo[:nc], size), "est": self.corr_params,
                                        "upper": back(hi[:nc], size)}, index=names)
        if nv:
            to_var = self.design.variance.from_unconstrained
            out["variance"] = pd.DataFrame({"lower": to_var(lo[nc:nc + nv]), "est": self.variance_params.to_numpy(),
                                            "upper": to_var(hi[nc:nc + nv])}, index=self.variance_params.index)
        out["sigma"] = pd.DataFrame({"lower": [np.exp(lo[-1])], "est": [self.sigma], "upper": [np.exp(hi[-1])]},
                                    index=["sigma"])
        return out

    # -- comparison ------------------------------------------------------------------
    def compare(self, other: GlsResult) -> pd.DataFrame:
        """Likelihood-ratio test of two nested fits as nlme's ``anova(fit1, fit2)`` does it: no refit, so
        both must use the same method and, under REML, the same fixed effects (see :func:`multilevel.anova`)."""
        from multilevel.inference import anova

        return anova(self, other, refit=False)

    # -- prediction and residuals ---------------------------------------------------------
    def fitted(self) -> pd.Series:
        return pd.Series(self.design.X @ self.params.to_numpy(), index=self.design.row_index, name="fitted")

    def predict(self, newdata: Any = None, *, se: bool = False) -> pd.Series | pd.DataFrame:
        """``X beta`` for new data (the marginal mean; the correlation does not enter); with ``se=True``
        a frame with ``fit`` and ``se.fit`` (from :meth:`cov_params`)."""
        if newdata is None:
            X, index = self.design.X, self.fitted().index
        else:
            df = as_pandas(newdata)
            X, index = self.design.fixed.model_matrix(df), df.index
        if se:
            return prediction_with_se(X, self.params.to_numpy(), self.cov_params().to_numpy(), index)
        if newdata is None:
            return self.fitted()
        return pd.Series(X @ self.params.to_numpy(), index=index, name="predicted")

    def resid(self, kind: str = "response") -> pd.Series:
        """Residuals: ``"response"`` ``y - X beta``; ``"pearson"`` divided by ``sigma g_i``;
        ``"normalized"`` whitened within each cluster by the inverse Cholesky factor
        of ``R_j`` (nlme's ``type = "normalized"``)."""
        r = self.design.y - self.design.X @ self.params.to_numpy()
        if kind == "response":
            out = r
        elif kind == "pearson":
            out = r / (self.sigma * self.profile.sd_factors)
        elif kind == "normalized":
            pearson = r / (self.sigma * self.profile.sd_factors)
            out = self._normalize(pearson)
        else:
            raise ValueError(f"kind must be 'response', 'pearson' or 'normalized', not {kind!r}")
        return pd.Series(out, index=self.design.row_index, name=kind)

    def _normalize(self, pearson: np.ndarray) -> np.ndarray:
        """Whiten Pearson residuals cluster by cluster with nlme's factor ``F_j`` (``F_j' F_j = R_j^-1``)."""
        lay = self.design.layout
        s = self.structure
        if s.kind == KIND_INDEPENDENCE:
            return pearson
        if s.kind == KIND_EXCHANGEABLE:  # nlme's Helmert factor, not a Cholesky one
            return _compound_symmetry_whiten(pearson, lay.order, lay.ptr, float(self.corr_params[0]))
        out, _, _ = _core.whiten_rows(pearson[:, None], lay.order, lay.ptr, lay.position,
                                      *s.core_arguments(self.corr_params, lay.npositions), lay.time_or_empty())
        return out[:, 0]

    def summary(self) -> GlsSummary:
        from multilevel.gls.summary import GlsSummary

        return GlsSummary(self)

    def __repr__(self) -> str:
        return (f"<GlsResult {self.method}, {self.structure.name}: {self.nobs} rows, "
                f"logLik {self.loglik:.4f}, converged={self.converged}>")

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def _compound_symmetry_whiten(e: np.ndarray, order: np.ndarray, ptr: np.ndarray, rho: float) -> np.ndarray:
    """nlme's compound-symmetry factor (Helmert contrasts scaled by the eigenvalues of R_j).

    For a cluster of size n in row order: ``out_1 = sum(e) / sqrt(n (1 + (n-1) rho))`` and
    ``out_k = ((k-1) e_k - sum_{l<k} e_l) / sqrt((1 - rho) (k-1) k)`` for ``k >= 2``.
    """
    sizes = np.diff(ptr)
    es = e[order]
    cluster = np.repeat(np.arange(sizes.size), sizes)
    k = np.arange(es.size) - np.repeat(ptr[:-1], sizes) + 1  # 1-based rank in the cluster
    running = np.cumsum(es)
    before = running - es - np.repeat(running[ptr[:-1]] - es[ptr[:-1]], sizes)  # sum of earlier rows
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ((k - 1) * es - before) / np.sqrt((1 - rho) * (k - 1) * k)
    first = ptr[:-1][sizes > 0]
    totals = np.bincount(cluster, weights=es, minlength=sizes.size)[sizes > 0]
    n = sizes[sizes > 0]
    out[first] = totals / np.sqrt(n * (1 + (n - 1) * rho))
    result = np.empty_like(e)
    result[order] = out
    return result
