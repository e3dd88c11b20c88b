"""Data that arrive in chunks: Parquet files and datasets, and any re-iterable
source of frames (:func:`chunks`). Each pass reads only the columns a model
uses, one chunk at a time, as pandas frames."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

import pandas as pd

#: Rows per chunk handed to the core: batches of a Parquet scan are joined up to this size.
TARGET_CHUNK_ROWS = 1 << 19


@dataclass(frozen=True)
class ChunkSource:
    """A re-iterable source of data frames, read one chunk at a time.

    Build one with :func:`chunks` (any factory of frames) or pass a Parquet
    path or a ``pyarrow.dataset.Dataset`` to a fitting function, which wraps
    it. ``columns`` lists the columns every chunk has (None: known only when
    reading).
    """

    open_chunks: Callable[[list[str]], Iterator[Any]]
    columns: tuple[str, ...] | None
    name: str

    def column_names(self) -> list[str]:
        """The columns of the data (for a :func:`chunks` source: of its first chunk)."""
        if self.columns is not None:
            return list(self.columns)
        for chunk in self.open_chunks([]):
            return [str(c) for c in _column_names(chunk, f"chunk 0 of {self.name}")]
        raise ValueError(f"{self.name} gave no chunks; there are no rows to fit")

    def frames(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """One pass over the data: pandas frames holding only ``columns``.

        A chunk that lacks one of ``columns`` is a ValueError naming the
        column and the chunk.
        """
        for index, chunk in enumerate(self.open_chunks(columns)):
            yield select_columns(chunk, columns, f"chunk {index} of {self.name}")


def chunks(factory: Callable[[], Iterable[Any]], *, name: str = "chunks") -> ChunkSource:
    """Wrap a factory of data chunks as data for :func:`multilevel.lmm` and friends.

    Parameters
    ----------
    factory : callable
        ``factory()`` returns a fresh iterable of pandas DataFrames, polars
        DataFrames or pyarrow Tables/RecordBatches, all with the same columns.
        It is called once per pass over the data (a mixed-model fit makes two:
        levels, then sums).
    name : str
        Used in error messages.

    Examples
    --------
    >>> import pandas as pd
    >>> from multilevel import chunks, lmm
    >>> from multilevel.datasets import load_dataset
    >>> sleep = load_dataset("sleepstudy")
    >>> source = chunks(lambda: (sleep.iloc[i:i + 50] for i in range(0, len(sleep), 50)))
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", source)
    >>> round(float(fit.params["Days"]), 3)
    10.467
    """
    if not callable(factory):
        raise TypeError(
            f"chunks() takes a function that returns a fresh iterator of frames, not {type(factory).__name__}; "
            "for a list of frames use chunks(lambda: frames)"
        )

    def open_chunks(columns: list[str]) -> Iterator[Any]:
        produced = factory()
        if isinstance(produced, (pd.DataFrame, str, bytes)) or not isinstance(produced, Iterable):
            raise TypeError(f"the factory given to chunks() must return an iterable of frames, "
                            f"not {type(produced).__name__}")
        return iter(produced)

    return ChunkSource(open_chunks, None, name)


def select_columns(chunk: Any, columns: list[str], where: str) -> pd.DataFrame:
    """``chunk`` (pandas, polars or pyarrow) as a pandas frame of ``columns`` only, selected before converting."""
    names = [str(c) for c in _column_names(chunk, where)]
    missing = [c for c in columns if c not in names]
    if missing:
        close = get_close_matches(missing[0], names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"column {missing[0]!r} is not in {where}{hint}")
    if isinstance(chunk, pd.DataFrame):
        return chunk[columns]
    if hasattr(chunk, "select") and hasattr(chunk, "to_pandas"):  # polars, pyarrow Table / RecordBatch
        return chunk.select(columns).to_pandas()
    raise TypeError(f"{where} is a {type(chunk).__name__}; chunks must be pandas or polars DataFrames "
                    "or pyarrow Tables")


def _column_names(chunk: Any, where: str) -> list[Any]:
    if isinstance(chunk, pd.DataFrame):
        if chunk.columns.duplicated().any():
            dup = chunk.columns[chunk.columns.duplicated()][0]
            raise ValueError(f"{where} has two columns named {dup!r}; rename one")
        return list(chunk.columns)
    for attr in ("column_names", "columns"):  # pyarrow, polars
        if hasattr(chunk, attr):
            return list(getattr(chunk, attr))
    raise TypeError(f"{where} is a {type(chunk).__name__}; chunks must be pandas or polars DataFrames "
                    "or pyarrow Tables")


def parquet_source(data: Any) -> ChunkSource:
    """A :class:`ChunkSource` over a Parquet file, a folder of them, or a ``pyarrow.dataset.Dataset``.

    Batches are read with only the requested columns and joined into chunks
    of about :data:`TARGET_CHUNK_ROWS` rows.
    """
    import pyarrow as pa
    import pyarrow.dataset as pds

    if isinstance(data, pds.Dataset):
        dataset, name = data, "the dataset"
    else:
        path = os.fspath(data)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no Parquet file or folder at {path!r}")
        try:
            dataset = pds.dataset(path, format="parquet")
            dataset.schema  # noqa: B018  (reads the footers: fails here for a file that is not Parquet)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path!r} is not a Parquet file or a folder of Parquet files: {exc}") from exc
        name = repr(path)
        if not dataset.files:
            raise ValueError(f"the folder {path!r} holds no Parquet files")
    columns = tuple(dataset.schema.names)

    def open_chunks(wanted: list[str]) -> Iterator[Any]:
        missing = [c for c in wanted if c not in columns]
        if missing:
            close = get_close_matches(missing[0], list(columns), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"column {missing[0]!r} is not in {name}{hint}")
        pending, rows = [], 0
        try:
            # Little read-ahead: memory stays a few chunks whatever the size of the data.
            for batch in dataset.to_batches(columns=wanted, batch_readahead=1, fragment_readahead=1):
                pending.append(batch)
                rows += batch.num_rows
                if rows >= TARGET_CHUNK_ROWS:
                    yield pa.Table.from_batches(pending)
                    pending, rows = [], 0
        except pa.ArrowInvalid as exc:
            raise ValueError(f"could not read {name}: {exc}") from exc
        if pending:
            yield pa.Table.from_batches(pending)

    return ChunkSource(open_chunks, columns, name)


def is_dask_frame(data: Any) -> bool:
    """True for a ``dask.dataframe.DataFrame`` (without importing dask when it is not loaded)."""
    module = type(data).__module__
    return module.startswith("dask") and hasattr(data, "to_delayed") and hasattr(data, "npartitions")


def chunk_source(data: Any) -> ChunkSource | None:
    """The :class:`ChunkSource` for streamed data (path, pyarrow dataset, :func:`chunks`), else None."""
    if isinstance(data, ChunkSource):
        return data
    if isinstance(data, (str, os.PathLike)):
        return parquet_source(data)
    if type(data).__module__.startswith("pyarrow") and type(data).__name__.endswith("Dataset"):
        return parquet_source(data)
    return None


def is_streaming_source(data: Any) -> bool:
    """True for data read in chunks or on Dask (a path, a pyarrow dataset, :func:`chunks`, a Dask frame)."""
    if isinstance(data, (ChunkSource, str, os.PathLike)) or is_dask_frame(data):
        return True
    return type(data).__module__.startswith("pyarrow") and type(data).__name__.endswith("Dataset")
