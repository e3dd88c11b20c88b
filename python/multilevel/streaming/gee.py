"""Generalized estimating equations on data read in chunks or held by Dask.

A first pass finds missing values, factor levels, the clusters (each must
lie in one chunk after whole clusters are carried across chunk boundaries,
or in one Dask partition) and the distinct times; a second finds aliased
columns. Then every step of Fisher scoring is a pass in which each chunk
becomes a small in-memory :class:`~multilevel.gee.design.GeeDesign` of
whole clusters, whose sums (:mod:`multilevel.gee.scoring`) are added up.
No per-row array outlives its chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from multilevel.clusters import _positions_from_time, cluster_layout
from multilevel.correlation import CorrelationStructure
from multilevel.families import Family, get_family
from multilevel.fixed_effects import ColumnRFactor, FixedDesign, missing_formula_variables
from multilevel.formula import has_cbind
from multilevel.frames import check_finite, columns_in, require_columns
from multilevel.gee.design import GeeDesign
from multilevel.gee.result import GeeResult
from multilevel.gee.scoring import (
    GeeRows,
    merge,
)
from multilevel.grouping import GroupingLevels
from multilevel.progress import progress_enabled
from multilevel.streaming.passes import DaskPasses, RowPasses, row_passes
from multilevel.streaming.scan import (
    ChunkPlan,
    ClusterSplitError,
    ColumnScan,
    factor_call_columns,
    make_plan,
    merge_scans,
    scan_chunk,
)
from multilevel.streaming.specs import response_and_matrix, response_and_spec

T = TypeVar("T")


@dataclass(frozen=True)
class GeeColumns:
    """Which columns a GEE reads, and in which roles."""

    formula: str
    used: list[str]
    expressions: list[str]
    factor_calls: list[str]
    groups: tuple[str, ...]
    time: str | None
    weights: str | None
    offset: str | None


def refuse_streamed_cbind(formula: str) -> None:
    """A ValueError for a ``cbind(successes, failures)`` response on data read in chunks (not supported there)."""
    if has_cbind(formula):
        raise ValueError(
            f"a cbind(successes, failures) response is not supported for data read in chunks (Parquet, Dask): "
            f"{formula!r}; add the proportion successes / (successes + failures) as a column and pass the trials "
            "as weights=, or fit the data in memory"
        )


def gee_columns(formula: str, names: Iterable[str], groups: Any, time: Any, weights: Any,
                offset: Any) -> GeeColumns:
    """Resolve the columns of a GEE against the column names of chunked data."""
    header = pd.DataFrame(columns=list(names))
    if isinstance(groups, str):
        groups = (groups,)
    if not (isinstance(groups, (list, tuple)) and groups and all(isinstance(g, str) for g in groups)):
        raise TypeError("groups= must name the cluster column(s) when the data are read in chunks")
    for label, value in (("time", time), ("weights", weights), ("offset", offset)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label}= must name a column when the data are read in chunks, "
                            f"not a {type(value).__name__}")
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} has no '~'; write it as 'y ~ x1 + x2'")
    refuse_streamed_cbind(formula)
    missing = missing_formula_variables(formula, header)
    if missing:
        require_columns(missing, header, f"the formula {formula!r}")
    expressions = columns_in(formula, header)
    used = list(expressions)
    for col in (*groups, time, weights, offset):
        if col is not None:
            require_columns([col], header, "groups=/time=/weights=/offset=")
            if col not in used:
                used.append(col)
    return GeeColumns(formula, used, expressions, factor_call_columns(formula), tuple(groups), time, weights,
                      offset)


class GeeScanChunk:
    """The first pass's work on one chunk (a picklable callable, for Dask workers)."""

    def __init__(self, columns: GeeColumns) -> None:
        self.columns = columns

    def __call__(self, frame: pd.DataFrame, where: str) -> ColumnScan:
        c = self.columns
        return scan_chunk(frame, c.expressions, c.factor_calls, [c.groups], where, clusters=c.groups,
                          distinct=(c.time,) if c.time else ())


