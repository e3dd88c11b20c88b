"""gee(moments="gee"): R gee's (Carey's) moment estimators of phi and alpha.

Reference values: tests/reference/gee_moments.json (gee_moments_reference.R,
R gee 4.13 fitted with tol = 1e-12, which re-derives its phi and alpha
there). R gee stops on a relative change of beta and returns the working
correlation of the previous iterate; at tol = 1e-12 both are at the same
fixed point as ours to ~1e-11, so the comparisons are tight. statsmodels'
GEE shares the estimators for exchangeable, Autoregressive(grid=True) and
Stationary(grid=True) and is compared live when it is installed. The
formulas themselves are checked against a brute-force loop over clusters on
unbalanced, weighted data with time gaps.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from gee_fixtures import assert_close, model_data
from multilevel.families import get_family
from multilevel.gee import MOMENTS, fit_gee, gee_design
from multilevel.gee.fit import gee_correlation
from multilevel.gee.moments import moment_estimates
from multilevel.gee.scoring import DesignRows

REFERENCE = json.loads((Path(__file__).parent / "reference" / "gee_moments.json").read_text())
MODELS = REFERENCE["models"]
TIGHT = {"tol": 1e-12, "maxiter": 200}


def r_gee_call(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Formula, data and gee() arguments of a fixture: rows in their order within the cluster (R gee has
    no waves), R gee's fixed scale."""
    formula, df, kwargs = model_data(m)
    if m["scale_value"] is not None:
        kwargs["scale"] = m["scale_value"]
    return formula, df, kwargs


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GeeResult]:
    m = MODELS[request.param]
    formula, df, kwargs = r_gee_call(m)
    return m, ml.gee(formula, df, moments="gee", **kwargs, **TIGHT)


