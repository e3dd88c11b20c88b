"""GEE data preparation: formula + data frame -> response, model matrix,
weights, offset and the cluster layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilevel.clusters import ClusteredDesign, cluster_layout
from multilevel.fixed_effects import add_offsets, drop_empty_trials, fixed_design, model_frame, trial_weights
from multilevel.frames import check_finite, column_argument, drop_missing, groups_argument, vector_argument
from multilevel.grouping import make_grouping


@dataclass
class GeeDesign(ClusteredDesign):
    """A :class:`~multilevel.clusters.ClusteredDesign` with prior weights and an offset.

    Attributes
    ----------
    weights : (n,) prior weights (binomial: trial counts) or None
    offset : (n,) or None
        The ``offset=`` argument plus the formula's ``offset(...)`` terms (``fixed.offset_for`` evaluates
        those on new data).
    offset_column : the offset's column, to read it from new data
    offset_argument : whether ``offset=`` was given (a column, or an array new data cannot supply)
    """

    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    offset_column: str | None = None
    offset_argument: bool = False

    def prior_weights(self) -> np.ndarray:
        """Weights, ones if none were given."""
        return np.ones(self.nobs) if self.weights is None else self.weights

    def offset_or_zero(self) -> np.ndarray | float:
        return 0.0 if self.offset is None else self.offset

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_working_cache", None)  # per-row arrays at the last beta (see gee.scoring.working_arrays)
        return state


def gee_design(formula: str, data: Any, *, groups: Any, time: Any = None, weights: Any = None,
               offset: Any = None, context: Any = None) -> GeeDesign:
    """Build a :class:`GeeDesign`; rows with a missing value in a used column are dropped with a warning.

    ``offset(...)`` terms of the formula add to ``offset``; a binomial ``cbind(successes, failures)``
    response is the proportion, with the trials (times ``weights``) as prior weights, and rows with no
    trials are dropped with a warning; ``context`` holds the names the formula
    takes from the caller's scope (:func:`multilevel.gee` passes it), and of a polars, pyarrow or
    duckdb table only the used columns are converted (see :func:`multilevel.lmm.lmm_design`).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 0.0, 1.0, 1.0], "x": [0.1, 0.4, 0.2, 0.9], "id": [1, 1, 2, 2]})
    >>> d = gee_design("y ~ x", df, groups="id")
    >>> d.names, d.layout.nclusters
    (['Intercept', 'x'], 2)
    """
    if groups is None:
        raise ValueError("gee needs groups=: the column (or array) that says which cluster each row is in")
    df, used, context = model_frame(formula, data, {"groups=": groups, "time=": time, "weights=": weights,
                                                    "offset=": offset}, context)
    df, group_cols = groups_argument(groups, df)
    df, time_col = column_argument(time, df, "time")
    used += [c for c in (*group_cols, time_col) if c and c not in used]
    w, w_col = vector_argument(weights, df, "weights")
    off, off_col = vector_argument(offset, df, "offset")
    used += [c for c in (w_col, off_col) if c and c not in used]
    df, keep, n_dropped = drop_missing(df, used, {"weights": w, "offset": off})
    if n_dropped:
        w = None if w is None else w[keep]
        off = None if off is None else off[keep]
    for values, label in ((w, "weights"), (off, "offset")):
        if values is not None:
            check_finite(values, label)
    if w is not None and np.any(w < 0):
        raise ValueError(f"weights must be non-negative (row {int(np.flatnonzero(w < 0)[0])} is negative)")
    df, nonempty, n_empty = drop_empty_trials(formula, df, context)  # cbind rows with no trials
    if n_empty:
        w = None if w is None else w[nonempty]
        off = None if off is None else off[nonempty]
        n_dropped += n_empty

    fixed = fixed_design(formula, df, context, counts=True)  # gee() refuses cbind with a non-binomial family
    off = add_offsets(off, fixed)
    w = trial_weights(w, fixed)
    if w is not None and np.count_nonzero(w) <= fixed.X.shape[1]:  # zero-weight rows do not count
        raise ValueError(
            f"only {np.count_nonzero(w)} row(s) have a positive weight, too few for {fixed.X.shape[1]} coefficients"
        )
    grouping = make_grouping(df, group_cols)
    if grouping.nlevels < 2:
        raise ValueError(
            f"groups column {grouping.name!r} has {grouping.nlevels} level: GEE needs several clusters (its "
            "sandwich variance is estimated from the spread between clusters); check the groups= column"
        )
    time_values = None if time_col is None else df[time_col].to_numpy()
    try:
        layout = cluster_layout(grouping.codes, grouping.nlevels, time_values, np.asarray(grouping.levels),
                                time_as_ranks=True)
    except ValueError as exc:
        if time_col is None:
            raise
        raise ValueError(f"time column {time_col!r}: {exc}") from exc  # name the column, as gls does
    return GeeDesign(
        y=fixed.y, X=fixed.X, names=fixed.names, weights=w, offset=off, layout=layout,
        cluster_labels=grouping.levels, fixed=fixed, row_index=df.index, n_dropped=n_dropped,
        formula=formula, groups=grouping.name, time=time_col, offset_column=off_col,
        offset_argument=offset is not None,
    )
