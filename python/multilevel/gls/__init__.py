"""Linear marginal models by generalized least squares (nlme's ``gls``)."""

from multilevel.gls.design import GlsDesign, gls_design
from multilevel.gls.fit import GlsConvergenceWarning, fit_gls_design, gls
from multilevel.gls.result import GlsResult

__all__ = ["GlsConvergenceWarning", "GlsDesign", "GlsResult", "fit_gls_design", "gls", "gls_design"]
