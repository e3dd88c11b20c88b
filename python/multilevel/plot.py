"""Diagnostic plots of fitted models (matplotlib, an optional dependency).

:func:`caterpillar` draws the conditional modes of a mixed model with their
intervals (lattice's ``dotplot(ranef(fit, condVar = TRUE))``),
:func:`residuals` the residual diagnostics, and :func:`correlation` the
fitted within-cluster correlation matrix as a heat map, and :func:`profile`
the zeta traces of a profiled fit. Each returns the
matplotlib Figure. Install matplotlib with ``pip install "multilevel[plot]"``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from multilevel.correlation import KIND_CAR1, cluster_matrix
from multilevel.gee.result import GeeResult
from multilevel.glmm.result import GlmmResult
from multilevel.gls.result import GlsResult
from multilevel.lmm.result import LmmResult
from multilevel.tidy import r_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Above this many levels (or rows) the axis is left without a label per tick: they would overlap.
MAX_TICK_LABELS = 60


def _pyplot() -> Any:
    """matplotlib.pyplot, imported only when a plot is drawn (matplotlib is an optional extra)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('multilevel.plot needs matplotlib: pip install "multilevel[plot]"') from exc
    return plt


def _mixed(fit: Any, what: str) -> LmmResult:
    if not isinstance(fit, LmmResult):
        raise TypeError(f"{what} takes a fitted mixed model (lmm or glmm), not {type(fit).__name__}")
    return fit


def caterpillar(fit: Any, term: str | None = None, level: float = 0.95) -> Figure:
    """Conditional modes of the random effects with intervals, sorted by mode.

    One panel per random-effect column of each grouping factor, one row of
    panels per grouping factor; the levels are sorted by their mode in the
    first column, and every panel of a factor shares that order (as
    lattice's ``dotplot(ranef(fit, condVar = TRUE))``). The bars are
    ``mode +/- z sqrt(condvar)``, ``z`` the normal quantile of ``level``
    (1.96 for 0.95).

    Parameters
    ----------
    fit : LmmResult or GlmmResult
    term : str, optional
        One grouping factor to draw (a key of ``fit.ranef``); default all.
    level : float
        Coverage of the intervals.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> fig = caterpillar(fit)
    >>> [ax.get_title() for ax in fig.axes]
    ['(Intercept)', 'Days']
    """
    fit = _mixed(fit, "caterpillar()")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    modes, condvar = fit.ranef, fit.ranef_condvar()
    if term is not None:
        if term not in modes:
            raise ValueError(f"{term!r} is not a grouping factor of the model; choose one of {list(modes)}")
        modes = {term: modes[term]}
    z = stats.norm.ppf(0.5 + level / 2)
    plt = _pyplot()
    ncols = max(frame.shape[1] for frame in modes.values())
    heights = [min(max(2.5, 0.2 * len(frame)), 12.0) for frame in modes.values()]
    fig = plt.figure(figsize=(3.5 * ncols + 1.0, sum(heights) + 0.5))
    grid = fig.add_gridspec(len(modes), ncols, height_ratios=heights)
    for row, (group, frame) in enumerate(modes.items()):
        order = np.argsort(frame.iloc[:, 0].to_numpy(), kind="stable")  # lattice: by the first column
        labels = frame.index.astype(str)[order]
        first = None
        for col, name in enumerate(frame.columns):
            ax = fig.add_subplot(grid[row, col], sharey=first)
            if first is None:
                first = ax
            mode = frame[name].to_numpy()[order]
            half = z * np.sqrt(condvar[group][name].to_numpy()[order])
            ax.errorbar(mode, np.arange(len(mode)), xerr=half, fmt="o", markersize=3, elinewidth=1, capsize=0)
            ax.axvline(0.0, color="0.6", linestyle="--", linewidth=0.8)
            ax.set_title(r_name(name))
            ax.set_xlabel("conditional mode")
            if col == 0:
                ax.set_ylabel(group)
                _level_ticks(ax, labels)
            else:
                ax.tick_params(labelleft=False)
    fig.tight_layout()
    return fig


def _level_ticks(ax: Axes, labels: Any) -> None:
    if len(labels) <= MAX_TICK_LABELS:
        ax.set_yticks(np.arange(len(labels)), labels=list(labels), fontsize=7)
    else:
        ax.set_yticks([])


