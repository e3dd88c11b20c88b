"""The fitted-result API: names, predictions, residuals, ICC, marginal
covariance, summaries, the array-level entry point and data-frame types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import load_reference
from multilevel import RandomTerm, fit_lmm, lmm
from multilevel.datasets import load_dataset

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def fit(sleep):
    return lmm(FORMULA, sleep)


def test_fitted_plus_resid_is_response(fit, sleep):
    np.testing.assert_allclose(fit.fitted() + fit.resid(), sleep["Reaction"], rtol=1e-12)


def test_predict_on_training_rows_matches_fitted(fit, sleep):
    np.testing.assert_allclose(fit.predict(sleep), fit.fitted(), rtol=1e-12)
    population = fit.params["Intercept"] + fit.params["Days"] * sleep["Days"]
    np.testing.assert_allclose(fit.predict(sleep, re=False), population, rtol=1e-12)


def test_predict_new_level_is_population_level(fit):
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "unseen"]})
    with pytest.raises(ValueError, match=r"1 row\(s\) of newdata have levels of 'Subject' not in the fit \('unseen'\)"):
        fit.predict(new)
    with pytest.raises(ValueError, match="no column 'Subject'"):
        fit.predict(new.drop(columns="Subject"))
    pred = fit.predict(new, allow_new_levels=True)
    b = fit.ranef["Subject"].loc["308"]
    assert pred.iloc[0] == pytest.approx(fit.params["Intercept"] + b["Intercept"])
    assert pred.iloc[1] == pytest.approx(fit.params["Intercept"] + 5 * fit.params["Days"])


def test_inference_tables(fit):
    ci = fit.conf_int(0.05)
    assert ci.shape == (2, 2)
    np.testing.assert_allclose(ci.iloc[:, 1] - fit.params, 1.959963984540054 * fit.bse, rtol=1e-10)
    assert fit.tvalues["Days"] == pytest.approx(fit.params["Days"] / fit.bse["Days"])
    assert 0 < fit.pvalues["Days"] < 1e-6
    cov = fit.cov_params()
    assert list(cov.index) == ["Intercept", "Days"]
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), fit.bse, rtol=1e-12)


def test_information_criteria(fit):
    k = 2 + 3 + 1
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * k)
    assert fit.bic == pytest.approx(-2 * fit.loglik + np.log(180) * k)
    assert fit.deviance == pytest.approx(fit.objective)


def test_varcorr_layout(fit):
    vc = fit.varcorr
    assert list(vc.columns) == ["group", "term1", "term2", "variance", "sd", "corr"]
    assert list(vc.group) == ["Subject", "Subject", "Subject", "Residual"]
    corr_row = vc[vc.term2.notna()].iloc[0]
    assert -1 <= corr_row["corr"] <= 1
    assert vc.iloc[-1]["sd"] == pytest.approx(fit.sigma)


def test_icc_random_intercept(sleep):
    ref = load_reference("lmm")["sleepstudy_intercept_ml"]
    res = lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    var_b = next(r["vcov"] for r in ref["varcorr"] if r["grp"] == "Subject")
    expected = var_b / (var_b + ref["sigma"] ** 2)
    assert res.icc()["Subject"] == pytest.approx(expected, rel=1e-4)


def test_marginal_cov_matches_dense_formula(fit, sleep):
    v = fit.marginal_cov("308")
    rows = np.nonzero((sleep["Subject"] == "308").to_numpy())[0]
    z = np.column_stack([np.ones(rows.size), sleep["Days"].to_numpy()[rows]])
    expected = z @ fit.covariance_matrices()[0] @ z.T + fit.sigma**2 * np.eye(rows.size)
    np.testing.assert_allclose(v.to_numpy(), expected, rtol=1e-12)
    assert list(v.index) == list(sleep.index[rows])
    with pytest.raises(ValueError, match="not a level"):
        fit.marginal_cov("999")


def test_summary_text_and_html(fit):
    text = str(fit.summary())
    for piece in ["REML criterion", "Random effects:", "Subject", "Residual", "Number of obs: 180",
                  "Subject, 18", "Fixed effects:", "Intercept", "converged: True"]:
        assert piece in text
    html = fit._repr_html_()
    assert "<table" in html and "Fixed effects" in html


def test_array_api_matches_formula_api(fit, sleep):
    codes = sleep["Subject"].cat.codes.to_numpy()
    days = sleep["Days"].to_numpy()
    X = np.column_stack([np.ones(len(days)), days])
    term = RandomTerm(codes, X.copy(), "Subject", ["Intercept", "Days"], levels=sleep["Subject"].cat.categories)
    res = fit_lmm(sleep["Reaction"].to_numpy(), X, [term], fixed_names=["Intercept", "Days"])
    np.testing.assert_allclose(res.params, fit.params, rtol=1e-7)
    np.testing.assert_allclose(res.theta, fit.theta, rtol=1e-5)
    assert res.objective == pytest.approx(fit.objective, rel=1e-10)


@pytest.mark.parametrize("convert", ["str", "int", "category"])
def test_grouping_column_types_give_same_fit(fit, sleep, convert):
    df = sleep.copy()
    subject = df["Subject"].astype(str)
    df["Subject"] = {"str": subject, "int": subject.astype(int), "category": subject.astype("category")}[convert]
    res = lmm(FORMULA, df)
    assert res.objective == pytest.approx(fit.objective, rel=1e-10)


def test_weights_and_offset_by_column_name(sleep):
    df = sleep.assign(w=1 + sleep["Days"] % 3, off=0.5 * sleep["Days"] ** 2)
    by_name = lmm("Reaction ~ Days + (1 | Subject)", df, weights="w", offset="off", reml=False)
    by_array = lmm("Reaction ~ Days + (1 | Subject)", df, weights=df["w"].to_numpy(),
                   offset=df["off"].to_numpy(), reml=False)
    assert by_name.objective == pytest.approx(by_array.objective, rel=1e-12)
    assert by_name.predict(df).to_numpy() == pytest.approx(by_name.fitted().to_numpy())


def test_pyarrow_table_accepted(fit, sleep):
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(sleep.assign(Subject=sleep["Subject"].astype(str)), preserve_index=False)
    assert lmm(FORMULA, table).objective == pytest.approx(fit.objective, rel=1e-10)


def test_factor_fixed_effect_names():
    df = load_dataset("Penicillin")
    res = lmm("diameter ~ C(sample) + (1 | plate)", df)
    assert list(res.params.index)[:2] == ["Intercept", "C(sample)[T.B]"]
