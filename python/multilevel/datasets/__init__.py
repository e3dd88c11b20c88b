"""Small classic datasets for mixed-model examples and tests.

The datasets bundled here are teaching and benchmark datasets that ship with
R packages: ``lme4`` (``sleepstudy``, ``Dyestuff``, ``Penicillin``, ``Pastes``,
``InstEval``, ``cbpp``, ``VerbAgg``, ``grouseticks``), ``geepack`` (``ohio``, ``dietox``,
``respiratory``), ``MASS`` (``epil``), ``nlme`` (``Orthodont``, ``Ovary``,
``BodyWeight``, ``Oxboys``) and ``mlmRev`` (``Contraception``).  Each one is stored as a CSV file
(``InstEval`` gzip-compressed) together with a JSON schema that records, for
every column in order, its type (``"factor"``, ``"ordered"``, ``"integer"`` or
``"numeric"``) and, for factors, the levels in R's order.  The loader uses the
schema to rebuild the columns with faithful dtypes:

* factors become :class:`pandas.Categorical` with string categories in R's
  level order (``ordered=True`` for R ordered factors),
* integer columns become ``int64``,
* numeric columns become ``float64``.

See ``PROVENANCE.md`` in this directory for the source of each dataset and
its licence.

Examples
--------
>>> from multilevel.datasets import list_datasets, load_dataset
>>> "sleepstudy" in list_datasets()
True
>>> sleep = load_dataset("sleepstudy")
>>> sleep.shape
(180, 3)
>>> list(sleep.columns)
['Reaction', 'Days', 'Subject']
"""

from __future__ import annotations

import gzip
import io
import json
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["list_datasets", "load_dataset"]

_DATA_PACKAGE = __name__
_DATA_DIR = "data"


def _data_dir() -> Any:
    """Return a traversable handle to the bundled ``data`` directory."""
    return resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR)


def list_datasets() -> list[str]:
    """List the names of the bundled datasets.

    Returns
    -------
    list of str
        Dataset names, sorted case-insensitively.  Each name can be passed to
        :func:`load_dataset`.

    Examples
    --------
    >>> from multilevel.datasets import list_datasets
    >>> list_datasets()  # doctest: +NORMALIZE_WHITESPACE
    ['BodyWeight', 'cbpp', 'Contraception', 'dietox', 'Dyestuff', 'Dyestuff2', 'epil', 'grouseticks', 'ham',
     'InstEval', 'ohio', 'Orthodont', 'Ovary', 'Oxboys', 'Pastes', 'Penicillin', 'respiratory', 'sleepstudy', 'VerbAgg']
    """
    names = [
        entry.name[: -len(".json")]
        for entry in _data_dir().iterdir()
        if entry.name.endswith(".json")
    ]
    return sorted(names, key=lambda s: (s.lower(), s))


def _read_schema(name: str) -> list[dict[str, Any]]:
    schema_file = _data_dir().joinpath(f"{name}.json")
    with schema_file.open("r", encoding="utf-8") as fh:
        schema = json.load(fh)
    if not isinstance(schema, list):
        raise ValueError(f"malformed schema for dataset {name!r}: expected a list")
    return schema


def _read_csv_bytes(name: str) -> bytes:
    directory = _data_dir()
    plain = directory.joinpath(f"{name}.csv")
    if plain.is_file():
        return plain.read_bytes()
    compressed = directory.joinpath(f"{name}.csv.gz")
    if compressed.is_file():
        return gzip.decompress(compressed.read_bytes())
    raise FileNotFoundError(f"no CSV data file found for dataset {name!r}")


def _convert_column(raw: pd.Series, spec: dict[str, Any], name: str) -> pd.Series:
    col_type = spec["type"]
    col_name = spec["name"]
    if col_type in ("factor", "ordered"):
        levels = [str(level) for level in spec["levels"]]
        values = raw.astype(object).where(raw.notna(), None)
        unknown = set(values.dropna().unique()) - set(levels)
        if unknown:
            raise ValueError(
                f"dataset {name!r}, column {col_name!r}: values "
                f"{sorted(unknown)!r} are not among the declared levels"
            )
        dtype = pd.CategoricalDtype(categories=levels, ordered=(col_type == "ordered"))
        return pd.Series(
            pd.Categorical(values, dtype=dtype), name=col_name, index=raw.index
        )
    if col_type == "integer":
        if raw.isna().any():
            raise ValueError(
                f"dataset {name!r}, column {col_name!r}: missing values in an "
                "integer column"
            )
        return pd.Series(raw.to_numpy(dtype=np.int64), name=col_name, index=raw.index)
    if col_type == "numeric":
        # Python's float() parses decimal strings with correct rounding, so
        # values written with 17 significant digits round-trip exactly.
        parsed = np.array(
            [np.nan if value is None or pd.isna(value) else float(value) for value in raw],
            dtype=np.float64,
        )
        return pd.Series(parsed, name=col_name, index=raw.index)
    raise ValueError(
        f"dataset {name!r}, column {col_name!r}: unknown column type {col_type!r}"
    )


def load_dataset(name: str) -> pd.DataFrame:
    """Load one of the bundled datasets as a :class:`pandas.DataFrame`.

    Parameters
    ----------
    name : str
        Name of the dataset, exactly as returned by :func:`list_datasets`
        (for example ``"sleepstudy"``, ``"Dyestuff"`` or ``"InstEval"``).

    Returns
    -------
    pandas.DataFrame
        The data with columns in R's order.  R factors are
        :class:`pandas.Categorical` columns whose categories are strings in
        R's level order (``ordered=True`` for ordered factors); integer
        columns are ``int64`` and numeric columns ``float64``.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled dataset; the message lists the
        available names.

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> dyes = load_dataset("Dyestuff")
    >>> dyes.shape
    (30, 2)
    >>> list(dyes["Batch"].cat.categories)
    ['A', 'B', 'C', 'D', 'E', 'F']
    >>> str(dyes["Yield"].dtype)
    'float64'
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, not {type(name).__name__}")
    available = list_datasets()
    if name not in available:
        raise ValueError(
            f"unknown dataset {name!r}; available datasets are: "
            + ", ".join(available)
        )
    schema = _read_schema(name)
    column_names = [spec["name"] for spec in schema]
    raw = pd.read_csv(
        io.BytesIO(_read_csv_bytes(name)),
        dtype={col: object for col in column_names},
        keep_default_na=False,
        na_values=["NA"],
    )
    if list(raw.columns) != column_names:
        raise ValueError(
            f"dataset {name!r}: CSV header {list(raw.columns)!r} does not match "
            f"the schema {column_names!r}"
        )
    columns = {
        spec["name"]: _convert_column(raw[spec["name"]], spec, name) for spec in schema
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))
