"""multilevel.gee for the family/link pairs beyond gee.json, and MDependent(m), against
tests/reference/gee_links.json (made by gee_links_reference.R) and
gee_links_statsmodels.json (gee_links_statsmodels.py).

Every link the GEE families offer is fitted: binomial probit, cloglog and log,
gaussian log and inverse, poisson identity and sqrt, Gamma inverse and identity,
inverse Gaussian 1/mu^2, inverse, log and identity (gee.json has the canonical
links and Gamma log). geepack fits what it can (tightly converged,
epsilon = 1e-12); poisson sqrt and the inverse Gaussian, which geepack refuses,
come from gp_fit(), the plain-R re-implementation of geepack checked against
geepack to 1e-8 on every other fixture here, with R's own family objects.
MDependent(m) is geepack's "userdefined" structure with one zcor column per lag.
statsmodels adds a third opinion: its Stationary structure is MDependent on
balanced data, and its covariances at its own estimates check the sqrt and
inverse Gaussian links' derivatives independently of R.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import multilevel as ml
import numpy as np
import pytest
from multilevel.gee import gee_design, gee_result_at

from gee_fixtures import assert_close, model_data

REFERENCE = Path(__file__).parent / "reference"
GEEPACK = json.loads((REFERENCE / "gee_links.json").read_text())["models"]
STATSMODELS = json.loads((REFERENCE / "gee_links_statsmodels.json").read_text())["models"]

#: Relative tolerance of estimates, variances, phi and alpha (both sides converge to 1e-12).
RTOL = 1e-6


def assert_cov_close(actual: Any, desired: Any, rtol: float, what: str) -> None:
    """Covariance matrices: each entry within ``rtol sqrt(V_ii V_jj)``."""
    d = np.asarray(desired, dtype=float)
    scale = np.sqrt(np.outer(np.diag(d), np.diag(d)))
    assert_close(actual, d, 0.0, rtol * scale, what)


@pytest.fixture(scope="module", params=sorted(GEEPACK))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GeeResult]:
    m = GEEPACK[request.param]
    formula, df, kwargs = model_data(m)
    return m, ml.gee(formula, df, **kwargs)


def test_every_gee_link_has_a_fixture() -> None:
    from multilevel.families import _FAMILY_LINKS

    r_name = {"gamma": "Gamma", "inverse_gaussian": "inverse.gaussian"}
    covered = {(m["family"], m["link"]) for m in GEEPACK.values()}
    # gee.json has the canonical links and Gamma log.
    covered |= {(m["family"], m["link"]) for m in json.loads((REFERENCE / "gee.json").read_text())["models"].values()}
    offered = {(r_name.get(f, f), link) for f, links in _FAMILY_LINKS.items() if f != "negative_binomial"
               for link in links}
    assert offered <= covered, sorted(offered - covered)


def test_estimates_and_covariances_match_the_reference(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    assert fit.converged
    assert fit.nobs == m["nobs"] and fit.nclusters == m["n_clusters"]
    se = np.asarray(m["se_robust"])
    assert len(fit.params) == len(m["coefficients"]["names"])  # same columns, in R's order
    assert_close(fit.params, m["coefficients"]["values"], RTOL, 1e-7 * se, "coefficients")
    assert_close(fit.bse, se, RTOL, what="robust SE")
    assert_close(np.sqrt(np.diag(fit.cov_params("naive"))), m["se_naive"], RTOL, what="naive SE")
    assert_cov_close(fit.cov_params("robust"), m["vcov_robust"], RTOL, "robust vcov")
    assert_cov_close(fit.cov_params("naive"), m["vcov_naive"], RTOL, "naive vcov")
    assert_close(fit.scale, m["phi"], RTOL, what="phi")
    assert_close(fit.corr_params, m["alpha"]["values"], RTOL, 1e-8, "alpha")
    head = np.asarray(m["fitted_head"])
    assert_close(fit.fitted().to_numpy()[: head.size], head, RTOL, what="fitted values")


def test_jackknife_qic_and_anova_match_the_reference(case: tuple[dict[str, Any], ml.GeeResult]) -> None:
    m, fit = case
    assert_cov_close(fit.cov_params("jackknife"), m["vcov_jackknife"], RTOL, "approximate jackknife vcov")
    q = fit.qic()
    ref = m["qic_mn"]  # McCullagh-Nelder quasi-likelihood (as ours), geepack's CIC
    for ours, theirs in (("QIC", "QIC"), ("QICu", "QICu"), ("Quasi Lik", "quasi_lik"), ("CIC", "CIC"),
                         ("QICC", "QICC")):
        assert q[ours] == pytest.approx(ref[theirs], rel=RTOL), ours
    if m["qic_geepack"]:
        assert q["CIC"] == pytest.approx(m["qic_geepack"]["CIC"], rel=RTOL)
        if not m["weights"] and m["family"] != "Gamma":
            assert q["QIC"] == pytest.approx(m["qic_geepack"]["QIC"], rel=RTOL)
    if m["anova_last"]:
        row = fit.anova().iloc[-1]  # geepack's anova is sequential: its last term is our marginal test
        assert row.name == m["anova_last"]["term"]
        assert row["Df"] == m["anova_last"]["df"]
        assert row["X2"] == pytest.approx(m["anova_last"]["X2"], rel=RTOL)
        assert row["P(>|Chi|)"] == pytest.approx(m["anova_last"]["p"], rel=1e-5)


@pytest.mark.parametrize("name", sorted(STATSMODELS))
def test_statsmodels_estimates_and_covariances(name: str) -> None:
    sm = STATSMODELS[name]
    m = GEEPACK[sm["fixture"]]
    formula, df, kwargs = model_data(m)
    if sm["same_estimator"]:  # Stationary on balanced clusters solves the same equations as MDependent
        fit = ml.gee(formula, df, **kwargs)
        se = np.asarray(sm["se_robust"])
        assert_close(fit.params, sm["params"]["values"], RTOL, 1e-7 * se, "coefficients")
        assert_close(fit.corr_params, sm["dep_params"], RTOL, 1e-8, "alpha")
        assert_cov_close(fit.cov_params("robust"), sm["vcov_robust"], RTOL, "robust vcov")
    design = gee_design(formula, df, groups=kwargs["groups"], time=kwargs.get("time"))
    res = gee_result_at(design, kwargs["family"], kwargs["corr"], sm["params"]["values"], sm["dep_params"],
                        sm["scale"], link=kwargs["link"])
    for kind in ("naive", "robust", "bias_reduced"):
        assert_cov_close(res.cov_params(kind), sm[f"vcov_{kind}"], 1e-10, kind)