def _residual_parts(fit: Any) -> tuple[np.ndarray, np.ndarray, str, np.ndarray, np.ndarray, str]:
    """Fitted values, residuals and their label, standardized residuals, the residuals for the
    normal QQ plot and their label, per kind of model."""
    if isinstance(fit, GlmmResult):  # response residuals of counts and proportions show little: Pearson's
        pearson = fit.resid("pearson").to_numpy()
        return fit.fitted().to_numpy(), pearson, "Pearson residuals", pearson, pearson, "Pearson residuals"
    if isinstance(fit, LmmResult):
        r = fit.resid().to_numpy()
        return fit.fitted().to_numpy(), r, "residuals", r / fit.sigma, r, "residuals"
    if isinstance(fit, GlsResult):
        # normalized residuals are whitened within clusters, so under the model they are iid N(0, 1)
        return (fit.fitted().to_numpy(), fit.resid().to_numpy(), "residuals", fit.resid("pearson").to_numpy(),
                fit.resid("normalized").to_numpy(), "normalized residuals")
    if isinstance(fit, GeeResult):
        pearson = fit.resid("pearson").to_numpy()
        std = pearson / math.sqrt(fit.scale)
        return fit.fitted().to_numpy(), pearson, "Pearson residuals", std, std, "standardized Pearson residuals"
    raise TypeError(f"residuals() takes a fitted lmm, glmm, gls or gee model, not {type(fit).__name__}")


def _qq(ax: Axes, values: np.ndarray, title: str) -> None:
    """Normal QQ plot with R's ``qqline``: the line through the quartiles."""
    (theoretical, ordered), _ = stats.probplot(values, dist="norm")
    ax.scatter(theoretical, ordered, s=8)
    q = np.quantile(values, [0.25, 0.75])
    z = stats.norm.ppf([0.25, 0.75])
    slope = (q[1] - q[0]) / (z[1] - z[0])
    ax.axline((z[0], q[0]), slope=slope if np.isfinite(slope) else 0.0, color="0.4", linewidth=0.8)
    ax.set_title(title)
    ax.set_xlabel("normal quantiles")
    ax.set_ylabel("sample quantiles")


