"""Satterthwaite and Kenward-Roger t and F tests against lmerTest 3.1 and pbkrtest 0.5.

Reference: tests/reference/inference.json, made by inference_reference.R.
The tables are compared at lme4's own theta (fixed parameters, tight: the
issue's 1e-3 on df and 1e-5 on F, and closer where the method allows); at our
own optimum, which differs from lme4's in the sixth digit, df agree to 1e-3
and F values to 1e-4.
"""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pandas as pd
import pytest
from multilevel import lmm
from multilevel.datasets import load_dataset
from multilevel.inference.kenward_roger import kenward_roger
from multilevel.inference.satterthwaite import varpar_sensitivity
from multilevel.lmm import lmm_design
from multilevel.lmm.fit import SingularFitWarning, result_at_theta
from multilevel.lmm.theta import term_lambdas

REF = json.loads((pathlib.Path(__file__).parent / "reference" / "inference.json").read_text())["cases"]
METHOD = {"Satterthwaite": "satterthwaite", "Kenward-Roger": "kenward-roger"}


def frame(columns: dict, index=None) -> pd.DataFrame:
    """A JSON table (scalars for one-row tables) as a frame."""
    return pd.DataFrame({k: np.atleast_1d(v) for k, v in columns.items()}, index=index)


def case_data(case: dict) -> pd.DataFrame:
    df = load_dataset(case["dataset"])
    return df.rename(columns={"Informed.liking": "liking"}) if case["dataset"] == "ham" else df


def at_reference(key: str):
    """Our result at lme4's theta (no optimization), and the case."""
    case = REF[key]
    design = lmm_design(case["formula"], case_data(case))
    return result_at_theta(design, np.atleast_1d(case["theta"]), reml=case["reml"]), case


@pytest.fixture(scope="module")
def fits() -> dict:
    return {key: at_reference(key)[0] for key in REF}


@pytest.fixture(scope="module")
def optima() -> dict:
    return {key: lmm(c["formula"], case_data(c), reml=c["reml"]) for key, c in REF.items()}


CASES = [(key, m) for key, c in REF.items() for m in c["methods"]]


def assert_rel(ours, ref, rtol, what):
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape, f"{what}: shapes {ours.shape} and {ref.shape}"
    if ref.size == 0:  # an intercept-only model has no term to test
        return
    err = np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300))
    assert err < rtol, f"{what}: relative error {err:.2e} (ours {ours}, reference {ref})"


@pytest.mark.parametrize(("key", "method"), CASES)
def test_coefficient_tests_match_lmertest(fits, key, method):
    ref = frame(REF[key]["methods"][method]["coefficients"])
    table = fits[key].with_ddf(METHOD[method]).coef_table()
    assert table.columns.tolist() == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert_rel(table["df"], ref["df"], 1e-5, "df")
    assert_rel(table["Std. Error"], ref["Std. Error"], 1e-9, "standard errors")
    assert_rel(table["t value"], ref["t value"], 1e-9, "t values")
    assert_rel(table["Pr(>|t|)"], ref["Pr(>|t|)"], 1e-4, "p-values")


@pytest.mark.parametrize(("key", "method"), CASES)
def test_tests_at_our_optimum_match_lmertest(optima, key, method):
    ref = frame(REF[key]["methods"][method]["coefficients"])
    table = optima[key].with_ddf(METHOD[method]).coef_table()
    assert_rel(table["df"], ref["df"], 1e-3, "df")
    assert_rel(table["t value"], ref["t value"], 1e-4, "t values")
    ref_entry = REF[key]["methods"][method]["anova"]["type3"]
    anova = optima[key].anova(ddf=METHOD[method])
    assert_rel(anova["DenDF"], np.atleast_1d(ref_entry["table"]["DenDF"]), 1e-3, "DenDF")
    assert_rel(anova["F value"], np.atleast_1d(ref_entry["table"]["F value"]), 1e-4, "F")


@pytest.mark.parametrize(("key", "method"), CASES)
@pytest.mark.parametrize("anova_type", [1, 3])
def test_anova_tables_match_lmertest(fits, key, method, anova_type):
    ref_entry = REF[key]["methods"][method]["anova"][f"type{anova_type}"]
    ref = frame(ref_entry["table"], index=np.atleast_1d(ref_entry["terms"]))
    ours = fits[key].anova(ddf=METHOD[method], type=anova_type)
    assert ours.index.tolist() == ref.index.tolist()
    assert ours.columns.tolist() == ref.columns.tolist()
    assert_rel(ours["NumDF"], ref["NumDF"], 1e-12, "NumDF")
    assert_rel(ours["DenDF"], ref["DenDF"], 1e-5, "DenDF")
    assert_rel(ours[["Sum Sq", "Mean Sq", "F value"]], ref[["Sum Sq", "Mean Sq", "F value"]], 1e-9, "F table")
    assert_rel(ours["Pr(>F)"], ref["Pr(>F)"], 1e-4, "p-values")


