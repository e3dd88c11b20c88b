"""Generalized linear mixed models (Laplace and adaptive Gauss-Hermite), as lme4's ``glmer``."""

from multilevel.glmm.fit import SeparationWarning, fit_glmm_design, glmm, result_at_parameters
from multilevel.glmm.pirls import PirlsError
from multilevel.glmm.result import GlmmResult

__all__ = ["GlmmResult", "PirlsError", "SeparationWarning", "fit_glmm_design", "glmm", "result_at_parameters"]

from multilevel.callable_module import make_callable

make_callable(__name__, glmm)  # multilevel.glmm(...) fits; multilevel.glmm.<module> is still the subpackage
