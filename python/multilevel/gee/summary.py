"""Text and HTML summaries of a fitted GEE, laid out like geepack's ``summary(geeglm(...))``
(with the z value and ``Pr(>|z|)`` of the other families where geepack prints ``Wald``, its
square, and ``Pr(>|W|)``); p-values printed as R's ``format.pval``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from multilevel.text_table import aligned_table, coefficient_display, data_notes, html_report

if TYPE_CHECKING:
    from multilevel.gee.result import GeeResult

_COV_LABELS = {"robust": "robust (sandwich)", "naive": "model-based (naive)",
               "bias_reduced": "bias-reduced sandwich (Mancl-DeRouen)", "jackknife": "approximate jackknife"}


_MOMENT_LABELS = {"gee": "R gee's (Carey)"}


class GeeSummary:
    """Summary of a :class:`~multilevel.gee.result.GeeResult`; ``str()`` gives the text."""

    def __init__(self, res: GeeResult) -> None:
        self.res = res

    def header(self) -> list[str]:
        r = self.res
        d = r.design
        sizes = d.layout.sizes
        lines = [
            "Generalized estimating equations [multilevel]",
            f"Formula: {d.formula}" if d.formula else "",
            "" if getattr(d, "has_rows", True) else f"Data: {d.source}, read in chunks (rows not kept)",
            (f"Family: {r.family.name}, link: {r.family.link.name}; working correlation: {r.structure.name}"
             + ("" if r.moments == "geepack" else f"; moment estimators: {_MOMENT_LABELS[r.moments]}")),
            (f"Number of obs: {r.nobs}, clusters ({d.groups}): {r.nclusters}, "
             f"cluster size min/mean/max: {sizes.min()}/{sizes.mean():.3g}/{sizes.max()}"),
            f"Standard errors: {_COV_LABELS[r.cov_type]}",
        ]
        return [line for line in lines if line]

    def correlation_table(self) -> pd.DataFrame:
        r = self.res
        names = r.structure.param_names(r.design.layout.npositions)
        rows = [["scale (phi)", f"{r.scale:.6g}", "fixed" if r.scale_fixed else "estimated"]]
        rows += [[n, f"{v:.6g}", "estimated"] for n, v in zip(names, r.corr_params)]
        return pd.DataFrame(rows, columns=["Parameter", "Estimate", ""])

    def notes(self) -> list[str]:
        r = self.res
        notes = []
        if not r.converged and not r.fit_notes:
            notes.append(f"WARNING: Fisher scoring did not converge in {r.n_iter} iterations.")
        notes += [f"WARNING: {note}." for note in r.fit_notes]
        return notes + data_notes(r.design.fixed, r.design.n_dropped)

    def __str__(self) -> str:
        r = self.res
        out = self.header() + ["", "Coefficients:"]
        out.append(coefficient_display(r.coef_table()).to_string())
        out += ["", "Scale and correlation parameters:", aligned_table(self.correlation_table(), left=1), ""]
        out.append(f"Iterations: {r.n_iter}; converged: {r.converged}")
        out.extend(self.notes())
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        r = self.res
        return html_report(self.header(), [coefficient_display(r.coef_table()), self.correlation_table()],
                           [f"Iterations: {r.n_iter}; converged: {r.converged}", *self.notes()])