@dataclass(frozen=True)
class GeeChunkModel:
    """Everything needed to turn any chunk into a :class:`GeeDesign` of whole clusters; pickles."""

    columns: GeeColumns
    plan: ChunkPlan
    fixed_spec: Any  # formulaic ModelSpecs (lhs and rhs)
    clusters: GroupingLevels
    times: pd.Index | None  # sorted distinct times: a row's position is its time's rank (geepack's waves)
    npositions: int
    sizes: np.ndarray  # (nclusters,) rows per cluster
    family: Family
    response: str
    kept: np.ndarray | None = None  # columns left after aliased ones are dropped

    @property
    def names(self) -> list[str]:
        names = [str(c) for c in self.fixed_spec.rhs.column_names]
        return names if self.kept is None else [names[j] for j in self.kept]

    def design(self, frame: pd.DataFrame, where: str) -> GeeDesign | None:
        """The chunk's complete rows as a design of whole clusters (None when no row is left)."""
        rows = self.plan.prepare(frame)
        if len(rows) == 0:
            return None
        y, X = response_and_matrix(self.fixed_spec, rows, self.response, where, self.kept)
        self.family.check_response(y, f"{self.response} in {where}")
        weights = offset = None
        if self.columns.weights is not None:
            weights = rows[self.columns.weights].to_numpy(dtype=float)
            check_finite(weights, f"weights in {where}")
            if np.any(weights < 0):
                raise ValueError(f"weights must be non-negative ({where} has a negative one)")
        if self.columns.offset is not None:
            offset = rows[self.columns.offset].to_numpy(dtype=float)
            check_finite(offset, f"offset in {where}")
        present, local = local_codes(self.clusters.codes_of(rows))
        labels = self.clusters.levels[present]
        positions = None
        if self.times is not None:
            positions = self.times.get_indexer(rows[self.columns.time].to_numpy()).astype(np.int32)
        layout = cluster_layout(local, present.size, None, np.asarray(labels),
                                positions=positions, npositions=self.npositions)
        return GeeDesign(y=y, X=X, names=self.names, layout=layout, cluster_labels=labels, weights=weights,
                         offset=offset, formula=self.columns.formula, groups=self.clusters.name,
                         time=self.columns.time, offset_column=self.columns.offset)


