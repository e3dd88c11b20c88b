"""Bad input gets a clear error or a documented, warned handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilevel import ConvergenceWarning, SingularFitWarning, lmm
from multilevel.datasets import load_dataset

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture
def sleep():
    return load_dataset("sleepstudy").copy()


def test_missing_values_dropped_and_counted(sleep):
    sleep.loc[[0, 5], "Reaction"] = np.nan
    sleep.loc[[9], "Days"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 180 rows.*'Reaction': 2.*'Days': 1"):
        res = lmm(FORMULA, sleep)
    assert res.nobs == 177
    assert "3 row(s) with missing values" in str(res.summary())
    assert 0 not in res.fitted().index


def test_missing_column_named_with_suggestion(sleep):
    with pytest.raises(ValueError, match=r"'Dayz'.*did you mean 'Days'"):
        lmm("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(ValueError, match=r"'Subjct'"):
        lmm("Reaction ~ Days + (1 | Subjct)", sleep)


def test_non_numeric_response(sleep):
    sleep["Reaction"] = sleep["Reaction"].astype(str)
    with pytest.raises(ValueError, match="response 'Reaction'.*numeric"):
        lmm(FORMULA, sleep)


def test_single_level_grouping_factor(sleep):
    sleep["one"] = "a"
    with pytest.raises(ValueError, match="'one'.*at least 2"):
        lmm("Reaction ~ Days + (1 | one)", sleep)


def test_more_random_effects_than_observations(sleep):
    sleep["row"] = np.arange(len(sleep))
    with pytest.raises(ValueError, match=r"\(Intercept \+ Days \| row\).*360 random effects.*180"):
        lmm("Reaction ~ Days + (Days | row)", sleep)


def test_non_finite_value_named(sleep):
    sleep.loc[7, "Days"] = np.inf
    with pytest.raises(ValueError, match="'Days'.*non-finite.*row 7"):
        lmm(FORMULA, sleep)


def test_non_positive_weight(sleep):
    w = np.ones(len(sleep))
    w[3] = 0.0
    with pytest.raises(ValueError, match="weights must be positive.*row 3"):
        lmm(FORMULA, sleep, weights=w)


def test_rank_deficient_columns_dropped_with_warning(sleep):
    sleep["Days2"] = 2 * sleep["Days"]
    with pytest.warns(UserWarning, match="rank deficient.*Days2"):
        res = lmm("Reaction ~ Days + Days2 + (1 | Subject)", sleep)
    assert list(res.params.index) == ["Intercept", "Days"]
    assert "Days2" in str(res.summary())


def test_no_random_term(sleep):
    with pytest.raises(ValueError, match="no random-effects term"):
        lmm("Reaction ~ Days", sleep)


def test_singular_fit_is_reported():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(np.arange(10), 10), "x": rng.normal(size=100)})
    e = rng.normal(size=100)
    e -= pd.Series(e).groupby(df["g"]).transform("mean").to_numpy()  # group means exactly 0
    df["y"] = 1 + df["x"] + e
    with pytest.warns(SingularFitWarning):
        res = lmm("y ~ x + (1 | g)", df)
    assert res.singular
    assert "singular" in str(res.summary())


def test_non_convergence_is_reported(sleep):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = lmm(FORMULA, sleep, maxeval=5)
    assert not res.converged
    assert "did not converge" in str(res.summary())


def test_array_codes_must_be_integers():
    from multilevel import RandomTerm

    with pytest.raises(ValueError, match="integer"):
        RandomTerm(np.array([0.0, 1.0]), np.ones((2, 1)), "g", ["Intercept"])
