"""Building a ddf method for a fitted linear mixed model, with the checks each method needs."""

from __future__ import annotations

from typing import Any

from multilevel.errors import require_rows
from multilevel.inference.ddf import (
    DdfMethod,
    KenwardRogerDdf,
    NormalDdf,
    SatterthwaiteDdf,
    check_ddf,
)


def lmm_ddf_method(result: Any, method: str) -> DdfMethod:
    """The ddf method ``method`` at the estimates of an :class:`~multilevel.lmm.result.LmmResult`.

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> lmm_ddf_method(fit, "kenward-roger").name
    'kenward-roger'
    """
    name = check_ddf(method)
    cov = result.unadjusted_cov()
    if name == "normal":
        return NormalDdf(cov)
    resid_df = result.nobs - len(result.params)
    if resid_df <= 0:
        raise ValueError(f"the model has {result.nobs} rows and {len(result.params)} fixed effects: no residual "
                         f"degrees of freedom are left for ddf={name!r}")
    if name == "satterthwaite":
        return SatterthwaiteDdf(result._varpar_sensitivity())
    if not result.reml:
        raise ValueError("Kenward-Roger's method is defined for REML fits; refit with reml=True, "
                         "or use ddf='satterthwaite'")
    if result.singular:
        raise ValueError("Kenward-Roger's method needs a non-singular fit (a variance component is on the "
                         "boundary, so the information of the variance parameters is singular); "
                         "simplify the random part, or use ddf='satterthwaite'")
    require_rows(result.design, "ddf='kenward-roger'", "use ddf='satterthwaite', which needs no rows")
    return KenwardRogerDdf(result._kenward_roger())
