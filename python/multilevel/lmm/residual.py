"""Residual correlation and variance functions inside linear mixed models, as nlme's ``lme``.

``y = X beta + Z b + e`` with ``Var(e_j) = sigma^2 G_j R_j(rho) G_j`` within
residual groups ``j`` nested in every grouping factor (``G_j`` from a
variance function, ``R_j`` from a correlation structure of ``gls``/``gee``).

Whitening each residual group's rows by ``W_j G_j^-1`` (``W_j' W_j = R_j^-1``)
turns the model into an ordinary LMM with independent residuals: ``y*``,
``X*`` and every term's ``z*`` are the whitened rows, and because a residual
group lies inside one level of each grouping factor the codes are unchanged.
The (restricted) deviance is the whitened model's plus the Jacobian
``log det R + 2 sum log g``. So the residual structure is a parameter of
the accumulation: for each value of ``(rho, delta)`` the rows are whitened
and summed once into the usual core, theta is optimized on it (warm-started),
and an outer BOBYQA optimizes ``(rho, delta)`` on nlme's unconstrained scale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from multilevel import _core
from multilevel.clusters import ClusterLayout
from multilevel.correlation import KIND_CAR1, CorrelationStructure, Independence, cluster_matrix, get_correlation
from multilevel.frames import as_pandas, drop_missing, require_columns
from multilevel.gls.fit import UNCONSTRAINED_BOUND
from multilevel.grouping import make_grouping
from multilevel.inference.kenward_roger import kenward_roger
from multilevel.inference.satterthwaite import VarparSensitivity, solve_core, varpar_sensitivity
from multilevel.lmm.conditional import full_conditional_covariances
from multilevel.lmm.design import LmmDesign, lmm_design
from multilevel.lmm.result import LmmResult
from multilevel.lmm.theta import term_lambdas, theta_lower_bounds, theta_scales, theta_start
from multilevel.optimize import OptSummary, minimize_bobyqa, minimize_bobyqa_restarted, newton_polish
from multilevel.variance import BoundVariance, VarianceFunction, get_variance


@dataclass
class ResidualModel:
    """A residual structure bound to the rows of a design.

    Attributes
    ----------
    structure : the correlation structure
    layout : residual groups and positions of the design's rows
    variance : the variance function bound to the rows
    group : name of the residual groups
    labels : label of each residual group
    prior_weights : (n,) or None, folded into the standard-deviation factors as ``1 / sqrt(w)``
    time : name of the time column, or None
    """

    structure: CorrelationStructure
    layout: ClusterLayout
    variance: BoundVariance
    group: str
    labels: pd.Index
    prior_weights: np.ndarray | None = None
    time: str | None = None

    @property
    def ncorr(self) -> int:
        return self.structure.nparams(self.layout.npositions)

    @property
    def nparams(self) -> int:
        return self.ncorr + self.variance.nparams

    @property
    def max_size(self) -> int:
        return int(self.layout.sizes.max(initial=0))

    def split(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correlation and variance parameters from the unconstrained vector."""
        u = np.asarray(u, dtype=float)
        corr = self.structure.from_unconstrained(u[:self.ncorr], self.max_size) if self.ncorr else np.zeros(0)
        return corr, self.variance.from_unconstrained(u[self.ncorr:])

    def start(self) -> np.ndarray:
        return np.concatenate([np.zeros(self.ncorr), self.variance.to_unconstrained(self.variance.start)])

    def sd_factors(self, var: np.ndarray) -> np.ndarray:
        g = self.variance.sd_factors(var)
        return g if self.prior_weights is None else g / np.sqrt(self.prior_weights)

    def whiten(self, u: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Rows ``W_j G_j^-1 columns_j`` and the Jacobian ``log det R + 2 sum log g``; None where ``R_j`` or
        ``G`` is not valid.

        Parameters
        ----------
        u : (nparams,) unconstrained parameters
        columns : (n, k) float64 rows to whiten
        """
        corr, var = self.split(u)
        g = self.sd_factors(var)
        if not np.all(np.isfinite(g)) or np.any(g <= 0):
            return None
        lay = self.layout
        kind, alpha, table = self.structure.core_arguments(corr, lay.npositions)
        scaled = columns / g[:, None]
        white, failed, logdet = _core.whiten_rows(scaled, lay.order, lay.ptr, lay.position, kind, alpha, table,
                                                  lay.time_or_empty())
        if failed >= 0:
            return None
        return white, float(logdet) + 2.0 * float(np.sum(np.log(g)))

    def covariance(self, u: np.ndarray, sigma: float, rows: np.ndarray) -> np.ndarray:
        """``sigma^2 G R G`` of the given rows (block diagonal over their residual groups)."""
        corr, var = self.split(u)
        g = self.sd_factors(var)
        out = np.zeros((rows.size, rows.size))
        where = {int(r): i for i, r in enumerate(rows)}
        for j in np.unique(self.layout.codes[rows]):
            r, grows = cluster_matrix(self.structure, corr, self.layout, int(j))
            idx = np.array([where[int(x)] for x in grows if int(x) in where])
            keep = np.array([int(x) in where for x in grows])
            sub = r[np.ix_(keep, keep)] * np.outer(g[grows[keep]], g[grows[keep]])
            out[np.ix_(idx, idx)] = sigma**2 * sub
        return out


def residual_patterns(residual: ResidualModel) -> list[tuple[int, np.ndarray]]:
    """The residual groups with one ``R_j`` pattern (the same positions, or times for a continuous-time
    AR(1)): for each, one of its groups (``R_j`` is that group's) and the rows of all, (count, size)."""
    lay = residual.layout
    by_pattern: dict[bytes, tuple[int, list[np.ndarray]]] = {}
    for j in range(lay.nclusters):
        rows = lay.order[lay.ptr[j]:lay.ptr[j + 1]]
        key = (lay.time_values[rows] if residual.structure.kind == KIND_CAR1 else lay.position[rows]).tobytes()
        by_pattern.setdefault(key, (j, []))[1].append(rows)
    return [(j, np.vstack(rows)) for j, rows in by_pattern.values()]


class ResidualNoise:
    """Draws ``e ~ N(0, G R G)`` (sigma one) at fixed residual parameters.

    The Cholesky factor of ``R_j`` is taken once per pattern of positions (:func:`residual_patterns`),
    so balanced panels factor one matrix; each draw then colours the residual groups of a pattern together.
    """

    def __init__(self, residual: ResidualModel, u: np.ndarray) -> None:
        corr, var = residual.split(u)
        self.g = residual.sd_factors(var)
        self.nobs = residual.layout.codes.size
        self.patterns = [(np.linalg.cholesky(cluster_matrix(residual.structure, corr, residual.layout, j)[0]), rows)
                         for j, rows in residual_patterns(residual)]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal(self.nobs)
        out = np.empty(self.nobs)
        for factor, rows in self.patterns:
            out[rows] = z[rows] @ factor.T
        return self.g * out


def residual_statistic(fit: ResidualLmmResult) -> pd.Series:
    """The bootstrap's default statistics of a residual fit: sd/cor, sigma, correlation and variance
    parameters, fixed effects."""
    from multilevel.inference.bootstrap import default_statistic

    plain = default_statistic(fit)
    nvar = len(fit.design.fixed_names)
    extra = pd.Series(np.concatenate([fit.corr_params, fit.variance_params.to_numpy()]),
                      index=fit.structure.param_names(fit.residual.layout.npositions) + list(fit.variance_params.index))
    return pd.concat([plain.iloc[:-nvar], extra, plain.iloc[-nvar:]])


def _stacked_columns(design: LmmDesign) -> tuple[np.ndarray, list[int]]:
    """``[y - offset | X | z_1 | ... | z_K]`` (n, k) and the start of each block."""
    blocks = [design.response_minus_offset()[:, None], np.asarray(design.X, dtype=float)]
    blocks += [np.asarray(t.z, dtype=float).reshape(design.nobs, t.p) for t in design.terms]
    starts = np.cumsum([0] + [b.shape[1] for b in blocks]).tolist()
    return np.hstack(blocks), starts


#: BOBYQA's tolerances for theta inside the outer search, and the outer search's own (see fit_residual_lmm).
INNER_SEARCH_TOLERANCES = {"xtol_abs": 1e-5, "ftol_rel": 1e-11}
OUTER_SEARCH_TOLERANCES = {"ftol_rel": 1e-9, "initial_step": 0.5}


class ResidualLmmObjective:
    """The deviance profiled over theta, as a function of the residual parameters."""

    def __init__(self, design: LmmDesign, residual: ResidualModel, reml: bool, cache_size: int | None = None
                 ) -> None:
        self.design = design
        self.residual = residual
        self.reml = reml
        self.columns, self.starts = _stacked_columns(design)
        self.lower = theta_lower_bounds(design.terms)
        self.scales = theta_scales(design.terms)
        self.theta = theta_start(design.terms) * self.scales
        self.first = True
        self.best = (np.inf, self.theta)  # the lowest outer value yet, and its theta
        self._cores: dict[bytes, tuple[Any, float] | None] = {}
        self.cache_size = 2 * residual.nparams + 2 if cache_size is None else cache_size

    def core(self, u: np.ndarray) -> tuple[Any, float] | None:
        """The whitened model's core at ``u`` and the Jacobian term."""
        out = self.residual.whiten(u, self.columns)
        if out is None:
            return None
        white, jacobian = out
        s = self.starts
        z = [white[:, s[2 + k]:s[3 + k]] for k in range(len(self.design.terms))]
        core = _core.LmmCore(np.ascontiguousarray(white[:, 0]), np.ascontiguousarray(white[:, s[1]:s[2]]),
                             np.empty(0), [t.codes for t in self.design.terms], [np.ascontiguousarray(a) for a in z],
                             [t.nlevels for t in self.design.terms], "auto")
        return core, jacobian

    def cached_core(self, u: np.ndarray) -> tuple[Any, float] | None:
        """:meth:`core`, kept for the last few ``u`` (a joint Newton step differences each coordinate of
        ``u`` once, then moves theta on those cores)."""
        key = np.asarray(u, dtype=float).tobytes()
        if key not in self._cores:
            if len(self._cores) >= self.cache_size:
                self._cores.pop(next(iter(self._cores)))
            self._cores[key] = self.core(u)
        return self._cores[key]

    def deviance(self, theta: np.ndarray, u: np.ndarray) -> float:
        """-2 (restricted) log-likelihood at ``theta`` and the residual parameters ``u``, beta and sigma
        profiled out (to compare with another program at its estimates)."""
        built = self.cached_core(u)
        if built is None:
            return np.inf
        core, jacobian = built
        return float(core.objective(np.asarray(theta, dtype=float), self.reml)) + jacobian

    def joint(self, x: np.ndarray) -> float:
        """:meth:`deviance` at ``x = (theta, u)``."""
        k = self.theta.size
        return self.deviance(x[:k], x[k:])

    def optimize_theta(self, core: Any, start: np.ndarray, **options: Any) -> OptSummary:
        # Loose: the outer search only needs the profiled deviance to about 1e-11 relative, and the joint
        # Newton polish after it finishes theta and the residual parameters together.
        return minimize_bobyqa(lambda t: core.objective(t, self.reml), start, self.lower,
                               **{**INNER_SEARCH_TOLERANCES, **options})

    def __call__(self, u: np.ndarray) -> float:
        built = self.cached_core(u)  # kept: the joint polish starts from the best of these
        if built is None:
            return np.inf
        core, jacobian = built
        # The first inner fit starts as a plain fit does; later ones from the last theta.
        opt = self.optimize_theta(core, self.theta, initial_step=(0.75 if self.first else 0.03) * self.scales)
        self.first = False
        if np.isfinite(opt.fmin):
            self.theta = np.asarray(opt.final)
        value = float(opt.fmin) + jacobian
        if value < self.best[0]:
            self.best = (value, self.theta)
        return value


class ResidualLmmResult(LmmResult):
    """A linear mixed model with a residual correlation structure and/or variance function.

    Adds :attr:`corr_params`, :attr:`variance_params`, the residual model and
    the outer optimizer's record (``residual_optsum``) to :class:`LmmResult`;
    ``marginal_cov`` includes the residual covariance, Satterthwaite's df and the cluster-robust
    covariance use it.
    """

    def __init__(self, design: LmmDesign, core: Any, reml: bool, optsum: OptSummary, residual: ResidualModel,
                 u: np.ndarray, jacobian: float, residual_optsum: OptSummary) -> None:
        super().__init__(design, core, reml, optsum)
        self.residual = residual
        self.residual_u = np.asarray(u, dtype=float)
        self.residual_optsum = residual_optsum
        self.objective = self.objective + jacobian
        corr, var = residual.split(u)
        self.corr_params: np.ndarray = corr
        self.variance_params = pd.Series(var, index=residual.variance.names, name="variance_params", dtype=float)

    @property
    def structure(self) -> CorrelationStructure:
        return self.residual.structure

    @property
    def df_model(self) -> int:
        return super().df_model + self.residual.nparams

    @property
    def converged(self) -> bool:
        return self.optsum.converged and self.residual_optsum.converged

    def _kenward_roger(self) -> Any:
        """Kenward-Roger's ingredients with the residual parameters (nlme's natural scale) among the variance
        parameters, their second-derivative term included (:mod:`multilevel.lmm.residual_whitening`)."""
        from multilevel.lmm.residual_whitening import whiten_residual  # it imports this module

        white = whiten_residual(self.design, self.residual, self.residual_u)
        return kenward_roger(white.design, term_lambdas(self.design.terms, self._theta), self.sigma,
                             white.derivatives)

    def _varpar_sensitivity(self) -> VarparSensitivity:
        """Satterthwaite's ingredients in ``(theta, residual parameters, sigma)``: the deviance keeps the form
        ``A + B / sigma^2 + c log(2 pi sigma^2)``, ``A`` with the Jacobian term, so each step in the residual
        parameters is one whitening pass and a new core (see :func:`varpar_sensitivity`)."""
        k = self._theta.size
        objective = ResidualLmmObjective(self.design, self.residual, self.reml, cache_size=SENSITIVITY_CORES)

        def solve_at(x: np.ndarray) -> Any:
            built = objective.cached_core(x[k:])
            if built is None:
                raise FloatingPointError("the residual covariance is not positive definite next to the estimates; "
                                         "Satterthwaite's df are not available for this fit")
            core, jacobian = built
            return solve_core(core, x[:k], self.reml, jacobian)

        return varpar_sensitivity(self._core, np.concatenate([self._theta, self.residual_u]), self.sigma, self.reml,
                                  solve_at)

    def _ml_refit(self) -> ResidualLmmResult:
        """The same model, residual structure included, fitted by ML (a variance covariate of the fitted
        values stays at this fit's)."""
        return fit_residual_lmm(self.design, self.residual, reml=False)

    def _relative_residual_cov(self, rows: np.ndarray) -> np.ndarray:
        """``G R G`` of the given rows (block diagonal over their residual groups, prior weights folded in)."""
        return self.residual.covariance(self.residual_u, 1.0, rows)

    def _new_profile(self, ml_fit: Any) -> Any:
        """The profile with the correlation and variance parameters after sigma
        (:mod:`multilevel.lmm.residual_profile`)."""
        from multilevel.lmm.residual_profile import ResidualLmmProfile

        return ResidualLmmProfile(ml_fit)

    def bootstrap(self, nsim: int, *, seed: Any = None, kind: str = "parametric", threads: int | None = None,
                  statistic: Any = None) -> Any:
        """Parametric bootstrap as :meth:`LmmResult.bootstrap <multilevel.lmm.result.LmmResult.bootstrap>`,
        the residuals drawn from ``N(0, sigma^2 G_j R_j G_j)`` per residual group and each replicate refitted
        with its residual structure (a variance covariate of the fitted values stays at this fit's).

        The default statistics add the correlation and variance parameters to the sd/cor, sigma and
        fixed-effect rows.

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("distance ~ age + (1 | Subject)", load_dataset("Orthodont"), corr="ar1")
        >>> fit.bootstrap(4, seed=1).replicates.columns[-3:].tolist()
        ['alpha', 'Intercept', 'age']
        """
        from multilevel.inference.bootstrap import ResponseSimulator, parametric_bootstrap

        if kind != "parametric":
            raise ValueError(f"unknown kind {kind!r}; only 'parametric' is available")
        noise = ResidualNoise(self.residual, self.residual_u)
        simulator = ResponseSimulator(self, noise=lambda rng: self.sigma * noise.draw(rng))
        statistic_of = statistic if statistic is not None else residual_statistic

        def refit(y: np.ndarray) -> tuple[np.ndarray, bool]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # counted through the converged flags
                again = fit_residual_lmm(replace(self.design, y=y), self.residual, reml=self.reml)
            return np.asarray(statistic_of(again), dtype=float), again.converged

        return parametric_bootstrap(self, nsim, seed=seed, threads=threads, statistic=statistic_of,
                                    simulator=simulator, refit=refit)

    def ranef_condvar(self, full: bool = False) -> dict[str, pd.DataFrame] | dict[str, np.ndarray]:
        """As :meth:`LmmResult.ranef_condvar <multilevel.lmm.result.LmmResult.ranef_condvar>`; with
        ``full=True`` the covariances between terms sharing a grouping factor come from the whitened rows
        (the model the fit's core holds).

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("distance ~ age + (age || Subject)", load_dataset("Orthodont"), corr="ar1")
        >>> fit.ranef_condvar(full=True)["Subject"].shape
        (27, 2, 2)
        """
        if not full:
            return super().ranef_condvar()
        self._core.solve(self._theta, self.reml)  # the core's factor must be at theta
        terms = self.design.terms

        def rows() -> tuple[list[np.ndarray], np.ndarray | None]:
            n = self.design.nobs
            whitened = self.residual.whiten(self.residual_u,
                                            np.hstack([np.asarray(t.z, dtype=float).reshape(n, t.p) for t in terms]))
            if whitened is None:
                raise ValueError("the residual structure is not valid at the fitted parameters")
            # prior weights are folded into the whitening, as in ResidualLmmObjective.core
            return np.hsplit(whitened[0], np.cumsum([t.p for t in terms])[:-1]), None

        return full_conditional_covariances(terms, self._theta, self.sigma, self._core, rows)

    def icc(self) -> pd.Series:
        raise ValueError("the intraclass correlation is not defined with a residual correlation structure or "
                         "variance function (the residual variance differs between rows); see marginal_cov()")


def _residual_groups(design: LmmDesign, df: pd.DataFrame, corr_groups: Any) -> tuple[np.ndarray, int, pd.Index, str]:
    """Codes of the residual groups: ``corr_groups``' levels, or the innermost grouping factor's."""
    if corr_groups is None:
        inner = max(design.terms, key=lambda t: t.nlevels)
        return np.asarray(inner.codes, dtype=np.int32), inner.nlevels, pd.Index(inner.levels), inner.group
    cols = (corr_groups,) if isinstance(corr_groups, str) else tuple(corr_groups)
    grouping = make_grouping(df, cols)
    return grouping.codes, grouping.nlevels, pd.Index(grouping.levels), grouping.name


def _check_nested(design: LmmDesign, codes: np.ndarray, labels: pd.Index, name: str) -> None:
    for t in design.terms:
        spread = pd.Series(t.codes).groupby(codes).nunique()
        if (spread > 1).any():
            j = int(spread.index[np.flatnonzero(spread.to_numpy() > 1)[0]])
            raise ValueError(f"the residual groups {name!r} must be nested in every grouping factor, but group "
                             f"{labels[j]!r} spans several levels of {t.group!r}; pass corr_groups= a factor "
                             f"nested in {t.group!r}")


def residual_model(design: LmmDesign, df: pd.DataFrame, *, corr: Any, time: Any, variance: Any,
                   corr_groups: Any, fitted: np.ndarray | None = None) -> ResidualModel:
    """Bind a correlation structure and a variance function to the rows of ``design`` (``df``: its rows;
    ``fitted``: the covariate of a variance function of the fitted values)."""
    from multilevel.gls.design import gls_layout

    structure = get_correlation(corr)
    codes, nclusters, labels, name = _residual_groups(design, df, corr_groups)
    _check_nested(design, codes, labels, name)
    time_values = None
    if time is not None:
        if not isinstance(time, str):
            raise TypeError(f"time must be a column name, not {type(time).__name__}")
        time_values = df[time].to_numpy()
        if not np.issubdtype(time_values.dtype, np.number):
            raise ValueError(f"time column {time!r} has dtype {time_values.dtype}; it must be numeric")
    try:
        layout = gls_layout(structure, codes, nclusters, time_values, np.asarray(labels))
    except ValueError as exc:
        raise ValueError(f"time column {time!r}: {exc}" if time is not None else str(exc)) from exc
    var_fun = get_variance(variance)
    bound = var_fun.bind_values(fitted) if var_fun.uses_fitted else var_fun.bind(df)
    weights = None if design.weights is None else np.asarray(design.weights, dtype=float)
    return ResidualModel(structure, layout, bound, name, labels, weights, time)


def fit_residual_lmm(design: LmmDesign, residual: ResidualModel, *, reml: bool = True,
                     **optimizer_options: Any) -> ResidualLmmResult:
    """Search the residual parameters outside and theta inside, then polish both together (module notes).

    The search is loose (:data:`OUTER_SEARCH_TOLERANCES`, :data:`INNER_SEARCH_TOLERANCES`): Newton steps
    on ``(theta, u)`` jointly converge in a few steps from its end, where tight nested searches take
    about three times the evaluations. Where Newton finds no descent (a ridge, a bound) the outer
    search is redone tightly from its end, restarted once with a small trust region (BOBYQA alone can
    stop 1e-6 short in log-likelihood on a flat variance parameter, as BodyWeight's varPower).
    """
    from multilevel.lmm.fit import ConvergenceWarning, SingularFitWarning

    objective = ResidualLmmObjective(design, residual, reml)
    u0 = residual.start()
    lower = np.full(u0.size, -UNCONSTRAINED_BOUND)
    if u0.size:
        outer = minimize_bobyqa(objective, u0, lower, **{**OUTER_SEARCH_TOLERANCES, **optimizer_options})
    else:
        outer = _fit_theta_only(objective, u0)
    polished = _polish_jointly(objective, outer)
    if polished.polish_steps == 0 and u0.size:
        retry = minimize_bobyqa_restarted(objective, outer.final, lower,
                                          **{"initial_step": 0.05, "restarts": 1, "restart_step": 0.01,
                                             **optimizer_options})
        outer = replace(retry, initial=outer.initial, feval=outer.feval + polished.feval + retry.feval,
                        history=list(outer.history) + polished.history + retry.history)
        polished = _polish_jointly(objective, outer)
    inner, outer, u = _split_joint_summary(objective, outer, polished)
    built = objective.cached_core(u)
    if built is None:
        raise FloatingPointError("the residual covariance is not positive definite at the optimizer's final "
                                 "parameters")
    core, jacobian = built
    result = ResidualLmmResult(design, core, reml, replace(inner, fmin=inner.fmin - jacobian), residual, u,
                               jacobian, outer)
    if not result.converged:
        warnings.warn(f"the optimizer did not converge: {outer.message}", ConvergenceWarning, stacklevel=3)
    if result.singular:
        warnings.warn("boundary (singular) fit: see result.singular and result.varcorr", SingularFitWarning,
                      stacklevel=3)
    return result


def _fit_theta_only(objective: ResidualLmmObjective, u0: np.ndarray) -> OptSummary:
    """No residual parameter to search (a Fixed correlation alone): theta fitted as a plain fit's is,
    recorded as the outer search's one evaluation."""
    built = objective.cached_core(u0)
    if built is None:
        raise FloatingPointError("the fixed residual covariance is not positive definite")
    core, jacobian = built
    inner = minimize_bobyqa(lambda t: core.objective(t, objective.reml), objective.theta, objective.lower,
                            initial_step=0.75 * objective.scales)
    objective.best = (inner.fmin + jacobian, np.asarray(inner.final))
    return replace(inner, optimizer=f"{inner.optimizer} on theta (no residual parameters)", initial=u0, lower=u0,
                   final=u0, fmin=inner.fmin + jacobian, feval=1, history=[inner.fmin + jacobian])


def _polish_jointly(objective: ResidualLmmObjective, outer: OptSummary) -> OptSummary:
    """Newton steps on ``(theta, u)`` from the outer search's best point (its theta from the inner fit there)."""
    x0 = np.concatenate([objective.best[1], outer.final])
    lower = np.concatenate([objective.lower, outer.lower])
    start = replace(outer, initial=x0, lower=lower, final=x0, fmin=objective.joint(x0), feval=0, history=[])
    return newton_polish(objective.joint, start, scale=np.concatenate([objective.scales, np.ones(outer.final.size)]),
                         max_steps=JOINT_NEWTON_STEPS)


def _split_joint_summary(objective: ResidualLmmObjective, outer: OptSummary, polished: OptSummary
                         ) -> tuple[OptSummary, OptSummary, np.ndarray]:
    """The theta and residual-parameter records of a joint polish (theta's ``fmin`` still with the Jacobian)."""
    k = objective.theta.size
    x, g = np.asarray(polished.final), polished.gradient
    inner = replace(polished, initial=polished.initial[:k], lower=polished.lower[:k], final=x[:k],
                    gradient=None if g is None else g[:k])
    search = outer.optimizer if k == x.size else f"{outer.optimizer} over the residual parameters (theta fitted at each)"
    outer = replace(outer, optimizer=search + (", joint Newton polish" if polished.polish_steps else ""),
                    final=x[k:], fmin=polished.fmin,
                    feval=outer.feval + polished.feval, history=list(outer.history) + polished.history,
                    gradient=None if g is None else g[k:], polish_steps=polished.polish_steps)
    return inner, outer, x[k:]


#: Cores kept by Satterthwaite's differences: every distinct step in the residual parameters.
SENSITIVITY_CORES = 64

#: Newton steps of the joint polish at most (from the loose search's end it takes two or three).
JOINT_NEWTON_STEPS = 8


def residual_lmm(formula: str, data: Any, *, corr: Any, time: Any, variance: VarianceFunction | None,
                 corr_groups: Any, reml: bool, weights: Any, offset: Any, context: Any = None,
                 **optimizer_options: Any) -> ResidualLmmResult:
    """:func:`multilevel.lmm` with ``corr``/``time``/``variance``/``corr_groups`` (in memory);
    ``context`` is the caller's scope for names in the formula."""
    df = as_pandas(data)
    var_fun = get_variance(variance)
    extra = [c for c in ([time] if isinstance(time, str) else []) + list(var_fun.columns)
             + ([corr_groups] if isinstance(corr_groups, str) else list(corr_groups or [])) if c is not None]
    require_columns([c for c in extra if c not in df.columns], df, "the residual structure")
    df, _, _ = drop_missing(df, list(dict.fromkeys(extra)), {})
    design = lmm_design(formula, df, weights=weights, offset=offset, context=context)
    rows = df.loc[design.row_index]
    corr = corr if corr is not None else Independence()

    def fit_with(fitted: np.ndarray | None) -> ResidualLmmResult:
        residual = residual_model(design, rows, corr=corr, time=time, variance=var_fun, corr_groups=corr_groups,
                                  fitted=fitted)
        return fit_residual_lmm(design, residual, reml=reml, **optimizer_options)

    if not var_fun.uses_fitted:
        return fit_with(None)
    return fit_on_own_fitted_values(fit_with, fit_design_plain(design, reml))


#: Refits of a variance function of the fitted values, and the change of its parameters that ends them.
FITTED_COVARIATE_MAX_REFITS, FITTED_COVARIATE_TOL = 100, 1e-6


def fit_design_plain(design: LmmDesign, reml: bool) -> np.ndarray:
    """Conditional fitted values of the model without the residual structure (the first covariate)."""
    from multilevel.lmm.fit import fit_design

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_design(design, reml=reml).fitted().to_numpy()


def _residual_parameters(result: Any) -> np.ndarray:
    return np.concatenate([result.variance_params.to_numpy(), result.corr_params, result._theta])


def fit_on_own_fitted_values(fit_with: Any, fitted: np.ndarray, parameters: Any = _residual_parameters) -> Any:
    """nlme's scheme for ``varPower()``: fix the covariate at the fitted values, refit, repeat to a fixed point.

    ``fit_with(fitted)`` fits with the covariate at ``fitted``; ``parameters(result)`` are the values
    whose settling ends the loop. Used by lmm and gls.
    """
    previous = None
    for _ in range(FITTED_COVARIATE_MAX_REFITS):
        result = fit_with(fitted)
        params = parameters(result)
        if previous is not None and np.max(np.abs(params - previous)) < FITTED_COVARIATE_TOL * (
                1.0 + np.max(np.abs(params))):
            return result
        previous, fitted = params, result.fitted().to_numpy()
    warnings.warn(f"the variance function of the fitted values did not settle in {FITTED_COVARIATE_MAX_REFITS} "
                  "refits; the last fit is returned", RuntimeWarning, stacklevel=3)
    return result
