"""Formula handling: lme4-style random-effects bars on top of formulaic."""

from multilevel.formula.random_terms import (
    RandomTermSpec,
    formula_sides,
    refuse_bars,
    require_formula_string,
    split_formula,
)

__all__ = ["RandomTermSpec", "formula_sides", "refuse_bars", "require_formula_string", "split_formula"]
