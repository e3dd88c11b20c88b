"""The first pass over chunked data: what must be known for all rows before
any sum is taken (missing values, levels of factors and grouping keys,
column kinds), as a small mergeable summary, and the preparation of each
chunk from it, so every chunk builds the same columns."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multilevel.grouping import GroupingLevels, grouping_levels

# `C(x` in a formula: x is made a factor, so its levels must be known for all rows.
_FACTOR_CALL = re.compile(r"\bC\(\s*(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_.]*))")
#: Rows kept from the first chunks to build the model spec on.
PROTOTYPE_ROWS = 200


def factor_call_columns(formula_text: str) -> list[str]:
    """Columns a formula wraps in ``C(...)``.

    Examples
    --------
    >>> factor_call_columns("y ~ C(f) + x + C(`a b`, Sum)")
    ['f', 'a b']
    """
    return [quoted or bare for quoted, bare in _FACTOR_CALL.findall(formula_text)]


@dataclass
class ColumnMoments:
    """Count, mean and sums of squares of a numeric column, mergeable (Chan et al.'s update)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    sumsq: float = 0.0  # sum of squares about zero

    @classmethod
    def of(cls, values: np.ndarray) -> ColumnMoments:
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return cls()
        mean = float(v.mean())
        return cls(v.size, mean, float(((v - mean) ** 2).sum()), float((v * v).sum()))

    def merge(self, other: ColumnMoments) -> ColumnMoments:
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.mean += delta * other.n / n
        self.sumsq += other.sumsq
        self.n = n
        return self


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


@dataclass
class ColumnScan:
    """What one pass over (some of) the rows found; :meth:`merge` adds another part's.

    Per-part findings whose union needs hashing (distinct values, keys,
    cluster counts) are kept as lists of parts and joined once, by the
    accessors below, so a pass over many chunks stays linear in the rows.

    Attributes
    ----------
    nrows : rows seen
    ncomplete : rows without a missing value in any used column
    missing : rows with a missing value, per column
    numeric : per used column, whether it is numeric (must agree across chunks)
    levels : per part, distinct values (complete rows) of the columns whose levels are needed
    categories : for pandas categorical columns, their categories in order
    keys : per part, distinct key rows (complete rows) of each grouping factor
    prototype : the first complete rows, to build the model spec on
    where : the first chunk scanned (for error messages)
    cluster_sizes : per part, rows per cluster key (complete rows), for models whose
        clusters must each lie in one chunk (GEE): a key met in two parts is an error
    distinct : per part, distinct values (complete rows) of other columns, such as a time column
    moments : count, mean and sums of squares of the numeric expression columns (complete
        rows), for the state of ``center()``, ``scale()`` and ``standardize()``
    """

    nrows: int = 0
    ncomplete: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    numeric: dict[str, bool] = field(default_factory=dict)
    levels: dict[str, list[pd.Series]] = field(default_factory=dict)
    categories: dict[str, pd.Index] = field(default_factory=dict)
    keys: dict[tuple[str, ...], list[pd.DataFrame]] = field(default_factory=dict)
    prototype: pd.DataFrame | None = None
    where: str = "a chunk"
    cluster_sizes: list[pd.Series] = field(default_factory=list)
    distinct: dict[str, list[pd.Series]] = field(default_factory=dict)
    moments: dict[str, ColumnMoments] = field(default_factory=dict)

    def merge(self, other: ColumnScan) -> ColumnScan:
        """Add the scan of other rows (this one's rows first)."""
        for col, num in other.numeric.items():
            if col in self.numeric and self.numeric[col] != num:
                kinds = {True: "numeric", False: "not numeric"}
                raise ValueError(
                    f"column {col!r} is {kinds[self.numeric[col]]} in the first chunks but {kinds[num]} in "
                    f"{other.where}; every chunk must give a column the same type"
                )
            self.numeric[col] = num
        self.nrows += other.nrows
        self.ncomplete += other.ncomplete
        for col, count in other.missing.items():
            self.missing[col] = self.missing.get(col, 0) + count
        for mine, theirs in ((self.levels, other.levels), (self.keys, other.keys), (self.distinct, other.distinct)):
            for key, parts in theirs.items():
                mine.setdefault(key, []).extend(parts)
        for col, cats in other.categories.items():
            self.categories[col] = cats if col not in self.categories else self.categories[col].append(
                cats.difference(self.categories[col], sort=False))
        for col, mom in other.moments.items():
            self.moments[col] = mom if col not in self.moments else self.moments[col].merge(mom)
        self.cluster_sizes.extend(other.cluster_sizes)
        if other.prototype is not None and (self.prototype is None or len(self.prototype) < PROTOTYPE_ROWS):
            parts = [p for p in (self.prototype, other.prototype) if p is not None]
            self.prototype = pd.concat(parts).head(PROTOTYPE_ROWS)
        return self

    def distinct_values(self, col: str) -> pd.Series:
        """Distinct values of a column collected in :attr:`distinct` or :attr:`levels`, over all parts."""
        parts = self.distinct.get(col) or self.levels[col]
        return pd.concat(parts, ignore_index=True).drop_duplicates()

    def grouping_keys(self, cols: tuple[str, ...]) -> pd.DataFrame:
        """Distinct key rows of a grouping factor over all parts."""
        return pd.concat(self.keys[cols], ignore_index=True).drop_duplicates()

    def cluster_counts(self) -> pd.Series:
        """Rows per cluster over all parts; a cluster found in two parts is a :class:`ClusterSplitError`."""
        counts = pd.concat(self.cluster_sizes)
        split = counts.index.duplicated()
        if split.any():
            raise ClusterSplitError(
                f"cluster {counts.index[split][0]} has rows in more than one chunk: the rows of a cluster must be "
                "contiguous in the data: sort by the cluster column (a Dask frame is shuffled by gee itself)"
            )
        return counts


class ClusterSplitError(ValueError):
    """A cluster's rows lie in more than one chunk or partition."""


def merge_scans(a: ColumnScan, b: ColumnScan) -> ColumnScan:
    """The reduction of a scan pass."""
    return a.merge(b)


def missing_mask(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with a missing value in any column, and the count per column."""
    missing = np.zeros(len(frame), dtype=bool)
    counts: dict[str, int] = {}
    for col in frame.columns:
        m = frame[col].isna().to_numpy()
        if m.any():
            counts[col] = int(m.sum())
            missing |= m
    return missing, counts


def scan_chunk(frame: pd.DataFrame, expression_columns: list[str], factor_calls: list[str],
               groupings: list[tuple[str, ...]], where: str = "a chunk",
               clusters: tuple[str, ...] | None = None, distinct: tuple[str, ...] = ()) -> ColumnScan:
    """The :class:`ColumnScan` of one chunk (a frame of the used columns only).

    ``expression_columns`` are the columns the model's formula expressions
    use; those that are not numeric, or that appear in ``factor_calls``
    (``C(x)``), are factors whose levels are collected. ``clusters`` names
    the columns whose keys are counted per cluster; ``distinct`` columns
    have their distinct values collected.
    """
    missing, counts = missing_mask(frame)
    complete = frame.loc[~missing] if counts else frame
    scan = ColumnScan(nrows=len(frame), ncomplete=len(complete), missing=counts,
                      numeric={c: _is_numeric(frame[c]) for c in frame.columns}, where=where)
    for col in expression_columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            scan.categories[col] = pd.Index(frame[col].cat.categories)
        elif col in factor_calls or not scan.numeric[col]:
            scan.levels[col] = [pd.Series(complete[col].unique())]
        else:
            scan.moments[col] = ColumnMoments.of(complete[col].to_numpy(dtype=float))
    for cols in groupings:
        scan.keys[cols] = [complete[list(cols)].drop_duplicates()]
    if clusters is not None:
        keys = complete[clusters[0]] if len(clusters) == 1 else pd.MultiIndex.from_frame(complete[list(clusters)])
        scan.cluster_sizes = [pd.Series(1, index=keys).groupby(level=list(range(len(clusters))), sort=False).sum()]
    for col in distinct:
        scan.distinct[col] = [pd.Series(complete[col].unique())]
    if len(complete):
        scan.prototype = complete.head(PROTOTYPE_ROWS)
    return scan


@dataclass(frozen=True)
class ChunkPlan:
    """How every chunk becomes model rows: which columns, which factor levels, which groupings.

    Attributes
    ----------
    columns : the used columns, read from each chunk
    factor_levels : categories to give each factor column, so every chunk encodes the same levels
    groupings : levels of each grouping factor (keyed by its columns)
    nrows, nkept, missing : rows read, rows kept, rows dropped for a missing value per column
    """

    columns: tuple[str, ...]
    factor_levels: dict[str, pd.Index]
    groupings: dict[tuple[str, ...], GroupingLevels]
    nrows: int
    nkept: int
    missing: dict[str, int]
    prototype: pd.DataFrame
    moments: dict[str, ColumnMoments] = field(default_factory=dict)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A chunk's complete rows with factor columns given the global levels."""
        return prepare_chunk(frame, self.factor_levels)


def prepare_chunk(frame: pd.DataFrame, factor_levels: dict[str, pd.Index]) -> pd.DataFrame:
    """The complete rows of ``frame`` with each factor column made categorical with its global levels."""
    missing, counts = missing_mask(frame)
    if counts:
        frame = frame.loc[~missing]
    if factor_levels:
        frame = frame.assign(**{c: pd.Categorical(frame[c], categories=lev) for c, lev in factor_levels.items()})
    return frame


def make_plan(scan: ColumnScan, columns: list[str], source_name: str) -> ChunkPlan:
    """A :class:`ChunkPlan` from the scan of all rows; warns with the rows dropped for missing values."""
    if scan.nrows == 0:
        raise ValueError(f"{source_name} has no rows")
    if scan.ncomplete == 0:
        detail = ", ".join(f"{k!r}: {v}" for k, v in scan.missing.items())
        raise ValueError(f"every row of {source_name} has a missing value in a used column ({detail}); "
                         "nothing is left to fit")
    dropped = scan.nrows - scan.ncomplete
    if dropped:
        detail = ", ".join(f"{k!r}: {v}" for k, v in scan.missing.items())
        warnings.warn(f"dropped {dropped} of {scan.nrows} rows with missing values ({detail})", UserWarning,
                      stacklevel=4)
    factor_levels: dict[str, pd.Index] = dict(scan.categories)
    for col in scan.levels:
        try:
            factor_levels[col] = pd.Index(scan.distinct_values(col).sort_values(ignore_index=True))
        except TypeError as exc:
            raise ValueError(f"the values of column {col!r} cannot be ordered (mixed types?): {exc}") from exc
    groupings = {cols: grouping_levels(scan.grouping_keys(cols), cols) for cols in scan.keys}
    return ChunkPlan(tuple(columns), factor_levels, groupings, scan.nrows, scan.ncomplete, dict(scan.missing),
                     prepare_chunk(scan.prototype, factor_levels), dict(scan.moments))