@pytest.mark.parametrize(("key", "method"), [(k, m) for k, m in CASES if REF[k].get("contrasts")])
def test_contrast_f_tests_match_contestmd(fits, key, method):
    for name, rows in REF[key]["contrasts"].items():
        ref = frame(REF[key]["methods"][method]["contrast_tests"][name])
        ours = fits[key].ftest(np.atleast_2d(rows), ddf=METHOD[method])
        assert_rel(ours["NumDF"], ref["NumDF"], 1e-12, f"{name} NumDF")
        assert_rel(ours["DenDF"], ref["DenDF"], 1e-5, f"{name} DenDF")
        assert_rel(ours["F value"], ref["F value"], 1e-9, f"{name} F")


@pytest.mark.parametrize("key", [k for k, c in REF.items() if c["reml"]])
def test_kenward_roger_at_reference_theta_is_pbkrtest(key):
    res, case = at_reference(key)
    ref = frame(case["methods"]["Kenward-Roger"]["coefficients"])
    kr = kenward_roger(res.design, term_lambdas(res.design.terms, res._theta), res.sigma)
    p = len(res.params)
    assert_rel([kr.contrast_ddf(np.eye(p)[[j]])[0] for j in range(p)], ref["df"], 1e-9, "KR df")
    assert_rel(np.sqrt(np.diag(kr.vcov_adjusted)), ref["Std. Error"], 1e-10, "KR standard errors")


@pytest.mark.parametrize("key", list(REF))
def test_satterthwaite_at_reference_theta_is_lmertest(key):
    res, case = at_reference(key)
    ref = frame(case["methods"]["Satterthwaite"]["coefficients"])
    sens = varpar_sensitivity(res._core, res._theta, case["sigma"], case["reml"])
    assert_rel([sens.contrast_df(e) for e in np.eye(len(res.params))], ref["df"], 1e-5, "Satterthwaite df")


def test_ddf_at_fit_time_and_after_agree_and_pickle():
    data = load_dataset("sleepstudy")
    early = lmm("Reaction ~ Days + (Days | Subject)", data, ddf="kenward-roger")
    late = lmm("Reaction ~ Days + (Days | Subject)", data).with_ddf("kenward-roger")
    assert early.ddf == late.ddf == "kenward-roger"
    pd.testing.assert_frame_equal(early.coef_table(), late.coef_table())
    back = pickle.loads(pickle.dumps(early))
    pd.testing.assert_frame_equal(back.coef_table(), early.coef_table())
    assert "Kenward-Roger" in str(early.summary()) and "df" in str(early.summary())


def test_with_ddf_leaves_the_original_unchanged():
    fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    before = fit.coef_table()
    fit.with_ddf("satterthwaite").coef_table()
    pd.testing.assert_frame_equal(fit.coef_table(), before)
    assert np.isinf(fit.df).all() and fit.ddf == "normal"
    # t intervals are wider than the normal ones, by the t quantile
    wide = fit.with_ddf("satterthwaite").conf_int(level=0.9)
    narrow = fit.conf_int(alpha=0.1)
    assert (wide["0.05"] < narrow["0.05"]).all() and (wide["0.95"] > narrow["0.95"]).all()


def test_streamed_fit_gets_satterthwaite_and_type3_without_rows(tmp_path):
    data = case_data(REF["ham_factorial"])
    path = tmp_path / "ham.parquet"
    data.to_parquet(path)
    formula = REF["ham_factorial"]["formula"]
    streamed = lmm(formula, str(path), progress=False)
    in_memory = lmm(formula, data)
    a, b = streamed.anova(), in_memory.anova()
    assert_rel(a["F value"], b["F value"], 1e-6, "streamed F")
    assert_rel(a["DenDF"], b["DenDF"], 1e-4, "streamed DenDF")
    with pytest.raises(ValueError, match="satterthwaite"):
        streamed.with_ddf("kenward-roger")


def test_bad_ddf_arguments_are_named(optima):
    fit = optima["sleep_reml"]
    with pytest.raises(ValueError, match="unknown ddf 'satterwaite'"):
        fit.with_ddf("satterwaite")
    with pytest.raises(ValueError, match="unknown ddf"):
        lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"), ddf="KR2")
    with pytest.raises(ValueError, match="REML"):
        optima["sleep_ml"].with_ddf("kenward-roger")
    with pytest.raises(ValueError, match="3 columns; it needs one per fixed effect"):
        fit.ftest([[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="type must be 1 or 3"):
        fit.anova(type=2)
    with pytest.raises(ValueError, match="zero"):
        fit.ftest([[0.0, 0.0]])


def test_kenward_roger_refuses_a_singular_fit():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 5)
    df = pd.DataFrame({"y": rng.normal(size=50), "x": rng.normal(size=50), "g": g})
    with pytest.warns(SingularFitWarning):
        fit = lmm("y ~ x + (1 | g)", df)
    assert fit.singular
    with pytest.raises(ValueError, match="singular"):
        fit.with_ddf("kenward-roger")
    assert np.isfinite(fit.with_ddf("satterthwaite").df).all()


def test_zero_residual_df_is_refused():
    df = pd.DataFrame({"y": [1.0, 2.0, 3.5], "x": [0.0, 1.0, 2.0], "z": [1.0, 0.0, 4.0], "g": [0, 0, 1]})
    # The fit itself refuses it now (before any ddf could be asked for); the ddf check stays for designs
    # built at the array level.
    with pytest.raises(ValueError, match="3 rows cannot estimate 3 fixed-effect coefficients"):
        lmm("y ~ x + z + (1 | g)", df, reml=False)
