"""Residual correlation and variance functions inside lmm, against nlme 3.1's lme and the dense likelihood.

Reference: tests/reference/lme_residual.json (lme_residual_reference.R): Ovary
with AR(1) (REML and ML), Orthodont with varIdent by Sex, BodyWeight with
varPower (of Time, and of the fitted values as nlme's default ``varPower()``,
for lme and gls) and with continuous-time AR(1) + varPower, and AR(1) in
integer weeks with gaps. At fixed parameters the log-likelihood agrees to 1e-8; at
the optimum ours is never worse than nlme's by more than 1e-6, coefficients
agree within 1% of their SE, correlation and variance parameters to 1e-3,
SEs to 0.5%.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.correlation import Ar1, Car1, Exchangeable, MDependent, Unstructured
from multilevel.lmm import lmm_design
from multilevel.lmm.residual import ResidualLmmObjective, ResidualLmmResult, residual_model
from multilevel.lmm.result import LmmResult
from multilevel.lmm.theta import term_lambdas
from multilevel.variance import VarExp, VarIdent, VarPower

REF = json.loads((pathlib.Path(__file__).parent / "reference" / "lme_residual.json").read_text())


def case_data(name: str) -> pd.DataFrame:
    """A bundled data set; bw_gaps is BodyWeight rebuilt as the R script builds it."""
    if name != "bw_gaps":
        return ml.load_dataset(name)
    d = ml.load_dataset("BodyWeight")
    d = d[d["Time"] != 44].copy()
    d["week"] = ((d["Time"] - 1) // 7).astype(int)
    visit = d.groupby("Rat", observed=True).cumcount() + 1
    d = d[~visit.isin([3, 6])]
    assert len(d) == REF["bw_gaps_rows"]
    return d


def arguments(case: dict) -> dict:
    ours = case["ours"]
    kw = {k: ours[k] for k in ("corr", "time") if k in ours}
    if "variance" in ours:
        v = ours["variance"]
        kw["variance"] = VarIdent(v["column"]) if v["kind"] == "ident" else VarPower(v["column"])
    return kw


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for key, case in REF["cases"].items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the gaps case is (nearly) singular
            out[key] = ml.lmm(case["ours"]["formula"], case_data(case["data"]), reml=case["reml"], **arguments(case))
    return out


@pytest.mark.parametrize("key", list(REF["cases"]))
def test_optimum_matches_nlme(fits, key):
    case, fit = REF["cases"][key], fits[key]
    assert isinstance(fit, ResidualLmmResult) and fit.converged
    assert fit.loglik > case["loglik"] - 1e-6, (fit.loglik, case["loglik"])
    assert abs(fit.loglik - case["loglik"]) < 1e-4
    se = np.array(case["se"])
    assert np.max(np.abs(fit.params.to_numpy() - case["beta"]) / se) < 0.01
    np.testing.assert_allclose(fit.bse, se, rtol=5e-3)
    np.testing.assert_allclose(fit.corr_params, np.atleast_1d(case["corr"]) if case["corr"] != [] else [], atol=1e-3)
    np.testing.assert_allclose(fit.variance_params, np.atleast_1d(case["variance"]) if case["variance"] != [] else [],
                               atol=1e-3)


@pytest.mark.parametrize("key", [k for k, c in REF["cases"].items() if c["points"]])
def test_loglik_at_fixed_parameters_matches_the_dense_likelihood(key):
    case = REF["cases"][key]
    kw = arguments(case)
    data = case_data(case["data"])
    design = lmm_design(case["ours"]["formula"], data)
    residual = residual_model(design, data.loc[design.row_index], corr=kw.get("corr", "independence"),
                              time=kw.get("time"), variance=kw.get("variance"), corr_groups=None)
    objective = ResidualLmmObjective(design, residual, case["reml"])
    for point in case["points"]:
        corr = np.atleast_1d(point.get("corr", []))
        var = np.atleast_1d(point.get("variance", []))
        u = np.concatenate([residual.structure.to_unconstrained(corr, residual.max_size) if corr.size else [],
                            residual.variance.to_unconstrained(var)])
        loglik = -0.5 * objective.deviance(np.atleast_1d(point["theta"]), u)
        assert abs(loglik - point["loglik"]) < 1e-8 * abs(point["loglik"]), (loglik, point["loglik"])


def dense_deviance(y, X, Z, D, V_e, reml):
    """-2 (restricted) log-likelihood with beta and sigma profiled out, from V0 = Z D Z' + V_e."""
    V = Z @ D @ Z.T + V_e
    Vi = np.linalg.inv(V)
    A = X.T @ Vi @ X
    beta = np.linalg.solve(A, X.T @ Vi @ y)
    r = y - X @ beta
    n, p = X.shape
    dof = n - p if reml else n
    rss = r @ Vi @ r
    dev = dof * (1 + np.log(2 * np.pi * rss / dof)) + np.linalg.slogdet(V)[1]
    return dev + (np.linalg.slogdet(A)[1] if reml else 0.0)


