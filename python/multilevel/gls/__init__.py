"""Linear marginal models by generalized least squares (nlme's ``gls``)."""

from multilevel.gls.design import GlsDesign, gls_design
from multilevel.gls.fit import GlsBoundaryWarning, GlsConvergenceWarning, fit_gls_design, gls
from multilevel.gls.result import GlsResult

__all__ = ["GlsBoundaryWarning", "GlsConvergenceWarning", "GlsDesign", "GlsResult", "fit_gls_design", "gls", "gls_design"]

from multilevel.callable_module import make_callable

make_callable(__name__, gls)  # multilevel.gls(...) fits; multilevel.gls.<module> is still the subpackage
