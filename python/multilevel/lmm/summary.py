"""Text and HTML summaries of a fitted linear mixed model, laid out like
lme4's ``summary(lmer(...))``: p-values printed as R's ``format.pval`` and the
correlation of the fixed effects as lme4's (up to 12 of them)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from multilevel.text_table import aligned_table, coefficient_display, correlation_lines, data_notes

if TYPE_CHECKING:
    from multilevel.lmm.result import LmmResult


def _random_effects_table(res: LmmResult) -> pd.DataFrame:
    rows = []
    for t, cov in zip(res.design.terms, res.covariance_matrices()):
        sd = np.sqrt(np.diag(cov))
        for i in range(t.p):
            corr = []
            for j in range(i):
                c = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                corr.append(f"{c:5.2f}")
            rows.append([t.group if i == 0 else "", t.columns[i], f"{cov[i, i]:.4g}", f"{sd[i]:.4g}", " ".join(corr)])
    if res.has_residual:
        rows.append(["Residual", "", f"{res.sigma**2:.4g}", f"{res.sigma:.4g}", ""])
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])


def _notes(res: LmmResult) -> list[str]:
    notes = []
    if not res.converged:
        notes.append(f"WARNING: the optimizer did not converge ({res.optsum.message}).")
    if res.singular:
        notes.append("NOTE: boundary (singular) fit: a variance is (near) zero or a covariance matrix is singular.")
    return notes + data_notes(res.design.fixed, res.design.n_dropped)


class LmmSummary:
    """Summary of an :class:`~multilevel.lmm.result.LmmResult`; ``str()`` gives the text.

    The fixed-effects table is :meth:`~multilevel.lmm.result.LmmResult.coef_table` with its
    p-values printed as R's ``format.pval`` (``<2e-16``, ``1.27e-11``, ``0.0123``). Below it,
    as lme4's, the "Correlation of Fixed Effects" (lower triangle, 3 decimals, names as R's
    ``abbreviate``), left out, with a note, for more than :attr:`correlation_max` fixed effects.
    """

    #: lme4's ``getOption("lme4.summary.cor.max")``: more fixed effects than this and the correlation is not printed.
    correlation_max: int = 12

    def __init__(self, res: LmmResult) -> None:
        self.res = res

    @property
    def header(self) -> list[str]:
        r = self.res
        kind = "REML" if r.reml else "maximum likelihood"
        lines = [f"Linear mixed model fit by {kind} [multilevel]"]
        if r.ddf != "normal":
            method = {"satterthwaite": "Satterthwaite's", "kenward-roger": "Kenward-Roger's"}[r.ddf]
            lines[0] = f"Linear mixed model fit by {kind}. t-tests use {method} method [multilevel]"
        if r.cov_type != "model":
            cr = r._cluster_robust
            lines.append(f"Standard errors: cluster-robust {r.cov_type} by {cr.cluster} ({cr.nclusters} clusters); "
                         "df: Satterthwaite (clubSandwich)")
        if r.design.formula:
            lines.append(f"Formula: {r.design.formula}")
        if not r.design.has_rows:
            lines.append(f"Data: {r.design.source}, read in chunks (rows not kept)")
        return lines

    def _fit_stats(self) -> pd.DataFrame:
        r = self.res
        crit = "REML criterion" if r.reml else "deviance"
        return pd.DataFrame(
            [[f"{r.objective:.4f}", f"{r.loglik:.4f}", f"{r.aic:.4f}", f"{r.bic:.4f}"]],
            columns=[crit, "logLik", "AIC", "BIC"],
        )

    def _residual_structure(self) -> pd.DataFrame | None:
        """The residual correlation and variance parameters (fits with ``corr=``/``variance=``), as nlme prints."""
        r = self.res
        residual = getattr(r, "residual", None)
        if residual is None:
            return None
        from multilevel.gls.summary import residual_structure_rows

        rows = residual_structure_rows(residual.structure, residual.layout.npositions, r.corr_params,
                                       r.variance_params)
        return pd.DataFrame(rows, columns=["Structure", "Parameter", "Estimate"])

    def _residual_groups_line(self) -> str:
        residual = self.res.residual
        return f"Residual groups: {residual.group}" + (f", time: {residual.time}" if residual.time else "")

    def _scaled_residuals(self) -> pd.DataFrame:
        r = self.res
        e = r.resid().to_numpy()
        residual = getattr(r, "residual", None)
        if residual is not None:  # standardized by the variance function too, as nlme's
            e = e / residual.sd_factors(r.variance_params.to_numpy())
        elif r.design.weights is not None:
            e = e * np.sqrt(r.design.weights)
        q = np.quantile(e / r.sigma, [0, 0.25, 0.5, 0.75, 1])
        return pd.DataFrame([[f"{v:.4f}" for v in q]], columns=["Min", "1Q", "Median", "3Q", "Max"])

    def _groups_line(self) -> str:
        groups = ", ".join(f"{g}, {n}" for g, n in self.res.ngroups.items())
        return f"Number of obs: {self.res.nobs}, groups:  {groups}"

    def _coefficients(self) -> pd.DataFrame:
        """The coefficient table as printed (p-values as R's ``format.pval``)."""
        return coefficient_display(self.res.coef_table())

    def _correlation(self) -> list[str]:
        """lme4's correlation block: empty for one fixed effect, a note for more than :attr:`correlation_max`."""
        cov = self.res.cov_params()
        p = cov.shape[0]
        if p < 2:
            return []
        if p > self.correlation_max:
            return [f"Correlation matrix not shown, as p = {p} > {self.correlation_max} (as lme4); "
                    + "cov_params() has the covariance."]
        return ["Correlation of Fixed Effects:", *correlation_lines(cov)]

    def __str__(self) -> str:
        r = self.res
        out = list(self.header)
        out.append("")
        out.append(self._fit_stats().to_string(index=False))
        out.append("")
        if r.design.has_rows:
            out.append("Scaled residuals:")
            out.append(self._scaled_residuals().to_string(index=False))
            out.append("")
        out.append("Random effects:")
        out.append(aligned_table(_random_effects_table(r), left=2))
        out.append(self._groups_line())
        out.append("")
        structure = self._residual_structure()
        if structure is not None:
            out.append(f"Residual structure ({self._residual_groups_line()}):")
            out.append(aligned_table(structure, left=2))
            out.append("")
        out.append("Fixed effects:")
        out.append(self._coefficients().to_string())
        out.append("")
        correlation = self._correlation()
        if correlation:
            out.extend([*correlation, ""])
        opt = getattr(r, "residual_optsum", r.optsum)  # a residual structure's search is the outer one
        out.append(
            f"Optimizer: {opt.optimizer}, {opt.feval} evaluations, {opt.message}; "
            f"converged: {r.converged}; singular: {r.singular}"
        )
        out.extend(_notes(r))
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        r = self.res
        parts = [f"<p><b>{html.escape(line)}</b></p>" for line in self.header]
        parts.append(self._fit_stats().to_html(index=False))
        parts.append("<p><b>Random effects</b></p>")
        parts.append(_random_effects_table(r).to_html(index=False))
        parts.append(f"<p>{html.escape(self._groups_line())}</p>")
        structure = self._residual_structure()
        if structure is not None:
            parts.append(f"<p><b>Residual structure</b> ({html.escape(self._residual_groups_line())})</p>")
            parts.append(structure.to_html(index=False))
        parts.append("<p><b>Fixed effects</b></p>")
        parts.append(self._coefficients().to_html())
        correlation = self._correlation()
        if len(correlation) > 1:
            parts.append("<p><b>Correlation of Fixed Effects</b></p>")
            parts.append(f"<pre>{html.escape(chr(10).join(correlation[1:]))}</pre>")
        elif correlation:  # the note of a fit with too many fixed effects
            parts.append(f"<p>{html.escape(correlation[0])}</p>")
        parts.extend(f"<p>{html.escape(n)}</p>" for n in _notes(r))
        return "\n".join(parts)