def test_estimates_match_r_gee(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    assert fit.converged and not fit.fit_notes
    assert fit.nobs == m["nobs"] and fit.nclusters == m["n_clusters"]
    se = np.asarray(m["se_robust"])
    assert_close(fit.params, m["coefficients"]["values"], 1e-10, 1e-11 * se, "coefficients")
    assert_close(fit.corr_params, m["alpha"], 1e-10, 1e-12, "alpha")
    assert_close(fit.scale, m["scale"], 1e-10, what="phi")
    assert_close(fit.bse, se, 1e-10, what="robust SE")
    assert_close(fit.cov_params("robust"), m["vcov_robust"], 1e-10, 1e-11 * np.outer(se, se), "robust vcov")
    naive = np.asarray(m["vcov_naive"])
    assert_close(fit.cov_params("naive"), naive, 1e-10,
                 1e-11 * np.sqrt(np.outer(np.diag(naive), np.diag(naive))), "naive vcov")


#: Fixtures with a geepack fit noted (geepack has no stat_M_dep, and fixes phi at its start value).
GEEPACK_NOTED = sorted(k for k, m in MODELS.items() if m["geepack"] is not None and m["scale_value"] is None)


@pytest.mark.parametrize("name", GEEPACK_NOTED)
def test_the_geepack_estimators_are_another_fit(name: str) -> None:
    """geepack's estimates noted in the fixture (epsilon = 1e-12) are what moments='geepack' gives, and R gee's
    differ from them (unstructured on complete clusters excepted: there the two alphas coincide)."""
    m = MODELS[name]
    formula, df, kwargs = r_gee_call(m)
    default = ml.gee(formula, df, **kwargs, **TIGHT)
    fit = ml.gee(formula, df, moments="gee", **kwargs, **TIGHT)
    gp = m["geepack"]
    assert_close(default.params, gp["coefficients"]["values"], 1e-6, 1e-7 * np.asarray(gp["se_robust"]), "beta")
    assert_close(default.corr_params, gp["alpha"], 1e-6, 1e-8, "geepack alpha")
    assert_close(default.scale, gp["phi"], 1e-6, what="geepack phi")
    complete = m["corstr"] == "unstructured" and m["nobs"] == m["n_clusters"] * m["max_cluster_size"]
    assert np.allclose(fit.corr_params, default.corr_params, rtol=1e-9) == complete
    assert fit.scale != pytest.approx(default.scale, rel=1e-6)  # N - p versus N


def test_fixed_scale_enters_the_variance_only() -> None:
    """R gee's scale.fix: beta, alpha and the robust covariance are those of the fit that estimates phi; the
    naive covariance is rescaled to the fixed phi."""
    formula, df, kwargs = r_gee_call(MODELS["epil_exch"])
    free = ml.gee(formula, df, moments="gee", **kwargs, **TIGHT)
    fixed = ml.gee(formula, df, moments="gee", scale=1.0, **kwargs, **TIGHT)
    np.testing.assert_allclose(fixed.params, free.params, rtol=1e-12)
    np.testing.assert_allclose(fixed.corr_params, free.corr_params, rtol=1e-12)
    tiny = 1e-12 * np.max(np.abs(free.cov_params("robust").to_numpy()))  # V4 is orthogonal to the rest: zeros
    np.testing.assert_allclose(fixed.cov_params("robust"), free.cov_params("robust"), rtol=1e-10, atol=tiny)
    np.testing.assert_allclose(fixed.cov_params("naive") * free.scale, free.cov_params("naive"), rtol=1e-10,
                               atol=tiny)
    assert fixed.scale == 1.0 and fixed.scale_fixed


# ----- the formulas, by brute force ---------------------------------------------------------------

def clustered(seed: int = 3, n_clusters: int = 40) -> pd.DataFrame:
    """Clusters of 1 to 6 rows with gaps in time and prior weights, rows shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_clusters)
    cid = np.repeat(np.arange(n_clusters), sizes)
    n = cid.size
    time = np.concatenate([np.sort(rng.choice(8, size=k, replace=False)) for k in sizes])
    x = rng.normal(size=n)
    u = rng.normal(scale=0.6, size=n_clusters)[cid]
    df = pd.DataFrame({"g": cid, "t": time, "x": x, "w": rng.uniform(0.5, 2.0, size=n),
                       "y": rng.poisson(np.exp(0.3 + 0.4 * x + 0.5 * u)).astype(float)})
    return df.iloc[rng.permutation(n)].reset_index(drop=True)


def brute_force(df: pd.DataFrame, mu: np.ndarray, corr: str, p: int, lags: int = 1) -> tuple[float, np.ndarray]:
    """R gee's phi and alpha, cluster by cluster (Poisson: v = mu), with r = sqrt(w) (y - mu) / sqrt(mu)."""
    r = np.sqrt(df.w.to_numpy()) * (df.y.to_numpy() - mu) / np.sqrt(mu)
    frame = df.assign(r=r)
    positions = {t: k for k, t in enumerate(np.unique(df.t))}  # time ranks, as gee's time= positions
    groups = [(g.t.map(positions).to_numpy(), g.r.to_numpy()) for _, g in frame.groupby("g")]
    phi = float(r @ r) / (len(df) - p)
    if corr == "exchangeable":
        pairs = sum((e.sum() ** 2 - e @ e) / 2 for _, e in groups)
        npairs = sum(len(e) * (len(e) - 1) / 2 for _, e in groups)
        return phi, np.array([pairs / ((npairs - p) * phi)])
    if corr == "lags":
        alpha = []
        for k in range(1, lags + 1):
            means, squares = [], []
            for t, e in groups:
                at = {ti: ei for ti, ei in zip(t, e)}
                products = [at[ti] * at[ti + k] for ti in t if ti + k in at]
                if products:
                    means.append(np.mean(products))
                    squares.append(np.mean(e**2))
            alpha.append(sum(means) / sum(squares))
        return phi, np.array(alpha)
    npos = len(positions)  # unstructured
    total = np.zeros((npos, npos))
    for t, e in groups:
        total[np.ix_(t, t)] += np.outer(e, e)
    phi_c = np.mean([np.mean(e**2) for _, e in groups])
    multi = sum(len(e) > 1 for _, e in groups)
    rows, cols = np.tril_indices(npos, -1)
    order = np.lexsort((rows, cols))  # by column of the lower triangle: (2,1), (3,1), ..., (3,2), ...
    return phi, total[cols[order], rows[order]] / (multi * phi_c)


@pytest.mark.parametrize("corr,kind,lags", [("exchangeable", "exchangeable", 1), ("ar1", "lags", 1),
                                            (ml.MDependent(3), "lags", 3), ("unstructured", "unstructured", 1)],
                         ids=["exch", "ar1", "mdep3", "unstr"])
def test_moments_match_the_formulas_cluster_by_cluster(corr: Any, kind: str, lags: int) -> None:
    df = clustered()
    design = gee_design("y ~ x", df, groups="g", time="t", weights="w")
    structure = gee_correlation(corr)
    beta = np.array([0.25, 0.35])
    mu = np.exp(beta[0] + beta[1] * df.x.to_numpy())
    phi, alpha = moment_estimates(DesignRows(design), get_family("poisson"), structure, beta, None, "gee")
    want_phi, want_alpha = brute_force(df, mu, kind, p=2, lags=lags)
    assert phi == pytest.approx(want_phi, rel=1e-13)
    np.testing.assert_allclose(alpha, want_alpha, rtol=1e-12, atol=1e-15)
    # a fixed scale replaces phi only as the variance's scale
    fixed_phi, fixed_alpha = moment_estimates(DesignRows(design), get_family("poisson"), structure, beta, 3.0,
                                              "gee")
    assert fixed_phi == 3.0
    np.testing.assert_array_equal(fixed_alpha, alpha)
    # geepack's fixed scale also divides the residuals behind the (linear) moment estimates of alpha
    if corr != "ar1":  # geepack's ar1 equation is not linear in the residual products
        rows = DesignRows(design)
        gp_phi, gp_alpha = moment_estimates(rows, get_family("poisson"), structure, beta, None)
        _, gp_fixed = moment_estimates(rows, get_family("poisson"), structure, beta, 3.0)
        np.testing.assert_allclose(gp_fixed, gp_alpha * gp_phi / 3.0, rtol=1e-13)


def test_chunked_fit_uses_the_same_moments() -> None:
    df = clustered(seed=8, n_clusters=80).sort_values(["g", "t"]).reset_index(drop=True)
    for corr in ("exchangeable", "ar1", "unstructured", ml.MDependent(2)):
        kwargs = {"groups": "g", "time": "t", "weights": "w", "family": "poisson", "corr": corr, "moments": "gee"}
        mem = ml.gee("y ~ x", df, **kwargs)
        streamed = ml.gee("y ~ x", ml.chunks(lambda: (df.iloc[i: i + 37] for i in range(0, len(df), 37))),
                          **kwargs)
        assert streamed.moments == mem.moments == "gee"
        np.testing.assert_allclose(streamed.params, mem.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(streamed.corr_params, mem.corr_params, rtol=1e-9, atol=1e-12)
        assert streamed.scale == pytest.approx(mem.scale, rel=1e-10)
        np.testing.assert_allclose(streamed.cov_params("naive"), mem.cov_params("naive"), rtol=1e-8)


def test_moments_is_validated() -> None:
    df = clustered()
    with pytest.raises(ValueError, match=r"moments must be one of 'geepack', 'gee'.*not 'R'"):
        ml.gee("y ~ x", df, groups="g", family="poisson", moments="R")
    with pytest.raises(TypeError, match="moments must be one of 'geepack', 'gee'"):
        ml.gee("y ~ x", df, groups="g", family="poisson", moments=None)
    design = gee_design("y ~ x", df, groups="g")
    with pytest.raises(ValueError, match="moments must be one of"):
        fit_gee(design, "poisson", "exchangeable", moments="statsmodels")
    assert MOMENTS == ("geepack", "gee")


def test_summary_names_the_estimators() -> None:
    formula, df, kwargs = r_gee_call(MODELS["ohio_exch"])
    assert "moment estimators: R gee's" in str(ml.gee(formula, df, moments="gee", **kwargs).summary())
    assert "moment estimators" not in str(ml.gee(formula, df, **kwargs).summary())


def test_qic_refits_independence_with_the_same_moments() -> None:
    formula, df, kwargs = r_gee_call(MODELS["epil_exch"])
    fit = ml.gee(formula, df, moments="gee", **kwargs)
    ind = ml.gee(formula, df, moments="gee", **{**kwargs, "corr": "independence"})
    omega = np.linalg.inv(ind.cov_params("naive").to_numpy())  # includes R gee's phi = X2 / (N - p)
    cic = float(np.trace(omega @ fit.cov_params("robust").to_numpy()))
    assert fit.qic()["CIC"] == pytest.approx(cic, rel=1e-8)


# ----- statsmodels, where its estimator is R gee's ---------------------------------------------------

SM_CASES = [
    # (fixture, statsmodels structure, fixed scale for ours: statsmodels' binomial/poisson default phi = 1)
    ("dietox_exch", "Exchangeable", None),
    ("ohio_exch", "Exchangeable", 1.0),
    ("epil_exch", "Exchangeable", 1.0),
    ("ohio_ar1", "Autoregressive", 1.0),
    ("dietox_ar1", "Autoregressive", None),
    ("epil_mdep2", "Stationary", 1.0),
]


@pytest.mark.parametrize("name,sm_structure,scale", SM_CASES, ids=[c[0] for c in SM_CASES])
def test_statsmodels_gives_the_same_fit(name: str, sm_structure: str, scale: float | None) -> None:
    sm = pytest.importorskip("statsmodels.api")
    m = MODELS[name]
    formula, df, kwargs = r_gee_call(m)
    kwargs["scale"] = scale
    ours = ml.gee(formula, df, moments="gee", **kwargs, **TIGHT)
    structure = {"Exchangeable": lambda: sm.cov_struct.Exchangeable(),
                 "Autoregressive": lambda: sm.cov_struct.Autoregressive(grid=True),
                 "Stationary": lambda: sm.cov_struct.Stationary(max_lag=m["mdep"] or 1, grid=True)}[sm_structure]()
    family = {"gaussian": sm.families.Gaussian(), "binomial": sm.families.Binomial(),
              "poisson": sm.families.Poisson()}[m["family"]]
    model = sm.GEE.from_formula(formula, groups=kwargs["groups"], data=df,
                                family=family, cov_struct=structure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(maxiter=200, ctol=1e-12)
    sm_params = res.params.to_numpy()
    order = [list(res.params.index).index(n) for n in ours.params.index]  # patsy's names are ours
    se = ours.bse.to_numpy()
    assert_close(sm_params[order], ours.params, 1e-10, 1e-11 * se, "coefficients")
    dep = np.atleast_1d(structure.dep_params)  # Stationary's lag 0 is 1
    assert_close(dep[1:] if sm_structure == "Stationary" else dep, ours.corr_params, 1e-10, 1e-12, "alpha")
    assert_close(res.scale, ours.scale, 1e-10, what="scale")
    assert_close(res.cov_robust[np.ix_(order, order)], ours.cov_params("robust"), 1e-10,
                 1e-11 * np.outer(se, se), "robust vcov")
    assert_close(res.cov_naive[np.ix_(order, order)], ours.cov_params("naive"), 1e-10,
                 1e-11 * np.outer(se, se), "naive vcov")

