"""Generalized linear mixed models (Laplace and adaptive Gauss-Hermite), as lme4's ``glmer``."""

from multilevel.glmm.fit import SeparationWarning, fit_glmm_design, glmm
from multilevel.glmm.pirls import PirlsError
from multilevel.glmm.result import GlmmResult

__all__ = ["GlmmResult", "PirlsError", "SeparationWarning", "fit_glmm_design", "glmm"]