def residuals(fit: Any) -> Figure:
    """Residual diagnostics: residuals against fitted values, scale-location, normal QQ plots.

    Panels: residuals against fitted values; ``sqrt(|standardized
    residual|)`` against fitted values (scale-location); a normal QQ plot of
    the residuals; for mixed models, a normal QQ plot of the conditional
    modes of each random-effect column. The residuals are the response ones
    for LMMs and gls (standardized: divided by ``sigma``; gls: Pearson, and
    its QQ plot uses the normalized residuals) and Pearson residuals for
    GLMMs and gee (gee standardized by ``sqrt(scale)``).

    Parameters
    ----------
    fit : LmmResult, GlmmResult, GlsResult or GeeResult (fitted from rows in memory)

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> [ax.get_title() for ax in residuals(fit).axes]  # doctest: +NORMALIZE_WHITESPACE
    ['Residuals vs fitted', 'Scale-location', 'Normal Q-Q: residuals',
     'Normal Q-Q: Subject (Intercept)', 'Normal Q-Q: Subject Days']
    """
    fitted, resid, label, std, qq_values, qq_label = _residual_parts(fit)
    modes = [(g, c, frame[c].to_numpy()) for g, frame in fit.ranef.items() for c in frame.columns] \
        if isinstance(fit, LmmResult) else []
    npanels = 3 + len(modes)
    ncols = 2 if npanels <= 4 else 3
    nrows = math.ceil(npanels / ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[npanels:]:
        fig.delaxes(ax)
    ax = flat[0]
    ax.scatter(fitted, resid, s=8)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set(title="Residuals vs fitted", xlabel="fitted values", ylabel=label)
    ax = flat[1]
    ax.scatter(fitted, np.sqrt(np.abs(std)), s=8)
    ax.set(title="Scale-location", xlabel="fitted values", ylabel="sqrt(|standardized residuals|)")
    _qq(flat[2], qq_values, f"Normal Q-Q: {qq_label}")
    for ax, (group, col, values) in zip(flat[3:], modes):
        _qq(ax, values, f"Normal Q-Q: {group} {r_name(col)}")
    fig.tight_layout()
    return fig


def cluster_correlation(fit: Any, cluster: Any = None) -> tuple[np.ndarray, Any, np.ndarray]:
    """The fitted correlation matrix of one cluster's rows, in their order in the cluster.

    gls: the residual correlation ``R_j``; gee: the working correlation;
    lmm: the marginal correlation of ``Z_j Sigma_b Z_j' + sigma^2 I`` for a
    level of the first grouping factor. The default cluster is the largest
    (the first of the largest).

    Returns
    -------
    (matrix, cluster label, tick labels): positions in the cluster (1-based),
    times for a continuous-time AR(1), row labels for an lmm.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.gls("distance ~ age", ml.load_dataset("Orthodont"), groups="Subject", corr="ar1")
    >>> r, label, ticks = cluster_correlation(fit)
    >>> label, r.shape, bool(np.isclose(r[0, 1], fit.corr_params[0]))
    ('M16', (4, 4), True)
    """
    if isinstance(fit, (GlsResult, GeeResult)):
        d = fit.design
        lay = d.layout
        if cluster is None:
            j = int(np.argmax(lay.sizes))
        else:
            found = d.cluster_labels.get_indexer([cluster])[0]
            if found < 0:
                raise ValueError(f"{cluster!r} is not a cluster of the fit (the clusters are the levels of "
                                 f"{d.groups or 'groups'})")
            j = int(found)
        r, rows = cluster_matrix(fit.structure, fit.corr_params, lay, j)
        ticks = lay.time_values[rows] if fit.structure.kind == KIND_CAR1 else lay.position[rows] + 1
        return r, d.cluster_labels[j], ticks
    if isinstance(fit, GlmmResult):
        raise TypeError("a GLMM has no closed-form marginal correlation of the responses; correlation() takes "
                        "gls, gee and lmm fits")
    fit = _mixed(fit, "correlation()")
    t = fit.design.terms[0]
    if cluster is None:
        cluster = t.levels[int(np.argmax(np.bincount(t.codes, minlength=t.nlevels)))]
    cov = fit.marginal_cov(cluster, group=t.group)
    sd = np.sqrt(np.diag(cov.to_numpy()))
    return cov.to_numpy() / np.outer(sd, sd), cluster, np.asarray(cov.index)


def correlation(fit: Any, cluster: Any = None) -> Figure:
    """The fitted within-cluster correlation matrix of one cluster as a heat map with a colorbar.

    gls: the residual correlation; gee: the working correlation; lmm: the
    marginal correlation implied by the random effects (for a level of the
    first grouping factor). See :func:`cluster_correlation`.

    Parameters
    ----------
    fit : GlsResult, GeeResult or LmmResult
    cluster : label, optional
        The cluster (a level of ``groups``; for an lmm, of its first
        grouping factor); default the largest.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> fit = ml.gee("resp ~ age + smoke", ml.load_dataset("ohio"), groups="id", family="binomial",
    ...              corr="exchangeable")
    >>> fig = correlation(fit, cluster=0)
    >>> fig.axes[0].get_title(), fig.axes[1].get_ylabel()
    ('exchangeable working correlation, cluster 0', 'correlation')
    """
    matrix, label, ticks = cluster_correlation(fit, cluster)
    if isinstance(fit, GeeResult):
        title = f"{fit.structure.name} working correlation, cluster {label}"
    elif isinstance(fit, GlsResult):
        title = f"{fit.structure.name} residual correlation, cluster {label}"
    else:
        title = f"marginal correlation, {fit.design.terms[0].group} {label}"
    plt = _pyplot()
    n = matrix.shape[0]
    side = min(max(4.0, 0.35 * n + 2.0), 10.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(matrix, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    fig.colorbar(image, ax=ax, label="correlation")
    ax.set_title(title)
    if n <= MAX_TICK_LABELS // 2:
        names = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in ticks]
        ax.set_xticks(np.arange(n), labels=names, rotation=90 if n > 12 else 0, fontsize=8)
        ax.set_yticks(np.arange(n), labels=names, fontsize=8)
    kind = "row" if isinstance(fit, LmmResult) else "time" if getattr(fit.structure, "kind", None) == KIND_CAR1 \
        else "position in cluster"
    ax.set_xlabel(kind)
    ax.set_ylabel(kind)
    fig.tight_layout()
    return fig


def profile(fit: Any, level: float = 0.95) -> Figure:
    """The zeta traces of a profiled fit, one panel per parameter, as lattice's ``xyplot(profile(fit))``.

    Each panel shows ``zeta`` (the signed square root of the deviance
    increase) against the parameter's value, the profile interval at
    ``level`` as dashed lines where zeta crosses its normal quantiles.

    Parameters
    ----------
    fit : LmmResult or GlmmResult (one scalar term)
    level : float, default 0.95

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> fig = profile(fit)
    >>> len(fig.axes), fig.axes[0].get_title()
    (6, 'sd_(Intercept)|Subject')
    """
    prof = _mixed(fit, "profile()").profile()
    ci = prof.conf_int(level)
    z = stats.norm.ppf(0.5 + level / 2.0)
    plt = _pyplot()
    n = len(ci)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), ci.index):
        trace = prof.trace(name)
        ax.plot(trace["value"], trace["zeta"], "o-", markersize=3)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        for bound, target in zip(ci.loc[name], (-z, z)):
            if np.isfinite(bound):
                ax.vlines(bound, min(0.0, target), max(0.0, target), linestyles="dashed", colors="grey")
        ax.set_title(name)
        ax.set_xlabel("value")
        ax.set_ylabel("zeta")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
