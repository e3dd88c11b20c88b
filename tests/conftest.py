"""Shared fixtures: the lme4 reference answers and the bundled data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multilevel.datasets import load_dataset

REFERENCE_DIR = Path(__file__).parent / "reference"


def load_reference(name: str) -> dict:
    """Models of one reference JSON file (``tests/reference/<name>.json``)."""
    return json.loads((REFERENCE_DIR / f"{name}.json").read_text())["models"]


def eval_rule(rule: str, data: pd.DataFrame) -> np.ndarray:
    """Evaluate a weights/offset rule written in Python syntax over data columns."""
    env = {c: data[c].to_numpy(dtype=float) for c in data.columns if pd.api.types.is_numeric_dtype(data[c])}
    return np.asarray(eval(rule, {"__builtins__": {}}, env), dtype=float)


def lme4_name(name: str) -> str:
    """Our coefficient name in lme4's spelling."""
    name = re.sub(r"\[T\.([^\]]+)\]", r"\1", name)  # formulaic f[T.b] -> R's fb
    return name.replace("Intercept", "(Intercept)")


@pytest.fixture(scope="session")
def lmm_reference() -> dict:
    return load_reference("lmm")


@pytest.fixture(scope="session")
def datasets() -> dict[str, pd.DataFrame]:
    names = ["sleepstudy", "Dyestuff", "Penicillin", "Pastes", "InstEval"]
    return {n: load_dataset(n) for n in names}


@pytest.fixture(scope="session")
def dask_client():
    """A local Dask cluster of two worker processes, shared by the tests that fit Dask frames."""
    import warnings

    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
