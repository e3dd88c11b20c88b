"""GEE on data read in chunks (multilevel.chunks, Parquet) and on Dask frames
agrees with the in-memory fit of the same rows."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from multilevel import MDependent, chunks, gee
from multilevel.errors import RowsNotKeptError
from multilevel.streaming.passes import whole_clusters

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def clustered(n_clusters: int = 60, seed: int = 5) -> pd.DataFrame:
    """Clusters of 2 to 7 rows, sorted by cluster, with gaps in time, counts, binary and continuous responses."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 8, size=n_clusters)
    cid = np.repeat(np.arange(n_clusters), sizes)
    n = cid.size
    time = np.concatenate([np.sort(rng.choice(8, size=k, replace=False)) for k in sizes])
    x = rng.normal(size=n)
    u = rng.normal(scale=0.6, size=n_clusters)[cid]
    eta = 0.2 + 0.5 * x + u
    return pd.DataFrame({
        "id": np.char.add("c", cid.astype(str)), "time": time, "x": x,
        "grp": rng.choice(["a", "b", "c"], size=n),
        "yb": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float),
        "yc": rng.poisson(np.exp(0.3 + 0.4 * x + 0.5 * u)).astype(float),
        "yg": 1.0 + x + u + rng.normal(size=n),
        "w": rng.uniform(0.5, 2.0, size=n), "off": 0.2 * rng.normal(size=n),
    })


CASES = [
    ("yb ~ x + grp", dict(family="binomial", corr="exchangeable")),
    ("yb ~ x", dict(family="binomial", corr="ar1", time="time")),
    ("yc ~ x + grp", dict(family="poisson", corr="ar1", time="time", offset="off")),
    ("yg ~ x", dict(family="gaussian", corr="unstructured", time="time", weights="w")),
    ("yc ~ x", dict(family="poisson", corr=MDependent(2), time="time")),
    ("yg ~ x + grp", dict(family="gaussian", corr="independence", scale=1.0)),
]


def in_chunks(df: pd.DataFrame, size: int):
    return chunks(lambda: (df.iloc[i : i + size] for i in range(0, len(df), size)))


def assert_same_gee(mem, streamed) -> None:
    np.testing.assert_allclose(streamed.params, mem.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.corr_params, mem.corr_params, rtol=1e-9, atol=1e-12)
    assert streamed.scale == pytest.approx(mem.scale, rel=1e-10)
    for kind in ("robust", "naive", "bias_reduced", "jackknife"):
        np.testing.assert_allclose(streamed.cov_params(kind), mem.cov_params(kind), rtol=1e-8, atol=1e-14)
    assert streamed.nobs == mem.nobs and streamed.nclusters == mem.nclusters
    assert streamed.quasi_loglik() == pytest.approx(mem.quasi_loglik(), rel=1e-10)
    assert list(streamed.cluster_sizes.index) == list(mem.cluster_sizes.index)
    np.testing.assert_array_equal(streamed.cluster_sizes, mem.cluster_sizes)


@pytest.mark.parametrize("formula,kwargs", CASES)
def test_chunked_gee_equals_in_memory(formula, kwargs):
    df = clustered()
    mem = gee(formula, df, groups="id", **kwargs)
    # 37-row chunks cut clusters in two: the open cluster is carried into the next chunk
    assert_same_gee(mem, gee(formula, in_chunks(df, 37), groups="id", **kwargs))


def test_parquet_gee_and_qic(tmp_path):
    df = clustered()
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "d.parquet", row_group_size=41)
    kwargs = dict(groups="id", family="binomial", corr="exchangeable")
    mem = gee("yb ~ x + grp", df, **kwargs)
    streamed = gee("yb ~ x + grp", tmp_path / "d.parquet", **kwargs)
    assert_same_gee(mem, streamed)
    np.testing.assert_allclose(streamed.qic(), mem.qic(), rtol=1e-8)
    np.testing.assert_allclose(streamed.predict(df.head(9)), mem.fitted().head(9), rtol=1e-10)
    for call in (streamed.fitted, streamed.resid, lambda: streamed.predict()):
        with pytest.raises(RowsNotKeptError, match="predict\\(chunk\\)|not kept"):
            call()
    assert "read in chunks" in str(streamed.summary())
    assert streamed.wald_test("grp").df == 2


def test_chunk_size_does_not_matter_beyond_rounding():
    df = clustered()
    fits = [gee("yc ~ x", in_chunks(df, size), groups="id", family="poisson", corr="ar1", time="time")
            for size in (13, 500, 13)]
    np.testing.assert_allclose(fits[1].params, fits[0].params, rtol=1e-12)
    assert np.array_equal(fits[2].params.to_numpy(), fits[0].params.to_numpy())


