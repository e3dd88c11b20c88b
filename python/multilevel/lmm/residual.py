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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel import _core
from multilevel.clusters import ClusterLayout
from multilevel.correlation import CorrelationStructure, Independence, cluster_matrix, get_correlation
from multilevel.frames import as_pandas, drop_missing, require_columns
from multilevel.gls.fit import UNCONSTRAINED_BOUND
from multilevel.grouping import make_grouping
from multilevel.lmm.conditional import full_conditional_covariances
from multilevel.lmm.design import LmmDesign, lmm_design
from multilevel.lmm.result import LmmResult
from multilevel.lmm.theta import theta_lower_bounds, theta_scales, theta_start
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
        white, failed = _core.whiten_rows(scaled, lay.order, lay.ptr, lay.position, kind, alpha, table,
                                          lay.time_or_empty())
        if failed >= 0:
            return None
        sums = _core.cluster_sums(np.zeros((lay.codes.size, 1)), np.ones(lay.codes.size),
                                  np.zeros(lay.codes.size), lay.order, lay.ptr, lay.position, kind, alpha, table,
                                  0, np.zeros((1, 1)), lay.time_or_empty())
        return white, float(sums["logdet"]) + 2.0 * float(np.sum(np.log(g)))

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


def _stacked_columns(design: LmmDesign) -> tuple[np.ndarray, list[int]]:
    """``[y - offset | X | z_1 | ... | z_K]`` (n, k) and the start of each block."""
    blocks = [design.response_minus_offset()[:, None], np.asarray(design.X, dtype=float)]
    blocks += [np.asarray(t.z, dtype=float).reshape(design.nobs, t.p) for t in design.terms]
    starts = np.cumsum([0] + [b.shape[1] for b in blocks]).tolist()
    return np.hstack(blocks), starts


class ResidualLmmObjective:
    """The deviance profiled over theta, as a function of the residual parameters."""

    def __init__(self, design: LmmDesign, residual: ResidualModel, reml: bool) -> None:
        self.design = design
        self.residual = residual
        self.reml = reml
        self.columns, self.starts = _stacked_columns(design)
        self.lower = theta_lower_bounds(design.terms)
        self.scales = theta_scales(design.terms)
        self.theta = theta_start(design.terms) * self.scales
        self.first = True

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

    def deviance(self, theta: np.ndarray, u: np.ndarray) -> float:
        """-2 (restricted) log-likelihood at ``theta`` and the residual parameters ``u``, beta and sigma
        profiled out (to compare with another program at its estimates)."""
        built = self.core(u)
        if built is None:
            return np.inf
        core, jacobian = built
        return float(core.objective(np.asarray(theta, dtype=float), self.reml)) + jacobian

    def optimize_theta(self, core: Any, start: np.ndarray, **options: Any) -> OptSummary:
        return minimize_bobyqa(lambda t: core.objective(t, self.reml), start, self.lower, **options)

    def __call__(self, u: np.ndarray) -> float:
        built = self.core(u)
        if built is None:
            return np.inf
        core, jacobian = built
        # The first inner fit starts as a plain fit does; later ones from the last theta.
        opt = self.optimize_theta(core, self.theta, initial_step=(0.75 if self.first else 0.03) * self.scales)
        self.first = False
        if np.isfinite(opt.fmin):
            self.theta = np.asarray(opt.final)
        return float(opt.fmin) + jacobian


class ResidualLmmResult(LmmResult):
    """A linear mixed model with a residual correlation structure and/or variance function.

    Adds :attr:`corr_params`, :attr:`variance_params`, the residual model and
    the outer optimizer's record (``residual_optsum``) to :class:`LmmResult`;
    ``marginal_cov`` includes the residual covariance.
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

    def _refuse(self, what: str) -> None:
        raise ValueError(f"{what} is not available for a model with a residual correlation structure or "
                         "variance function (it would ignore them); use the model's Wald tests")

    def _ddf_method(self, method: str | None = None) -> Any:
        if method is not None and method != "normal":
            self._refuse(f"ddf={method!r}")
        return super()._ddf_method("normal")

    def with_ddf(self, method: str) -> LmmResult:
        self._ddf_method(method)
        return self

    def profile(self) -> Any:
        self._refuse("profile()")

    def bootstrap(self, nsim: int, **kwargs: Any) -> Any:
        self._refuse("bootstrap()")

    def with_cov_type(self, kind: str, cluster: Any = None) -> LmmResult:
        if kind != "model":
            self._refuse(f"cov_type={kind!r}")
        return self

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

    def marginal_cov(self, level: Any, group: str | None = None) -> pd.DataFrame:
        """``Z_j Sigma_b Z_j' + Sigma_e,j`` of the rows of one cluster (``Sigma_e,j = sigma^2 G R G``)."""
        base = super().marginal_cov(level, group)
        labels = self.design.row_index if self.design.row_index is not None else None
        rows = np.asarray(labels.get_indexer(base.index)) if labels is not None else np.asarray(base.index)
        v = base.to_numpy() - self.sigma**2 * np.eye(rows.size) + self.residual.covariance(
            self.residual_u, self.sigma, rows)
        return pd.DataFrame(v, index=base.index, columns=base.columns)


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
    """Optimize the residual parameters outside and theta inside (see the module notes)."""
    from multilevel.lmm.fit import ConvergenceWarning, SingularFitWarning

    objective = ResidualLmmObjective(design, residual, reml)
    u0 = residual.start()
    # One restart from the end with a small trust region: BOBYQA alone can stop 1e-6 short in
    # log-likelihood on a flat variance parameter (BodyWeight's varPower); a small restart step keeps
    # its cost to a few evaluations.
    outer = minimize_bobyqa_restarted(objective, u0, np.full(u0.size, -UNCONSTRAINED_BOUND),
                                      **{"initial_step": 0.5, "restarts": 1, "restart_step": 0.01,
                                         **optimizer_options})
    u = np.asarray(outer.final)
    built = objective.core(u)
    if built is None:
        raise FloatingPointError("the residual covariance is not positive definite at the optimizer's final "
                                 "parameters")
    core, jacobian = built
    inner = objective.optimize_theta(core, objective.theta, initial_step=0.03 * objective.scales)
    if inner.converged:  # converge in theta at the final residual parameters, as a plain fit does
        inner = newton_polish(lambda t: core.objective(t, reml), inner, scale=objective.scales)
    result = ResidualLmmResult(design, core, reml, inner, residual, u, jacobian, outer)
    if not result.converged:
        warnings.warn(f"the optimizer did not converge: {outer.message}", ConvergenceWarning, stacklevel=3)
    if result.singular:
        warnings.warn("boundary (singular) fit: see result.singular and result.varcorr", SingularFitWarning,
                      stacklevel=3)
    return result


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
