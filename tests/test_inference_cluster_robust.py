"""Cluster-robust covariances of lmm fits against clubSandwich 0.5 (vcovCR, coef_test, Wald_test HTZ).

Reference: tests/reference/cluster_robust.json (cluster_robust_reference.R).
At lme4's theta the covariances agree to 1e-12 and the df to 1e-10; at our
own optimum to 1e-5 and 1e-3.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from multilevel import lmm
from multilevel.datasets import load_dataset
from multilevel.lmm import lmm_design
from multilevel.lmm.fit import result_at_theta

REF = json.loads((pathlib.Path(__file__).parent / "reference" / "cluster_robust.json").read_text())["cases"]
CASES = [(key, kind) for key, c in REF.items() for kind in c["types"]]


def data_of(case):
    df = load_dataset(case["dataset"])
    return df.rename(columns={"Informed.liking": "liking"}) if case["dataset"] == "ham" else df


def at_reference(case):
    return result_at_theta(lmm_design(case["formula"], data_of(case)), np.atleast_1d(case["theta"]),
                           reml=case["reml"])


@pytest.mark.parametrize(("key", "kind"), CASES)
def test_vcovcr_and_df_at_lme4s_theta(key, kind):
    case = REF[key]
    ref = case["types"][kind]
    fit = at_reference(case).with_cov_type(kind, cluster=case["cluster"])
    cov = fit.cov_params().to_numpy()
    np.testing.assert_allclose(cov, np.array(ref["vcov"]), rtol=1e-10, atol=1e-12 * np.abs(cov).max())
    table = fit.coef_table()
    np.testing.assert_allclose(table["Std. Error"], ref["se"], rtol=1e-10)
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-10)
    np.testing.assert_allclose(table["Pr(>|t|)"], ref["p"], rtol=1e-8)
    if "htz" in ref:
        test = fit.ftest(np.atleast_2d(case["constraint"]))
        htz = ref["htz"]
        np.testing.assert_allclose(test[["NumDF", "DenDF", "F value", "Pr(>F)"]].to_numpy()[0],
                                   [htz["df_num"], htz["df_denom"], htz["Fstat"], htz["p_val"]], rtol=1e-9)


@pytest.mark.parametrize(("key", "kind"), [c for c in CASES if c[1] == "CR2"])
def test_vcovcr_at_our_optimum(key, kind):
    case = REF[key]
    ref = case["types"][kind]
    fit = lmm(case["formula"], data_of(case), reml=case["reml"]).with_cov_type(kind)  # default: the outer group
    np.testing.assert_allclose(fit.bse, ref["se"], rtol=1e-5)
    np.testing.assert_allclose(fit.df, ref["df"], rtol=1e-3)


def test_switching_back_and_the_original_is_unchanged():
    fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    before = fit.coef_table()
    robust = fit.with_cov_type("CR2")
    assert robust.cov_type == "CR2" and fit.cov_type == "model"
    pd.testing.assert_frame_equal(fit.coef_table(), before)
    pd.testing.assert_frame_equal(robust.with_cov_type("model").coef_table(), before)
    assert "cluster-robust CR2 by Subject (18 clusters)" in str(robust.summary())


def test_labels_per_row_and_bad_clusters_are_named():
    data = load_dataset("sleepstudy")
    fit = lmm("Reaction ~ Days + (Days | Subject)", data)
    by_labels = fit.with_cov_type("CR2", cluster=data["Subject"].to_numpy())
    np.testing.assert_allclose(by_labels.bse, fit.with_cov_type("CR2").bse, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown cov_type 'HC3'"):
        fit.with_cov_type("HC3")
    with pytest.raises(ValueError, match="not a grouping factor"):
        fit.with_cov_type("CR2", cluster="Days")
    with pytest.raises(ValueError, match="not nested"):
        fit.with_cov_type("CR2", cluster=np.arange(fit.nobs) % 2)
    with pytest.raises(ValueError, match="labels; the fit has 180 rows"):
        fit.with_cov_type("CR2", cluster=np.zeros(5))
