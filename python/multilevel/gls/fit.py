"""Fitting linear models with correlated, heteroscedastic errors by GLS.

``Sigma_j = sigma^2 G_j R_j G_j`` with ``G_j = diag(g_i)`` from the variance
function and ``R_j`` from the correlation structure. For given parameters
the C++ core whitens every cluster's rows ``[X y] / g`` by ``R_j`` and sums
``X' Sigma0^-1 X``, ``X' Sigma0^-1 y``, ``y' Sigma0^-1 y`` and ``log det R_j``
(``Sigma0 = Sigma / sigma^2``); ``beta`` and ``sigma`` are then profiled out
and the (restricted) log-likelihood is maximized over the correlation and
variance parameters on nlme's unconstrained scale with BOBYQA.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from multilevel import _core
from multilevel.correlation import CorrelationStructure, get_correlation
from multilevel.formula import caller_context
from multilevel.gls.design import GlsDesign, gls_design
from multilevel.optimize import OptSummary, check_optimizer_options, minimize_bobyqa_restarted, newton_polish
from multilevel.variance import VarianceFunction, get_variance

if TYPE_CHECKING:
    from multilevel.gls.result import GlsResult

# Bound of the unconstrained parameters (far beyond any fitted value).
UNCONSTRAINED_BOUND = 50.0


class GlsConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its tolerances."""


class GlsBoundaryWarning(UserWarning):
    """A correlation or variance parameter ended at the edge of its range: the likelihood has no maximum inside."""


@dataclass
class GlsProfile:
    """Everything at one value of the correlation and variance parameters."""

    corr_params: np.ndarray
    variance_params: np.ndarray
    sd_factors: np.ndarray  # (n,) g_i
    beta: np.ndarray
    information: np.ndarray  # X' Sigma0^-1 X
    rss: float  # (y - X beta)' Sigma0^-1 (y - X beta)
    sigma: float
    loglik: float