def local_codes(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct codes of a chunk's rows and each row's index among them (int32); in one
    linear step for the usual chunk of data sorted by cluster."""
    if found.size and np.all(found[1:] >= found[:-1]):
        change = np.empty(found.size, dtype=bool)
        change[0] = True
        np.not_equal(found[1:], found[:-1], out=change[1:])
        return found[change], (np.cumsum(change) - 1).astype(np.int32)
    present, local = np.unique(found, return_inverse=True)
    return present, local.astype(np.int32)


class OnChunkDesign:
    """Apply a per-part function to a chunk's design (picklable: runs on Dask workers)."""

    def __init__(self, model: GeeChunkModel, per_part: Callable[[GeeDesign], Any]) -> None:
        self.model, self.per_part = model, per_part

    def __call__(self, frame: pd.DataFrame, where: str) -> Any:
        design = self.model.design(frame, where)
        return None if design is None else self.per_part(design)


def merge_present(a: Any, b: Any) -> Any:
    """``merge`` of two parts' sums, where a chunk with no complete row gave None."""
    if a is None:
        return b
    return a if b is None else merge(a, b)


class StreamRows(GeeRows):
    """The rows of a GEE in chunks (a file, a dataset, :func:`chunks`, a Dask frame)."""

    def __init__(self, passes: RowPasses, model: GeeChunkModel) -> None:
        self.passes, self.model = passes, model
        self.name = passes.name
        self.npositions = model.npositions
        self.nclusters = model.clusters.nlevels
        self.max_cluster_size = int(model.sizes.max())

    def map_reduce(self, per_part: Callable[[GeeDesign], T], desc: str = "reading rows") -> T:
        return self.passes.map_reduce(OnChunkDesign(self.model, per_part), merge_present,
                                      list(self.model.columns.used), desc, cluster_columns=self.model.columns.groups)


@dataclass
class ClusterCounts:
    """What a result needs of the cluster layout when the rows are not kept."""

    sizes: np.ndarray
    npositions: int

    @property
    def nclusters(self) -> int:
        return int(self.sizes.size)


@dataclass
class RowlessGeeDesign:
    """Labels, model spec and cluster counts of a GEE fit whose rows were read in chunks and not kept."""

    names: list[str]
    fixed: FixedDesign
    layout: ClusterCounts
    cluster_labels: pd.Index
    nobs: int
    n_dropped: int
    formula: str
    groups: str
    time: str | None
    offset_column: str | None
    source: str
    has_rows = False
    offset_argument = False  # chunked data take an offset as a column only, which new rows carry
    y = X = weights = offset = row_index = None


def scan_clusters(passes: RowPasses, columns: GeeColumns) -> tuple[RowPasses, ColumnScan, pd.Series]:
    """The first pass, and the rows per cluster; each cluster must lie in one chunk or partition.

    Dask partitions that split clusters are shuffled on the cluster columns (with a warning), the rows of
    each partition kept in their order in the data, which gives the positions when ``time=`` does not.
    Returns the passes to use from then on.
    """
    def scan(over: RowPasses) -> tuple[ColumnScan, pd.Series]:
        found = over.map_reduce(GeeScanChunk(columns), merge_scans, columns.used, "reading levels",
                                cluster_columns=columns.groups)
        return found, found.cluster_counts()

    try:
        return (passes, *scan(passes))
    except ClusterSplitError:
        if not isinstance(passes, DaskPasses):
            raise
        warnings.warn(f"the partitions of the Dask frame split clusters; shuffling it on {list(columns.groups)} "
                      "(the rows of a cluster keep their order; repartition by the cluster column beforehand to "
                      "avoid the shuffle)", UserWarning, stacklevel=4)
        shuffled = passes.shuffled_on(list(columns.groups))
        return (shuffled, *scan(shuffled))


def gee_chunk_model(columns: GeeColumns, plan: ChunkPlan, scan: ColumnScan, counts: pd.Series,
                    family: Family) -> GeeChunkModel:
    """The model spec (built once on the first complete rows) and the global cluster and time layout."""
    lhs, fixed_spec = response_and_spec(columns.formula, plan.prototype, plan.moments)
    clusters = plan.groupings[columns.groups]
    if clusters.nlevels < 2:
        raise ValueError(f"groups column {clusters.name!r} has {clusters.nlevels} level: GEE needs several "
                         "clusters (its sandwich variance is estimated from the spread between clusters)")
    sizes = counts.reindex(clusters.keys).to_numpy(dtype=np.int64)
    times = None
    if columns.time is not None:
        distinct = scan.distinct_values(columns.time).to_numpy()
        _positions_from_time(distinct, True)  # the in-memory checks: numeric, finite, integer-valued
        times = pd.Index(np.unique(distinct))
        npositions = len(times)
    else:
        npositions = int(sizes.max())
    return GeeChunkModel(columns, plan, fixed_spec, clusters, times, npositions, sizes, family, lhs)


def part_r_factor(design: GeeDesign) -> ColumnRFactor:
    return ColumnRFactor(design.X.shape[1]).add_rows(design.X)


def streamed_gee(formula: str, data: Any, *, groups: Any, time: Any, family: Family | str, link: Any,
                 corr: CorrelationStructure | str | None, weights: Any, offset: Any, scale: float | None,
                 cov_type: str, maxiter: int, tol: float, progress: bool | None,
                 moments: str = "geepack", verbose: bool = False) -> GeeResult | None:
    """A GEE fit on chunked or Dask data; None for in-memory data."""
    from multilevel.gee.fit import estimate_gee

    passes = row_passes(data, progress_enabled(progress))
    if passes is None:
        return None
    if groups is None:
        raise ValueError("gee needs groups=: the column that says which cluster each row is in")
    family = get_family(family, link)
    from multilevel.gee.fit import gee_correlation

    structure = gee_correlation(corr)
    columns = gee_columns(formula, passes.column_names(), groups, time, weights, offset)
    passes, scan, counts = scan_clusters(passes, columns)
    plan = make_plan(scan, columns.used, passes.name)
    model = gee_chunk_model(columns, plan, scan, counts, family)
    aliased = StreamRows(passes, model).map_reduce(part_r_factor, "checking columns").aliased()
    if aliased:
        names = model.names
        warnings.warn(f"fixed-effect model matrix is rank deficient, so dropping {len(aliased)} column(s): "
                      f"{', '.join(names[j] for j in aliased)}", UserWarning, stacklevel=3)
        model = replace(model, kept=np.array([j for j in range(len(names)) if j not in aliased], dtype=int))
    rows = StreamRows(passes, model)
    p = len(model.names)
    # The rows are not kept: the covariances and the quasi-likelihood are made now, with the robust meat.
    est, notes, final = estimate_gee(rows, family, structure, p=p, nobs=plan.nkept, scale=scale, maxiter=maxiter,
                                     tol=tol, moments=moments, verbose=verbose,
                                     extra_meats=("bias_reduced", "jackknife"), quasi_loglik=True)
    all_names = [str(c) for c in model.fixed_spec.rhs.column_names]
    kept = np.arange(len(all_names)) if model.kept is None else model.kept
    fixed = FixedDesign(np.empty(0), np.empty((0, p)), model.names, model.response, model.fixed_spec.rhs, kept,
                        [all_names[j] for j in aliased])
    design = RowlessGeeDesign(model.names, fixed, ClusterCounts(model.sizes, model.npositions),
                              model.clusters.levels, plan.nkept, plan.nrows - plan.nkept, formula,
                              model.clusters.name, columns.time, columns.offset, passes.name)
    return GeeResult(design=design, family=family, structure=structure, params_array=est.beta, scale=est.scale,
                     corr_params=est.corr_params, information=est.information, meat=est.meat, working=None,
                     n_iter=est.n_iter, converged=est.converged, cov_type=cov_type, scale_fixed=scale is not None,
                     meats=final.meats, quasi_loglik=final.quasi_loglik, rows=rows, moments=moments,
                     fit_notes=notes)
