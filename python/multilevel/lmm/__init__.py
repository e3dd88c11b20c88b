"""Linear mixed models."""

from multilevel.lmm.design import LmmDesign, RandomTerm, lmm_design
from multilevel.lmm.fit import ConvergenceWarning, SingularFitWarning, fit_design, fit_lmm, lmm, result_at_theta
from multilevel.lmm.result import LmmResult

__all__ = [
    "ConvergenceWarning",
    "LmmDesign",
    "LmmResult",
    "RandomTerm",
    "SingularFitWarning",
    "fit_design",
    "fit_lmm",
    "lmm",
    "lmm_design",
    "result_at_theta",
]

from multilevel.callable_module import make_callable

make_callable(__name__, lmm)  # multilevel.lmm(...) fits; multilevel.lmm.<module> is still the subpackage
