"""Fitting linear mixed models: formula front end and array-level entry point.

The pipeline, each stage usable alone (as lme4's lFormula -> mkLmerDevfun ->
optimizeLmer -> mkMerMod):

1. :func:`~multilevel.lmm.design.lmm_design`: formula + data -> arrays;
2. :func:`lmm_core`: arrays -> the C++ object holding ``[Z X y]'W[Z X y]``;
3. :func:`~multilevel.optimize.minimize_bobyqa` over theta;
4. :class:`~multilevel.lmm.result.LmmResult`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from multilevel import _core
from multilevel.formula import caller_context
from multilevel.inference.ddf import check_ddf
from multilevel.lmm.design import LmmDesign, RandomTerm, lmm_design
from multilevel.lmm.response_shift import shifted_core
from multilevel.lmm.result import LmmResult
from multilevel.lmm.theta import theta_lower_bounds, theta_scales, theta_start
from multilevel.optimize import OptSummary, check_optimizer_options, minimize_bobyqa, newton_polish
from multilevel.progress import progress_bar, progress_enabled


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting its tolerances."""


class SingularFitWarning(UserWarning):
    """A variance component is on the boundary of the parameter space."""


def lmm_core(design: LmmDesign, storage: str = "auto", response: np.ndarray | None = None) -> Any:
    """Build the C++ model object (one pass over the rows) for a design; ``response``
    replaces the design's (before its offset is taken off), as the bootstrap does."""
    y = design.response_minus_offset() if response is None else (
        response if design.offset is None else response - design.offset)
    weights = design.weights if design.weights is not None else np.empty(0)

    def build(response: np.ndarray) -> Any:
        return _core.LmmCore(response, design.X, weights, [t.codes for t in design.terms],
                             [t.z for t in design.terms], [t.nlevels for t in design.terms], storage)

    return shifted_core(build, np.asarray(y, dtype=float), design.X, design.weights)


def fit_design(design: LmmDesign, *, reml: bool = True, start: np.ndarray | None = None,
               storage: str = "auto", progress: bool | None = False, ddf: str = "normal",
               **optimizer_options: Any) -> LmmResult:
    """Fit a linear mixed model from a prepared :class:`LmmDesign`."""
    return fit_core(design, lmm_core(design, storage), reml=reml, start=start, progress=progress, ddf=ddf,
                    **optimizer_options)


def fit_core(design: Any, core: Any, *, reml: bool, start: np.ndarray | None = None,
             progress: bool | None = False, ddf: str = "normal", **optimizer_options: Any) -> LmmResult:
    """Optimize theta on a built core and make the result (shared by in-memory and chunked fits).

    ``design`` is an :class:`LmmDesign` or a
    :class:`~multilevel.lmm.design.RowlessLmmDesign` (labels only).
    """
    ddf = check_ddf(ddf)  # before the fit: a misspelled method must not cost an optimization
    if not isinstance(reml, (bool, np.bool_)):
        raise TypeError(f"reml must be True or False, not {reml!r}")
    scales = theta_scales(design.terms)
    try:
        x0 = theta_start(design.terms) * scales if start is None else np.atleast_1d(np.asarray(start, dtype=float))
    except (TypeError, ValueError):
        raise TypeError(f"start must be {design.ntheta} numbers (theta), not {start!r}") from None
    if x0.size != design.ntheta:
        raise ValueError(f"start has {x0.size} values; the model has {design.ntheta} theta parameters")
    bar = progress_bar("optimizing theta", progress_enabled(progress), unit="eval")

    def objective(theta: np.ndarray) -> float:
        bar.update(1)
        return core.objective(theta, reml)

    try:
        options = {"initial_step": 0.75 * scales, **optimizer_options}
        optsum = minimize_bobyqa(objective, x0, theta_lower_bounds(design.terms), **options)
        if optsum.converged:  # BOBYQA stops on the objective; Newton steps converge in theta
            optsum = newton_polish(objective, optsum, scale=scales)
    finally:
        bar.close()
    result = LmmResult(design, core, reml, optsum)
    if not result.converged:
        warnings.warn(f"the optimizer did not converge: {optsum.message}", ConvergenceWarning, stacklevel=3)
    if result.singular:
        warnings.warn("boundary (singular) fit: see result.singular and result.varcorr",
                      SingularFitWarning, stacklevel=3)
    return result if ddf == "normal" else result.with_ddf(ddf)


