"""Formula handling: lme4-style random-effects bars on top of formulaic."""

from multilevel.formula.random_terms import RandomTermSpec, split_formula

__all__ = ["RandomTermSpec", "split_formula"]
