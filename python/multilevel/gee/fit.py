"""Fitting generalized estimating equations by Fisher scoring.

Each iteration: means and Pearson residuals at the current ``beta`` (numpy,
one pass), moment estimates of ``phi`` and ``alpha``, then the information
``H = sum D' V^-1 D`` and quasi-score ``U = sum D' V^-1 (y - mu)`` summed over
clusters in C++, and the step ``beta += H^-1 U``. After the last step ``phi``
and ``alpha`` are re-estimated at the final ``beta`` and the sandwich is
formed there, as geepack does.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from difflib import get_close_matches
from typing import Any

import numpy as np

from multilevel.correlation import KIND_CAR1, CorrelationStructure, get_correlation
from multilevel.families import Family, get_family
from multilevel.formula import caller_context, require_binomial
from multilevel.gee.design import GeeDesign, gee_design
from multilevel.gee.iteration import GeeEstimates, fisher_scoring, start_beta
from multilevel.gee.moments import GeeCorrelationBoundWarning, check_moments, check_structure
from multilevel.gee.result import GeeResult
from multilevel.gee.scoring import DesignRows, FinalSums, GeeRows, final_sums, scoring_sums, working_arrays


class GeeConvergenceWarning(UserWarning):
    """Fisher scoring stopped at the iteration limit before the estimates settled."""


def check_gee_sizes(nobs: int, p: int, scale: float | None) -> None:
    """Refuse a model with no coefficients, too few rows, or a non-positive fixed scale."""
    if p == 0:
        raise ValueError("the model has no coefficients; a GEE needs at least one column in X")
    if nobs <= p:
        raise ValueError(f"{nobs} rows cannot estimate {p} coefficients")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        raise TypeError(f"scale must be a number (phi, e.g. scale=1), not {scale!r}")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")


def check_scoring_limits(maxiter: Any, tol: Any) -> None:
    """Refuse an iteration limit that is not a non-negative integer or a tolerance that is not a non-negative
    number (a negative one would iterate to the limit and then only warn)."""
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral):
        raise TypeError(f"maxiter must be an integer, not {type(maxiter).__name__}")
    if maxiter < 0:
        raise ValueError(f"maxiter must be >= 0, not {maxiter}")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a number, not {type(tol).__name__}")
    if not 0.0 <= tol < np.inf:
        raise ValueError(f"tol must be a non-negative finite number, not {tol!r}")


def refuse_unknown_keywords(unknown: dict[str, Any], function: Any) -> None:
    """A TypeError naming a keyword ``function`` does not take and its close matches (case ignored), as
    lmm, glmm and gls say it through their optimizer-option check; gee has no optimizer options."""
    if not unknown:
        return
    key = next(iter(unknown))
    params = [q.name for q in inspect.signature(function).parameters.values() if q.kind == q.KEYWORD_ONLY
              or q.kind == q.POSITIONAL_OR_KEYWORD]
    lowered = {q.lower(): q for q in params}
    close = [lowered[c] for c in get_close_matches(key.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f"; it takes {', '.join(params)}"
    raise TypeError(f"{function.__name__}() got an unexpected keyword argument {key!r}{hint}")


def estimate_gee(rows: GeeRows, family: Family, structure: CorrelationStructure, *, p: int, nobs: int,
                 scale: float | None, maxiter: int, tol: float, start: np.ndarray | None = None,
                 moments: str = "geepack", verbose: bool = False, extra_meats: tuple[str, ...] = (),
                 quasi_loglik: bool = False) -> tuple[GeeEstimates, tuple[str, ...], FinalSums]:
    """Fisher scoring on rows held anywhere (:class:`~multilevel.gee.scoring.GeeRows`), from ``start``
    or the independence GLM, warning when it does not converge or when ``alpha`` had to be moved inside
    its bounds: the steps every GEE fit shares. Returns the estimates (with the robust meat), the
    warnings' messages and the :class:`~multilevel.gee.scoring.FinalSums` of ``extra_meats`` (and the
    quasi-likelihood), made in the same pass as the robust meat where that needs one."""
    check_gee_sizes(nobs, p, scale)
    check_scoring_limits(maxiter, tol)
    check_moments(moments)
    check_structure(structure, moments)
    if not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose must be True or False, not {verbose!r}")
    beta = start_beta(rows, family, p) if start is None else np.asarray(start, dtype=float).copy()
    est = fisher_scoring(rows, family, structure, beta, scale=scale, maxiter=maxiter, tol=tol, moments=moments,
                         verbose=bool(verbose))
    final = FinalSums()
    kinds = (("robust",) if est.meat is None else ()) + tuple(extra_meats)
    if kinds or quasi_loglik:
        final = final_sums(rows, family, structure, est.corr_params, est.scale, est.beta, est.information, kinds,
                           quasi_loglik)
        if est.meat is None:
            est.meat = final.meats.pop("robust")
    notes = []
    if est.corr_params_moved:
        notes.append(bound_message(structure, est, rows.max_cluster_size))
        warnings.warn(notes[-1], GeeCorrelationBoundWarning, stacklevel=4)
    if not est.converged:
        notes.append(est.stopped or f"GEE did not converge in {maxiter} iterations")
        warnings.warn(notes[-1], GeeConvergenceWarning, stacklevel=4)
    return est, tuple(notes), final


def bound_message(structure: CorrelationStructure, est: GeeEstimates, max_cluster_size: int) -> str:
    """What was done to an ``alpha`` whose moment estimate left the positive-definite range."""
    raw, kept = np.round(est.raw_corr_params, 6).tolist(), np.round(est.corr_params, 6).tolist()
    where = {"exchangeable": f" (-1/(m - 1) < alpha < 1, with m = {max_cluster_size} rows in the largest cluster)",
             "ar1": " (-1 < alpha < 1)"}.get(structure.name, "")
    return (f"the moment estimate of the {structure.name} working correlation, {raw}, is outside the range where "
            f"it is positive definite for every cluster{where}; it was kept just inside, at {kept}, and the "
            "coefficients solve the estimating equations at that value")


def fit_gee(design: GeeDesign, family: Family | str = "gaussian", corr: CorrelationStructure | str | None = None,
            *, link: Any = None, scale: float | None = None, cov_type: str = "robust", maxiter: int = 100,
            tol: float = 1e-10, start: np.ndarray | None = None, moments: str = "geepack",
            verbose: bool = False) -> GeeResult:
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
    moments : "geepack" or "gee": whose moment estimators of ``phi`` and ``alpha`` (see :func:`gee`)
    verbose : print each Fisher scoring step
    """
    family = get_family(family, link)
    structure = gee_correlation(corr)
    check_moments(moments)
    family.check_response(design.y, design.fixed.response if design.fixed is not None else "y")
    est, notes, _ = estimate_gee(DesignRows(design), family, structure, p=design.X.shape[1], nobs=design.nobs,
                              scale=scale, maxiter=maxiter, tol=tol, start=start, moments=moments, verbose=verbose)
    return GeeResult(design=design, family=family, structure=structure, params_array=est.beta, scale=est.scale,
                     corr_params=est.corr_params, information=est.information, meat=est.meat,
                     working=working_arrays(design, family, est.beta), n_iter=est.n_iter,
                     converged=est.converged, cov_type=cov_type, scale_fixed=scale is not None, moments=moments,
                     fit_notes=notes)


