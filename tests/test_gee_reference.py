"""multilevel.gee against geepack (tests/reference/gee.json, made by
gee_reference.R) and statsmodels (gee_statsmodels.json, gee_statsmodels.py).

geepack fits are refitted there with epsilon = 1e-12 ("tight"): coefficients,
robust and naive covariances, alpha and phi from those are compared to 1e-6
relative. The jackknife, QIC and anova values come from geepack's default
(epsilon = 1e-4) fits and are compared more loosely. statsmodels uses other
moment estimators, so its naive and bias-reduced covariances are compared
with ours evaluated at statsmodels' own estimates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import multilevel as ml
from multilevel.gee import gee_design, gee_result_at

from gee_fixtures import assert_close, model_data

REFERENCE = Path(__file__).parent / "reference"
GEEPACK = json.loads((REFERENCE / "gee.json").read_text())["models"]
STATSMODELS = json.loads((REFERENCE / "gee_statsmodels.json").read_text())["models"]


@pytest.fixture(scope="module", params=sorted(GEEPACK))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GeeResult]:
    m = GEEPACK[request.param]
    formula, df, kwargs = model_data(m)
    return m, ml.gee(formula, df, **kwargs)


def test_estimates_match_geepack(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    tight = m["tight"]
    se = np.asarray(tight["se_robust"])
    assert fit.converged
    assert fit.nobs == m["nobs"] and fit.nclusters == m["n_clusters"]
    assert_close(fit.params, tight["coefficients"]["values"], 1e-6, 1e-7 * se, "coefficients")
    assert_close(fit.bse, se, 1e-6, what="robust SE")
    assert_close(fit.cov_params("robust"), tight["vcov_robust"], 1e-6, 1e-7 * np.outer(se, se), "robust vcov")
    naive = np.asarray(tight["vcov_naive"])
    assert_close(fit.cov_params("naive"), naive, 1e-6, 1e-7 * np.sqrt(np.outer(np.diag(naive), np.diag(naive))),
                 "naive vcov")
    assert_close(fit.scale, tight["phi"], 1e-6, what="phi")
    alpha = tight["alpha"]["values"] if m["corstr"] not in ("independence", "fixed") else []
    assert_close(fit.corr_params, alpha, 1e-6, 1e-8, "alpha")


def test_jackknife_qic_and_anova_match_geepack(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    if m["corstr"] == "fixed":
        pytest.skip("geepack counts the fixed correlation as a parameter in the jackknife factor")
    jack = np.asarray(m["jackknife"]["jack"]["vcov"])
    scale = np.sqrt(np.outer(np.diag(jack), np.diag(jack)))
    assert_close(fit.cov_params("jackknife"), jack, 1e-4, 1e-5 * scale, "jackknife vcov")
    # geepack's QIC ignores prior weights and has -y/(mu - log(mu)) for the gamma quasi-likelihood.
    if m["qic"] and not m["weights"] and m["family"] != "Gamma":
        q = fit.qic()
        for ours, theirs in (("QIC", "QIC"), ("QICu", "QICu"), ("Quasi Lik", "quasi_lik"), ("CIC", "CIC"),
                             ("QICC", "QICC")):
            assert q[ours] == pytest.approx(m["qic"][theirs], rel=1e-5), ours
    if m["anova"]:
        last = m["anova"][-1]  # geepack's anova is sequential: its last term is our marginal test
        row = fit.anova().iloc[-1]
        assert row["Df"] == last["df"]
        assert row["X2"] == pytest.approx(last["X2"], rel=1e-5)


def test_fitted_values_follow_the_data_rows(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    head = np.asarray(m["fitted_head"])
    assert_close(fit.fitted().to_numpy()[: head.size], head, 1e-5, what="fitted values")


@pytest.mark.parametrize("name", sorted(STATSMODELS))
def test_naive_and_bias_reduced_covariances_match_statsmodels(name: str) -> None:
    sm = STATSMODELS[name]
    m = GEEPACK[sm["geepack_fixture"]]
    formula, df, kwargs = model_data(m)
    ref = sm["variants"]["tight"]
    design = gee_design(formula, df, groups=kwargs["groups"], time=kwargs.get("time"))
    res = gee_result_at(design, kwargs["family"], kwargs["corr"], ref["params"]["values"],
                        ref["dep_params"] if m["corstr"] != "independence" else [], ref["scale"],
                        link=kwargs["link"])
    for kind in ("naive", "robust", "bias_reduced"):
        theirs = np.asarray(ref[f"vcov_{kind}"])
        scale = np.sqrt(np.outer(np.diag(theirs), np.diag(theirs)))
        assert_close(res.cov_params(kind), theirs, 1e-8, 1e-10 * scale, kind)
