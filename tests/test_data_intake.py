"""Data as users hold it: pandas, polars (eager and lazy), pyarrow and duckdb tables give the same
fits, and of a wide table only the columns a model uses are converted to pandas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.frames import as_pandas, column_names

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

N_UNUSED = 20


def _data(seed: int = 0, clusters: int = 25, size: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = clusters * size
    g = np.repeat(np.arange(clusters), size)
    x = rng.normal(size=n)
    df = pd.DataFrame({
        "g": g,
        "site": np.array(["north", "south", "east"])[g % 3],
        "visit": np.tile(np.arange(size), clusters),
        "x": x,
        "w": rng.uniform(0.5, 2.0, n),
        "t": rng.uniform(0.5, 4.0, n),
    })
    df["y"] = 1.0 + 0.5 * x + rng.normal(size=clusters)[g] + rng.normal(size=n)
    df["count"] = rng.poisson(df.t * np.exp(0.2 + 0.3 * x))
    for j in range(N_UNUSED):
        df[f"unused{j}"] = rng.normal(size=n)
    return df


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return _data()


def _tables(df: pd.DataFrame) -> dict:
    frame = pl.from_pandas(df)
    tables = {"polars": frame, "polars lazy": frame.lazy(), "pyarrow": pa.Table.from_pandas(df, preserve_index=False)}
    try:
        import duckdb
    except ImportError:
        return tables
    tables["duckdb"] = duckdb.from_arrow(tables["pyarrow"])
    return tables


def test_lmm_same_fit_from_every_table_type(df):
    ref = multilevel.lmm("y ~ x + site + offset(log(t)) + (1 | g)", df, weights="w")
    for kind, table in _tables(df).items():
        fit = multilevel.lmm("y ~ x + site + offset(log(t)) + (1 | g)", table, weights="w")
        np.testing.assert_array_equal(fit.params.to_numpy(), ref.params.to_numpy(), err_msg=kind)
        assert fit.loglik == ref.loglik, kind
        assert fit.params.index.tolist() == ref.params.index.tolist()


def test_glmm_gee_gls_same_fit_from_polars_lazy_and_eager(df):
    fits = {
        "glmm": lambda d: multilevel.glmm("count ~ x + (1 | g)", d, family="poisson", offset="t"),
        "gee": lambda d: multilevel.gee("count ~ x + offset(log(t))", d, groups="g", time="visit",
                                        family="poisson", corr="ar1", weights="w"),
        "gls": lambda d: multilevel.gls("y ~ x", d, groups="g", time="visit", corr="ar1",
                                        variance=multilevel.VarIdent("site")),
    }
    frame = pl.from_pandas(df)
    for name, fit in fits.items():
        ref = fit(df)
        for table in (frame, frame.lazy()):
            np.testing.assert_array_equal(fit(table).params.to_numpy(), ref.params.to_numpy(), err_msg=name)


def test_unused_columns_are_not_converted(df, monkeypatch):
    """Count the columns each polars -> pandas conversion handles: only the used ones, whatever the model."""
    converted: list[list[str]] = []
    original = pl.DataFrame.to_pandas

    def recording(self, *args, **kwargs):
        converted.append(list(self.columns))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "to_pandas", recording)
    frame = pl.from_pandas(df)
    multilevel.lmm("y ~ x + offset(log(t)) + (1 | g)", frame, weights="w")
    multilevel.gee("count ~ x", frame.lazy(), groups="g", time="visit", family="poisson", offset="t")
    multilevel.gls("y ~ x", frame, groups="g", variance=multilevel.VarIdent("site"))
    assert [sorted(c) for c in converted] == [
        ["g", "t", "w", "x", "y"],
        ["count", "g", "t", "visit", "x"],
        ["g", "site", "x", "y"],
    ]


def test_lazy_frame_never_computes_unused_columns(df):
    def boom(series):
        raise AssertionError("an unused lazy column was computed")

    lazy = pl.from_pandas(df).lazy().with_columns(pl.col("x").map_batches(boom, return_dtype=pl.Float64).alias("bad"))
    fit = multilevel.lmm("y ~ x + (1 | g)", lazy)
    assert fit.params.index.tolist() == ["Intercept", "x"]
    with pytest.raises(Exception, match="unused lazy column was computed"):  # the check itself can fail
        multilevel.lmm("y ~ x + bad + (1 | g)", lazy)


def test_misspelt_names_are_matched_against_all_columns(df):
    frame = pl.from_pandas(df.rename(columns={"g": "Subject"}))
    with pytest.raises(ValueError, match="did you mean 'Subject'"):
        multilevel.gee("y ~ x", frame, groups="subject")
    with pytest.raises(ValueError, match="did you mean 'Subject'"):
        multilevel.lmm("y ~ x + (1 | subject)", frame)
    with pytest.raises(ValueError, match="column 'W' used in weights="):
        multilevel.lmm("y ~ x + (1 | Subject)", frame, weights="W")


def test_arrays_for_groups_and_weights_with_a_narrowed_table(df):
    frame = pl.from_pandas(df)
    a = multilevel.gee("y ~ x", frame, groups=df.g.to_numpy(), weights=df.w.to_numpy())
    b = multilevel.gee("y ~ x", df, groups="g", weights="w")
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


def test_predict_and_resid_take_polars_newdata(df):
    fit = multilevel.lmm("y ~ x + (1 | g)", pl.from_pandas(df).lazy())
    new = _data(seed=3).head(10)
    np.testing.assert_array_equal(fit.predict(pl.from_pandas(new)).to_numpy(), fit.predict(new).to_numpy())


def test_as_pandas_selects_before_converting():
    lazy = pl.DataFrame({"y": [1.0, 2.0], "a": ["p", "q"], "b": [3, 4]}).lazy()
    assert column_names(lazy) == ["y", "a", "b"]
    out = as_pandas(lazy, ["b", "y", "not a column"])
    assert out.columns.tolist() == ["b", "y"] and len(out) == 2
    assert as_pandas(lazy, []).shape == (2, 0)  # no used column: the rows are still counted
    assert as_pandas({"y": [1.0], "z": [2.0]}, ["y"]).columns.tolist() == ["y"]
    pandas_frame = pd.DataFrame({"y": [1.0], "z": [2.0]})
    assert as_pandas(pandas_frame, ["y"]) is pandas_frame  # pandas: nothing copied


def test_repeated_column_names_in_an_arrow_table_are_named():
    table = pa.table([[1.0, 2.0, 3.0, 4.0]] * 3 + [[0, 0, 1, 1]], names=["y", "y", "x", "g"])
    with pytest.raises(ValueError, match="2 columns named 'y'"):
        multilevel.lmm("y ~ x + (1 | g)", table)


def test_dask_frames_stay_on_their_own_path(df):
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(df[["y", "x", "g", "visit"]], npartitions=2)
    with pytest.raises(TypeError, match="Dask"):
        multilevel.gls("y ~ x", frame, groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = multilevel.lmm("y ~ x + (1 | g)", frame)  # summed on the workers, as before
    assert not fit.design.has_rows
