"""GEE scoring sums as functions of the working correlation's parameter, so one pass makes a Fisher step.

geepack's iteration needs, at each ``beta``, the moment estimates of ``phi``
and ``alpha`` first and then the information ``H`` and score ``U`` with
them: two passes over the rows. For the structures whose cluster cross
products split into ``alpha``-free sums with scalar coefficients
(exchangeable, AR(1); see ``cpp/include/multilevel/correlation_basis.hpp``)
and for those with nothing to estimate (independence, ``Fixed``), one pass
collects both, and ``H`` and ``U`` follow exactly (to rounding) at the
``alpha`` and ``phi`` that pass gives. For chunked or Dask data, where a
pass re-reads the rows, that halves the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilevel import _core
from multilevel.correlation import Ar1, CorrelationStructure, Exchangeable
from multilevel.families import Family
from multilevel.gee.design import GeeDesign
from multilevel.gee.scoring import ScoringSums, part_sums, working_arrays

_BASIS_EXCHANGEABLE, _BASIS_AR1 = 1, 2


def basis_kind(structure: CorrelationStructure) -> int | None:
    """The C++ decomposition for ``structure``'s parameter (None: none, or nothing to estimate)."""
    if type(structure) is Exchangeable:
        return _BASIS_EXCHANGEABLE
    if type(structure) is Ar1:
        return _BASIS_AR1
    return None


def one_pass(structure: CorrelationStructure) -> bool:
    """Whether a Fisher step of ``structure`` takes one pass over the rows (module docstring)."""
    return basis_kind(structure) is not None or structure.pair_grouping is None


@dataclass
class AlphaFreeSums:
    """``free + sum_k sum_m f_km(alpha) terms[k][m]`` is ``sum_j [D e]_j' R_j(alpha)^-1 [D e]_j`` at ``phi = 1``.

    ``free`` is (p + 1, p + 1); ``terms`` maps each class present (cluster
    size for exchangeable, gap between positions for AR(1)) to its (m, p + 1,
    p + 1) sums. Adds over parts.
    """

    kind: int
    free: np.ndarray
    terms: dict[int, np.ndarray]

    def merge(self, other: AlphaFreeSums) -> AlphaFreeSums:
        self.free = self.free + other.free
        for k, t in other.terms.items():
            self.terms[k] = self.terms[k] + t if k in self.terms else t
        return self

    def cross_product(self, alpha: float) -> np.ndarray:
        """``sum_j [D e]_j' R_j(alpha)^-1 [D e]_j`` (p + 1, p + 1)."""
        total = self.free.copy()
        if self.kind == _BASIS_EXCHANGEABLE:
            # (sum b b' - c_n s s') / (1 - alpha), c_n = alpha / (1 + (n - 1) alpha)
            for n, t in self.terms.items():
                total -= alpha / (1.0 + (n - 1) * alpha) * t[0]
            return total / (1.0 - alpha)
        for gap, t in self.terms.items():
            rho = alpha**gap
            cross = t[1] + t[1].T
            total += (t[0] - rho * cross + rho * rho * t[2]) / (1.0 - rho * rho)
        return total

    def at(self, alpha: np.ndarray, phi: float) -> ScoringSums:
        """``H`` and ``U`` at ``alpha`` and ``phi`` (no meat: that needs each cluster's score)."""
        b = self.cross_product(float(alpha[0])) / phi
        p = b.shape[0] - 1
        return ScoringSums(0.5 * (b[:p, :p] + b[:p, :p].T), b[:p, p].copy(), None)


def part_alpha_free_sums(design: GeeDesign, family: Family, structure: CorrelationStructure,
                         beta: np.ndarray) -> AlphaFreeSums | ScoringSums:
    """One part's sums from which the scoring sums follow at any ``alpha`` and ``phi``: the
    :class:`AlphaFreeSums` of exchangeable/AR(1), or, for a structure with nothing to estimate,
    the scoring sums themselves at ``phi = 1`` (see :func:`at_moments`)."""
    kind = basis_kind(structure)
    if kind is None:
        return part_sums(design, family, structure, np.zeros(0), 1.0, beta)
    wa = working_arrays(design, family, beta)
    lay = design.layout
    free, classes, terms = _core.correlation_basis(design.X, wa.root_info, wa.pearson, lay.order, lay.ptr,
                                                   lay.position, kind)
    return AlphaFreeSums(kind, np.asarray(free), {int(k): terms[i] for i, k in enumerate(classes)})


def at_moments(sums: AlphaFreeSums | ScoringSums, alpha: np.ndarray, phi: float) -> ScoringSums:
    """The scoring sums at ``alpha`` and ``phi`` from :func:`part_alpha_free_sums`'s (merged) result."""
    if isinstance(sums, AlphaFreeSums):
        return sums.at(alpha, phi)
    # Nothing estimated: the sums were taken at phi = 1; H and U scale as 1/phi, the meat as 1/phi^2.
    return ScoringSums(sums.H / phi, sums.U / phi, sums.M / (phi * phi), sums.failed)
