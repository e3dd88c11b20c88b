"""Binomial ``cbind(successes, failures)`` responses in glmm and gee, against glmer/geeglm
(tests/reference/cbind.json, from cbind_reference.R) and against the proportion + ``weights=`` form."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.datasets import load_dataset
from multilevel.formula import cbind_response
from scipy.special import gammaln

REFERENCE = json.loads((Path(__file__).parent / "reference" / "cbind.json").read_text())
GLMM_REFERENCE = json.loads((Path(__file__).parent / "reference" / "glmm.json").read_text())["models"]
CBIND = "cbind(incidence, size - incidence)"
GLMM_F = f"{CBIND} ~ period + (1 | herd)"
GEE_F = f"{CBIND} ~ period"


def cbpp() -> pd.DataFrame:
    df = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    df["w"] = np.resize([1.0, 2.0, 3.0], len(df))  # the reference's weights column
    return df


@pytest.fixture(scope="module")
def glmm_pair() -> tuple[ml.GlmmResult, ml.GlmmResult]:
    df = cbpp()
    return (ml.glmm(GLMM_F, df, family="binomial"),
            ml.glmm("p ~ period + (1 | herd)", df, family="binomial", weights="size"))


def lchoose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


# --- the left side --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("formula, expected", [
    ("cbind(s, f) ~ x", ("s", "f")),
    ("cbind( s , n - s ) ~ x + (1 | g)", ("s", "n - s")),
    ("cbind(np.round(s), f(a, b)) ~ x", ("np.round(s)", "f(a, b)")),
    ("cbind(`s 1`, `n 1` - `s 1`) ~ x", ("`s 1`", "`n 1` - `s 1`")),
    ("`cbind(s, f)` ~ x", None),  # a column of that name
    ("y ~ x", None),
])
def test_cbind_left_sides_split(formula: str, expected: tuple[str, str] | None) -> None:
    assert cbind_response(formula) == expected


@pytest.mark.parametrize("formula, message", [
    ("cbind(s) ~ x", "has 1 argument"),
    ("cbind(s, f, n) ~ x", "has 3 argument"),
    ("cbind(s, ) ~ x", "has 1 argument"),
    ("cbind(s, f) / 2 ~ x", "must be cbind\\(successes, failures\\) alone"),
    ("log(cbind(s, f)) ~ x", "must be cbind\\(successes, failures\\) alone"),
    ("y ~ cbind(s, f)", "on the right of '~'"),
])
def test_malformed_cbind_is_refused(formula: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cbind_response(formula)


# --- glmm ----------------------------------------------------------------------------------------------------


def test_glmm_cbind_is_the_weights_form_bit_for_bit(glmm_pair: tuple[ml.GlmmResult, ml.GlmmResult]) -> None:
    a, b = glmm_pair
    assert np.array_equal(a.design.y, b.design.y) and np.array_equal(a.design.weights, b.design.weights)
    for ours, theirs in ((a.params, b.params), (a.theta, b.theta), (a.bse, b.bse), (a.fitted(), b.fitted())):
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-12, atol=0)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-13)
    for kind in ("response", "pearson", "deviance"):
        np.testing.assert_allclose(a.resid(kind).to_numpy(), b.resid(kind).to_numpy(), rtol=1e-12, atol=1e-14)
    assert a.nobs == b.nobs == 56 and a.design.response == CBIND


def test_glmm_cbind_matches_glmer(glmm_pair: tuple[ml.GlmmResult, ml.GlmmResult]) -> None:
    fit, r = glmm_pair[0], REFERENCE["glmer"]
    exact = GLMM_REFERENCE["cbpp_laplace"]["exact_optimum"]  # the same model, optimized to the end
    assert fit.params.index.tolist() == ["Intercept", "period[T.2]", "period[T.3]", "period[T.4]"]
    assert fit.loglik >= r["loglik"] - 1e-8  # glmer stops a little short of the optimum
    assert fit.loglik == pytest.approx(exact["loglik"], abs=1e-8)
    assert fit.deviance == pytest.approx(r["objective"], abs=1e-3)
    np.testing.assert_allclose(fit.params, exact["beta"], atol=1e-5)
    np.testing.assert_allclose(fit.theta, exact["theta"], atol=1e-5)
    np.testing.assert_allclose(fit.bse, exact["fixef_se"], rtol=2e-3)
    np.testing.assert_allclose(fit.params, r["fixef"], atol=0.01 * min(r["fixef_se"]))
    np.testing.assert_allclose(fit.theta, r["theta"], atol=1e-3)
    np.testing.assert_allclose(fit.bse, r["fixef_se"], rtol=2e-2)  # glmer's vcov: its finite-difference Hessian
    np.testing.assert_array_equal(fit.design.weights, r["weights"])


def test_glmm_cbind_weights_multiply_the_trials_as_in_glmer() -> None:
    df = cbpp()
    fit = ml.glmm(GLMM_F, df, family="binomial", weights="w")
    r = REFERENCE["glmer_weighted"]
    np.testing.assert_array_equal(fit.design.weights, r["weights"])
    np.testing.assert_allclose(fit.params, r["fixef"], atol=0.01 * min(r["fixef_se"]))
    np.testing.assert_allclose(fit.theta, r["theta"], atol=1e-3)
    np.testing.assert_allclose(fit.bse, r["fixef_se"], rtol=2e-2)
    # The weights= form with trials w * size is the same fit.
    other = ml.glmm("p ~ period + (1 | herd)", df.assign(wn=df.w * df["size"]), family="binomial", weights="wn")
    np.testing.assert_allclose(fit.params, other.params, rtol=1e-12)
    # glmer's logLik treats w as replicates (w log dbinom(k, m)); ours is the binomial on w m trials, as the
    # weights= form's: the same kernel, a constant apart.
    k, m, w = df.incidence.to_numpy(float), df["size"].to_numpy(float), df.w.to_numpy()
    constant = float(np.sum(lchoose(w * m, w * k) - w * lchoose(m, k)))
    assert fit.loglik - constant >= r["loglik"] - 1e-6
    assert fit.loglik - constant == pytest.approx(r["loglik"], abs=1e-3)


def test_glmm_cbind_predicts_new_data_from_the_right_side(glmm_pair: tuple[ml.GlmmResult, ml.GlmmResult]) -> None:
    a, b = glmm_pair
    new = pd.DataFrame({"period": pd.Categorical(["1", "4"], categories=["1", "2", "3", "4"]), "herd": ["3", "15"]})
    np.testing.assert_allclose(a.predict(new).to_numpy(), b.predict(new).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.predict(new, re=False, scale="link").to_numpy(),
                               [a.params.iloc[0], a.params.iloc[0] + a.params.iloc[3]], rtol=1e-12)
    np.testing.assert_allclose(a.predict(cbpp()).to_numpy(), a.fitted().to_numpy(), rtol=1e-10)
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(back.predict(new).to_numpy(), a.predict(new).to_numpy(), rtol=1e-12)


def test_cbind_expressions_use_the_callers_names() -> None:
    df = cbpp().assign(trials=lambda d: d["size"] * 2, half=lambda d: d.incidence * 2)
    two = 2.0  # noqa: F841 (read by the formula, from this scope)
    fit = ml.glmm("cbind(half / two, trials / two - incidence) ~ period + (1 | herd)", df, family="binomial")
    base = ml.glmm(GLMM_F, cbpp(), family="binomial")
    np.testing.assert_allclose(fit.params, base.params, rtol=1e-12)
    assert "two" in fit.design.fixed.context


def test_missing_counts_are_dropped_and_counted() -> None:
    df = cbpp()
    df.loc[[2, 7], "incidence"] = np.nan
    df.loc[[7, 11], "size"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 56 rows with missing values \('incidence': 2, 'size': 2\)"):
        fit = ml.glmm(GLMM_F, df, family="binomial")
    assert fit.nobs == 53 and fit.design.n_dropped == 3
    kept = df.dropna(subset=["incidence", "size"])
    np.testing.assert_allclose(fit.params, ml.glmm(GLMM_F, kept, family="binomial").params, rtol=1e-12)


def test_rows_without_trials_are_dropped_with_a_warning() -> None:
    df = cbpp()
    df.loc[[2, 9], ["incidence", "size"]] = 0
    with pytest.warns(UserWarning, match="dropped 2 of 56 rows with no trials"):
        fit = ml.glmm(GLMM_F, df, family="binomial")
    r = REFERENCE["glmer_zero_trials"]  # glmer keeps them with weight 0: the same log-likelihood
    assert fit.nobs == r["nobs_rows_dropped"] == 54 and fit.design.n_dropped == 2
    assert fit.loglik >= r["loglik"] - 1e-6 and fit.loglik == pytest.approx(r["loglik"], abs=1e-3)
    with pytest.warns(UserWarning, match="dropped 2 of 56 rows with no trials"):
        g = ml.gee(GEE_F, df, groups="herd", family="binomial", corr="exchangeable")
    assert g.nobs == 54


def test_negative_and_non_integer_counts() -> None:
    df = cbpp()
    df.loc[4, "incidence"] = -1
    with pytest.raises(ValueError, match=r"successes 'incidence' of .* 1 negative count\(s\) \(first at row 4"):
        ml.glmm(GLMM_F, df, family="binomial")
    with pytest.raises(ValueError, match="negative count"):
        ml.gee("cbind(incidence - 1, size) ~ period", cbpp(), groups="herd", family="binomial")
    df = cbpp()
    df[["incidence", "size"]] = df[["incidence", "size"]].astype(float)
    df.loc[4, ["incidence", "size"]] += 0.5  # the failures stay whole
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ml.glmm(GLMM_F, df, family="binomial")
    messages = [str(w.message) for w in caught if "non-integer" in str(w.message)]
    assert len(messages) == 1 and "successes" in messages[0]  # glmm's own check, as for the weights= form
    with pytest.warns(UserWarning, match=r"the successes 'incidence' of .* 1 non-integer count"):
        ml.gee(GEE_F, df, groups="herd", family="binomial")
    with pytest.warns(UserWarning, match=r"the failures 'size - incidence - 0.5' .* non-integer"):
        ml.glmm("cbind(incidence, size - incidence - 0.5) ~ period + (1 | herd)", cbpp(), family="binomial")


@pytest.mark.parametrize("fit", [
    lambda df: ml.lmm(GLMM_F, df),
    lambda df: ml.gls(GEE_F, df),
    lambda df: ml.glmm(GLMM_F, df, family="poisson"),
    lambda df: ml.gee(GEE_F, df, groups="herd", family="poisson"),
    lambda df: ml.gee(GEE_F, df, groups="herd"),  # gaussian by default
])
def test_cbind_outside_binomial_glmm_and_gee_is_refused(fit) -> None:
    with pytest.raises(ValueError, match="cbind responses are for binomial glmm/gee"):
        fit(cbpp())


def test_cbind_with_a_categorical_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="one count per row; it expands to 15 columns"):
        ml.glmm("cbind(incidence, herd) ~ period + (1 | herd)", cbpp(), family="binomial")


# --- gee -----------------------------------------------------------------------------------------------------


def test_gee_cbind_matches_geeglm_and_the_weights_form() -> None:
    df = cbpp()
    fit = ml.gee(GEE_F, df, groups="herd", family="binomial", corr="exchangeable")
    other = ml.gee("p ~ period", df, groups="herd", family="binomial", corr="exchangeable", weights="size")
    r = REFERENCE["geeglm"]
    np.testing.assert_allclose(fit.params, r["coefficients"], rtol=1e-9)
    np.testing.assert_allclose(fit.bse, r["se_robust"], rtol=1e-9)
    assert float(fit.corr_params[0]) == pytest.approx(r["alpha"], rel=1e-9)
    assert fit.scale == pytest.approx(r["phi"], rel=1e-9)
    np.testing.assert_allclose(fit.params, other.params, rtol=1e-12)
    np.testing.assert_allclose(fit.bse, other.bse, rtol=1e-12)
    np.testing.assert_array_equal(fit.design.weights, r["weights"])
    new = pd.DataFrame({"period": pd.Categorical(["2", "3"], categories=["1", "2", "3", "4"])})
    np.testing.assert_allclose(fit.predict(new).to_numpy(), other.predict(new).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(fit.resid("pearson").to_numpy(), other.resid("pearson").to_numpy(), rtol=1e-10)


def test_gee_cbind_weights_multiply_the_trials_as_glm_does() -> None:
    # geeglm replaces weights= by the trials with a cbind response; glm multiplies them, and so do we
    # (an independence GEE's estimates are glm's).
    fit = ml.gee(GEE_F, cbpp(), groups="herd", family="binomial", weights="w")
    r = REFERENCE["glm_weighted"]
    np.testing.assert_array_equal(fit.design.weights, r["weights"])
    np.testing.assert_allclose(fit.params, r["coefficients"], rtol=1e-10)
    naive = np.sqrt(np.diag(fit.cov_params("naive").to_numpy()) / fit.scale)  # glm's: phi = 1
    np.testing.assert_allclose(naive, r["se"], rtol=1e-8)


def test_streamed_data_refuse_cbind(tmp_path: Path) -> None:
    path = tmp_path / "cbpp.parquet"
    df = cbpp()
    df["herd"] = df.herd.astype(str)
    df["period"] = df.period.astype(str)
    df.sort_values("herd").to_parquet(path)
    with pytest.raises(ValueError, match="not supported for data read in chunks"):
        ml.gee(GEE_F, str(path), groups="herd", family="binomial")
    with pytest.raises(ValueError, match="cbind responses are for binomial glmm/gee"):
        ml.lmm(GLMM_F, str(path))
