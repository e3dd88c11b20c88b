"""Working correlation structures of clustered rows, shared by ``gee`` and ``gls``.

A structure is a small configuration object (which pattern, and its options
such as the lag ``m`` or a fixed matrix); its parameters are estimated by the
model that uses it. Rows are placed in their cluster by an integer position
``t`` (from a ``time`` column, else the row order within the cluster), and
``R_j`` is built from the positions of cluster ``j``'s rows, so unequal
cluster sizes and gaps in ``t`` are handled.

Strings are accepted wherever a structure is: ``"independence"``,
``"exchangeable"``, ``"ar1"``, ``"unstructured"``; options need the object
(``MDependent(m=2)``, ``Fixed(matrix)``).

Examples
--------
>>> get_correlation("exchangeable")
Exchangeable()
>>> MDependent(2).nparams(npositions=5)
2
>>> import numpy as np
>>> Ar1().table(np.array([0.5]), 3).round(3).tolist()
[[1.0, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import optimize

# Kinds understood by the C++ core (WorkingCorrelation::kind).
KIND_INDEPENDENCE, KIND_EXCHANGEABLE, KIND_AR1, KIND_TABLE, KIND_CAR1 = 0, 1, 2, 3, 4
# Pair groupings of the core's pair moments.
PAIRS_ALL, PAIRS_BY_LAG, PAIRS_BY_POSITION = 0, 1, 2


@dataclass(frozen=True)
class CorrelationStructure:
    """Base class: the pattern of ``R_j`` and how its parameters enter it."""

    name: ClassVar[str] = ""
    #: C++ kind used to whiten a cluster's rows.
    kind: ClassVar[int] = KIND_TABLE
    #: Pair grouping whose residual cross-products estimate the parameters (None: no parameters).
    pair_grouping: ClassVar[int | None] = None
    #: Whether a position names a category (unstructured, fixed: a time's rank among the distinct
    #: times) rather than a point on a time axis whose differences are lags (ar1, banded).
    positions_are_labels: ClassVar[bool] = False

    def nparams(self, npositions: int) -> int:
        """Number of correlation parameters for clusters with positions ``0..npositions-1``."""
        return 0

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        """The (T, T) correlation of positions ``0..T-1`` at ``params``."""
        return np.eye(npositions)

    def from_pair_sums(self, sums: np.ndarray, weights: np.ndarray, npositions: int) -> np.ndarray:
        """Parameters solving geepack's moment equation from grouped pair sums.

        ``sums[g]`` is the sum of ``w_i w_k e_i e_k`` and ``weights[g]`` the
        sum of ``w_i w_k`` over the within-cluster pairs of group ``g``
        (standardized residuals ``e``). Parameters whose groups hold no pair
        are 0.
        """
        return np.zeros(0)

    def param_names(self, npositions: int) -> list[str]:
        """Labels of the parameters, in the order of ``corr_params``."""
        return []

    # GLS estimates the parameters by likelihood on nlme's unconstrained scale.
    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        """Parameters from unconstrained values (``max_size``: the largest cluster)."""
        return np.zeros(0)

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        return np.zeros(0)

    # nlme's "natural" scale for intervals: the unconstrained one, except for unstructured.
    def to_natural(self, params: np.ndarray, max_size: int) -> np.ndarray:
        """Parameters on the scale where normal intervals are formed (nlme's ``natural``)."""
        return self.to_unconstrained(params, max_size)

    def from_natural(self, x: np.ndarray, max_size: int) -> np.ndarray:
        return self.from_unconstrained(x, max_size)

    def core_arguments(self, params: np.ndarray, npositions: int) -> tuple[int, float, np.ndarray]:
        """``(kind, alpha, table)`` as the C++ core's working correlation takes them."""
        if self.kind == KIND_TABLE:
            return self.kind, 0.0, self.table(params, npositions)
        alpha = float(params[0]) if self.kind in (KIND_EXCHANGEABLE, KIND_AR1, KIND_CAR1) else 0.0
        return self.kind, alpha, np.zeros((0, 0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class Independence(CorrelationStructure):
    """``R = I``."""

    name: ClassVar[str] = "independence"
    kind: ClassVar[int] = KIND_INDEPENDENCE


@dataclass(frozen=True, repr=False)
class Exchangeable(CorrelationStructure):
    """Compound symmetry: every pair in a cluster has correlation ``alpha``."""

    name: ClassVar[str] = "exchangeable"
    kind: ClassVar[int] = KIND_EXCHANGEABLE
    pair_grouping: ClassVar[int | None] = PAIRS_ALL

    def nparams(self, npositions: int) -> int:
        return 1

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        r = np.full((npositions, npositions), float(params[0]))
        np.fill_diagonal(r, 1.0)
        return r

    def from_pair_sums(self, sums: np.ndarray, weights: np.ndarray, npositions: int) -> np.ndarray:
        return _pair_means(sums[:1], weights[:1])

    def param_names(self, npositions: int) -> list[str]:
        return ["alpha"]

    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        # nlme's corCompSymm: log((rho + 1/(m-1)) / (1 - rho)), rho in (-1/(m-1), 1).
        low = -1.0 / max(max_size - 1, 1)
        e = np.exp(u[0])
        return np.array([(e + low) / (e + 1.0)])

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        low = -1.0 / max(max_size - 1, 1)
        return np.array([np.log((params[0] - low) / (1.0 - params[0]))])


@dataclass(frozen=True, repr=False)
class Ar1(CorrelationStructure):
    """First-order autoregressive: ``corr(t_i, t_k) = alpha^|t_i - t_k|``."""

    name: ClassVar[str] = "ar1"
    kind: ClassVar[int] = KIND_AR1
    pair_grouping: ClassVar[int | None] = PAIRS_BY_LAG

    def nparams(self, npositions: int) -> int:
        return 1

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        t = np.arange(npositions)
        return float(params[0]) ** np.abs(t[:, None] - t[None, :])

    def from_pair_sums(self, sums: np.ndarray, weights: np.ndarray, npositions: int) -> np.ndarray:
        # geepack: all pairs, sum_d d alpha^(d-1) (S_d - C_d alpha^d) = 0 over lags d
        # (least squares of e_i e_k on alpha^d); solved by Newton from the lag-1 mean.
        lags = np.arange(sums.size, dtype=float)[1:]
        S, C = sums[1:], weights[1:]
        if not np.any(C > 0):
            return np.zeros(1)
        start = float(np.clip(S[0] / C[0], -0.95, 0.95)) if C[0] > 0 else 0.0
        alpha = _ar1_newton(lags, S, C, start)
        if alpha is None:
            # Newton left (-1, 1) (geepack's estimate would not be a correlation): minimize the least-squares
            # criterion whose stationary point the equation is, over the open interval, then polish.
            def criterion(a: float) -> float:
                return float(np.sum((S - C * a**lags) ** 2 / np.where(C > 0, C, 1.0)))

            best = optimize.minimize_scalar(criterion, bounds=(-_AR1_EDGE, _AR1_EDGE), method="bounded",
                                            options={"xatol": 1e-12})
            alpha = _ar1_newton(lags, S, C, float(best.x))
            alpha = float(best.x) if alpha is None else alpha
        return np.array([alpha])

    def param_names(self, npositions: int) -> list[str]:
        return ["alpha"]

    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        return np.tanh(0.5 * np.asarray(u, dtype=float)[:1])  # nlme: log((1 + phi) / (1 - phi))

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        return 2.0 * np.arctanh(np.asarray(params, dtype=float)[:1])


#: The AR(1) moment estimate is kept inside [-edge, edge], where the working correlation is a correlation.
_AR1_EDGE = 1.0 - 1e-6


def _ar1_newton(lags: np.ndarray, S: np.ndarray, C: np.ndarray, alpha: float) -> float | None:
    """geepack's AR(1) equation ``sum_d d alpha^(d-1) (S_d - C_d alpha^d) = 0`` by Newton from ``alpha``;
    None when an iterate leaves (-1, 1)."""
    for _ in range(100):
        score = np.sum(lags * alpha ** (lags - 1) * (S - C * alpha**lags))
        slope = np.sum(lags * (lags - 1) * alpha ** np.maximum(lags - 2, 0) * (S - C * alpha**lags)
                       - C * (lags * alpha ** (lags - 1)) ** 2)
        step = score / slope if slope != 0 else 0.0
        alpha -= step
        if not abs(alpha) < _AR1_EDGE:
            return None
        if abs(step) <= 1e-15 * max(1.0, abs(alpha)):
            break
    return float(alpha)


@dataclass(frozen=True, repr=False)
class Car1(CorrelationStructure):
    """Continuous-time AR(1): ``corr = phi^|s_i - s_k|`` for real times ``s`` (``0 < phi < 1``), GLS only."""

    name: ClassVar[str] = "car1"
    kind: ClassVar[int] = KIND_CAR1

    def nparams(self, npositions: int) -> int:
        return 1

    def param_names(self, npositions: int) -> list[str]:
        return ["phi"]

    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(u, dtype=float)[:1]))  # nlme: log(phi / (1 - phi))

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        p = np.asarray(params, dtype=float)[:1]
        return np.log(p / (1.0 - p))


@dataclass(frozen=True, repr=False)
class MDependent(CorrelationStructure):
    """Stationary ``m``-dependent: ``corr = alpha_k`` at lag ``k <= m``, 0 beyond (Toeplitz, banded)."""

    m: int = 1
    name: ClassVar[str] = "m-dependent"
    pair_grouping: ClassVar[int | None] = PAIRS_BY_LAG

    def __post_init__(self) -> None:
        if int(self.m) != self.m or self.m < 1:
            raise ValueError(f"MDependent needs an integer m >= 1, not {self.m!r}")

    def nparams(self, npositions: int) -> int:
        return min(self.m, max(npositions - 1, 0))

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        t = np.arange(npositions)
        lag = np.abs(t[:, None] - t[None, :])
        band = np.concatenate([[1.0], np.asarray(params, dtype=float)])
        return np.where(lag < band.size, band[np.minimum(lag, band.size - 1)], 0.0)

    def from_pair_sums(self, sums: np.ndarray, weights: np.ndarray, npositions: int) -> np.ndarray:
        k = self.nparams(npositions)
        return _pair_means(sums[1 : 1 + k], weights[1 : 1 + k])

    def param_names(self, npositions: int) -> list[str]:
        return [f"alpha{k}" for k in range(1, self.nparams(npositions) + 1)]

    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        return np.tanh(0.5 * np.asarray(u, dtype=float))  # Fisher z per lag; R_j is checked when used

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        return 2.0 * np.arctanh(np.asarray(params, dtype=float))

    def __repr__(self) -> str:
        return f"MDependent(m={self.m})"


@dataclass(frozen=True, repr=False)
class Unstructured(CorrelationStructure):
    """A separate correlation for every pair of positions; parameters in the lower triangle by column."""

    name: ClassVar[str] = "unstructured"
    pair_grouping: ClassVar[int | None] = PAIRS_BY_POSITION
    positions_are_labels: ClassVar[bool] = True

    def nparams(self, npositions: int) -> int:
        return npositions * (npositions - 1) // 2

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        r = np.eye(npositions)
        rows, cols = _lower_by_column(npositions)
        r[rows, cols] = params
        r[cols, rows] = params
        return r

    def from_pair_sums(self, sums: np.ndarray, weights: np.ndarray, npositions: int) -> np.ndarray:
        rows, cols = _lower_by_column(npositions)
        # The core indexes pair (s, t), s < t, as s * T + t.
        pick = cols * npositions + rows
        return _pair_means(sums[pick], weights[pick])

    def param_names(self, npositions: int) -> list[str]:
        rows, cols = _lower_by_column(npositions)
        return [f"alpha.{c + 1}:{r + 1}" for r, c in zip(rows, cols)]

    def from_unconstrained(self, u: np.ndarray, max_size: int) -> np.ndarray:
        """nlme's corSymm: spherical angles ``pi e^u / (1 + e^u)`` of unit-length Cholesky columns."""
        T = _size_from_pairs(len(u))
        angles = np.pi / (1.0 + np.exp(-np.asarray(u, dtype=float)))
        factor = np.zeros((T, T))  # upper triangular, unit-length columns
        k = 0
        for i in range(T):
            running = 1.0
            for j in range(i):
                factor[j, i] = running * np.cos(angles[k])
                running *= np.sin(angles[k])
                k += 1
            factor[i, i] = running
        corr = factor.T @ factor
        rows, cols = _lower_by_column(T)
        return corr[rows, cols]

    def to_unconstrained(self, params: np.ndarray, max_size: int) -> np.ndarray:
        T = _size_from_pairs(len(params))
        factor = np.linalg.cholesky(self.table(np.asarray(params, dtype=float), T)).T
        u = []
        for i in range(T):
            running = 1.0
            for j in range(i):
                angle = np.arccos(np.clip(factor[j, i] / running, -1.0, 1.0))
                running *= np.sin(angle)
                u.append(np.log(angle / (np.pi - angle)))
        return np.array(u)

    def to_natural(self, params: np.ndarray, max_size: int) -> np.ndarray:
        """Fisher z of each correlation, ``log((1 + r) / (1 - r))`` (nlme's ``corNatural``)."""
        params = np.asarray(params, dtype=float)
        return np.log((1 + params) / (1 - params))

    def from_natural(self, x: np.ndarray, max_size: int) -> np.ndarray:
        return np.tanh(0.5 * np.asarray(x, dtype=float))


@dataclass(frozen=True, repr=False)
class Fixed(CorrelationStructure):
    """A user-supplied (T, T) correlation matrix by position; nothing is estimated."""

    matrix: Any = field(default=None)
    name: ClassVar[str] = "fixed"
    positions_are_labels: ClassVar[bool] = True

    def __post_init__(self) -> None:
        r = np.asarray(self.matrix, dtype=float)
        if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
            raise ValueError("Fixed needs a square correlation matrix")
        if not np.allclose(r, r.T) or not np.allclose(np.diag(r), 1.0):
            raise ValueError("Fixed needs a symmetric matrix with unit diagonal")
        if np.linalg.eigvalsh(r)[0] <= 0:
            raise ValueError("the Fixed correlation matrix is not positive definite")
        object.__setattr__(self, "matrix", r)

    def table(self, params: np.ndarray, npositions: int) -> np.ndarray:
        if npositions > self.matrix.shape[0]:
            raise ValueError(
                f"the Fixed correlation matrix is {self.matrix.shape[0]} x {self.matrix.shape[0]} but "
                f"positions go up to {npositions - 1}; give a matrix covering every position"
            )
        return self.matrix[:npositions, :npositions]

    def __repr__(self) -> str:
        return f"Fixed({self.matrix.shape[0]}x{self.matrix.shape[0]})"


def _pair_means(sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean per group; 0 where a group has no pair."""
    return np.where(weights > 0, sums / np.where(weights > 0, weights, 1.0), 0.0)


def _size_from_pairs(npairs: int) -> int:
    """T with T (T - 1) / 2 == npairs."""
    T = int(round((1 + np.sqrt(1 + 8 * npairs)) / 2))
    if T * (T - 1) // 2 != npairs:
        raise ValueError(f"{npairs} is not the number of pairs of any size")
    return T


def _lower_by_column(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the strict lower triangle, column by column."""
    cols, rows = np.triu_indices(n, k=1)
    return rows, cols


_BY_NAME: dict[str, type[CorrelationStructure]] = {
    "independence": Independence,
    "independent": Independence,
    "exchangeable": Exchangeable,
    "compound_symmetry": Exchangeable,
    "ar1": Ar1,
    "car1": Car1,
    "unstructured": Unstructured,
}


def get_correlation(corr: str | CorrelationStructure | None) -> CorrelationStructure:
    """A structure from a name or an object (None is independence)."""
    if corr is None:
        return Independence()
    if isinstance(corr, CorrelationStructure):
        return corr
    key = str(corr).lower().replace("-", "_")
    if key in ("m_dependent", "mdependent", "toeplitz"):
        raise ValueError(f"{corr!r} needs its lag: pass MDependent(m=...)")
    if key not in _BY_NAME:
        raise ValueError(f"unknown correlation structure {corr!r}; choose one of {', '.join(_BY_NAME)}, "
                         "MDependent(m) or Fixed(matrix)")
    return _BY_NAME[key]()


def cluster_matrix(structure: CorrelationStructure, params: np.ndarray, layout: Any, j: int) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """``R_j`` of cluster ``j`` of a :class:`~multilevel.clusters.ClusterLayout`, and its rows (in layout order).

    A continuous-time AR(1) uses the rows' real times (``phi^|s_i - s_k|``);
    the other structures their integer positions.

    Examples
    --------
    >>> from multilevel.clusters import cluster_layout
    >>> lay = cluster_layout(np.array([0, 0, 0, 1]), 2)
    >>> r, rows = cluster_matrix(Ar1(), np.array([0.5]), lay, 0)
    >>> rows.tolist(), r[0].tolist()
    ([0, 1, 2], [1.0, 0.5, 0.25])
    """
    rows = layout.order[layout.ptr[j]:layout.ptr[j + 1]]
    if structure.kind == KIND_CAR1:
        times = layout.time_values[rows]
        return float(params[0]) ** np.abs(times[:, None] - times[None, :]), rows
    pos = layout.position[rows]
    return structure.table(params, layout.npositions)[np.ix_(pos, pos)], rows