class GlsObjective:
    """The profiled (restricted) log-likelihood as a function of the unconstrained parameters."""

    def __init__(self, design: GlsDesign, structure: CorrelationStructure, reml: bool) -> None:
        self.design = design
        self.structure = structure
        self.reml = reml
        self.ncorr = structure.nparams(design.layout.npositions)
        self.nvar = design.variance.nparams

    @property
    def nparams(self) -> int:
        return self.ncorr + self.nvar

    def split(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Constrained correlation and variance parameters from the unconstrained vector."""
        u = np.asarray(u, dtype=float)
        corr = self.structure.from_unconstrained(u[: self.ncorr], self.design.max_cluster_size) \
            if self.ncorr else np.zeros(0)
        return corr, self.design.variance.from_unconstrained(u[self.ncorr:])

    def join(self, corr: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Unconstrained vector from constrained parameters."""
        cu = self.structure.to_unconstrained(corr, self.design.max_cluster_size) if self.ncorr else np.zeros(0)
        return np.concatenate([cu, self.design.variance.to_unconstrained(np.asarray(var, dtype=float))])

    def start(self) -> np.ndarray:
        return np.concatenate([np.zeros(self.ncorr), self.design.variance.to_unconstrained(self.design.variance.start)])

    def core_sums(self, corr: np.ndarray, g: np.ndarray, residual: np.ndarray | None = None,
                  meat: int = 0) -> dict[str, Any]:
        """The core's whitened sums with rows scaled by ``1/g``; ``residual`` replaces ``y``."""
        lay = self.design.layout
        inv_g = 1.0 / g
        e = (self.design.y if residual is None else residual) * inv_g
        return _core.cluster_sums(self.design.X, inv_g, e, lay.order, lay.ptr, lay.position,
                                  *self.structure.core_arguments(corr, lay.npositions), meat,
                                  np.zeros((len(self.design.names),) * 2), lay.time_or_empty())

    def profile(self, u: np.ndarray) -> GlsProfile | None:
        """Estimates and log-likelihood at ``u``; None where ``Sigma`` is not positive definite."""
        corr, var = self.split(u)
        g = self.design.variance.sd_factors(var)
        if not np.all(np.isfinite(g)) or np.any(g <= 0):
            return None
        sums = self.core_sums(corr, g)
        if sums["failed_cluster"] >= 0:
            return None
        H, U = sums["H"], sums["U"]
        try:
            chol = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return None
        beta = np.linalg.solve(H, U)
        rss = float(sums["ee"] - U @ beta)
        n, p = self.design.nobs, len(beta)
        dof = n - p if self.reml else n
        log_det = float(sums["logdet"] + 2.0 * np.sum(np.log(g)))
        loglik = -0.5 * dof * (np.log(2 * np.pi * rss / dof) + 1.0) - 0.5 * log_det
        if self.reml:
            # nlme's restricted likelihood: -0.5 log det X' Sigma0^-1 X (no 0.5 log det X'X term).
            loglik += -np.sum(np.log(np.diag(chol)))
        return GlsProfile(corr, var, g, beta, H, rss, float(np.sqrt(rss / dof)), float(loglik))

    def __call__(self, u: np.ndarray) -> float:
        prof = self.profile(u)
        return np.inf if prof is None else -prof.loglik


def fit_gls_design(design: GlsDesign, structure: CorrelationStructure, *, method: str = "REML",
                   start: dict[str, Any] | None = None, **optimizer_options: Any) -> GlsResult:
    """Fit a GLS model from a prepared :class:`GlsDesign` (the array-level entry point)."""
    from multilevel.gls.result import GlsResult

    if method not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML', not {method!r}")
    p = design.X.shape[1]
    if design.nobs <= p:
        raise ValueError(f"{design.nobs} rows cannot estimate {p} coefficients")
    objective = GlsObjective(design, structure, method == "REML")
    u0 = objective.start() if start is None else objective.join(np.asarray(start.get("corr", []), float),
                                                                np.asarray(start.get("variance", []), float))
    if objective.nparams:
        bound = np.full(u0.size, UNCONSTRAINED_BOUND)
        optsum = minimize_bobyqa_restarted(objective, u0, -bound,
                                           **{"initial_step": 0.5, "upper": bound, **optimizer_options})
        if optsum.converged:  # BOBYQA stops on the log-likelihood; Newton steps converge in the parameters
            optsum = newton_polish(objective, optsum, upper=bound)
        u = optsum.final
    else:
        optsum = OptSummary("none (no parameters)", u0, u0, u0, objective(u0), 1, 1, "success", 0.0, 0, 0, 0, 0)
        u = u0
    prof = objective.profile(u)
    if prof is None:
        raise FloatingPointError("the GLS covariance is not positive definite at the optimizer's final parameters")
    result = GlsResult(design, structure, objective, prof, u, optsum)
    if not result.converged:
        warnings.warn(f"the optimizer did not converge: {optsum.message}", GlsConvergenceWarning, stacklevel=3)
    if result.boundary:
        warnings.warn(result.boundary_message(), GlsBoundaryWarning, stacklevel=3)
    return result


def gls_method(method: str | None, reml: Any) -> str:
    """The fitting criterion from gls's ``method=`` and its alias ``reml=``: "REML" unless one says "ML".

    Examples
    --------
    >>> gls_method(None, False), gls_method("REML", None), gls_method("ML", False)
    ('ML', 'REML', 'ML')
    """
    if reml is None:
        return "REML" if method is None else method
    if not isinstance(reml, (bool, np.bool_)):
        raise TypeError(f"reml must be True or False, not {reml!r}")
    from_reml = "REML" if reml else "ML"
    if method in ("REML", "ML") and method != from_reml:
        raise ValueError(f"method={method!r} and reml={bool(reml)} disagree; give one of them "
                         f"(reml={bool(reml)} is method={from_reml!r})")
    return from_reml if method is None else method  # another method is refused by fit_gls_design


def gls(formula: str, data: Any, *, groups: Any = None, time: Any = None,
        corr: CorrelationStructure | str | None = None, variance: VarianceFunction | None = None,
        method: str | None = None, reml: bool | None = None, **optimizer_options: Any) -> GlsResult:
    """Fit a linear model with correlated, heteroscedastic errors by generalized least squares.

    ``Y ~ N(X beta, Sigma)`` with block-diagonal ``Sigma_j = sigma^2 A_j^1/2 R_j(rho) A_j^1/2``;
    ``beta`` and ``sigma`` are profiled out and the correlation and variance
    parameters maximize the (restricted) likelihood, as nlme's ``gls``.

    Parameters
    ----------
    formula : str
        ``"y ~ x * f"`` (formulaic syntax).
    data : DataFrame
    groups : str, list of str or array, optional
        Cluster of each row (nlme's ``| g``); without it all rows form one series.
    time : str or array, optional
        Position of each row in its cluster: integer for ``"ar1"`` (lags are
        differences), real for ``"car1"``, a category for ``"unstructured"``;
        without it, the row order within the cluster.
    corr : str or CorrelationStructure
        ``"exchangeable"``, ``"ar1"``, ``"car1"``, ``"unstructured"``,
        ``MDependent(m)`` (banded Toeplitz), ``Fixed(matrix)``; default independence.
    variance : VarianceFunction, optional
        ``VarIdent(f)``, ``VarPower(x)``, ``VarExp(x)``; default constant.
    method : "REML" or "ML", default "REML"
    reml : bool, optional
        ``reml=True`` is ``method="REML"``, ``reml=False`` is ``method="ML"`` (the keyword
        :func:`multilevel.lmm` takes); give one of the two, or both if they agree.
    **optimizer_options
        ``ftol_rel``, ``ftol_abs``, ``xtol_abs``, ``initial_step``, ``maxeval`` for BOBYQA;
        ``verbose=True`` prints each evaluation of the objective (``verbose=2`` with the parameters).

    Returns
    -------
    GlsResult

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> fit = gls("distance ~ age * Sex", load_dataset("Orthodont"), groups="Subject", corr="exchangeable")
    >>> round(float(fit.corr_params[0]), 4)
    0.6318
    """
    check_optimizer_options(optimizer_options, gls)
    method = gls_method(method, reml)
    context = caller_context()  # the caller's names the formula uses (I(x * k), f(x)), here: fit_with is nested
    structure = get_correlation(corr)
    var_fun = get_variance(variance)

    def fit_with(fitted: np.ndarray | None) -> Any:
        design = gls_design(formula, data, groups=groups, time=time, structure=structure, variance=var_fun,
                            fitted=fitted, context=context)
        return fit_gls_design(design, structure, method=method, **optimizer_options)

    if not var_fun.uses_fitted:
        return fit_with(None)
    # nlme's varPower() / varExp(): the covariate is the fitted values X beta, refitted to a fixed point.
    from multilevel.lmm.residual import fit_on_own_fitted_values

    # The first fit is the model without the variance function (not a call of gls: that would see this scope).
    plain = gls_design(formula, data, groups=groups, time=time, structure=structure, variance=get_variance(None),
                       context=context)
    first = fit_gls_design(plain, structure, method=method, **optimizer_options)
    return fit_on_own_fitted_values(fit_with, first.fitted().to_numpy(),
                                    lambda r: np.concatenate([r.variance_params.to_numpy(), r.corr_params]))
