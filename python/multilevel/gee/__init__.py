"""Generalized estimating equations: marginal models with sandwich inference."""

from multilevel.gee.design import GeeDesign, gee_design
from multilevel.gee.fit import GeeConvergenceWarning, fit_gee, gee, gee_result_at
from multilevel.gee.result import GeeResult, WaldTest

__all__ = ["GeeConvergenceWarning", "GeeDesign", "GeeResult", "WaldTest", "fit_gee", "gee", "gee_design", "gee_result_at"]
