"""Rows grouped into clusters, with each row's position inside its cluster.

The C++ core walks the data cluster by cluster through an index array
(``order``) instead of a sorted copy of the data, so clusters may be
interleaved in the data and results come back in the caller's row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel import _core


@dataclass(frozen=True)
class ClusterLayout:
    """Clusters and positions of ``n`` rows.

    Attributes
    ----------
    codes : (n,) int32
        Cluster of each row, ``0 .. nclusters - 1``.
    order : (n,) int32
        Row indices, cluster by cluster, within a cluster by position.
    ptr : (nclusters + 1,) int64
        Cluster ``j`` is ``order[ptr[j]:ptr[j + 1]]``.
    position : (n,) int32
        0-based position of each row within its cluster.
    npositions : int
        ``position.max() + 1``.
    time_values : (n,) float64 or None
        Continuous times (continuous-time AR(1)); rows are ordered by them.
    """

    codes: np.ndarray
    order: np.ndarray
    ptr: np.ndarray
    position: np.ndarray
    npositions: int
    time_values: np.ndarray | None = None

    @property
    def nclusters(self) -> int:
        return len(self.ptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.ptr)

    def time_or_empty(self) -> np.ndarray:
        """The continuous times, or an empty array (as the C++ core takes "no times")."""
        return self.time_values if self.time_values is not None else np.zeros(0)


@dataclass
class ClusteredDesign:
    """Arrays shared by the marginal models (GEE, GLS); rows in the caller's order.

    Attributes
    ----------
    y : (n,) float64
    X : (n, p) float64, any memory order
    names : coefficient names (formulaic's)
    layout : clusters and positions of the rows
    cluster_labels : (nclusters,) label of each cluster
    fixed : the formula's fixed design (term slices, prediction)
    row_index : index of the kept rows in the caller's data
    n_dropped : rows dropped for missing values
    """

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    layout: ClusterLayout
    cluster_labels: pd.Index
    fixed: Any = None
    row_index: pd.Index | None = None
    n_dropped: int = 0
    formula: str = ""
    groups: str | None = None
    time: str | None = None

    @property
    def nobs(self) -> int:
        return int(self.y.shape[0])

    @property
    def max_cluster_size(self) -> int:
        return int(self.layout.sizes.max()) if self.layout.nclusters else 0


def clustered_columns(formula: str, data: Any, groups: Any, time: Any) -> tuple[pd.DataFrame, tuple[str, ...],
                                                                                str | None, list[str]]:
    """Resolve the columns of a marginal model: data frame, grouping columns, time column, used columns.

    ``groups``/``time`` may be column names or arrays (added as columns);
    a column the formula needs but the data lack is a ValueError naming it.
    """
    from multilevel.fixed_effects import missing_formula_variables
    from multilevel.frames import as_pandas, column_argument, columns_in, groups_argument, require_columns

    df = as_pandas(data)
    df, group_cols = groups_argument(groups, df)
    df, time_col = column_argument(time, df, "time")
    missing = missing_formula_variables(formula, df)
    if missing:
        require_columns(missing, df, f"the formula {formula!r}")
    used = columns_in(formula, df)
    used += [c for c in (*group_cols, time_col) if c and c not in used]
    return df, group_cols, time_col, used


def cluster_layout(codes: np.ndarray, nclusters: int, time: np.ndarray | None = None,
                   labels: np.ndarray | None = None, time_as_ranks: bool = False,
                   positions: np.ndarray | None = None, npositions: int | None = None) -> ClusterLayout:
    """Build a :class:`ClusterLayout` from cluster codes and optional integer times.

    Without ``time`` a row's position is its rank among its cluster's rows in
    data order. With ``time`` the position is ``time - min(time)``, or with
    ``time_as_ranks`` the rank of the row's time among all distinct times in
    the data (geepack's ``waves``, which it makes a factor); either way a
    cluster's missing times leave gaps, which matter to AR(1). Two rows of one
    cluster at the same time are an error naming the cluster (``labels[j]``
    if given).

    Examples
    --------
    >>> lay = cluster_layout(np.array([1, 0, 1, 0]), 2)
    >>> lay.order.tolist(), lay.ptr.tolist(), lay.position.tolist()
    ([1, 3, 0, 2], [0, 2, 4], [0, 0, 1, 1])
    """
    codes = np.asarray(codes, dtype=np.int32)
    n = codes.shape[0]
    # The core's counting sort: the same (ptr, order) the LMM core groups a factor's rows by.
    ptr, order = _core.group_index(codes, nclusters)
    counts = np.diff(ptr)
    if positions is None and time is not None:
        positions = _positions_from_time(time, time_as_ranks)
    if positions is None:
        position = np.empty(n, dtype=np.int32)
        position[order] = np.arange(n, dtype=np.int64) - np.repeat(ptr[:-1], counts)
    else:
        position = np.asarray(positions, dtype=np.int32)
        order = np.lexsort((position, codes)).astype(np.int32)
        sorted_pos = position[order]
        same = (np.diff(sorted_pos) == 0) & (np.diff(codes[order]) == 0)
        if same.any():
            j = int(codes[order][np.flatnonzero(same)[0]])
            name = labels[j] if labels is not None else j
            raise ValueError(
                f"cluster {name} has two rows at the same time {int(sorted_pos[np.flatnonzero(same)[0]])} "
                "(after shifting times to start at 0); each row of a cluster needs its own time"
            )
    if npositions is None:
        npositions = int(position.max()) + 1 if n else 0
    return ClusterLayout(codes, order, ptr, position, npositions)


def continuous_time_layout(codes: np.ndarray, nclusters: int, time: np.ndarray,
                           labels: np.ndarray | None = None) -> ClusterLayout:
    """A layout ordered by real-valued ``time`` within each cluster (positions are the ranks).

    Examples
    --------
    >>> lay = continuous_time_layout(np.array([0, 0, 1]), 2, np.array([2.5, 0.5, 1.0]))
    >>> lay.order.tolist(), lay.position.tolist()
    ([1, 0, 2], [1, 0, 0])
    """
    codes = np.asarray(codes, dtype=np.int32)
    t = np.asarray(time, dtype=float)
    if not np.all(np.isfinite(t)):
        raise ValueError("time has non-finite values")
    counts = np.bincount(codes, minlength=nclusters)
    ptr = np.zeros(nclusters + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    order = np.lexsort((t, codes)).astype(np.int32)
    same = (np.diff(t[order]) == 0) & (np.diff(codes[order]) == 0)
    if same.any():
        j = int(codes[order][np.flatnonzero(same)[0]])
        name = labels[j] if labels is not None else j
        raise ValueError(f"cluster {name} has two rows at the same time; each row of a cluster needs its own time")
    position = np.empty(codes.shape[0], dtype=np.int32)
    position[order] = np.arange(codes.shape[0], dtype=np.int64) - np.repeat(ptr[:-1], counts)
    npositions = int(counts.max()) if codes.size else 0
    return ClusterLayout(codes, order, ptr, position, npositions, t)


def _positions_from_time(time: np.ndarray, as_ranks: bool) -> np.ndarray:
    """0-based integer positions from a time column (integers, possibly with gaps)."""
    t = np.asarray(time)
    if not np.issubdtype(t.dtype, np.number):
        raise ValueError(f"time must be integer-valued, not {t.dtype}")
    if not np.all(np.isfinite(t)):
        raise ValueError("time has non-finite values")
    if np.any(t != np.round(t)):
        row = int(np.flatnonzero(t != np.round(t))[0])
        raise ValueError(f"time must be integer-valued (row {row} has {float(t[row])}); use ranks or rounded "
                         "times (GLS: car1 takes continuous times)")
    if as_ranks:
        return np.unique(t, return_inverse=True)[1].astype(np.int32).ravel()
    shifted = (t - t.min()).astype(np.int64)
    if shifted.max(initial=0) > 100_000:
        raise ValueError("time spans more than 100,000 positions; rescale it to consecutive integers")
    return shifted.astype(np.int32)
