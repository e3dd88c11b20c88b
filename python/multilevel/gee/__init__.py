"""Generalized estimating equations: marginal models with sandwich inference."""

from multilevel.gee.design import GeeDesign, gee_design
from multilevel.gee.fit import GeeConvergenceWarning, fit_gee, gee, gee_result_at
from multilevel.gee.moments import MOMENTS, GeeCorrelationBoundWarning
from multilevel.gee.result import GeeResult, WaldTest

__all__ = ["MOMENTS", "GeeConvergenceWarning", "GeeCorrelationBoundWarning", "GeeDesign", "GeeResult", "WaldTest", "fit_gee",
           "gee", "gee_design", "gee_result_at"]

from multilevel.callable_module import make_callable

make_callable(__name__, gee)  # multilevel.gee(...) fits; multilevel.gee.<module> is still the subpackage
