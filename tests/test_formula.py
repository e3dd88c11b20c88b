"""Random-effects bars, nesting, double bars and grouping factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilevel.formula import split_formula
from multilevel.grouping import make_grouping


@pytest.mark.parametrize(
    "formula, fixed, terms",
    [
        ("y ~ x + (1 | g)", "y ~ x", ["(1 | g)"]),
        ("y ~ (1 + x | g)", "y ~ 1", ["(1 + x | g)"]),
        ("y ~ x + (0 + x | g)", "y ~ x", ["(0 + x | g)"]),
        ("y ~ x + (x || g)", "y ~ x", ["(1 | g)", "(0 + x | g)"]),
        ("y ~ x + (0 + x + z || g)", "y ~ x", ["(0 + x | g)", "(0 + z | g)"]),
        ("y ~ 1 + (1 | a/b)", "y ~ 1", ["(1 | a)", "(1 | b:a)"]),
        ("y ~ 1 + (1 | a/b/c)", "y ~ 1", ["(1 | a)", "(1 | b:a)", "(1 | c:b:a)"]),
        ("y ~ 1 + (1 | a:b)", "y ~ 1", ["(1 | a:b)"]),
        ("y ~ np.log(x) + C(f) + (1 | g) + (1 | h)", "y ~ np.log(x) + C(f)", ["(1 | g)", "(1 | h)"]),
        ("y ~ a*b - 1 + (1|g)", "y ~ a*b - 1", ["(1 | g)"]),
    ],
)
def test_split_formula(formula, fixed, terms):
    got_fixed, got_terms = split_formula(formula)
    assert got_fixed == fixed
    assert [str(t) for t in got_terms] == terms


@pytest.mark.parametrize("bad", ["y x + (1|g)", " ~ x + (1|g)", "y ~ x + (1 | g", "y ~ ( | g)"])
def test_split_formula_rejects(bad):
    with pytest.raises(ValueError):
        split_formula(bad)


def test_grouping_levels_sorted_and_observed_only():
    df = pd.DataFrame({"g": pd.Categorical(["b", "a", "b"], categories=["c", "b", "a"])})
    g = make_grouping(df, ("g",))
    assert list(g.levels) == ["b", "a"]  # category order, unused "c" dropped
    assert g.codes.tolist() == [0, 1, 0]
    assert g.codes.dtype == np.int32


def test_grouping_interaction_of_int_and_str():
    df = pd.DataFrame({"a": [2, 1, 2, 1], "b": ["x", "x", "y", "x"]})
    g = make_grouping(df, ("b", "a"))
    assert g.name == "b:a"
    assert list(g.levels) == ["x:1", "x:2", "y:2"]
    assert g.codes.tolist() == [1, 0, 2, 0]