def result_at_theta(design: LmmDesign, theta: Any, *, reml: bool = True, storage: str = "auto") -> LmmResult:
    """A result evaluated at a given theta, without optimizing.

    Useful to compare with another program's estimates at its own theta, or
    to inspect the fit along a profile.

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> from multilevel.lmm import lmm_design
    >>> d = lmm_design("Yield ~ 1 + (1 | Batch)", load_dataset("Dyestuff"))
    >>> round(result_at_theta(d, [0.5]).objective, 4)
    320.8791
    """
    core = lmm_core(design, storage)
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    if theta.size != design.ntheta:
        raise ValueError(f"theta has {theta.size} values; the model has {design.ntheta}")
    optsum = OptSummary(optimizer="none (theta given)", initial=theta, lower=theta_lower_bounds(design.terms),
                        final=theta, fmin=float(core.objective(theta, reml)), feval=1, return_code=1,
                        message="theta given", elapsed=0.0, ftol_rel=0.0, ftol_abs=0.0, xtol_abs=0.0, maxeval=0)
    return LmmResult(design, core, reml, optsum)


def lmm(formula: str, data: Any, *, reml: bool = True, weights: Any = None, offset: Any = None,
        start: np.ndarray | None = None, progress: bool | None = None, ddf: str = "normal",
        corr: Any = None, time: Any = None, variance: Any = None, corr_groups: Any = None,
        **optimizer_options: Any) -> LmmResult:
    """Fit a linear mixed model ``y = X beta + Z b + e`` by REML or ML.

    Parameters
    ----------
    formula : str
        Fixed part in Wilkinson/formulaic syntax plus lme4 random-effects
        terms: ``(1 | g)``, ``(1 + x | g)``, ``(0 + x | g)``, ``(x || g)``
        (uncorrelated), ``(1 | g1/g2)`` (nested), ``(1 | g1:g2)``; crossed
        factors are separate terms.
    data : data frame, Parquet path, dataset, chunks or Dask frame
        In memory: a pandas DataFrame (or polars / pyarrow table). Larger
        than memory: a path to a Parquet file or folder, a
        ``pyarrow.dataset.Dataset`` or :func:`multilevel.chunks`, read in
        chunks (two passes: levels, then sums), keeping no per-row array.
        On a cluster: a ``dask.dataframe.DataFrame``, summed on the workers.
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights : column name or array, optional
        Prior weights: the residual variance of row i is ``sigma^2 / w_i``.
        A column name for chunked and Dask data.
    offset : column name or array, optional
        Known term added to the linear predictor (a column name for chunked and Dask data).
    start : array, optional
        Starting theta (default: identity relative covariance factors).
    progress : bool, optional
        A progress bar over chunks and optimizer evaluations for fits longer
        than two seconds; default: on a terminal or in a notebook.
    ddf : {"normal", "satterthwaite", "kenward-roger"}, default "normal"
        Denominator degrees of freedom of the t tests (see
        :meth:`~multilevel.lmm.result.LmmResult.with_ddf`).
    corr : str or CorrelationStructure, optional
        Residual correlation within ``corr_groups``, as in :func:`multilevel.gls`
        (``"ar1"``, ``"car1"``, ``"exchangeable"``, ``"unstructured"``,
        ``MDependent(m)``, ``Fixed(matrix)``), as nlme's ``lme(correlation=)``.
    time : str, optional
        Column placing each row in its residual group (integer for ar1 and
        unstructured, gaps allowed; continuous for car1); default the row order.
    variance : VarianceFunction, optional
        ``VarIdent(column)``, ``VarPower(covariate)``, ``VarExp(covariate)``
        (nlme's ``weights=``).
    corr_groups : str or list of str, optional
        Residual groups; default the innermost grouping factor. They must be
        nested in every grouping factor. With any of these four arguments the
        fit returns a :class:`~multilevel.lmm.residual.ResidualLmmResult`
        (data in memory).
    **optimizer_options
        ``ftol_rel``, ``ftol_abs``, ``xtol_abs``, ``initial_step``, ``maxeval`` for BOBYQA;
        ``verbose=True`` prints each evaluation of the objective (``verbose=2`` with theta), as lme4's.

    Returns
    -------
    LmmResult

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> round(float(fit.params["Days"]), 3)
    10.467
    """
    check_optimizer_options(optimizer_options, lmm)
    if not isinstance(reml, (bool, np.bool_)):
        raise TypeError(f"reml must be True or False, not {reml!r}")
    if any(a is not None for a in (corr, time, variance, corr_groups)):
        from multilevel.lmm.residual import residual_lmm
        from multilevel.streaming.sources import is_streaming_source

        if is_streaming_source(data):
            raise ValueError("corr=, time=, variance= and corr_groups= need the data in memory (a data frame); "
                             "chunked and Dask fits have independent residuals")
        fit = residual_lmm(formula, data, corr=corr, time=time, variance=variance, corr_groups=corr_groups,
                           reml=reml, weights=weights, offset=offset, context=caller_context(), **optimizer_options)
        return fit if check_ddf(ddf) == "normal" else fit.with_ddf(ddf)
    from multilevel.streaming.lmm import streamed_lmm_core

    streamed = streamed_lmm_core(formula, data, weights=weights, offset=offset, progress=progress)
    if streamed is not None:
        design, core = streamed
        return fit_core(design, core, reml=reml, start=start, progress=progress, ddf=ddf, **optimizer_options)
    design = lmm_design(formula, data, weights=weights, offset=offset, context=caller_context())
    return fit_design(design, reml=reml, start=start, progress=progress, ddf=ddf, **optimizer_options)


