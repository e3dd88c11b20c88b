"""Parametric bootstrap (as lme4's bootMer): properties, not replicate values.

Replicates depend on the seed only, not on the thread count; the spread of the
replicates matches the model's standard errors; percentile intervals cover the
truth at about their level on data simulated from a known model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilevel import lmm
from multilevel.datasets import load_dataset
from multilevel.errors import RowsNotKeptError


@pytest.fixture(scope="module")
def sleep():
    return lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))


def test_replicates_depend_on_the_seed_only(sleep):
    a = sleep.bootstrap(60, seed=7, threads=1)
    b = sleep.bootstrap(60, seed=7, threads=2)
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    c = sleep.bootstrap(60, seed=8)
    assert not np.allclose(a.replicates.to_numpy(), c.replicates.to_numpy())
    assert a.replicates.columns.tolist() == sleep.conf_int(method="profile", parameters=None).index.tolist() \
        or a.replicates.columns.tolist()[:4] == ["sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject",
                                                 "sd_Days|Subject", "sigma"]


def test_replicate_spread_matches_the_standard_errors(sleep):
    boot = sleep.bootstrap(400, seed=11)
    reps = boot.replicates
    ratio = reps[["Intercept", "Days"]].std() / sleep.bse
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio
    bias = reps["Days"].mean() - sleep.params["Days"]
    assert abs(bias) < 3 * reps["Days"].std() / np.sqrt(len(reps))
    assert abs(reps["sigma"].median() / sleep.sigma - 1) < 0.05
    assert boot.converged.all()


def test_interval_kinds(sleep):
    boot = sleep.bootstrap(200, seed=3)
    est = boot.estimate
    for kind in ("percentile", "basic", "normal"):
        ci = boot.conf_int(0.9, kind=kind)
        assert ci.columns.tolist() == ["0.05", "0.95"]
        assert (ci["0.05"] < ci["0.95"]).all()
    perc, basic = boot.conf_int(kind="percentile"), boot.conf_int(kind="basic")
    np.testing.assert_allclose(basic["0.025"], 2 * est - perc["0.975"])
    table = sleep.conf_int(method="boot", nsim=50, seed=1, parameters=["sigma", "Days"])
    assert table.index.tolist() == ["sigma", "Days"]


def test_percentile_intervals_cover_the_truth():
    rng = np.random.default_rng(2026)
    groups, per, truth = 20, 6, {"x": 0.5, "sigma": 1.0}
    covered = {"x": 0, "sigma": 0}
    ndata = 40
    for _ in range(ndata):
        g = np.repeat(np.arange(groups), per)
        x = rng.normal(size=g.size)
        y = 1.0 + truth["x"] * x + rng.normal(0, 0.8, groups)[g] + rng.normal(0, truth["sigma"], g.size)
        fit = lmm("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
        ci = fit.bootstrap(99, seed=int(rng.integers(1 << 31))).conf_int(0.9)
        for name in covered:
            covered[name] += int(ci.loc[name].iloc[0] <= truth[name] <= ci.loc[name].iloc[1])
    # 90% intervals: about 36 of 40; fewer than 30 would be a 3-sigma shortfall.
    assert all(c >= 30 for c in covered.values()), covered


def test_bad_arguments_are_named(sleep):
    for nsim in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="nsim must be a positive integer"):
            sleep.bootstrap(nsim, seed=1)
    with pytest.raises(ValueError, match="unknown kind 'nonparametric'"):
        sleep.bootstrap(10, kind="nonparametric")
    with pytest.raises(ValueError, match="unknown kind 'bca'"):
        sleep.bootstrap(5, seed=1).conf_int(kind="bca")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        sleep.bootstrap(5, seed=1, threads=0)


def test_a_chunked_fit_says_the_bootstrap_needs_rows(tmp_path):
    path = tmp_path / "sleep.parquet"
    load_dataset("sleepstudy").to_parquet(path)
    streamed = lmm("Reaction ~ Days + (Days | Subject)", str(path), progress=False)
    with pytest.raises(RowsNotKeptError, match="bootstrap"):
        streamed.bootstrap(10, seed=1)
