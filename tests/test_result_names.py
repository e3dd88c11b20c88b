"""One naming rule in every family (issue 14): ``coef_table()``, ``conf_int()`` and
``cov_params()`` columns, ``tvalues`` and ``zvalues``, and p-values printed as R's
``format.pval`` in the summaries (with lme4's correlation of the fixed effects)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.datasets import load_dataset
from multilevel.text_table import correlation_lines, format_pvalues, r_abbreviate, r_format

Z_COLUMNS = ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
T_COLUMNS = ["Estimate", "Std. Error", "t value", "Pr(>|t|)"]
T_DF_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]


@pytest.fixture(scope="module")
def fits() -> dict[str, object]:
    sleep = load_dataset("sleepstudy")
    lmm = ml.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    return {
        "lmm": lmm,
        "lmm_satterthwaite": lmm.with_ddf("satterthwaite"),
        "glmm": ml.glmm("p ~ period + (1 | herd)", cbpp, weights="size"),
        "gls": ml.gls("distance ~ age * Sex", load_dataset("Orthodont"), groups="Subject", corr="exchangeable"),
        "gee": ml.gee("resp ~ age + smoke", load_dataset("ohio"), groups="id", family="binomial",
                      corr="exchangeable"),
    }


@pytest.mark.parametrize(("key", "columns"), [("lmm", Z_COLUMNS), ("lmm_satterthwaite", T_DF_COLUMNS),
                                              ("glmm", Z_COLUMNS), ("gls", T_COLUMNS), ("gee", Z_COLUMNS)])
def test_coef_table_columns_follow_the_reference_distribution(fits, key, columns):
    fit = fits[key]
    table = fit.coef_table()
    assert table.columns.tolist() == columns
    stat = table.iloc[:, -2]
    np.testing.assert_allclose(stat, fit.params / fit.bse, rtol=1e-12)
    np.testing.assert_allclose(table.iloc[:, -1], fit.pvalues, rtol=1e-12)
    assert table.index.tolist() == fit.params.index.tolist()


@pytest.mark.parametrize("key", ["lmm", "lmm_satterthwaite", "glmm", "gls", "gee"])
def test_conf_int_and_cov_params_have_the_same_names_everywhere(fits, key):
    fit = fits[key]
    assert fit.conf_int().columns.tolist() == ["0.025", "0.975"]
    assert fit.conf_int(0.1).columns.tolist() == ["0.05", "0.95"]
    names = fit.params.index.tolist()
    cov = fit.cov_params()
    assert cov.index.tolist() == names and cov.columns.tolist() == names


@pytest.mark.parametrize("key", ["lmm", "lmm_satterthwaite", "glmm", "gls", "gee"])
def test_tvalues_and_zvalues_are_both_the_wald_ratio(fits, key):
    fit = fits[key]
    np.testing.assert_allclose(fit.tvalues, fit.params / fit.bse, rtol=1e-12)
    pd.testing.assert_series_equal(fit.zvalues, fit.tvalues, check_names=False)
    assert (fit.tvalues.name, fit.zvalues.name) == ("tvalues", "zvalues")


def test_gls_intervals_still_read_its_conf_int(fits):
    gls = fits["gls"]
    coef = gls.intervals()["coef"]
    np.testing.assert_allclose(coef[["lower", "upper"]].to_numpy(), gls.conf_int().to_numpy(), rtol=1e-12)


@pytest.mark.parametrize(("values", "expected"), [
    # R 4.2's format.pval(pv, digits = 3), as printCoefmat calls it
    ([4.4e-297, 1.27435e-11], ["< 2e-16", "1.27e-11"]),
    ([1e-20, 0.0123], ["<2e-16", "0.0123"]),
    ([0.470659, 0.00484244], ["0.47066", "0.00484"]),
    ([0.0012118, 0.000549, 0.000218], ["0.001212", "0.000549", "0.000218"]),
    ([7.224709e-09, 1.592e-15, 0.00062752, 1.5485e-10], ["7.22e-09", "1.59e-15", "0.000628", "1.55e-10"]),
    ([6.697427834e-07, 0.000457827], ["6.7e-07", "0.000458"]),
    ([0.187679767, 0.000126210], ["0.187680", "0.000126"]),
    ([1.0, 0.5], ["1.0", "0.5"]),
    ([float("nan"), 0.25], ["NA", "0.25"]),
])
def test_pvalues_print_as_r_format_pval(values, expected):
    assert format_pvalues(values) == expected


def test_r_format_and_abbreviate_match_r():
    assert r_format([123.456, 0.5], 3) == ["123.5", "  0.5"]
    # abbreviate(x, 6) and abbreviate(x, 11) in R 4.2
    names = ["Sex[T.Female]", "age:Sex[T.Female]", "Sex[T.Male]"]
    assert r_abbreviate(names, 6) == ["S[T.F]", "a:S[T.", "S[T.M]"]
    assert r_abbreviate(names, 11) == ["Sex[T.Feml]", "ag:Sx[T.Fm]", "Sex[T.Male]"]
    assert r_abbreviate(["(Intercept)", "Intercept", "Days"], 6) == ["(Intr)", "Intrcp", "Days"]


def test_lmm_summary_prints_r_pvalues_and_the_fixed_effect_correlation(fits):
    text = str(fits["lmm_satterthwaite"].summary())
    assert "df  t value  Pr(>|t|)" in text
    assert "< 2e-16" in text and "3.26e-06" in text  # lmerTest's sleepstudy p-values
    block = text.split("Correlation of Fixed Effects:\n")[1].split("\n\n")[0]
    assert block.splitlines() == ["     Intrcp", "Days -0.138"]
    glmm = str(fits["glmm"].summary())
    assert "z value  Pr(>|z|)" in glmm and "Correlation of Fixed Effects:" in glmm
    assert "period[T.4] -0.261" in glmm
    assert "Correlation of Fixed Effects" in fits["lmm"]._repr_html_()


def test_summaries_of_gls_and_gee_print_r_pvalues(fits):
    gls, gee = str(fits["gls"].summary()), str(fits["gee"].summary())
    assert "t value Pr(>|t|)" in gls.replace("  ", " ") and "p-value" not in gls
    assert "z value Pr(>|z|)" in gee.replace("  ", " ")
    for fit, text in ((fits["gls"], gls), (fits["gee"], gee)):
        for shown in format_pvalues(fit.pvalues):
            assert shown.strip() in text
    # the table keeps the numbers
    assert fits["gls"].coef_table()["Pr(>|t|)"].dtype == float


def test_correlation_is_left_out_past_twelve_fixed_effects():
    rng = np.random.default_rng(4)
    n, groups = 300, 30
    df = pd.DataFrame(rng.normal(size=(n, 13)), columns=[f"x{i}" for i in range(13)])
    df["g"] = np.repeat([f"g{k}" for k in range(groups)], n // groups)
    df["y"] = df.iloc[:, :13].sum(axis=1) + np.repeat(rng.normal(size=groups), n // groups) + rng.normal(size=n)
    fit = ml.lmm("y ~ " + " + ".join(f"x{i}" for i in range(13)) + " + (1 | g)", df)
    text = str(fit.summary())
    assert "Correlation of Fixed Effects" not in text
    assert "Correlation matrix not shown, as p = 14 > 12" in text
    assert len(correlation_lines(fit.cov_params())) == 14  # the header and 13 rows, when asked for
