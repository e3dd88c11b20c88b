"""GEE Fisher scoring's step control and the bounds on alpha (multilevel.gee.iteration).

On small unbalanced clusters the moment estimate of alpha can leave the
range where the working correlation is positive definite, and the scoring
iterations can run away (there may be no solution). A fit then keeps alpha
just inside its bounds, halves runaway steps, and is returned (converged or
not, with a warning), never raised. On well-behaved data every step is the
full one, as geepack takes it: the iterates are bit for bit those of plain
Fisher scoring.
"""

from __future__ import annotations

import warnings
from typing import Any

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.families import get_family
from multilevel.gee import GeeConvergenceWarning, GeeCorrelationBoundWarning, gee_design
from multilevel.gee.basis import one_pass
from multilevel.gee.fit import gee_correlation
from multilevel.gee.iteration import start_beta
from multilevel.gee.moments import BOUND_MARGIN, moment_estimates
from multilevel.gee.scoring import DesignRows, scoring_sums


def small_unbalanced(seed: int, family: str) -> pd.DataFrame:
    """3 to 8 clusters of 1 to 9 rows with a random intercept, as the fuzz tests draw them."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, size=rng.integers(3, 9))
    code = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(size=code.size)
    eta = 0.3 + 0.8 * x + rng.normal(scale=0.7, size=sizes.size)[code]
    if family == "gaussian":
        y = eta + rng.normal(size=code.size)
    elif family == "binomial":
        y = (rng.uniform(size=code.size) < 1 / (1 + np.exp(-eta))).astype(float)
        y[:2] = [0.0, 1.0]
    else:
        y = rng.poisson(np.exp(np.clip(eta, -3, 3))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": code, "t": np.concatenate([np.arange(s) for s in sizes])})


def fit_recording(df: pd.DataFrame, **kwargs: Any) -> tuple[ml.GeeResult, list[type]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ml.gee("y ~ x", df, groups="g", time="t", **kwargs)
    return res, [w.category for w in caught]


def max_step(res: ml.GeeResult, df: pd.DataFrame, corr: Any) -> float:
    """``max |H^-1 U|`` at the result's estimates (0 where they solve the estimating equations)."""
    design = gee_design("y ~ x", df, groups="g", time="t")
    sums = scoring_sums(DesignRows(design), res.family, gee_correlation(corr), res.corr_params, res.scale,
                        res.params.to_numpy())
    return float(np.max(np.abs(np.linalg.solve(sums.H, sums.U))))


CORRS = ["exchangeable", "ar1", "unstructured", ml.MDependent(2)]


def test_small_unbalanced_fits_are_returned_never_raised() -> None:
    seen = {"moved": 0, "not converged": 0, "converged": 0}
    for seed in range(8):
        for family in ("gaussian", "binomial", "poisson"):
            df = small_unbalanced(seed, family)
            for corr in CORRS:
                for moments in ("geepack", "gee"):
                    res, caught = fit_recording(df, family=family, corr=corr, moments=moments)
                    assert np.all(np.isfinite(res.params)) and np.all(np.isfinite(res.bse)), (seed, family, corr)
                    assert res.converged == (GeeConvergenceWarning not in caught)
                    moved = GeeCorrelationBoundWarning in caught
                    assert bool(res.fit_notes) == (moved or not res.converged)
                    seen["moved"] += moved
                    if not res.converged:
                        seen["not converged"] += 1
                        continue
                    seen["converged"] += 1
                    # the coefficients solve the estimating equations at the (possibly moved) alpha
                    assert max_step(res, df, corr) <= 1e-8 * (1 + np.max(np.abs(res.params)))
                    table = res.structure.table(res.corr_params, res.design.layout.npositions)
                    if corr == "exchangeable":
                        m = res.design.max_cluster_size
                        assert -1 / (m - 1) < res.corr_params[0] < 1
                    elif corr == "ar1":
                        assert abs(res.corr_params[0]) < 1
                    elif moved:
                        assert np.linalg.eigvalsh(table)[0] >= BOUND_MARGIN * (1 - 1e-9)
    # every mechanism is exercised by these data
    assert min(seen.values()) > 0, seen


