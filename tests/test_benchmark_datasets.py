"""The generated benchmark problems (benchmarks/datasets.py): their docstring examples run, and
each generator gives the sizes, level counts and seeds-to-data mapping that the harness states."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

DATASETS_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "datasets.py"


@pytest.fixture(scope="module")
def datasets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_datasets", DATASETS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_examples(datasets: ModuleType) -> None:
    result = doctest.testmod(datasets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_crossed_lmm_levels_and_balance(datasets: ModuleType) -> None:
    df = datasets.crossed_lmm(n_a=500, rows_per_a=20, n_b=50)
    assert len(df) == 10_000
    assert df["a"].nunique() == 500 and df["b"].nunique() == 50
    # every level of b gets n / n_b rows, spread over many levels of a (crossed, not nested)
    assert set(df["b"].value_counts()) == {200}
    assert df.groupby("b", observed=True)["a"].nunique().min() > 100


def test_generators_are_reproducible(datasets: ModuleType) -> None:
    one = datasets.crossed_lmm(n_a=50, rows_per_a=4, n_b=10)
    two = datasets.crossed_lmm(n_a=50, rows_per_a=4, n_b=10)
    other = datasets.crossed_lmm(n_a=50, rows_per_a=4, n_b=10, seed=1)
    assert np.array_equal(one["y"], two["y"]) and np.array_equal(one["b"].cat.codes, two["b"].cat.codes)
    assert not np.array_equal(one["y"], other["y"])
