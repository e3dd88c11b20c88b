"""Conditional covariances of the random effects per level (lme4's ``condVar``), the full blocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from multilevel import _core
from multilevel.lmm.design import RandomTerm
from multilevel.lmm.theta import term_lambdas


def full_conditional_covariances(terms: list[RandomTerm], theta: np.ndarray, sigma: float, core: Any,
                                 rows: Callable[[], tuple[list[np.ndarray], np.ndarray | None]] | None
                                 ) -> dict[str, np.ndarray]:
    """Each level's conditional covariance of its random effects, per grouping factor: ``(nlevels, p, p)``.

    ``core`` must be solved at ``theta``; its blocks ``sigma^2 Lambda_k (L L')^-1_kk Lambda_k'`` give the
    factors with one term. For factors with several terms (``(x || g)``) the covariances between the
    terms are blocks of ``(L L')^-1`` the core does not return: they come from a second core on the same
    rows in which each such factor's terms are merged into one vector term with block-diagonal lambda (the
    same model). ``rows()`` gives the per-term z columns (n, p_k) and row weights (or None) exactly as
    ``core`` saw them (whitened for a residual structure, working weights for a GLMM); None if the rows
    were not kept.
    """
    groups: dict[str, list[int]] = {}
    for k, t in enumerate(terms):
        groups.setdefault(t.group, []).append(k)
    out: dict[str, np.ndarray] = {}
    for g, ks in groups.items():
        if len(ks) == 1:
            t = terms[ks[0]]
            # (p, p * nlevels), level j's block in columns j*p .. j*p + p - 1  ->  (nlevels, p, p)
            cv = np.asarray(core.conditional_variance(ks[0], sigma)).reshape(t.p, t.nlevels, t.p)
            out[g] = _symmetric(cv.transpose(1, 0, 2))
    if len(out) == len(groups):
        return out
    if rows is None:
        raise ValueError("the covariances between random-effects terms that share a grouping factor need the "
                         "rows, and this fit did not keep them; fit from rows in memory, or use "
                         "ranef_condvar() for the variances")
    z, weights = rows()
    n = z[0].shape[0]
    lams = term_lambdas(terms, theta)
    codes, zs, nlevels, merged_theta, position = [], [], [], [], {}
    for g, ks in groups.items():  # in the order of the terms, so still sorted by decreasing nlevels
        first = terms[ks[0]]
        if any(not np.array_equal(terms[k].codes, first.codes) for k in ks[1:]):
            raise ValueError(f"the terms on grouping factor {g!r} have different level codes")
        lam = np.zeros((sum(terms[k].p for k in ks),) * 2)
        at = 0
        for k in ks:
            lam[at:at + terms[k].p, at:at + terms[k].p] = lams[k]
            at += terms[k].p
        merged_theta += [lam[r, c] for c in range(lam.shape[0]) for r in range(c, lam.shape[0])]
        position[g] = len(codes)
        codes.append(first.codes)
        zs.append(np.hstack([np.asarray(z[k], dtype=float).reshape(n, terms[k].p) for k in ks]))
        nlevels.append(first.nlevels)
    # Only the random-effects factor matters: any response and no fixed columns will do.
    merged = _core.LmmCore(np.ones(n), np.zeros((n, 0)), np.empty(0) if weights is None else weights, codes, zs,
                           nlevels)
    merged.solve(np.asarray(merged_theta), False)
    for g, ks in groups.items():
        if len(ks) > 1:
            p, nlev = zs[position[g]].shape[1], nlevels[position[g]]
            cv = np.asarray(merged.conditional_variance(position[g], sigma)).reshape(p, nlev, p)
            out[g] = _symmetric(cv.transpose(1, 0, 2))
    return {g: out[g] for g in groups}


def _symmetric(blocks: np.ndarray) -> np.ndarray:
    """``(nlevels, p, p)`` blocks made exactly symmetric (the core's agree with their transposes to rounding)."""
    return np.ascontiguousarray(0.5 * (blocks + np.swapaxes(blocks, 1, 2)))
