"""The aliasing check is scale-invariant and costs one QR."""

from __future__ import annotations

import numpy as np

from multilevel.fixed_effects import ColumnRFactor, aliased_columns


def test_aliasing_ignores_column_scale_and_finds_dependence():
    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 4))])
    X[:, 2] *= 1e300
    X[:, 3] *= 1e-300
    assert aliased_columns(X) == []
    dependent = np.column_stack([X, X[:, 1] * 3.0 - 2.0, 1e200 * X[:, 4]])
    assert aliased_columns(dependent) == [5, 6]


def test_r_factors_of_parts_merge_to_the_whole():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6))
    X[:, 5] = X[:, 0] + X[:, 1]
    a = ColumnRFactor(6).add_rows(X[:100])
    b = ColumnRFactor(6).add_rows(1e10 * X[100:])  # another part with its own power-of-two scales
    whole = ColumnRFactor(6).add_rows(np.vstack([X[:100], 1e10 * X[100:]]))
    merged = a.merge(b)
    assert merged.aliased() == whole.aliased() == [5]
    np.testing.assert_allclose(np.abs(np.diag(merged.r * merged.scale)), np.abs(np.diag(whole.r * whole.scale)),
                               rtol=1e-8, atol=1e-6 * 1e10)
