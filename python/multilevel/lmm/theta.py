"""The layout of theta: names, bounds, start and natural scale of each element, and the lambdas it fills.

theta holds the lower triangle (by column) of each term's relative covariance factor lambda_k, terms in
lme4's order (decreasing number of levels). Used by the fits, the results and the inference modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from multilevel.lmm.design import RandomTerm


def theta_names(terms: list[RandomTerm]) -> list[str]:
    """lme4's names: ``g.x`` on the diagonal, ``g.row.col`` below it."""
    names = []
    for t in terms:
        for c in range(t.p):
            for r in range(c, t.p):
                cols = t.columns
                names.append(f"{t.group}.{cols[r]}" if r == c else f"{t.group}.{cols[r]}.{cols[c]}")
    return names


def theta_lower_bounds(terms: list[RandomTerm]) -> np.ndarray:
    """0 for diagonal elements of each lambda, -inf below the diagonal."""
    return np.array([0.0 if r == c else -np.inf for t in terms for c in range(t.p) for r in range(c, t.p)])


def theta_start(terms: list[RandomTerm]) -> np.ndarray:
    """lme4's start: identity lambda for every term."""
    return np.array([1.0 if r == c else 0.0 for t in terms for c in range(t.p) for r in range(c, t.p)])


def theta_scales(terms: Sequence[Any]) -> np.ndarray:
    """Natural scale of each theta coordinate: ``1 / rms(z_r)`` for an entry in row ``r`` of lambda.

    Row ``r`` of lambda maps to the random effect of the term's column ``z_r``,
    whose size goes as ``sigma / rms(z_r)``; a column scaled by 1e3 makes its
    theta entries 1e3 times smaller. BOBYQA is not scale invariant (its trust
    region is a ball), so the fit starts and steps in these units. Terms
    without rows (chunked fits) keep scale 1.

    Examples
    --------
    >>> from multilevel.lmm import RandomTerm
    >>> t = RandomTerm(np.repeat(np.arange(3), 2), np.column_stack([np.ones(6), np.full(6, 100.0)]), "g", ["1", "x"])
    >>> theta_scales([t]).tolist()
    [1.0, 0.01, 0.01]
    """
    out: list[float] = []
    for t in terms:
        z = getattr(t, "z", None)
        rms = np.sqrt(np.einsum("ij,ij->j", z, z) / len(z)) if z is not None and len(z) else np.ones(t.p)
        rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
        out += [1.0 / rms[r] for c in range(t.p) for r in range(c, t.p)]
    return np.array(out)


def term_lambdas(terms: list[RandomTerm], theta: np.ndarray) -> list[np.ndarray]:
    """Lower-triangular lambda_k per term from theta (lower triangle by column)."""
    out, i = [], 0
    for t in terms:
        lam = np.zeros((t.p, t.p))
        for c in range(t.p):
            for r in range(c, t.p):
                lam[r, c] = theta[i]
                i += 1
        out.append(lam)
    return out
