"""Full conditional covariance matrices of the random effects per level, ``ranef_condvar(full=True)``,
against lme4's ``postVar`` (tests/reference/condvar.json, made by condvar_reference.R).

Evaluated at lme4's own parameters (``result_at_theta`` / ``result_at_parameters``), every level's
matrix must agree with the reference to 1e-8 of its largest entry (measured: 4e-15; the GLMMs'
reference comes from PIRLS iterated to convergence). lme4's postVar reports only each term's own
block when terms share a grouping factor (``(Days || Subject)``); those blocks must agree too (LMM
1e-8, measured 4e-15; GLMM 1e-5, measured 4e-6, as lme4's PIRLS stops early), and the covariances
between the terms, which are not 0, must agree with the reference's ``sigma^2 Lambda (L L')^-1
Lambda'``. A residual-structure LMM is checked against the brute-force
``G - G Z' V^-1 Z G`` from the marginal covariance.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.datasets import load_dataset
from multilevel.glmm import result_at_parameters
from multilevel.lmm import lmm_design
from multilevel.lmm.fit import result_at_theta

REFERENCE = json.loads((Path(__file__).parent / "reference" / "condvar.json").read_text())
MODELS = REFERENCE["models"]


def model_inputs(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Our formula, data and keywords for a fixture model (the data rules of condvar_reference.R)."""
    df = load_dataset(m["dataset"])
    rhs = m["formula"].split("~", 1)[1].strip()
    if m["dataset"] == "cbpp":  # cbind(incidence, size - incidence), pn = as.numeric(period)
        df = df.assign(_y=df.incidence / df["size"], pn=df.period.cat.codes.astype(float) + 1.0)
        return "_y ~ " + rhs, df, {"weights": "size"}
    if m["dataset"] == "Contraception":
        df = df.assign(_y=(df.use == "Y").astype(float), u=(df.urban == "Y").astype(float))
        return "_y ~ " + rhs, df, {}
    return m["formula"], df, {}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Any]:
    """A fixture model and our result at lme4's parameters."""
    m = MODELS[request.param]
    formula, df, kwargs = model_inputs(m)
    if m["kind"] == "lmm":
        return m, result_at_theta(lmm_design(formula, df), m["theta"], reml=m["reml"])
    design = lmm_design(formula, df, **kwargs)
    return m, result_at_parameters(design, m["theta"], m["fixef"]["values"], m["family"])


def test_full_blocks_at_lme4s_parameters(case: tuple[dict[str, Any], Any]) -> None:
    m, res = case
    if m["kind"] == "lmm":
        assert res.sigma == pytest.approx(m["sigma"], rel=1e-10)
    full = res.ranef_condvar(full=True)
    assert list(full) == list(m["groups"])
    for group, ref in m["groups"].items():
        expected = np.asarray(ref["full"])
        assert full[group].shape == expected.shape
        np.testing.assert_allclose(full[group], expected, rtol=0, atol=1e-8 * np.max(np.abs(expected)),
                                   err_msg=group)
        # the layout: levels as ranef's index, rows/columns as ranef's columns
        assert [str(v) for v in res.ranef[group].index] == ref["levels"]
        assert len(res.ranef[group].columns) == len(ref["columns"]) == expected.shape[1]


def test_the_blocks_lme4_reports_agree(case: tuple[dict[str, Any], Any]) -> None:
    m, res = case
    full = res.ranef_condvar(full=True)
    for group, ref in m["groups"].items():
        postvar = np.array(ref["postvar"], dtype=float)  # null (not reported by lme4) -> nan
        known = np.isfinite(postvar)
        tol = 1e-8 if m["kind"] == "lmm" else 1e-5  # lme4's GLMM postVar is at its early-stopping PIRLS modes
        np.testing.assert_allclose(full[group][known], postvar[known], rtol=tol, err_msg=group)


def test_variances_are_the_diagonals(case: tuple[dict[str, Any], Any]) -> None:
    _, res = case
    full, diag = res.ranef_condvar(full=True), res.ranef_condvar()
    for group, frame in diag.items():
        np.testing.assert_allclose(np.einsum("gii->gi", full[group]), frame.to_numpy(), rtol=1e-12, atol=1e-300)
        assert np.array_equal(full[group], np.swapaxes(full[group], 1, 2))
        assert np.all(np.linalg.eigvalsh(full[group]) > 0)


def test_terms_sharing_a_grouping_factor_are_correlated_given_the_data() -> None:
    ref = MODELS["sleepstudy_uncorr_reml"]["groups"]["Subject"]
    assert np.all(np.isnan(np.array(ref["postvar"], dtype=float)[:, 0, 1]))  # lme4 does not report them
    fit = ml.lmm("Reaction ~ Days + (Days || Subject)", load_dataset("sleepstudy"))
    full = fit.ranef_condvar(full=True)["Subject"]
    assert np.all(full[:, 0, 1] < 0)
    # at our own optimum: close to lme4's, whose theta differs in the last digits
    np.testing.assert_allclose(full, ref["full"], rtol=1e-4)


def test_residual_structure_matches_the_marginal_covariance() -> None:
    d = load_dataset("Orthodont")
    fit = ml.lmm("distance ~ age + (age || Subject)", d, corr="ar1")
    full = fit.ranef_condvar(full=True)["Subject"]
    np.testing.assert_allclose(np.einsum("gii->gi", full), fit.ranef_condvar()["Subject"].to_numpy(), rtol=1e-12)
    # brute force: Cov(b | y, beta) = G - G Z' V^-1 Z G, with V = Z G Z' + sigma^2 R, one subject at a time
    # (subjects are independent); G from the fitted variances, R from the fitted AR(1) structure.
    t0, t1 = fit.design.terms
    sds = [float(np.sqrt(c[0, 0])) for c in fit.covariance_matrices()]
    for j in (0, 5, 26):
        rows = np.flatnonzero(t0.codes == j)
        Z = np.column_stack([t0.z[rows, 0], t1.z[rows, 0]])
        G = np.diag(np.square(sds))
        V = Z @ G @ Z.T + fit.residual.covariance(fit.residual_u, fit.sigma, rows)
        brute = G - G @ Z.T @ np.linalg.solve(V, Z @ G)
        np.testing.assert_allclose(full[j], brute, rtol=1e-9, atol=1e-12 * np.max(np.abs(brute)))


def test_glmm_result_pickles_with_its_full_condvar() -> None:
    m = MODELS["contraception_uncorr"]
    formula, df, kwargs = model_inputs(m)
    fit = ml.glmm(formula, df, family="binomial", **kwargs)
    before = fit.ranef_condvar(full=True)["district"]
    again = pickle.loads(pickle.dumps(fit)).ranef_condvar(full=True)["district"]
    np.testing.assert_array_equal(before, again)
    np.testing.assert_allclose(before, m["groups"]["district"]["full"], rtol=2e-3)


def test_rowless_fit_refuses_the_covariances_between_terms() -> None:
    from multilevel.lmm.conditional import full_conditional_covariances

    fit = ml.lmm("Reaction ~ Days + (Days || Subject)", load_dataset("sleepstudy"))
    with pytest.raises(ValueError, match="share a grouping factor need the rows"):
        full_conditional_covariances(fit.design.terms, fit._theta, fit.sigma, fit._core, None)
    single = ml.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    out = full_conditional_covariances(single.design.terms, single._theta, single.sigma, single._core, None)
    assert out["Subject"].shape == (18, 2, 2)