@pytest.mark.parametrize("dataset,formula,family,corr,time", [
    ("ohio", "resp ~ age + smoke", "binomial", "exchangeable", None),
    ("ohio", "resp ~ age + smoke", "binomial", "ar1", "age"),
    ("epil", "y ~ lbase + trt + lage + V4", "poisson", "ar1", "period"),
    ("epil", "y ~ lbase + trt + lage + V4", "poisson", ml.MDependent(2), "period"),
    ("respiratory", "outcome ~ treat + sex + age + baseline", "binomial", "unstructured", "visit"),
    ("dietox", "Weight ~ Time + Cu", "gaussian", "ar1", "Time"),
])
@pytest.mark.parametrize("moments", ["geepack", "gee"])
def test_well_behaved_fits_take_every_full_step(dataset: str, formula: str, family: str, corr: Any,
                                                time: str | None, moments: str) -> None:
    """The fit is plain Fisher scoring (no step control, no bounds) from the same start, here with the moments
    and the scoring sums of two separate passes: to rounding for the structures whose steps take one pass
    (their ``H`` and ``U`` come from alpha-free sums), bit for bit for the others."""
    df = ml.load_dataset(dataset)
    groups = {"ohio": "id", "epil": "subject", "respiratory": "subject", "dietox": "Pig"}[dataset]
    res = ml.gee(formula, df, groups=groups, time=time, family=family, corr=corr, moments=moments)
    design = gee_design(formula, df, groups=groups, time=time)
    rows, fam, structure = DesignRows(design), get_family(family), gee_correlation(corr)
    beta = start_beta(rows, fam, design.X.shape[1])
    for n_iter in range(1, 101):
        phi, alpha = moment_estimates(rows, fam, structure, beta, None, moments)
        sums = scoring_sums(rows, fam, structure, alpha, phi, beta)
        step = np.linalg.solve(sums.H, sums.U)
        beta = beta + step
        if np.max(np.abs(step)) <= 1e-10 * (1.0 + np.max(np.abs(beta))):
            break
    phi, alpha = moment_estimates(rows, fam, structure, beta, None, moments)
    assert res.converged and res.n_iter == n_iter and not res.fit_notes
    rtol = 1e-11 if one_pass(structure, design.layout.npositions, design.X.shape[1], design.layout.nclusters) else 0.0
    np.testing.assert_allclose(res.params.to_numpy(), beta, rtol=rtol, atol=0)
    np.testing.assert_allclose(res.corr_params, alpha, rtol=rtol, atol=0)
    np.testing.assert_allclose(res.scale, phi, rtol=rtol, atol=0)


def exchangeable_beyond_its_bound() -> pd.DataFrame:
    """Clusters of 7, 2, 3, 1, 4, 6 and 2 rows whose exchangeable moment estimate falls below -1/6."""
    sizes = [7, 2, 3, 1, 4, 6, 2]
    rng = np.random.default_rng(127)
    code = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(size=code.size)
    y = 0.3 + 0.8 * x + rng.normal(scale=0.7, size=len(sizes))[code] + rng.normal(size=code.size)
    return pd.DataFrame({"y": y, "x": x, "g": code, "t": np.concatenate([np.arange(s) for s in sizes])})


def test_exchangeable_alpha_is_kept_just_inside_its_bound() -> None:
    df = exchangeable_beyond_its_bound()
    with pytest.warns(GeeCorrelationBoundWarning, match=r"-1/\(m - 1\) < alpha < 1, with m = 7") as caught:
        res = ml.gee("y ~ x", df, groups="g", family="gaussian", corr="exchangeable")
    assert res.converged
    assert res.corr_params[0] == pytest.approx(-1 / 6 + BOUND_MARGIN, abs=1e-15)
    assert "kept just inside" in str(res.summary())
    assert max_step(res, df, "exchangeable") <= 1e-9
    # the raw moment estimate at the final coefficients is indeed outside
    design = gee_design("y ~ x", df, groups="g")
    _, raw = moment_estimates(DesignRows(design), res.family, res.structure, res.params.to_numpy(), None)
    assert raw[0] < -1 / 6 and f"{raw[0]:.6f}"[:7] in str(caught[0].message)


def test_a_runaway_iteration_stops_with_a_warning() -> None:
    sizes = [7, 2, 3, 1, 4, 6, 2]  # Poisson AR(1) with no solution: geepack loops without end here
    rng = np.random.default_rng(1)
    code = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.normal(size=code.size)
    eta = 0.3 + 0.8 * x + rng.normal(scale=0.7, size=len(sizes))[code]
    y = rng.poisson(np.exp(np.clip(eta, -3, 3))).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "g": code, "t": np.concatenate([np.arange(s) for s in sizes])})
    with pytest.warns(GeeConvergenceWarning, match="stopped at iteration"):
        res = ml.gee("y ~ x", df, groups="g", time="t", family="poisson", corr="ar1")
    assert not res.converged and np.all(np.isfinite(res.bse))
    assert "stopped at iteration" in str(res.summary())


def test_bad_starting_values_still_raise() -> None:
    df = small_unbalanced(0, "poisson")
    design = gee_design("y ~ x", df, groups="g")
    with pytest.raises(FloatingPointError, match="starting values"), np.errstate(over="ignore"):
        ml.fit_gee(design, "poisson", "exchangeable", start=np.array([800.0, 0.0]))
