"""Linear mixed models on data read in chunks (multilevel.chunks, Parquet) and
on Dask frames agree with the in-memory fit of the same rows."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from multilevel import _core, chunks, lmm
from multilevel.errors import RowsNotKeptError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def generated(n_groups: int = 40, per: int = 12, seed: int = 3) -> pd.DataFrame:
    """Nested (school/class), crossed (rater) groups, a string factor, weights and an offset."""
    rng = np.random.default_rng(seed)
    n = n_groups * per
    school = np.repeat(np.arange(n_groups), per)
    klass = np.tile(np.repeat(["a", "b", "c"], per // 3 + 1)[:per], n_groups)
    rater = rng.integers(0, 15, size=n)
    x = rng.normal(size=n)
    kind = rng.choice(["low", "mid", "high"], size=n)
    b0 = rng.normal(size=n_groups)[school]
    b1 = 0.5 * rng.normal(size=n_groups)[school]
    y = 1.0 + 0.7 * x + (kind == "high") + b0 + b1 * x + 0.4 * rng.normal(size=15)[rater] + rng.normal(size=n)
    return pd.DataFrame({
        "y": y, "x": x, "school": school, "klass": klass, "rater": rater.astype(str), "kind": kind,
        "w": rng.uniform(0.5, 2.0, size=n), "off": 0.1 * rng.normal(size=n), "level": rng.integers(1, 4, size=n),
    })


MODELS = [
    ("y ~ x + kind + (1 + x | school)", {}, True),
    ("y ~ x + (1 | school/klass)", {"weights": "w"}, False),
    ("y ~ x + C(level) + (1 | school) + (1 | rater)", {"offset": "off"}, True),
    ("y ~ x + (x || school) + (1 | rater)", {"weights": "w", "offset": "off"}, False),
]


def in_chunks(df: pd.DataFrame, size: int):
    return chunks(lambda: (df.iloc[i : i + size] for i in range(0, len(df), size)))


def assert_same_fit(mem, streamed, reml: bool) -> None:
    theta = mem.theta.to_numpy()
    ref = mem._core.objective(theta, reml)
    assert streamed._core.objective(theta, reml) == pytest.approx(ref, rel=1e-12)
    a, b = mem._core.solve(theta, reml), streamed._core.solve(theta, reml)
    np.testing.assert_allclose(b["beta"], a["beta"], rtol=1e-10, atol=1e-12)
    assert b["sigma"] == pytest.approx(a["sigma"], rel=1e-10)
    for ba, bb in zip(a["b"], b["b"]):
        np.testing.assert_allclose(bb, ba, rtol=1e-9, atol=1e-10)
    # At the optimum: the optimizer resolves the parameters only as far as the
    # objective's rounding allows, so the optima agree to that, not bitwise.
    assert streamed.objective == pytest.approx(mem.objective, rel=1e-10)
    assert np.max(np.abs(streamed.params - mem.params) / mem.bse) < 1e-4
    assert list(streamed.params.index) == list(mem.params.index)
    assert streamed.nobs == mem.nobs and streamed.ngroups == mem.ngroups
    for group, frame in mem.ranef.items():
        assert list(streamed.ranef[group].index) == list(frame.index)


@pytest.mark.parametrize("formula,kwargs,reml", MODELS)
def test_chunked_equals_in_memory(formula, kwargs, reml):
    df = generated()
    mem = lmm(formula, df, reml=reml, **kwargs)
    assert_same_fit(mem, lmm(formula, in_chunks(df, 97), reml=reml, **kwargs), reml)


@pytest.mark.parametrize("formula,kwargs,reml", MODELS[:2])
def test_parquet_file_and_folder_equal_in_memory(tmp_path, formula, kwargs, reml):
    df = generated()
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "one.parquet", row_group_size=50)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, start in enumerate(range(0, len(df), 130)):
        pq.write_table(pa.Table.from_pandas(df.iloc[start : start + 130]), folder / f"part-{i:03d}.parquet")
    mem = lmm(formula, df, reml=reml, **kwargs)
    assert_same_fit(mem, lmm(formula, tmp_path / "one.parquet", reml=reml, **kwargs), reml)
    import pyarrow.dataset as pds

    assert_same_fit(mem, lmm(formula, pds.dataset(str(folder), format="parquet"), reml=reml, **kwargs), reml)


def test_chunk_size_changes_only_rounding_and_a_chunking_is_reproducible():
    df = generated()
    formula = "y ~ x + kind + (1 + x | school) + (1 | rater)"
    fits = [lmm(formula, in_chunks(df, size), weights="w") for size in (31, 200, 31)]
    theta = fits[0].theta.to_numpy()
    values = [f._core.objective(theta, True) for f in fits]
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    assert values[2] == values[0]  # same chunking: bit for bit
    assert np.array_equal(fits[2].params.to_numpy(), fits[0].params.to_numpy())


def test_center_and_scale_take_their_state_from_all_rows():
    df = generated()
    formula = "y ~ scale(x) + center(w) + (1 + standardize(x) | school)"
    assert_same_fit(lmm(formula, df), lmm(formula, in_chunks(df, 77)), True)


def test_rows_are_not_kept_and_row_quantities_say_what_to_do():
    df = generated()
    fit = lmm("y ~ x + (1 | school)", in_chunks(df, 100))
    mem = lmm("y ~ x + (1 | school)", df)
    for call in (fit.fitted, fit.resid, lambda: fit.predict(), lambda: fit.marginal_cov(0)):
        with pytest.raises(RowsNotKeptError, match="not kept"):
            call()
    np.testing.assert_allclose(fit.predict(df.head(20)), mem.fitted().head(20), rtol=1e-6)
    np.testing.assert_allclose(fit.resid(df.head(20)), mem.resid().head(20), rtol=1e-5, atol=1e-6)
    text = str(fit.summary())
    assert "read in chunks" in text and "Number of obs: 480" in text


def test_a_factor_level_first_seen_in_a_later_chunk():
    df = generated().sort_values("kind", kind="stable").reset_index(drop=True)  # "mid" only at the end
    formula = "y ~ x + kind + (1 | school)"
    mem = lmm(formula, df)
    streamed = lmm(formula, in_chunks(df, 60))
    assert list(streamed.params.index) == list(mem.params.index)
    assert_same_fit(mem, streamed, True)


def test_missing_values_are_dropped_counted_and_warned():
    df = generated()
    df.loc[[3, 50], "x"] = np.nan
    df["school"] = df["school"].astype("float")
    df.loc[[7], "school"] = np.nan  # a null grouping value
    with pytest.warns(UserWarning, match=r"dropped 3 of 480 rows.*'x': 2.*'school': 1"):
        streamed = lmm("y ~ x + (1 | school)", in_chunks(df, 100))
    with pytest.warns(UserWarning, match="dropped 3"):
        mem = lmm("y ~ x + (1 | school)", df)
    assert streamed.nobs == mem.nobs == 477
    assert_same_fit(mem, streamed, True)


def test_accumulator_pickles_and_merges():
    df = generated()
    x = np.column_stack([np.ones(len(df)), df["x"]])
    codes = df["school"].to_numpy(np.int32)

    def part(rows):
        acc = _core.NormalEquationsAccumulator(2, [1], [40])
        acc.add_rows(df["y"].to_numpy()[rows], x[rows], np.empty(0), [codes[rows]], [np.ones((len(rows), 1))])
        return acc

    whole = part(np.arange(len(df)))
    left, right = part(np.arange(200)), pickle.loads(pickle.dumps(part(np.arange(200, len(df)))))
    left.merge(right)
    theta = np.array([0.8])
    a, b = _core.LmmCore.from_accumulator(whole), _core.LmmCore.from_accumulator(left)
    assert b.objective(theta, True) == pytest.approx(a.objective(theta, True), rel=1e-13)
    assert left.nobs == len(df)
    with pytest.raises(ValueError, match="different models"):
        left.merge(_core.NormalEquationsAccumulator(2, [1], [41]))
    state = list(whole.__getstate__())
    state[6] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="wrong shape"):
        _core.NormalEquationsAccumulator.__new__(_core.NormalEquationsAccumulator).__setstate__(tuple(state))


def test_bad_chunked_input_gets_clear_errors(tmp_path):
    df = generated()
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="column 'xx' .*not in"):
        lmm("y ~ xx + (1 | school)", tmp_path / "d.parquet")
    with pytest.raises(FileNotFoundError, match="no Parquet file"):
        lmm("y ~ x + (1 | school)", tmp_path / "nothing.parquet")
    (tmp_path / "text.parquet").write_text("not parquet at all")
    with pytest.raises(ValueError, match="not a Parquet file"):
        lmm("y ~ x + (1 | school)", tmp_path / "text.parquet")
    with pytest.raises(ValueError, match="gave no chunks"):
        lmm("y ~ x + (1 | school)", chunks(lambda: iter([])))
    with pytest.raises(ValueError, match="has no rows"):
        lmm("y ~ x + (1 | school)", chunks(lambda: iter([df.iloc[:0]])))
    mixed = [df.iloc[:200], df.iloc[200:].assign(x=lambda d: d["x"].astype(str))]
    with pytest.raises(ValueError, match="column 'x' is numeric in the first chunks but not numeric in chunk 1"):
        lmm("y ~ x + (1 | school)", chunks(lambda: iter(mixed)))
    with pytest.raises(TypeError, match="must name a column"):
        lmm("y ~ x + (1 | school)", in_chunks(df, 100), weights=np.ones(len(df)))
    with pytest.raises(ValueError, match=r"scale\(np.log\(w\)\), whose state would be computed from one chunk"):
        lmm("y ~ scale(np.log(w)) + (1 | school)", in_chunks(df, 100))
    with pytest.raises(TypeError, match="fresh iterator"):
        chunks([df])
    calls = {"n": 0}

    def shrinking():
        calls["n"] += 1
        return iter([df] if calls["n"] <= 2 else [df.iloc[:100]])  # the names, the scan, then fewer rows

    with pytest.raises(ValueError, match="same rows each time"):
        lmm("y ~ x + (1 | school)", chunks(shrinking))


def test_polars_and_arrow_chunks():
    pl = pytest.importorskip("polars")
    df = generated()
    mem = lmm("y ~ x + kind + (1 | school)", df)
    frames = [pl.from_pandas(df.iloc[:250]), pa.Table.from_pandas(df.iloc[250:])]
    assert_same_fit(mem, lmm("y ~ x + kind + (1 | school)", chunks(lambda: iter(frames))), True)


def test_dask_fit_equals_in_memory_and_does_not_depend_on_workers(dask_client):
    import dask
    import dask.dataframe as dd

    df = generated()
    for formula, kwargs, reml in MODELS:
        ddf = dd.from_pandas(df, npartitions=4)
        mem = lmm(formula, df, reml=reml, **kwargs)
        on_cluster = lmm(formula, ddf, reml=reml, progress=True, **kwargs)  # progress over partitions
        assert_same_fit(mem, on_cluster, reml)
        with dask.config.set(scheduler="synchronous"):  # one thread in this process: same tree, same sums
            local = lmm(formula, ddf, reml=reml, **kwargs)
        theta = mem.theta.to_numpy()
        assert local._core.objective(theta, reml) == on_cluster._core.objective(theta, reml)
