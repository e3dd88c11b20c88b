"""Shared by the geepack reference tests (test_gee_reference.py, test_gee_links_reference.py):
comparisons and the translation of a JSON fixture into a ``multilevel.gee`` call."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import multilevel as ml
from multilevel.datasets import load_dataset


def assert_close(actual: Any, desired: Any, rtol: float, atol: Any = 0.0, what: str = "") -> None:
    """``|actual - desired| <= rtol |desired| + atol`` elementwise (``atol`` may be an array)."""
    a, d = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert a.shape == d.shape, f"{what}: shape {a.shape} != {d.shape}"
    bad = np.abs(a - d) > rtol * np.abs(d) + atol
    assert not bad.any(), f"{what}: max rel diff {np.max(np.abs(a - d) / np.maximum(np.abs(d), 1e-300)):.3g}\n{a}\n{d}"


def evaluate(expr: str, df: pd.DataFrame) -> np.ndarray:
    """An R expression over columns (``log(base / 4)``, ``1 + (subject % 3)``, ``incidence / size``)."""
    return np.asarray(eval(expr, {"log": np.log, "np": np}, {c: df[c].to_numpy() for c in df.columns}),
                      dtype=float)


def numeric_codes(col: pd.Series) -> np.ndarray:
    """R's integer codes of a factor (1-based); other columns as they are."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy() + 1
    return col.to_numpy()


def model_data(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Formula, data and gee() keyword arguments of a geepack fixture."""
    df = load_dataset(m["dataset"])
    if m.get("drop_rows"):
        df = df.drop(index=df.index[m["drop_rows"]["indices"]]).reset_index(drop=True)
    rhs = m["formula"].split("~", 1)[1].strip()
    if m.get("response"):
        df["_y"] = evaluate(m["response"], df)
        formula = f"_y ~ {rhs}"
    else:
        formula = m["formula"]
    kwargs: dict[str, Any] = {"groups": m["id"], "family": m["family"], "link": m["link"]}
    if m.get("waves"):
        df["_t"] = numeric_codes(df[m["waves"]])
        kwargs["time"] = "_t"
    for key, column, arg in (("weights", "_w", "weights"), ("offset", "_off", "offset")):
        if m.get(key):
            df[column] = evaluate(m[key], df)
            kwargs[arg] = column
    if m.get("scale_fix"):
        kwargs["scale"] = m["phi0"]  # geepack fixes phi at its starting value (see GEE_ESTIMATORS.md)
    corstr = m["corstr"]
    kwargs["corr"] = (ml.Fixed(np.array(m["fixed_correlation"])) if corstr == "fixed" else
                      ml.MDependent(m["mdep"]) if corstr == "m-dependent" else corstr)
    return formula, df, kwargs
