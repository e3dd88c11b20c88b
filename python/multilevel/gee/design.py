"""GEE data preparation: formula + data frame -> response, model matrix,
weights, offset and the cluster layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilevel.clusters import ClusteredDesign, cluster_layout, clustered_columns
from multilevel.fixed_effects import fixed_design
from multilevel.frames import check_finite, drop_missing, vector_argument
from multilevel.grouping import make_grouping


@dataclass
class GeeDesign(ClusteredDesign):
    """A :class:`~multilevel.clusters.ClusteredDesign` with prior weights and an offset.

    Attributes
    ----------
    weights : (n,) prior weights (binomial: trial counts) or None
    offset : (n,) or None
    offset_column : the offset's column, to read it from new data
    """

    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    offset_column: str | None = None

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
               offset: Any = None) -> GeeDesign:
    """Build a :class:`GeeDesign`; rows with a missing value in a used column are dropped with a warning.

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
    df, group_cols, time_col, used = clustered_columns(formula, data, groups, time)
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

    fixed = fixed_design(formula, df)
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
    )
