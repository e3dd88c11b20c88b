"""Summary of a fitted GLMM, laid out like lme4's ``summary(glmer(...))``."""

from __future__ import annotations

import pandas as pd

from multilevel.lmm.summary import LmmSummary


class GlmmSummary(LmmSummary):
    """lme4-style summary of a :class:`~multilevel.glmm.result.GlmmResult`."""

    @property
    def header(self) -> list[str]:
        r = self.res
        method = "Laplace approximation" if r.nagq <= 1 else f"adaptive Gauss-Hermite quadrature (nAGQ = {r.nagq})"
        lines = [f"Generalized linear mixed model fit by maximum likelihood ({method}) [multilevel]",
                 f"Family: {r.family.name} ({r.family.link.name})"]
        if r.dispersion is not None:
            what = "dispersion phi (variance phi mu^2)" if r.family.name == "gamma" else \
                "shape k (variance mu + mu^2 / k)"
            lines.append(f"{what}: {r.dispersion:.6g}")
        if r.design.formula:
            lines.append(f"Formula: {r.design.formula}")
        return lines

    def _fit_stats(self) -> pd.DataFrame:
        r = self.res
        return pd.DataFrame([[f"{r.aic:.4f}", f"{r.bic:.4f}", f"{r.loglik:.4f}", f"{r.deviance:.4f}"]],
                            columns=["AIC", "BIC", "logLik", "deviance"])

    def _scaled_residuals(self) -> pd.DataFrame:
        import numpy as np

        q = np.quantile(self.res.resid("pearson").to_numpy(), [0, 0.25, 0.5, 0.75, 1])
        return pd.DataFrame([[f"{v:.4f}" for v in q]], columns=["Min", "1Q", "Median", "3Q", "Max"])
