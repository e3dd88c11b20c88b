"""Text and HTML summaries of a fitted GLS model, laid out like nlme's ``summary(gls(...))``;
p-values printed as R's ``format.pval``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from multilevel.text_table import aligned_table, coefficient_display, data_notes, html_report

if TYPE_CHECKING:
    from multilevel.gls.result import GlsResult


def residual_structure_rows(structure: Any, npositions: int, corr_params: Any, variance_params: pd.Series) -> list[list[str]]:
    """Rows (structure, parameter, estimate) of a residual correlation structure and variance function."""
    rows = [[f"correlation ({structure.name})", n, f"{v:.6g}"]
            for n, v in zip(structure.param_names(npositions), corr_params)]
    return rows + [["variance function", n, f"{v:.6g}"] for n, v in variance_params.items()]


class GlsSummary:
    """Summary of a :class:`~multilevel.gls.result.GlsResult`; ``str()`` gives the text."""

    def __init__(self, res: GlsResult) -> None:
        self.res = res

    def header(self) -> list[str]:
        r = self.res
        d = r.design
        kind = "REML" if r.method == "REML" else "maximum likelihood"
        groups = f", clusters ({d.groups}): {d.layout.nclusters}" if d.groups else ""
        return [line for line in (
            f"Generalized least squares fit by {kind} [multilevel]",
            f"Formula: {d.formula}" if d.formula else "",
            f"Number of obs: {r.nobs}{groups}",
        ) if line]

    def fit_statistics(self) -> pd.DataFrame:
        r = self.res
        return pd.DataFrame([[f"{r.aic:.4f}", f"{r.bic:.4f}", f"{r.loglik:.4f}"]], columns=["AIC", "BIC", "logLik"])

    def structure_table(self) -> pd.DataFrame:
        r = self.res
        rows = residual_structure_rows(r.structure, r.design.layout.npositions, r.corr_params, r.variance_params)
        rows.append(["residual", "sigma", f"{r.sigma:.6g}"])
        return pd.DataFrame(rows, columns=["Structure", "Parameter", "Estimate"])

    def notes(self) -> list[str]:
        r = self.res
        notes = []
        if not r.converged:
            notes.append(f"WARNING: the optimizer did not converge ({r.optsum.message}).")
        if r.boundary:
            notes.append(f"WARNING: {r.boundary_message()}.")
        return notes + data_notes(r.design.fixed, r.design.n_dropped)

    def __str__(self) -> str:
        r = self.res
        out = self.header() + ["", self.fit_statistics().to_string(index=False), ""]
        out += ["Covariance parameters:", aligned_table(self.structure_table(), left=2), ""]
        out += ["Coefficients:", coefficient_display(r.coef_table()).to_string(), ""]
        out.append(f"Residual standard error: {r.sigma:.6g} on {r.df_resid} degrees of freedom")
        out.append(f"Optimizer: {r.optsum.optimizer}, {r.optsum.feval} evaluations, {r.optsum.message}; "
                   f"converged: {r.converged}")
        out.extend(self.notes())
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_report(self.header(), [self.fit_statistics(), self.structure_table(),
                                           coefficient_display(self.res.coef_table())], self.notes())
