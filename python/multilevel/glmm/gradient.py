"""Exact gradient of the Laplace deviance for one scalar random-effect term and a canonical link.

With ``eta_i = x_i' beta + theta z_i u_j + offset_i`` (row ``i`` in group ``j``),
GLM working weights ``W_i`` and ``M_j = 1 + theta^2 sum_{i in j} W_i z_i^2``,
the Laplace deviance is ``D = sum d_i + sum u_j^2 + sum log M_j`` at the modes
``u``. Differentiating through the mode condition (whose Hessian is ``2 M_j``
for a canonical link) gives the total derivatives below; they cost one pass
over the rows, so a quasi-Newton optimizer needs no finite differences.
"""

from __future__ import annotations

import numpy as np

from multilevel.families import Family
from multilevel.glmm.pirls import PirlsState
from multilevel.lmm.design import LmmDesign

CANONICAL = {("binomial", "logit"), ("poisson", "log")}


def has_exact_gradient(design: LmmDesign, family: Family, nagq: int) -> bool:
    """Whether :func:`laplace_gradient` applies: Laplace, one scalar term, a canonical link."""
    return nagq <= 1 and len(design.terms) == 1 and design.terms[0].p == 1 and \
        (family.name, family.link.name) in CANONICAL


def laplace_gradient(design: LmmDesign, family: Family, prior: np.ndarray, theta: float,
                     st: PirlsState) -> np.ndarray:
    """``dD/d(theta, beta)`` at the modes ``st`` (one scalar term, canonical link)."""
    term = design.terms[0]
    z, codes, q = term.z[:, 0], term.codes, term.nlevels
    mu = st.mu
    weight = prior * family.variance(mu)  # canonical link: mu_eta = v(mu)
    dweight = prior * (mu * (1 - mu) * (1 - 2 * mu) if family.name == "binomial" else mu)  # dW/deta
    g = -2.0 * prior * (design.y - mu)  # d(unit deviance)/d eta
    u = st.u
    uj = u[codes]
    z2 = z * z
    s = np.bincount(codes, weights=weight * z2, minlength=q)
    m = 1.0 + theta**2 * s
    X = design.X
    # Modes' derivatives: du/dbeta (q, p) and du/dtheta (q,).
    du_dbeta = -theta * _group_sum(codes, (weight * z)[:, None] * X, q) / m[:, None]
    du_dtheta = -(np.bincount(codes, weights=g * z, minlength=q) + 2 * theta * u * s) / (2 * m)
    # log det part: sum_j (1/M_j) dM_j, with dM_j = 2 theta dtheta S_j + theta^2 sum z^2 W' deta.
    c = theta**2 * z2 * dweight / m[codes]  # (n,)
    # sum_i c_i d eta_i / d beta, with d eta_i / d beta = x_i + theta z_i du_j / d beta
    grad_beta = X.T @ (g + c) + du_dbeta.T @ np.bincount(codes, weights=c * theta * z, minlength=q)
    deta_dtheta = z * uj + theta * z * du_dtheta[codes]
    grad_theta = g @ (z * uj) + np.sum(2 * theta * s / m) + c @ deta_dtheta
    return np.concatenate([[grad_theta], grad_beta])


def _group_sum(codes: np.ndarray, values: np.ndarray, q: int) -> np.ndarray:
    """Column-wise sums of ``values`` (n, k) by group: (q, k)."""
    return np.column_stack([np.bincount(codes, weights=values[:, c], minlength=q) for c in range(values.shape[1])])
