"""Larger generated problems: the sparse and dense storage of the rest block
agree, the automatic choice is the economical one, and fits recover the
generating parameters. No timing is asserted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilevel import lmm
from multilevel.lmm import lmm_design
from multilevel.lmm.fit import lmm_core


def nested_data(n_schools: int = 600, classes: int = 10, pupils: int = 10, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), classes * pupils)
    klass = np.repeat(np.arange(classes), pupils)
    klass = np.tile(klass, n_schools)
    n = school.size
    x = rng.normal(size=n)
    class_id = school * classes + klass
    y = 2.0 + 0.5 * x + rng.normal(0, 1.0, n_schools)[school] + rng.normal(0, 0.7, n_schools * classes)[class_id]
    y += rng.normal(0, 1.5, n)
    return pd.DataFrame({"y": y, "x": x, "school": school, "class": klass})


def crossed_data(n: int = 50_000, levels_a: int = 1000, levels_b: int = 100, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, levels_a, n)
    b = rng.integers(0, levels_b, n)
    x = rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.2], [0.2, 0.25]], levels_a)
    ub = rng.normal(0, 0.8, (levels_b, 2))
    y = 1.0 + x + ua[a, 0] + ua[a, 1] * x + ub[b, 0] + ub[b, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


def test_nested_chooses_sparse_and_agrees_with_dense():
    df = nested_data()
    design = lmm_design("y ~ x + (1 | school/class)", df)
    auto = lmm_core(design)
    assert auto.rest_storage == "sparse"  # class:school eliminated first leaves a diagonal school block
    dense = lmm_core(design, "dense")
    for theta in ([0.3, 0.9], [1.0, 1.0], [0.05, 2.0]):
        for reml in (False, True):
            assert auto.objective(np.array(theta), reml) == pytest.approx(
                dense.objective(np.array(theta), reml), rel=1e-11)


def test_nested_fit_recovers_truth():
    fit = lmm("y ~ x + (1 | school/class)", nested_data())
    vc = fit.varcorr.set_index("group")["sd"]
    assert vc["school"] == pytest.approx(1.0, rel=0.1)
    assert vc["class:school"] == pytest.approx(0.7, rel=0.1)
    assert fit.sigma == pytest.approx(1.5, rel=0.02)
    assert abs(fit.params["x"] - 0.5) < 4 * fit.bse["x"]


def test_crossed_vector_terms_sparse_equals_dense():
    df = crossed_data()
    design = lmm_design("y ~ x + (1 + x | a) + (1 + x | b)", df)
    dense, sparse = lmm_core(design, "dense"), lmm_core(design, "sparse")
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = np.array([1.0, 0.2, 0.5, 0.8, -0.1, 0.7]) * rng.uniform(0.5, 1.5, 6)
        assert sparse.objective(theta, True) == pytest.approx(dense.objective(theta, True), rel=1e-11)


def test_crossed_vector_terms_fit():
    fit = lmm("y ~ x + (1 + x | a) + (1 + x | b)", crossed_data(), reml=False)
    assert fit.converged and not fit.singular
    cov_a, cov_b = fit.covariance_matrices()
    np.testing.assert_allclose(np.sqrt(np.diag(cov_a)), [1.0, 0.5], rtol=0.15)
    np.testing.assert_allclose(np.sqrt(np.diag(cov_b)), [0.8, 0.8], rtol=0.25)
