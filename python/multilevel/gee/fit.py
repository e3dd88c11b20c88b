"""Fitting generalized estimating equations by Fisher scoring.

Each iteration: means and Pearson residuals at the current ``beta`` (numpy,
one pass), moment estimates of ``phi`` and ``alpha``, then the information
``H = sum D' V^-1 D`` and quasi-score ``U = sum D' V^-1 (y - mu)`` summed over
clusters in C++, and the step ``beta += H^-1 U``. After the last step ``phi``
and ``alpha`` are re-estimated at the final ``beta`` and the sandwich is
formed there, as geepack does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilevel import _core
from multilevel.correlation import CorrelationStructure, Independence, get_correlation
from multilevel.families import Family, get_family
from multilevel.gee.design import GeeDesign, gee_design
from multilevel.gee.moments import estimate_correlation, estimate_scale
from multilevel.gee.result import GeeResult

MEAT_ROBUST, MEAT_BIAS_REDUCED, MEAT_JACKKNIFE = 0, 1, 2


class GeeConvergenceWarning(UserWarning):
    """Fisher scoring stopped at the iteration limit before the estimates settled."""


@dataclass
class WorkingArrays:
    """Per-row quantities at one ``beta`` (data row order)."""

    eta: np.ndarray
    mu: np.ndarray
    pearson: np.ndarray  # (y - mu) sqrt(w / v(mu))
    root_info: np.ndarray  # (dmu/deta) sqrt(w / v(mu))


def working_arrays(design: GeeDesign, family: Family, beta: np.ndarray) -> WorkingArrays:
    """Means, Pearson residuals and whitened derivatives at ``beta`` (with ``phi = 1``)."""
    eta = design.X @ beta + design.offset_or_zero()
    mu, mu_eta = family.link.inverse_and_mu_eta(eta)
    return arrays_at_mean(design, family, eta, mu, mu_eta)


def arrays_at_mean(design: GeeDesign, family: Family, eta: np.ndarray, mu: np.ndarray,
                   mu_eta: np.ndarray) -> WorkingArrays:
    """:class:`WorkingArrays` from the linear predictor, the mean and ``dmu/deta``."""
    v = family.variance(mu)
    if not np.all(np.isfinite(mu)) or np.any(v <= 0):
        bad = int(np.flatnonzero(~np.isfinite(mu) | (v <= 0))[0])
        raise FloatingPointError(
            f"the mean left the {family.name} family's range at row {bad} (mu = {mu[bad]!r}) under the "
            f"{family.link.name} link; try another link or starting values"
        )
    root_w_over_v = np.sqrt(design.prior_weights() / v)
    return WorkingArrays(eta, mu, (design.y - mu) * root_w_over_v, mu_eta * root_w_over_v)


def cluster_sums(design: GeeDesign, structure: CorrelationStructure, params: np.ndarray, wa: WorkingArrays,
                 scale: float, meat: int = MEAT_ROBUST, h_full: np.ndarray | None = None,
                 residual: np.ndarray | None = None) -> dict[str, Any]:
    """``H``, ``U`` and the meat ``M`` summed over clusters by the C++ core.

    ``residual`` replaces the Pearson residuals as the right-hand side (used
    for the weighted least-squares start).
    """
    lay = design.layout
    root_scale = np.sqrt(scale)
    e = (wa.pearson if residual is None else residual) / root_scale
    p = design.X.shape[1]
    out = _core.cluster_sums(design.X, wa.root_info / root_scale, e, lay.order, lay.ptr, lay.position,
                             *structure.core_arguments(params, lay.npositions), meat,
                             np.zeros((p, p)) if h_full is None else h_full)
    if out["failed_cluster"] >= 0:
        label = design.cluster_labels[out["failed_cluster"]]
        raise FloatingPointError(
            f"the {structure.name} working correlation with parameters {np.round(params, 6).tolist()} is not "
            f"positive definite for cluster {label}; try another correlation structure"
        )
    return out


def start_beta(design: GeeDesign, family: Family, maxiter: int = 25) -> np.ndarray:
    """Coefficients of the independence GLM by iteratively reweighted least squares (geepack's start)."""
    p = design.X.shape[1]
    mu = family.start_mu(design.y)
    eta = family.link.link(mu)
    wa = arrays_at_mean(design, family, eta, mu, family.link.mu_eta(eta))
    beta = np.zeros(p)
    independence = Independence()
    for _ in range(maxiter):
        # Working response z = eta - offset + (y - mu) / mu_eta; X'Wz is the "score" of a*z.
        z_scaled = wa.root_info * (wa.eta - design.offset_or_zero()) + wa.pearson
        sums = cluster_sums(design, independence, np.zeros(0), wa, 1.0, residual=z_scaled)
        new = np.linalg.solve(sums["H"], sums["U"])
        done = np.max(np.abs(new - beta)) <= 1e-4 * (1.0 + np.max(np.abs(new)))  # GEE steps polish it
        beta = new
        if done:
            break
        wa = working_arrays(design, family, beta)
    return beta


def fit_gee(design: GeeDesign, family: Family | str = "gaussian", corr: CorrelationStructure | str | None = None,
            *, link: Any = None, scale: float | None = None, cov_type: str = "robust", maxiter: int = 100,
            tol: float = 1e-10, start: np.ndarray | None = None) -> GeeResult:
    """Fit a GEE from a prepared :class:`GeeDesign` (the array-level entry point).

    Parameters
    ----------
    design : GeeDesign
    family, link : family and link (names or objects)
    corr : working correlation structure (name or object)
    scale : fix ``phi`` at this value instead of estimating it
    cov_type : reported covariance: "robust", "naive", "bias_reduced" or "jackknife"
    maxiter, tol : Fisher scoring stops when ``max |step| <= tol * (1 + max |beta|)``
    start : starting coefficients (default: the independence GLM)
    """
    family = get_family(family, link)
    structure = get_correlation(corr)
    family.check_response(design.y, design.fixed.response if design.fixed is not None else "y")
    p = design.X.shape[1]
    if p == 0:
        raise ValueError("the model has no coefficients; a GEE needs at least one column in X")
    if design.nobs <= p:
        raise ValueError(f"{design.nobs} rows cannot estimate {p} coefficients")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    beta = start_beta(design, family) if start is None else np.asarray(start, dtype=float).copy()

    def estimates(wa: WorkingArrays) -> tuple[float, np.ndarray]:
        phi = estimate_scale(wa.pearson, design.weights) if scale is None else float(scale)
        return phi, estimate_correlation(structure, wa.pearson, design.weights, design.layout, phi)

    converged = False
    n_iter = 0
    for n_iter in range(1, maxiter + 1):
        wa = working_arrays(design, family, beta)
        phi, params = estimates(wa)
        sums = cluster_sums(design, structure, params, wa, phi)
        step = np.linalg.solve(sums["H"], sums["U"])
        beta = beta + step
        if np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    wa = working_arrays(design, family, beta)
    phi, params = estimates(wa)
    sums = cluster_sums(design, structure, params, wa, phi)
    if not converged:
        warnings.warn(f"GEE did not converge in {maxiter} iterations", GeeConvergenceWarning, stacklevel=3)
    return GeeResult(design=design, family=family, structure=structure, params_array=beta, scale=phi,
                     corr_params=params, information=sums["H"], meat=sums["M"], working=wa,
                     n_iter=n_iter, converged=converged, cov_type=cov_type, scale_fixed=scale is not None)


def gee_result_at(design: GeeDesign, family: Family | str, corr: CorrelationStructure | str | None,
                  params: Any, corr_params: Any, scale: float, *, link: Any = None,
                  cov_type: str = "robust") -> GeeResult:
    """A result at given coefficients, correlation parameters and scale, without iterating.

    Useful to compare covariance estimators with another program at its own
    estimates (whose moment estimators may differ from geepack's).
    """
    family = get_family(family, link)
    structure = get_correlation(corr)
    beta = np.asarray(params, dtype=float)
    alpha = np.asarray(corr_params, dtype=float)
    wa = working_arrays(design, family, beta)
    sums = cluster_sums(design, structure, alpha, wa, float(scale))
    return GeeResult(design=design, family=family, structure=structure, params_array=beta, scale=float(scale),
                     corr_params=alpha, information=sums["H"], meat=sums["M"], working=wa, n_iter=0,
                     converged=True, cov_type=cov_type, scale_fixed=True)


def gee(formula: str, data: Any, *, groups: Any, time: Any = None, family: Family | str = "gaussian",
        link: Any = None, corr: CorrelationStructure | str | None = "independence", weights: Any = None,
        offset: Any = None, scale: float | None = None, cov_type: str = "robust", maxiter: int = 100,
        tol: float = 1e-10) -> GeeResult:
    """Fit a marginal model for clustered data by generalized estimating equations.

    The mean is ``g(mu) = X beta`` (plus ``offset``), the variance
    ``phi v(mu) / w``, and rows of one cluster have working correlation
    ``R(alpha)``. ``beta`` solves the quasi-score equations; ``phi`` and
    ``alpha`` are moment estimates from Pearson residuals (geepack's).
    Standard errors are the robust sandwich by default, valid when the
    working correlation is wrong.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + C(f)"`` (formulaic syntax; no random-effect bars).
    data : DataFrame (pandas, polars or pyarrow)
    groups : str, list of str or array
        Cluster of each row; clusters may be interleaved and of any size.
    time : str or array, optional
        Integer position of each row in its cluster (gaps allowed, like
        geepack's ``waves``); used by ``ar1``, ``unstructured``,
        ``MDependent`` and ``Fixed``. Without it, the row order in the cluster.
    family : str or Family
        ``"gaussian"``, ``"binomial"``, ``"poisson"``, ``"gamma"``, ``"inverse_gaussian"``.
    link : str or Link, optional
        Default: the family's canonical link.
    corr : str or CorrelationStructure
        ``"independence"``, ``"exchangeable"``, ``"ar1"``, ``"unstructured"``,
        ``MDependent(m)``, ``Fixed(matrix)``.
    weights : str or array, optional
        Prior weights; for binomial proportions, the numbers of trials.
    offset : str or array, optional
    scale : float, optional
        Fix ``phi`` (``scale=1`` for binomial and Poisson without overdispersion).
    cov_type : str
        Reported covariance: ``"robust"``, ``"naive"``, ``"bias_reduced"``, ``"jackknife"``.
    maxiter, tol : Fisher-scoring limits.

    Returns
    -------
    GeeResult

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"id": np.repeat(np.arange(50), 4), "x": rng.normal(size=200)})
    >>> df["y"] = rng.poisson(np.exp(0.3 + 0.5 * df["x"]))
    >>> fit = gee("y ~ x", df, groups="id", family="poisson", corr="exchangeable")
    >>> fit.converged, fit.params.index.tolist()
    (True, ['Intercept', 'x'])
    """
    design = gee_design(formula, data, groups=groups, time=time, weights=weights, offset=offset)
    return fit_gee(design, family, corr, link=link, scale=scale, cov_type=cov_type, maxiter=maxiter, tol=tol)
