"""Linear mixed models on data read in chunks or held by Dask.

Two passes over the rows: the first (:mod:`~multilevel.streaming.scan`)
finds missing values, factor levels and grouping levels; the second builds
each chunk's arrays with the same model spec and adds them into a
:class:`multilevel._core.NormalEquationsAccumulator`. The model then works
on the accumulated blocks exactly as an in-memory fit does; no per-row
array is kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel import _core
from multilevel.fixed_effects import ColumnRFactor, FixedDesign
from multilevel.formula import RandomTermSpec, refuse_cbind
from multilevel.frames import check_finite, require_columns
from multilevel.lmm.design import RowlessLmmDesign, TermStructure, check_term_sizes, mixed_model_columns, term_columns
from multilevel.progress import progress_enabled
from multilevel.streaming.passes import row_passes
from multilevel.streaming.scan import ChunkPlan, ColumnScan, factor_call_columns, make_plan, merge_scans, scan_chunk
from multilevel.streaming.specs import response_and_matrix, response_and_spec, with_global_transform_state


@dataclass(frozen=True)
class LmmColumns:
    """Which columns a model reads, and in which roles."""

    fixed_formula: str
    terms: list[RandomTermSpec]
    used: list[str]  # every column read from a chunk
    expressions: list[str]  # columns inside the fixed and random-term formulas
    factor_calls: list[str]  # columns the formula wraps in C(...)
    weights: str | None
    offset: str | None

    @property
    def groupings(self) -> list[tuple[str, ...]]:
        return list(dict.fromkeys(tuple(t.factors) for t in self.terms))


def lmm_columns(formula: str, names: Iterable[str], weights: Any, offset: Any) -> LmmColumns:
    """Resolve the columns of an LMM formula against the column names of chunked data."""
    header = pd.DataFrame(columns=list(names))
    for label, value in (("weights", weights), ("offset", offset)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label}= must name a column when the data are read in chunks, "
                            f"not a {type(value).__name__}")
    refuse_cbind(formula, "a linear mixed model")
    fixed_formula, specs, used, expressions = mixed_model_columns(formula, header)
    for col in (weights, offset):
        if col is not None:
            require_columns([col], header, "weights=/offset=")
            if col not in used:
                used.append(col)
    return LmmColumns(fixed_formula, specs, used, expressions, factor_call_columns(formula), weights, offset)


class LmmPartialSums:
    """The sums of some rows: the normal-equations accumulator, the R factor of X, and the rows read."""

    def __init__(self, acc: Any, rfactor: ColumnRFactor, nread: int) -> None:
        self.acc, self.rfactor, self.nread = acc, rfactor, nread

    def merge(self, other: LmmPartialSums) -> LmmPartialSums:
        """Add another part's sums into this one (this one's rows first)."""
        self.acc.merge(other.acc)
        self.rfactor.merge(other.rfactor)
        self.nread += other.nread
        return self


@dataclass(frozen=True)
class LmmChunkModel:
    """Everything needed to turn any chunk into the model's arrays; pickles (it travels to Dask workers).

    Terms are in the core's order (decreasing number of levels).
    """

    columns: LmmColumns
    plan: ChunkPlan
    fixed_spec: Any  # formulaic ModelSpecs (lhs and rhs)
    terms: list[TermStructure]
    response: str

    @property
    def p(self) -> int:
        return len(self.fixed_spec.rhs.column_names)

    def empty_sums(self) -> LmmPartialSums:
        acc = _core.NormalEquationsAccumulator(self.p, [t.p for t in self.terms], [t.nlevels for t in self.terms])
        return LmmPartialSums(acc, ColumnRFactor(self.p), 0)

    def partial_sums(self, frame: pd.DataFrame, where: str) -> LmmPartialSums:
        """The sums of one chunk (a frame of the used columns), its rows named by ``where`` in errors."""
        return self.add_chunk(self.empty_sums(), frame, where)

    def add_chunk(self, sums: LmmPartialSums, frame: pd.DataFrame, where: str) -> LmmPartialSums:
        """Add one chunk's rows into ``sums`` (no per-chunk accumulator, whose term-0 blocks are O(levels))."""
        sums.nread += len(frame)
        rows = self.plan.prepare(frame)
        if len(rows) == 0:
            return sums
        y, X = response_and_matrix(self.fixed_spec, rows, self.response, where)
        codes, zs = [], []
        for t in self.terms:
            c = t.grouping.codes_of(rows)
            if (c < 0).any():
                raise ValueError(f"{where} has a level of {t.group!r} that the first pass did not see; "
                                 "the data changed between passes (a source must give the same rows each time)")
            z = t.z_for(rows)
            for j, name in enumerate(t.columns):
                check_finite(z[:, j], f"random-effects column {name!r} of term {t.label} in {where}")
            codes.append(c)
            zs.append(z)
        weights = np.empty(0)
        if self.columns.weights is not None:
            weights = rows[self.columns.weights].to_numpy(dtype=float)
            if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
                bad = int(np.flatnonzero(~(np.isfinite(weights) & (weights > 0)))[0])
                raise ValueError(f"weights column {self.columns.weights!r} has a value that is not positive and "
                                 f"finite ({weights[bad]!r}) in {where}; drop those rows")
        if self.columns.offset is not None:
            off = rows[self.columns.offset].to_numpy(dtype=float)
            check_finite(off, f"offset column {self.columns.offset!r} in {where}")
            y = y - off
        sums.acc.add_rows(y, X, weights, codes, zs)
        sums.rfactor.add_rows(X)
        return sums