def fit_lmm(y: Any, X: Any, random_terms: Sequence[RandomTerm], *, reml: bool = True,
            weights: Any = None, offset: Any = None, fixed_names: Sequence[str] | None = None,
            response: str = "y", start: np.ndarray | None = None, ddf: str = "normal",
            **optimizer_options: Any) -> LmmResult:
    """Array-level fit for front ends without formulas or pandas.

    Parameters
    ----------
    y : (n,) array
    X : (n, p) array of fixed-effect columns (include a column of ones for an intercept)
    random_terms : list of :class:`RandomTerm`
        Each with integer codes (n,), its columns z (n, p_k), a group name and column names.
    reml, weights, offset, start, ddf, **optimizer_options : as in :func:`lmm`
    fixed_names : names of the columns of X (default ``x0, x1, ...``)

    Examples
    --------
    >>> import numpy as np
    >>> from multilevel import fit_lmm, RandomTerm
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 10)
    >>> y = 1.0 + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> fit = fit_lmm(y, np.ones((200, 1)), [RandomTerm(g, np.ones((200, 1)), "g", ["Intercept"])])
    >>> fit.params.index.tolist()
    ['x0']
    """
    check_optimizer_options(optimizer_options, fit_lmm)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    names = list(fixed_names) if fixed_names is not None else [f"x{j}" for j in range(X.shape[1])]
    design = LmmDesign(y=np.asarray(y, dtype=float), X=X, fixed_names=names, terms=list(random_terms),
                       weights=weights, offset=offset, response=response)
    return fit_design(design, reml=reml, start=start, ddf=ddf, **optimizer_options)
