"""Bad input to multilevel.gee: clear errors naming the column, row or cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml


@pytest.fixture
def df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    return pd.DataFrame({"id": np.repeat(np.arange(30), 4), "t": np.tile(np.arange(4), 30),
                         "x": rng.normal(size=n), "y": (rng.random(n) < 0.4).astype(float),
                         "label": ["a", "b", "c"] * 40})


def test_missing_values_are_dropped_and_counted(df: pd.DataFrame) -> None:
    df.loc[[3, 7], "x"] = np.nan
    df.loc[11, "id"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 120 rows .*'x': 2.*'id': 1"):
        fit = ml.gee("y ~ x", df, groups="id", family="binomial")
    assert fit.nobs == 117 and fit.design.n_dropped == 3
    assert "3 row(s) with missing values were dropped" in str(fit.summary())


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": "cluster"}, "column 'cluster' used in groups= is not in the data"),
    ({"groups": "id", "time": "when"}, "column 'when' used in time="),
    ({"groups": None}, "gee needs groups="),
    ({"groups": "id", "family": "binomal"}, "unknown family 'binomal'"),
    ({"groups": "id", "family": "poisson", "link": "logit"}, "link 'logit' is not available for the poisson"),
    ({"groups": "id", "corr": "exchangable"}, "unknown correlation structure 'exchangable'"),
    ({"groups": "id", "corr": "toeplitz"}, r"needs its lag: pass MDependent\(m=...\)"),
    ({"groups": "id", "scale": 0.0}, "scale must be positive"),
    ({"groups": "id", "cov_type": "hc0"}, "cov_type must be one of"),
    ({"groups": "id", "weights": "label"}, "weights column 'label' must be numeric"),
])
def test_argument_errors_name_what_is_wrong(df: pd.DataFrame, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ml.gee("y ~ x", df, **{"family": "binomial", **kwargs})


def test_formula_column_missing(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'z' used in the formula"):
        ml.gee("y ~ z", df, groups="id")


def test_response_outside_the_family_support(df: pd.DataFrame) -> None:
    df.loc[5, "y"] = 2.0
    with pytest.raises(ValueError, match=r"response 'y' has 1 value\(s\) outside the support of the binomial .* row 5"):
        ml.gee("y ~ x", df, groups="id", family="binomial")
    df.loc[5, "y"] = -1.0
    with pytest.raises(ValueError, match="poisson"):
        ml.gee("y ~ x", df, groups="id", family="poisson")


def test_non_numeric_response(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="response 'label'"):
        ml.gee("label ~ x", df, groups="id")


def test_non_finite_values(df: pd.DataFrame) -> None:
    df.loc[9, "x"] = np.inf
    with pytest.raises(ValueError, match=r"'x' has 1 non-finite value\(s\) \(first at row 9\)"):
        ml.gee("y ~ x", df, groups="id")


def test_time_problems(df: pd.DataFrame) -> None:
    df.loc[1, "t"] = 0  # cluster 0 now has two rows at time 0
    with pytest.raises(ValueError, match="cluster 0 has two rows at the same time 0"):
        ml.gee("y ~ x", df, groups="id", time="t", corr="ar1")
    df["t"] = df["t"] + 0.5
    with pytest.raises(ValueError, match="time must be integer-valued"):
        ml.gee("y ~ x", df, groups="id", time="t", corr="ar1")


def test_negative_weights(df: pd.DataFrame) -> None:
    w = np.ones(len(df))
    w[4] = -1
    with pytest.raises(ValueError, match=r"weights must be non-negative \(row 4"):
        ml.gee("y ~ x", df, groups="id", weights=w)


def test_structure_options_are_checked() -> None:
    with pytest.raises(ValueError, match="integer m >= 1"):
        ml.MDependent(0)
    with pytest.raises(ValueError, match="not positive definite"):
        ml.Fixed([[1.0, 1.5], [1.5, 1.0]])
    with pytest.raises(ValueError, match="unit diagonal"):
        ml.Fixed([[2.0, 0.0], [0.0, 1.0]])


def test_fixed_matrix_too_small_for_the_positions(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="positions go up to 3"):
        ml.gee("y ~ x", df, groups="id", time="t", corr=ml.Fixed(np.eye(2)))


def test_aliased_columns_are_dropped_with_a_warning(df: pd.DataFrame) -> None:
    df["x2"] = 2 * df["x"]
    with pytest.warns(UserWarning, match="dropping 1 column"):
        fit = ml.gee("y ~ x + x2", df, groups="id", family="binomial")
    assert list(fit.params.index) == ["Intercept", "x"]


def test_non_convergence_is_reported(df: pd.DataFrame) -> None:
    with pytest.warns(ml.GeeConvergenceWarning, match="did not converge in 1 iterations"):
        fit = ml.gee("y ~ x", df, groups="id", family="binomial", corr="exchangeable", maxiter=1)
    assert not fit.converged
    assert "did not converge" in str(fit.summary())


def test_a_single_cluster_is_refused(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="groups column 'one' has 1 level: GEE needs several clusters"):
        ml.gee("y ~ x", df.assign(one=1), groups="one", family="binomial")


def test_a_working_correlation_that_is_not_positive_definite_is_reported(df: pd.DataFrame) -> None:
    from multilevel.gee import gee_design, gee_result_at

    design = gee_design("y ~ x", df, groups="id")
    with pytest.raises(FloatingPointError, match="not positive definite for cluster"):
        gee_result_at(design, "binomial", "exchangeable", [0.0, 0.0], [-0.9], 1.0)


def test_car1_is_refused_with_what_to_use():
    import multilevel as ml

    with pytest.raises(ValueError, match="no estimator of a continuous-time AR"):
        ml.gee("resp ~ age", ml.load_dataset("ohio"), groups="id", family="binomial", corr="car1", time="age")