def gee_correlation(corr: CorrelationStructure | str | None) -> CorrelationStructure:
    """The working correlation of a GEE; a structure without a moment estimator (the continuous-time AR(1))
    is refused with what to use instead."""
    structure = get_correlation(corr)
    if structure.kind == KIND_CAR1:
        raise ValueError("gee has no estimator of a continuous-time AR(1) working correlation (geepack has none "
                         "either); use corr='ar1' with integer times, or gls/lmm(corr='car1') for a likelihood fit")
    return structure


def gee_result_at(design: GeeDesign, family: Family | str, corr: CorrelationStructure | str | None,
                  params: Any, corr_params: Any, scale: float, *, link: Any = None,
                  cov_type: str = "robust") -> GeeResult:
    """A result at given coefficients, correlation parameters and scale, without iterating.

    Useful to compare covariance estimators with another program at its own
    estimates (whose moment estimators may differ from geepack's).
    """
    family = get_family(family, link)
    structure = gee_correlation(corr)
    beta = np.asarray(params, dtype=float)
    alpha = np.asarray(corr_params, dtype=float)
    sums = scoring_sums(DesignRows(design), family, structure, alpha, float(scale), beta)
    return GeeResult(design=design, family=family, structure=structure, params_array=beta, scale=float(scale),
                     corr_params=alpha, information=sums.H, meat=sums.M, working=working_arrays(design, family, beta),
                     n_iter=0, converged=True, cov_type=cov_type, scale_fixed=True)


