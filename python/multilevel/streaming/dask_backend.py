"""Passes over a Dask DataFrame: each partition is scanned and summed on the
worker that holds it; partial results (of a size independent of the number
of rows) are merged in a binary tree in partition order, so the result does
not depend on the number of workers or on which worker ran what."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from multilevel.streaming.lmm import (
    LmmChunkModel,
    LmmColumns,
    LmmPartialSums,
    chunk_model,
    merged_copy,
)
from multilevel.streaming.scan import ColumnScan, make_plan, scan_chunk
from multilevel.streaming.sources import select_columns

T = TypeVar("T")


def tree_reduce(items: list[Any], merge: Callable[[T, T], T]) -> Any:
    """Delayed binary-tree reduction of ``items`` in their order: ((0, 1), (2, 3)), ...

    The pairing depends only on the number of items, so a reduction over a
    given partitioning is the same computation whatever runs it.
    """
    import dask

    if not items:
        raise ValueError("the Dask frame has no partitions")
    merge_task = dask.delayed(merge, pure=True)
    level = list(items)
    while len(level) > 1:
        nxt = [merge_task(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _scan_partition(frame: Any, columns: LmmColumns, index: int) -> ColumnScan:
    part = select_columns(frame, list(columns.used), f"partition {index}")
    return scan_chunk(part, columns.expressions, columns.factor_calls, columns.groupings)


def _merge_scans(a: ColumnScan, b: ColumnScan) -> ColumnScan:
    return copy.deepcopy(a).merge(b, where="a later partition")


def _partition_sums(frame: Any, model: LmmChunkModel, index: int) -> LmmPartialSums:
    return model.partial_sums(select_columns(frame, list(model.columns.used), f"partition {index}"),
                              f"partition {index}")


def dask_lmm_sums(ddf: Any, columns: LmmColumns, progress: bool) -> tuple[LmmChunkModel, LmmPartialSums]:
    """Both passes of an LMM over a Dask DataFrame; returns the chunk model and the merged sums."""
    import dask

    parts = ddf[list(columns.used)].to_delayed()
    scans = [dask.delayed(_scan_partition, pure=True)(part, columns, i) for i, part in enumerate(parts)]
    (scan,) = dask.compute(tree_reduce(scans, _merge_scans))
    model = chunk_model(columns, make_plan(scan, columns.used, "the Dask frame"))
    sums = [dask.delayed(_partition_sums, pure=True)(part, model, i) for i, part in enumerate(parts)]
    (total,) = dask.compute(tree_reduce(sums, merged_copy))
    return model, total
