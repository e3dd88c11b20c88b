"""GEE scoring sums as functions of the working correlation's parameters, so one pass makes a Fisher step.

geepack's iteration needs, at each ``beta``, the moment estimates of ``phi``
and ``alpha`` first and then the information ``H`` and score ``U`` with
them: two passes over the rows. A cluster's cross products split into
``alpha``-free sums with coefficients that depend on ``alpha`` (see
``cpp/include/multilevel/correlation_basis.hpp``): by cluster size for
exchangeable, by gap for AR(1), and, for any structure given by a table over
positions (unstructured, m-dependent), by the set of positions a cluster has.
With those, and for the structures with nothing to estimate (independence,
``Fixed``), one pass collects the moments and the sums, and ``H`` and ``U``
follow exactly (to rounding) at the ``alpha`` and ``phi`` that pass gives. For
chunked or Dask data, where a pass re-reads the rows, that halves the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilevel import _core
from multilevel.correlation import KIND_TABLE, Ar1, CorrelationStructure, Exchangeable
from multilevel.families import Family
from multilevel.gee.design import GeeDesign
from multilevel.gee.scoring import ScoringSums, part_sums, working_arrays

_BASIS_EXCHANGEABLE, _BASIS_AR1, _BASIS_PATTERN = 1, 2, 3
#: Pattern sums are taken while positions fit a 63-bit mask and their bound stays under this many bytes.
PATTERN_BYTES = 2**28
#: Clusters per work item of correlation_basis (its chunked_sum chunk).
CLUSTERS_PER_ITEM = 2048


def basis_kind(structure: CorrelationStructure, npositions: int, p: int, nclusters: int) -> int | None:
    """The C++ decomposition for ``structure``'s parameters (None: none, or nothing to estimate).

    A table structure's pattern sums take, in each of the core's work items
    of :data:`CLUSTERS_PER_ITEM` clusters (all alive until they are merged in
    order), at most ``min(2^T, clusters)`` blocks of ``(T (p + 1))^2``
    numbers; above :data:`PATTERN_BYTES` in all the steps go back to two passes.
    """
    if type(structure) is Exchangeable:
        return _BASIS_EXCHANGEABLE
    if type(structure) is Ar1:
        return _BASIS_AR1
    if structure.kind == KIND_TABLE and structure.pair_grouping is not None and 0 < npositions <= 62:
        items = -(-nclusters // CLUSTERS_PER_ITEM) + 1  # the work items and their total
        patterns = min(2.0**npositions, float(min(nclusters, CLUSTERS_PER_ITEM)))
        if items * patterns * (npositions * (p + 1)) ** 2 * 8 <= PATTERN_BYTES:
            return _BASIS_PATTERN
    return None


def one_pass(structure: CorrelationStructure, npositions: int, p: int, nclusters: int) -> bool:
    """Whether a Fisher step of ``structure`` takes one pass over the rows (module docstring)."""
    return structure.pair_grouping is None or basis_kind(structure, npositions, p, nclusters) is not None


@dataclass
class AlphaFreeSums:
    """``free + sum_k sum_m f_km(alpha) terms[k][m]`` is ``sum_j [D e]_j' R_j(alpha)^-1 [D e]_j`` at ``phi = 1``.

    ``free`` is (p + 1, p + 1); ``terms`` maps each class present (cluster
    size for exchangeable, gap between positions for AR(1), bit mask of the
    positions for a pattern) to its (m, w, w) sums. Adds over parts.
    """

    kind: int
    free: np.ndarray
    terms: dict[int, np.ndarray]

    def merge(self, other: AlphaFreeSums) -> AlphaFreeSums:
        self.free = self.free + other.free
        for k, t in other.terms.items():
            self.terms[k] = self.terms[k] + t if k in self.terms else t
        return self

    def cross_product(self, structure: CorrelationStructure, alpha: np.ndarray,
                      npositions: int) -> tuple[np.ndarray, str | None]:
        """``sum_j [D e]_j' R_j(alpha)^-1 [D e]_j`` (p + 1, p + 1), and the positions of a cluster whose
        working correlation is not positive definite (None when every one is)."""
        total = self.free.copy()
        if self.kind == _BASIS_EXCHANGEABLE:
            # (sum b b' - c_n s s') / (1 - alpha), c_n = alpha / (1 + (n - 1) alpha)
            a = float(alpha[0])
            for n, t in self.terms.items():
                total -= a / (1.0 + (n - 1) * a) * t[0]
            return total / (1.0 - a), None
        if self.kind == _BASIS_AR1:
            for gap, t in self.terms.items():
                rho = float(alpha[0]) ** gap
                total += (t[0] - rho * (t[1] + t[1].T) + rho * rho * t[2]) / (1.0 - rho * rho)
            return total, None
        table, width = structure.table(alpha, npositions), total.shape[0]
        for mask, t in self.terms.items():
            positions = [k for k in range(npositions) if mask >> k & 1]
            try:
                inverse = np.linalg.inv(np.linalg.cholesky(table[np.ix_(positions, positions)]))
            except np.linalg.LinAlgError:
                return total, f"with positions {positions}"
            r_inverse = inverse.T @ inverse
            m = len(positions)
            total += np.einsum("ab,aibj->ij", r_inverse, t[0].reshape(m, width, m, width))
        return total, None

    def at(self, structure: CorrelationStructure, alpha: np.ndarray, phi: float, npositions: int) -> ScoringSums:
        """``H`` and ``U`` at ``alpha`` and ``phi`` (no meat: that needs each cluster's score)."""
        b, failed = self.cross_product(structure, alpha, npositions)
        b = b / phi
        p = b.shape[0] - 1
        return ScoringSums(0.5 * (b[:p, :p] + b[:p, :p].T), b[:p, p].copy(), None, failed)


def part_alpha_free_sums(design: GeeDesign, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                         npositions: int, nclusters: int) -> AlphaFreeSums | ScoringSums:
    """One part's sums from which the scoring sums follow at any ``alpha`` and ``phi``: the
    :class:`AlphaFreeSums` of exchangeable, AR(1) and table structures (by pattern), or, for a
    structure with nothing to estimate, the scoring sums themselves at ``phi = 1`` (see
    :func:`at_moments`)."""
    kind = basis_kind(structure, npositions, design.X.shape[1], nclusters)
    if kind is None:
        return part_sums(design, family, structure, np.zeros(0), 1.0, beta)
    wa = working_arrays(design, family, beta)
    lay = design.layout
    free, classes, terms = _core.correlation_basis(design.X, wa.root_info, wa.pearson, lay.order, lay.ptr,
                                                   lay.position, kind)
    return AlphaFreeSums(kind, np.asarray(free), {int(k): terms[i] for i, k in enumerate(classes)})


def at_moments(sums: AlphaFreeSums | ScoringSums, structure: CorrelationStructure, alpha: np.ndarray, phi: float,
               npositions: int) -> ScoringSums:
    """The scoring sums at ``alpha`` and ``phi`` from :func:`part_alpha_free_sums`'s (merged) result."""
    if isinstance(sums, AlphaFreeSums):
        return sums.at(structure, alpha, phi, npositions)
    # Nothing estimated: the sums were taken at phi = 1; H and U scale as 1/phi, the meat as 1/phi^2.
    return ScoringSums(sums.H / phi, sums.U / phi, sums.M / (phi * phi), sums.failed)
