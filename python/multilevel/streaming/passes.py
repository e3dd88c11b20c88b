"""One pass over chunked or Dask data: a function applied to each chunk, its
results merged in chunk order.

The fitting code says what to compute per chunk and how two partial
results add up; a :class:`RowPasses` decides where that runs: in this
process over a :class:`~multilevel.streaming.sources.ChunkSource`, or on
the Dask workers that hold the partitions, merged as a tree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from multilevel.progress import iterate_with_progress
from multilevel.streaming.sources import ChunkSource, select_columns

T = TypeVar("T")
PerChunk = Callable[[pd.DataFrame, str], T]
Merge = Callable[[T, T], T]
AddInto = Callable[[T, pd.DataFrame, str], T]


class RowPasses:
    """Passes over the rows of some data, one chunk at a time (see the subclasses)."""

    name: str

    def column_names(self) -> list[str]:
        """The columns of the data."""
        raise NotImplementedError

    def map_reduce(self, per_chunk: PerChunk, merge: Merge, columns: list[str], desc: str = "reading rows",
                   cluster_columns: tuple[str, ...] | None = None, add_into: AddInto | None = None) -> Any:
        """``per_chunk(frame, where)`` on every chunk (a frame of ``columns``), merged in chunk order.

        ``merge(a, b)`` may update ``a`` in place and return it. With
        ``cluster_columns``, every cluster is whole in one chunk (see
        :class:`SourcePasses`; a Dask partition must hold whole clusters).
        ``add_into(total, frame, where)``, where given, adds a chunk straight
        into the running result when the chunks are read in this process
        (no partial result per chunk); Dask partitions still use
        ``per_chunk`` and ``merge``.
        """
        raise NotImplementedError


class SourcePasses(RowPasses):
    """Passes over a :class:`ChunkSource` in this process, chunk after chunk.

    With ``cluster_columns``, each chunk handed on ends at a cluster
    boundary: the rows of the cluster still open at the end of a chunk are
    carried into the next one, so a cluster split by the storage's chunking
    is whole in the chunk that sees it.
    """

    def __init__(self, source: ChunkSource, progress: bool) -> None:
        self.source, self.progress = source, progress
        self.name = source.name

    def column_names(self) -> list[str]:
        return self.source.column_names()

    def map_reduce(self, per_chunk: PerChunk, merge: Merge, columns: list[str], desc: str = "reading rows",
                   cluster_columns: tuple[str, ...] | None = None, add_into: AddInto | None = None) -> Any:
        frames = self.source.frames(list(columns))
        if cluster_columns is not None:
            frames = whole_clusters(frames, cluster_columns)
        total = None
        for i, frame in enumerate(iterate_with_progress(frames, desc, self.progress)):
            where = f"chunk {i} of {self.name}"
            if total is None:
                total = per_chunk(frame, where)
            elif add_into is not None:
                total = add_into(total, frame, where)
            else:
                total = merge(total, per_chunk(frame, where))
        if total is None:
            raise ValueError(f"{self.name} gave no chunks; there are no rows to fit")
        return total


def whole_clusters(frames: Iterator[pd.DataFrame], columns: tuple[str, ...]) -> Iterator[pd.DataFrame]:
    """Re-cut a stream of frames so that no run of equal cluster keys is split between two frames.

    The rows of a run that a frame boundary cuts are joined into a small frame of their own, so no
    large frame is copied.
    """
    tail: pd.DataFrame | None = None
    for frame in frames:
        if len(frame) == 0:
            continue
        if tail is not None:
            same = same_key(frame, columns, tail)
            k = len(frame) if same.all() else int(np.argmin(same))  # rows continuing the tail's run
            if k == len(frame):
                tail = pd.concat([tail, frame], ignore_index=True)
                continue
            yield pd.concat([tail, frame.iloc[:k]], ignore_index=True) if k else tail
            frame = frame.iloc[k:]
        other = np.flatnonzero(~same_key(frame, columns, frame))
        start = int(other[-1]) + 1 if other.size else 0  # the last run starts after the last other key
        tail = frame.iloc[start:]
        if start:
            yield frame.iloc[:start]
    if tail is not None and len(tail):
        yield tail


def same_key(frame: pd.DataFrame, columns: tuple[str, ...], like: pd.DataFrame) -> np.ndarray:
    """Whether each row of ``frame`` has the cluster key of the last row of ``like`` (missing keys are a
    key of their own)."""
    same = np.ones(len(frame), dtype=bool)
    for c in columns:
        values, key = frame[c].to_numpy(), like[c].iloc[-1]
        same &= pd.isna(values) if pd.isna(key) else np.asarray(values == key, dtype=bool)
    return same


class DaskPasses(RowPasses):
    """Passes over a Dask DataFrame: each partition is processed on the worker that holds it.

    Partial results (of a size independent of the number of rows) are merged
    in a binary tree in partition order, so the result does not depend on the
    number of workers or on which worker ran what.
    """

    def __init__(self, ddf: Any, progress: bool = False) -> None:
        self.ddf, self.progress = ddf, progress
        self.name = f"the Dask frame ({ddf.npartitions} partitions)"

    def column_names(self) -> list[str]:
        return [str(c) for c in self.ddf.columns]

    def shuffled_on(self, columns: list[str]) -> DaskPasses:
        """The frame shuffled so that the rows of each key of ``columns`` lie in one partition, each
        partition's rows in their order in the data (positions by row order survive the shuffle), and
        persisted: every later pass reads it."""
        keyed = self.ddf.map_partitions(_with_row_order, meta=self.ddf._meta.assign(**{ROW_ORDER: np.int64(0)}))
        shuffled = keyed.shuffle(on=list(columns)).map_partitions(_in_row_order, meta=self.ddf._meta)
        return DaskPasses(shuffled.persist(), self.progress)

    def map_reduce(self, per_chunk: PerChunk, merge: Merge, columns: list[str], desc: str = "reading rows",
                   cluster_columns: tuple[str, ...] | None = None, add_into: AddInto | None = None) -> Any:
        import dask

        columns = list(columns)
        parts = self.ddf[columns].to_delayed()
        tasks = [dask.delayed(_run_on_partition, pure=True)(part, per_chunk, columns, i)
                 for i, part in enumerate(parts)]
        client = _distributed_client() if self.progress else None
        if client is not None:
            # Start the partitions' work on the workers and count them as they finish; the tree of
            # merges then runs on the same results.
            from distributed import as_completed, futures_of

            tasks = list(dask.persist(*tasks))
            for _ in iterate_with_progress(as_completed(futures_of(tasks)), desc, True, "partition", len(tasks)):
                pass
        (total,) = dask.compute(tree_reduce(tasks, _copying(merge)))
        return total


#: The column that carries each row's place in the data through a shuffle (see DaskPasses.shuffled_on).
ROW_ORDER = "__multilevel_row_order__"


def _with_row_order(frame: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    """``frame`` with :data:`ROW_ORDER`: its partition's number in the high 32 bits, the row's in the low."""
    number = 0 if partition_info is None else int(partition_info["number"])
    return frame.assign(**{ROW_ORDER: (np.int64(number) << 32) + np.arange(len(frame), dtype=np.int64)})


def _in_row_order(frame: pd.DataFrame) -> pd.DataFrame:
    """A shuffled partition's rows put back in the order they had in the data, without :data:`ROW_ORDER`."""
    return frame.sort_values(ROW_ORDER, kind="stable").drop(columns=ROW_ORDER)


def _distributed_client() -> Any:
    """The active Dask distributed client, if there is one."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _run_on_partition(frame: Any, per_chunk: PerChunk, columns: list[str], index: int) -> Any:
    where = f"partition {index}"
    return per_chunk(select_columns(frame, columns, where), where)


class _copying:
    """``merge`` applied to a copy of its first argument (a task graph may reuse its inputs)."""

    def __init__(self, merge: Merge) -> None:
        self.merge = merge

    def __call__(self, a: Any, b: Any) -> Any:
        return self.merge(copy.deepcopy(a), b)


def tree_reduce(items: list[Any], merge: Callable[[Any, Any], Any]) -> Any:
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


def row_passes(data: Any, progress: bool) -> RowPasses | None:
    """The :class:`RowPasses` for streamed or Dask data; None for in-memory data."""
    from multilevel.streaming.sources import chunk_source, is_dask_frame

    if is_dask_frame(data):
        return DaskPasses(data, progress)
    source = chunk_source(data)
    return None if source is None else SourcePasses(source, progress)