def test_missing_values_and_bad_chunked_input():
    df = clustered()
    df.loc[[4, 30], "x"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of"):
        streamed = gee("yb ~ x", in_chunks(df, 50), groups="id", family="binomial", corr="exchangeable")
    with pytest.warns(UserWarning, match="dropped 2 of"):
        mem = gee("yb ~ x", df, groups="id", family="binomial", corr="exchangeable")
    assert_same_gee(mem, streamed)
    clean = clustered()
    shuffled = clean.sample(frac=1.0, random_state=0)
    with pytest.raises(ValueError, match="cluster c\\d+ has rows in more than one chunk.*sort by the cluster"):
        gee("yb ~ x", in_chunks(shuffled, 50), groups="id", family="binomial")
    with pytest.raises(TypeError, match="groups= must name"):
        gee("yb ~ x", in_chunks(clean, 50), groups=clean["id"].to_numpy(), family="binomial")
    with pytest.raises(ValueError, match="outside the support of the binomial"):
        gee("yc ~ x", in_chunks(clean, 50), groups="id", family="binomial")
    with pytest.raises(ValueError, match="column 'nope'"):
        gee("yb ~ x", in_chunks(clean, 50), groups="nope", family="binomial")
    with pytest.raises(ValueError, match="integer-valued"):
        gee("yb ~ x", in_chunks(clean.assign(time=clean["time"] + 0.5), 50), groups="id", time="time",
            corr="ar1", family="binomial")


def test_dask_gee_equals_in_memory_and_split_clusters_are_refused(dask_client):
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = clustered()
    starts = np.flatnonzero(df["id"].ne(df["id"].shift()).to_numpy())  # first row of each cluster
    cuts = [0, *starts[[15, 31, 44]], len(df)]  # partitions of whole clusters, of unequal sizes
    whole = dd.from_delayed([dask.delayed(df.iloc[a:b]) for a, b in zip(cuts[:-1], cuts[1:])], meta=df.iloc[:0])
    for formula, kwargs in CASES[:4]:
        mem = gee(formula, df, groups="id", **kwargs)
        assert_same_gee(mem, gee(formula, whole, groups="id", **kwargs))
    split = dd.from_delayed([dask.delayed(df.iloc[a:b]) for a, b in ((0, 100), (100, len(df)))], meta=df.iloc[:0])
    assert df["id"].iloc[99] == df["id"].iloc[100]  # the cut splits a cluster
    # gee shuffles a frame whose partitions split clusters itself, keeping the rows' order within a cluster
    # (their positions without time=); with time= the positions come from the time column
    for kwargs in ({"groups": "id", "family": "binomial", "corr": "ar1"},
                   {"groups": "id", "family": "binomial", "corr": "ar1", "time": "time"},
                   {"groups": "id", "family": "binomial", "corr": "unstructured"}):
        with pytest.warns(UserWarning, match="shuffling it on \\['id'\\]"):
            shuffled = gee("yb ~ x", split, **kwargs)
        assert_same_gee(gee("yb ~ x", df, **kwargs), shuffled)


@pytest.mark.parametrize("cuts", [[], [3], [1, 2, 3], [4, 9, 10, 17], list(range(1, 20))])
def test_whole_clusters_recuts_without_splitting_a_run(cuts):
    keys = pd.DataFrame({"a": list("xxxyyyyzzzxxwwwwvvuu"), "b": [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4,
                                                                 4, np.nan, np.nan]})
    keys["row"] = np.arange(len(keys))
    bounds = [0, *cuts, len(keys)]
    frames = [keys.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    out = list(whole_clusters(iter(frames), ("a", "b")))
    joined = pd.concat(out, ignore_index=True)
    assert joined["row"].tolist() == keys["row"].tolist()  # every row once, in order
    run = (keys[["a", "b"]].ne(keys[["a", "b"]].shift()) & ~(keys[["a", "b"]].isna() &
                                                            keys[["a", "b"]].shift().isna())).any(axis=1).cumsum()
    seen = [set(run.iloc[f["row"].to_numpy()]) for f in out]
    assert all(not (s & t) for i, s in enumerate(seen) for t in seen[i + 1:])  # no run in two frames


@pytest.mark.parametrize("corr", ["independence", "exchangeable", "ar1", "unstructured", MDependent(2)])
def test_each_fisher_step_reads_the_chunks_once(corr, monkeypatch):
    """No pass of its own for the moment estimates: they come with the sums of the step's one pass."""
    from multilevel.streaming.passes import SourcePasses

    seen: list[str] = []
    original = SourcePasses.map_reduce

    def recording(self, per_chunk, merge, columns, desc="reading rows", *args, **kwargs):
        seen.append(desc)
        return original(self, per_chunk, merge, columns, desc, *args, **kwargs)

    monkeypatch.setattr(SourcePasses, "map_reduce", recording)
    df = clustered()
    streamed = gee("yb ~ x", in_chunks(df, 50), groups="id", time="time", family="binomial", corr=corr)
    assert "moments" not in seen and seen.count("covariances") == 1
    assert_same_gee(gee("yb ~ x", df, groups="id", time="time", family="binomial", corr=corr), streamed)