def gee(formula: str, data: Any, *, groups: Any = None, time: Any = None, family: Family | str = "gaussian",
        link: Any = None, corr: CorrelationStructure | str | None = "independence", weights: Any = None,
        offset: Any = None, scale: float | None = None, cov_type: str = "robust", maxiter: int = 100,
        tol: float = 1e-10, moments: str = "geepack", progress: bool | None = None, verbose: bool = False,
        **unknown: Any) -> GeeResult:
    """Fit a marginal model for clustered data by generalized estimating equations.

    The mean is ``g(mu) = X beta`` (plus ``offset``), the variance
    ``phi v(mu) / w``, and rows of one cluster have working correlation
    ``R(alpha)``. ``beta`` solves the quasi-score equations; ``phi`` and
    ``alpha`` are moment estimates from Pearson residuals (geepack's, or R
    gee's with ``moments="gee"``). Standard errors are the robust sandwich
    by default, valid when the working correlation is wrong.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + C(f)"`` (formulaic syntax; no random-effect bars).
    data : data frame, Parquet path, dataset, chunks or Dask frame
        In memory: pandas (or polars / pyarrow). Larger than memory: a
        Parquet file or folder, a ``pyarrow.dataset.Dataset`` or
        :func:`multilevel.chunks`, read chunk by chunk on every iteration
        (the rows of a cluster must be contiguous); a ``dask.dataframe``
        whose partitions each hold whole clusters. Then ``groups``, ``time``,
        ``weights`` and ``offset`` must be column names.
    groups : str, list of str or array
        Cluster of each row (required); clusters may be interleaved and of any size.
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
        Prior weights; for binomial proportions, the numbers of trials. A binomial
        ``cbind(successes, failures) ~ x`` response (geepack's) gives the trials itself,
        multiplying ``weights``.
    offset : str or array, optional
    scale : float, optional
        Fix ``phi`` (``scale=1`` for binomial and Poisson without overdispersion).
    cov_type : str
        Reported covariance: ``"robust"``, ``"naive"``, ``"bias_reduced"``, ``"jackknife"``.
    maxiter, tol : Fisher-scoring limits.
    moments : str
        Whose moment estimators of ``phi`` and ``alpha``
        (:mod:`multilevel.gee.moments` has the formulas). ``"geepack"``
        (default): ``phi = sum w r^2 / sum w``, and ``alpha`` from the
        residuals scaled by that ``phi`` (by the fixed ``scale`` when one is
        given, as geepack's ``scale.fix``). ``"gee"``: R gee's (Carey's),
        ``phi = sum r^2 / (N - p)``; exchangeable ``alpha`` with ``(M - p)
        phi`` in the denominator (``M`` within-cluster pairs); ar1 and
        ``MDependent(m)`` from cluster means of lagged products over cluster
        mean squares, as R gee's ``"AR-M"`` and ``"stat_M_dep"`` (and
        statsmodels' ``Autoregressive`` / ``Stationary`` with
        ``grid=True``); unstructured as R gee's. With a fixed ``scale``, R
        gee fixes ``phi`` in the variance only: the exchangeable ``alpha``
        still uses the estimated ``phi`` (so ``moments="gee", scale=1`` is
        statsmodels' default for binomial and Poisson). Either way an
        ``alpha`` outside the range where the working correlation is
        positive definite is kept just inside it, with a warning.
    progress : bool, optional
        A progress bar over chunks for chunked data (default: on a terminal or in a notebook).
    verbose : bool, default False
        Print each Fisher scoring step (step fraction, largest change, score statistic).

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
    from multilevel.streaming.gee import streamed_gee

    refuse_unknown_keywords(unknown, gee)
    check_moments(moments)
    require_binomial(formula, family)  # a cbind(successes, failures) response
    streamed = streamed_gee(formula, data, groups=groups, time=time, family=family, link=link, corr=corr,
                            weights=weights, offset=offset, scale=scale, cov_type=cov_type, maxiter=maxiter, tol=tol,
                            progress=progress, moments=moments, verbose=verbose)
    if streamed is not None:
        return streamed
    design = gee_design(formula, data, groups=groups, time=time, weights=weights, offset=offset,
                        context=caller_context())
    return fit_gee(design, family, corr, link=link, scale=scale, cov_type=cov_type, maxiter=maxiter, tol=tol,
                   moments=moments, verbose=verbose)