def chunk_model(columns: LmmColumns, plan: ChunkPlan) -> LmmChunkModel:
    """The model spec, built once on the first complete rows (with global factor levels)."""
    proto = plan.prototype
    lhs, fixed_spec = response_and_spec(columns.fixed_formula, proto, plan.moments)
    terms = []
    for spec in columns.terms:
        _, names, z_spec = term_columns(spec, proto)
        levels = plan.groupings[tuple(spec.factors)]
        terms.append(TermStructure(levels.name, names, levels.levels, spec.expr,
                                   with_global_transform_state(z_spec, plan.moments), tuple(spec.factors),
                                   levels.keys))
    terms = sorted(terms, key=lambda t: -t.nlevels)
    return LmmChunkModel(columns, plan, fixed_spec, terms, lhs)


class ScanChunk:
    """The first pass's work on one chunk (a picklable callable, for Dask workers)."""

    def __init__(self, columns: LmmColumns) -> None:
        self.columns = columns

    def __call__(self, frame: pd.DataFrame, where: str) -> ColumnScan:
        c = self.columns
        return scan_chunk(frame, c.expressions, c.factor_calls, c.groupings, where)


def merge_sums(a: LmmPartialSums, b: LmmPartialSums) -> LmmPartialSums:
    return a.merge(b)


def finish_design(model: LmmChunkModel, sums: LmmPartialSums, source_name: str) -> tuple[RowlessLmmDesign, Any]:
    """Drop aliased columns, check the terms, and build the core and the rowless design."""
    plan = model.plan
    if sums.nread != plan.nrows or sums.acc.nobs != plan.nkept:
        raise ValueError(f"{source_name} gave {sums.nread} rows on the second pass but {plan.nrows} on the first; "
                         "a source must give the same rows each time")
    names = [str(c) for c in model.fixed_spec.rhs.column_names]
    aliased = sums.rfactor.aliased()
    kept = np.array([j for j in range(len(names)) if j not in aliased], dtype=int)
    dropped = [names[j] for j in aliased]
    if dropped:
        warnings.warn(f"fixed-effect model matrix is rank deficient, so dropping {len(dropped)} column(s): "
                      f"{', '.join(dropped)}", UserWarning, stacklevel=4)
        sums.acc.keep_fixed_columns(kept.tolist())
    check_term_sizes(model.terms, plan.nkept)
    fixed = FixedDesign(np.empty(0), np.empty((0, kept.size)), [names[j] for j in kept], model.response,
                        model.fixed_spec.rhs, kept, dropped)
    design = RowlessLmmDesign(
        fixed_names=fixed.names, terms=model.terms, nobs=plan.nkept, fixed=fixed, formula=None,
        response=model.response, n_dropped=plan.nrows - plan.nkept, source=source_name,
    )
    if model.columns.offset is not None:
        design.extra["offset_column"] = model.columns.offset
    return design, _core.LmmCore.from_accumulator(sums.acc)


def streamed_lmm_core(formula: str, data: Any, *, weights: Any = None, offset: Any = None,
                      progress: bool | None = None) -> tuple[RowlessLmmDesign, Any] | None:
    """The design and core of an LMM on chunked or Dask data; None for in-memory data."""
    passes = row_passes(data, progress_enabled(progress))
    if passes is None:
        return None
    columns = lmm_columns(formula, passes.column_names(), weights, offset)
    scan = passes.map_reduce(ScanChunk(columns), merge_scans, columns.used, "reading levels")
    model = chunk_model(columns, make_plan(scan, columns.used, passes.name))
    sums = passes.map_reduce(model.partial_sums, merge_sums, columns.used, "summing rows", add_into=model.add_chunk)
    design, core = finish_design(model, sums, passes.name)
    design.formula = formula
    return design, core