@pytest.mark.parametrize("structure", [Ar1(), Car1(), Exchangeable(), Unstructured(), MDependent(2)])
@pytest.mark.parametrize("reml", [True, False])
def test_whitened_objective_is_the_dense_marginal_likelihood(structure, reml):
    rng = np.random.default_rng(7)
    groups, per = 6, 5
    g = np.repeat(np.arange(groups), per)
    t = np.tile(np.arange(per), groups).astype(float) + (rng.uniform(0, 0.5, groups * per) if structure.name == "car1"
                                                          else 0.0)
    df = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g, "t": t,
                       "v": rng.uniform(0.5, 2.0, g.size)})
    design = lmm_design("y ~ x + (x | g)", df)
    residual = residual_model(design, df, corr=structure, time="t", variance=VarExp("v"), corr_groups=None)
    objective = ResidualLmmObjective(design, residual, reml)
    u = rng.normal(0.0, 0.3, residual.nparams)
    theta = np.array([0.8, 0.3, 0.5])
    corr, var = residual.split(u)
    rows = np.arange(design.nobs)
    V_e = residual.covariance(u, 1.0, rows)
    q = groups * 2
    Z = np.zeros((design.nobs, q))
    term = design.terms[0]
    for i in range(design.nobs):
        Z[i, 2 * term.codes[i]:2 * term.codes[i] + 2] = term.z[i]
    lam = term_lambdas(design.terms, theta)[0]
    D = np.kron(np.eye(groups), lam @ lam.T)
    expected = dense_deviance(design.y, design.X, Z, D, V_e, reml)
    assert abs(objective.deviance(theta, u) - expected) < 1e-9 * abs(expected)


def test_plain_fits_are_unchanged_and_results_work(fits):
    sleep = ml.load_dataset("sleepstudy")
    plain = ml.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    assert type(plain) is LmmResult
    fit = fits["bodyweight_car1_power"]
    back = pickle.loads(pickle.dumps(fit))
    np.testing.assert_allclose(back.corr_params, fit.corr_params)
    text = str(fit.summary())
    assert "Residual structure (Residual groups: Rat, time: Time):" in text and "car1" in text and "power" in text
    cov = fit.marginal_cov("2")
    assert cov.shape == (11, 11) and np.all(np.linalg.eigvalsh(cov.to_numpy()) > 0)
    with pytest.raises(ValueError, match="intraclass correlation is not defined"):
        fit.icc()
    assert fit.df_model == len(fit.params) + fit._theta.size + 1 + 2


def test_bad_input_is_named():
    d = ml.load_dataset("Orthodont")
    f = "distance ~ age + (1 | Subject)"
    with pytest.raises(ValueError, match="must be nested in every grouping factor.*'Subject'"):
        ml.lmm(f, d, corr="ar1", corr_groups="Sex")
    with pytest.raises(ValueError, match="time column 't'.*cluster M16 has two rows at the same time"):
        ml.lmm(f, d.assign(t=0), corr="ar1", time="t")
    with pytest.raises(ValueError, match="time column 't' has dtype object"):
        ml.lmm(f, d.assign(t="a"), corr="ar1", time="t")
    with pytest.warns(UserWarning, match="dropped 1 of 108 rows"):
        ml.lmm(f, d.assign(t=np.where(np.arange(len(d)) == 3, np.nan, d["age"])), corr="ar1", time="t")
    with pytest.raises(ValueError, match="covariate is 0 at row 3"):
        ml.lmm(f, d.assign(z=np.where(np.arange(len(d)) == 3, 0.0, d["age"])), variance=VarPower("z"))
    with pytest.raises(ValueError, match="level 'x' has one row"):
        ml.lmm(f, d.assign(s=np.where(np.arange(len(d)) == 3, "x", "y")), variance=VarIdent("s"))
    with pytest.raises(ValueError, match="column 'nope' used in the residual structure"):
        ml.lmm(f, d, corr="ar1", time="nope")
    with pytest.raises(ValueError, match="need the data in memory"):
        ml.lmm(f, "data.parquet", corr="ar1")


@pytest.mark.parametrize("key", list(REF["gls_cases"]))
def test_gls_variance_of_the_fitted_values_matches_nlme(key):
    case = REF["gls_cases"][key]
    fit = ml.gls(case["formula"], ml.load_dataset("BodyWeight"), variance=VarPower())
    assert fit.loglik > case["loglik"] - 1e-6 and abs(fit.loglik - case["loglik"]) < 1e-5
    np.testing.assert_allclose(fit.variance_params, np.atleast_1d(case["variance"]), atol=1e-4)
    np.testing.assert_allclose(fit.params, case["beta"], rtol=1e-5)
