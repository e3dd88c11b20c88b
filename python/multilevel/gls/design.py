"""GLS data preparation: formula + data -> response, model matrix, the
cluster layout the correlation structure needs, and the bound variance function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.clusters import ClusteredDesign, ClusterLayout, cluster_layout, continuous_time_layout
from multilevel.correlation import KIND_TABLE, Car1, CorrelationStructure
from multilevel.fixed_effects import fixed_design, model_frame
from multilevel.formula import split_offsets
from multilevel.frames import column_argument, drop_missing, groups_argument
from multilevel.grouping import make_grouping
from multilevel.variance import BoundVariance, VarianceFunction

#: Largest cluster a correlation built from a dense table (unstructured, banded, fixed) may have.
MAX_TABLE_CLUSTER = 5000
#: Most positions an unstructured correlation may have (T (T - 1) / 2 parameters).
MAX_UNSTRUCTURED_POSITIONS = 50


@dataclass
class GlsDesign(ClusteredDesign):
    """A :class:`~multilevel.clusters.ClusteredDesign` with the variance function bound to its rows."""

    variance: BoundVariance | None = None


def gls_layout(structure: CorrelationStructure, codes: np.ndarray, nclusters: int, time: np.ndarray | None,
               labels: np.ndarray) -> ClusterLayout:
    """Positions as nlme's correlation structures read them.

    ar1 and banded: ``time - min(time)`` (integer lags); car1: real times;
    unstructured and fixed: the rank of the time among its distinct values;
    without ``time``, the row order within the cluster.
    """
    if isinstance(structure, Car1):
        if time is None:
            raise ValueError("the car1 correlation needs time= (the continuous time of each row)")
        return continuous_time_layout(codes, nclusters, time, labels)
    return cluster_layout(codes, nclusters, time, labels, time_as_ranks=structure.positions_are_labels)


def gls_design(formula: str, data: Any, *, groups: Any, time: Any, structure: CorrelationStructure,
               variance: VarianceFunction, fitted: np.ndarray | None = None, context: Any = None) -> GlsDesign:
    """Build a :class:`GlsDesign`; rows with a missing value in a used column are dropped with a warning.

    Without ``groups`` all rows form one cluster, as in nlme (fine for
    independence, exchangeable and the AR(1) kinds, which cost O(n)).
    ``fitted`` (one value per kept row) is the covariate of a variance function of the fitted values.
    ``context`` holds the names the formula takes from the caller's scope (:func:`multilevel.gls`
    passes it); of a polars, pyarrow or duckdb table only the used columns are converted.
    """
    if split_offsets(formula)[1]:
        raise ValueError(
            f"gls has no offset, and formula {formula!r} has an offset(...) term: subtract it from the response "
            "instead (y ~ x + offset(o) is the model I(y - o) ~ x), or use lmm or gee, which take offsets"
        )
    variance_label = f"variance={variance!r}"
    df, used, context = model_frame(formula, data, {"groups=": groups, "time=": time,
                                                    variance_label: list(variance.columns)}, context,
                                    lists=("groups=", variance_label))
    df, group_cols = groups_argument(groups, df)
    df, time_col = column_argument(time, df, "time")
    used += [c for c in (*group_cols, time_col, *variance.columns) if c and c not in used]
    df, _, n_dropped = drop_missing(df, used, {})

    fixed = fixed_design(formula, df, context)
    if group_cols:
        grouping = make_grouping(df, group_cols)
        codes, nclusters, labels, gname = grouping.codes, grouping.nlevels, grouping.levels, grouping.name
    else:
        codes, nclusters, labels, gname = np.zeros(len(df), dtype=np.int32), 1, pd.Index(["(all)"]), None
    time_values = None if time_col is None else df[time_col].to_numpy()
    try:
        layout = gls_layout(structure, codes, nclusters, time_values, np.asarray(labels))
    except ValueError as exc:
        if time_col is None:
            raise
        raise ValueError(f"time column {time_col!r}: {exc}") from exc
    if structure.name == "unstructured" and layout.npositions > MAX_UNSTRUCTURED_POSITIONS:
        raise ValueError(
            f"the unstructured correlation has a parameter per pair of positions, and the largest cluster has "
            f"{int(layout.sizes.max())} rows at {layout.npositions} positions ({structure.nparams(layout.npositions)} "
            f"parameters); it allows at most {MAX_UNSTRUCTURED_POSITIONS} positions: give groups= or time=, or use "
            "ar1, car1, exchangeable or MDependent(m)"
        )
    if structure.kind == KIND_TABLE and layout.sizes.max(initial=0) > MAX_TABLE_CLUSTER:
        raise ValueError(
            f"the {structure.name} correlation builds a dense matrix per cluster, and the largest cluster has "
            f"{int(layout.sizes.max())} rows; give groups= or use ar1/car1/exchangeable"
        )
    if structure.kind == KIND_TABLE:
        structure.table(np.zeros(structure.nparams(layout.npositions)), layout.npositions)  # checks Fixed's size
    return GlsDesign(
        y=fixed.y, X=fixed.X, names=fixed.names, layout=layout,
        variance=variance.bind_values(fitted) if variance.uses_fitted else variance.bind(df),
        cluster_labels=labels, fixed=fixed, row_index=df.index, n_dropped=n_dropped, formula=formula,
        groups=gname, time=time_col,
    )
