"""Formula handling: lme4-style random-effects bars, R's offset() and binomial cbind() responses on top of
formulaic, and the caller's names a formula uses."""

from multilevel.formula.context import CallerScope, FormulaContext, caller_context, formula_context
from multilevel.formula.offsets import refuse_offset, split_offsets
from multilevel.formula.random_terms import (
    RandomTermSpec,
    formula_sides,
    refuse_bars,
    require_formula_string,
    split_formula,
)
from multilevel.formula.responses import cbind_response, has_cbind, refuse_cbind, require_binomial

__all__ = ["CallerScope", "FormulaContext", "RandomTermSpec", "caller_context", "cbind_response", "formula_context",
           "formula_sides", "has_cbind", "refuse_bars", "refuse_cbind", "refuse_offset", "require_binomial",
           "require_formula_string", "split_formula", "split_offsets"]
