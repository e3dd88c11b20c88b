"""Fisher scoring for GEE, with step control, over rows held anywhere (:class:`~multilevel.gee.scoring.GeeRows`).

Each iteration takes geepack's step: the moment estimates of ``phi`` and
``alpha`` at the current ``beta``, the scoring sums with them, and the step
``H^-1 U``. For independence, exchangeable, AR(1) and ``Fixed`` one pass
over the rows gives both the moments and sums from which ``H`` and ``U``
follow at any ``alpha`` (:mod:`multilevel.gee.basis`), and the robust meat
takes one more pass at the end; so do unstructured and m-dependent (by
pattern of positions) unless their sums would be too large, when a step
makes two passes (moments, then the scoring sums with the meat).

Step control. geepack takes every full step, and on small or unbalanced
clusters that can fail: ``alpha``'s moment estimate can leave the range
where the working correlation is positive definite, or the iterates can
run away until the mean leaves the family's range or ``H`` is singular.
Here

- ``alpha`` is kept just inside its bounds (:func:`~multilevel.gee.moments.keep_inside`,
  and shrunk toward independence when a cluster's working correlation is
  not positive definite), with a warning when the final one was moved;
- a step is halved (up to 10 times) when the new ``beta`` gives means
  outside the family's range, a singular ``H`` or a non-finite quasi-score,
  or when it makes the score statistic ``phi U' H^-1 U`` (with ``phi`` and
  ``alpha`` re-estimated there) more than ``MERIT_GROWTH`` times larger.
  Fisher scoring from the independence GLM shrinks that statistic at every
  step on well-behaved data (by a factor 3 or more on every geepack
  reference fit); it can grow for a step or two on small unbalanced
  clusters that still converge (by up to ~7000 seen), but a runaway step
  grows it by many orders of magnitude. Every other step is taken in full,
  exactly as geepack takes it;
- when no fraction of the step passes, the iteration stops and the fit is
  returned, not converged, at the iterate with the smallest score
  statistic among those whose information matrix is well conditioned (an
  iterate running off to infinity can shrink the statistic while ``H``
  collapses): the estimating equations may have no solution (on such data
  geepack does not converge either, or loops without end).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from multilevel.correlation import CorrelationStructure, Independence
from multilevel.families import Family
from multilevel.gee.basis import AlphaFreeSums, at_moments, one_pass, part_alpha_free_sums
from multilevel.gee.design import GeeDesign
from multilevel.gee.moments import (
    MomentSums,
    estimates_from_sums,
    keep_inside,
    moment_estimates,
    part_moments,
    shrink_toward_independence,
)
from multilevel.gee.scoring import GeeRows, ScoringSums, check_positive_definite, scoring_sums

#: A step is halved when the score statistic grows by more than this factor in one step (module docstring).
MERIT_GROWTH = 1e4
#: The shortest fraction of a scoring step tried before the iteration stops.
MIN_STEP_FRACTION = 2.0**-10


@dataclass
class GeeEstimates:
    """Where Fisher scoring ended: estimates and the sums at them.

    ``raw_corr_params`` is the moment estimate of ``alpha`` before it was
    kept inside its bounds (the same values when it was inside);
    ``stopped`` says why step control ended the iteration early (None when
    it ran to convergence or to the iteration limit).
    """

    beta: np.ndarray
    scale: float
    corr_params: np.ndarray
    information: np.ndarray
    meat: np.ndarray | None  # None after one-pass steps (see final_sums)
    n_iter: int
    converged: bool
    raw_corr_params: np.ndarray | None = None
    stopped: str | None = None

    @property
    def corr_params_moved(self) -> bool:
        return self.raw_corr_params is not None and not np.array_equal(self.raw_corr_params, self.corr_params)


@dataclass
class ScoringPoint:
    """Everything at one ``beta``: ``phi``, ``alpha`` (and its raw moment estimate), the sums, the step
    ``H^-1 U`` and the score statistic ``phi U' H^-1 U``."""

    beta: np.ndarray
    phi: float
    alpha: np.ndarray
    raw_alpha: np.ndarray
    sums: ScoringSums
    step: np.ndarray
    merit: float


@dataclass
class StepSums:
    """One part's moment sums, and the sums its scoring sums follow from at any ``alpha`` and ``phi``."""

    moments: MomentSums
    scoring: AlphaFreeSums | ScoringSums

    def merge(self, other: StepSums) -> StepSums:
        self.moments.merge(other.moments)
        self.scoring.merge(other.scoring)
        return self


def part_step_sums(design: GeeDesign, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                   npositions: int, nclusters: int, moments: str) -> StepSums:
    """What one pass over a part gives for a Fisher step of a :func:`~multilevel.gee.basis.one_pass` structure."""
    return StepSums(part_moments(design, family, structure, beta, npositions, moments),
                    part_alpha_free_sums(design, family, structure, beta, npositions, nclusters))


def evaluate(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray,
             scale: float | None, moments: str = "geepack") -> ScoringPoint:
    """Moments, ``alpha`` kept inside its bounds, scoring sums and the step at ``beta``: one pass (module
    docstring), else two (four when a cluster's working correlation had to be shrunk). Raises
    FloatingPointError or LinAlgError where the mean, the working correlation or ``H`` is unusable."""
    if one_pass(structure, rows.npositions, beta.size, rows.nclusters):
        both = rows.map_reduce(partial(part_step_sums, family=family, structure=structure, beta=beta,
                                       npositions=rows.npositions, nclusters=rows.nclusters, moments=moments),
                               "scoring")
        phi, raw = estimates_from_sums(both.moments, structure, beta.size, scale, rows.npositions, moments)
        alpha = keep_inside(structure, raw, rows.max_cluster_size)
        sums = at_moments(both.scoring, structure, alpha, phi, rows.npositions)
        if sums.failed is not None and alpha.size:  # no new pass: the same sums at the shrunk alpha
            alpha = shrink_toward_independence(structure, alpha, rows.npositions)
            sums = at_moments(both.scoring, structure, alpha, phi, rows.npositions)
        check_positive_definite(sums, structure, alpha)
    else:
        phi, raw = moment_estimates(rows, family, structure, beta, scale, moments)
        alpha = keep_inside(structure, raw, rows.max_cluster_size)
        sums = scoring_sums(rows, family, structure, alpha, phi, beta, check=alpha.size == 0)
        if sums.failed is not None:
            alpha = shrink_toward_independence(structure, alpha, rows.npositions)
            sums = scoring_sums(rows, family, structure, alpha, phi, beta)
    step = np.linalg.solve(sums.H, sums.U)
    merit = phi * float(sums.U @ step)
    if not (np.all(np.isfinite(step)) and np.isfinite(merit)):
        raise FloatingPointError(f"the quasi-score is not finite at beta = {np.round(beta, 6).tolist()}")
    return ScoringPoint(beta, phi, alpha, raw, sums, step, merit)


def start_beta(rows: GeeRows, family: Family, p: int, maxiter: int = 25) -> np.ndarray:
    """Coefficients of the independence GLM by iteratively reweighted least squares (geepack's start)."""
    beta = np.zeros(p)
    at = np.zeros(0)  # the first step starts from the family's starting means
    for _ in range(maxiter):
        # Working response z = eta - offset + (y - mu) / mu_eta; X'Wz is the "score" of a*z.
        sums = scoring_sums(rows, family, Independence(), np.zeros(0), 1.0, at, independence_start=True)
        new = np.linalg.solve(sums.H, sums.U)
        done = np.max(np.abs(new - beta)) <= 1e-4 * (1.0 + np.max(np.abs(new)))  # GEE steps polish it
        beta = at = new
        if done:
            break
    return beta


def fisher_scoring(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray, *,
                   scale: float | None, maxiter: int, tol: float, moments: str = "geepack",
                   verbose: bool = False) -> GeeEstimates:
    """Iterate ``beta += H^-1 U`` with ``phi`` and ``alpha`` re-estimated before each step, halving runaway
    steps (module docstring).

    Stops when a full step has ``max |step| <= tol * (1 + max |beta|)``;
    ``phi``, ``alpha`` and the sums returned are those at the final
    ``beta``, as geepack's; the meat is None where the steps took one pass
    (:func:`~multilevel.gee.scoring.final_sums` makes it). Errors at the starting ``beta`` are raised;
    after that a fit that cannot go on is returned with ``converged=False``.
    With ``verbose`` each step prints its iteration, step fraction, largest
    coefficient change and score statistic.
    """
    point = evaluate(rows, family, structure, np.asarray(beta, dtype=float).copy(), scale, moments)
    converged, stopped, n_iter = False, None, 0
    best = point  # the smallest score statistic so far: where a fit that cannot go on is returned
    for n_iter in range(1, maxiter + 1):
        step, fraction = point.step, 1.0
        small = np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(point.beta + step)))
        while True:
            candidate = _try(rows, family, structure, point.beta + fraction * step, scale, moments)
            # A converging full step is taken as it is; the score statistic guards the others.
            if candidate is not None and ((fraction == 1.0 and small) or
                                          candidate.merit <= MERIT_GROWTH * point.merit):
                break
            fraction /= 2.0
            if fraction < MIN_STEP_FRACTION:
                candidate = None
                break
        if candidate is None:
            stopped = (f"GEE Fisher scoring stopped at iteration {n_iter}: no fraction of the scoring step (down "
                       f"to {MIN_STEP_FRACTION:.3g}) gives a valid mean and a score statistic at most "
                       f"{MERIT_GROWTH:g} times the last; the estimating equations may have no solution for these "
                       "data (small or unbalanced clusters, a working correlation near its bound); the estimates "
                       "are those of the iterate closest to solving them (smallest score statistic, with a "
                       "well-conditioned information matrix)")
            point = best
            break
        if verbose:
            print(f"iteration {n_iter:4d}: step fraction {fraction:.3g}, max |change| "
                  f"{np.max(np.abs(candidate.beta - point.beta)):.3e}, score statistic {candidate.merit:.6g}",
                  flush=True)
        point = candidate
        if point.merit < best.merit and _well_conditioned(point.sums.H):
            best = point
        if fraction == 1.0 and small:
            converged = True
            break
    return GeeEstimates(point.beta, point.phi, point.alpha, point.sums.H, point.sums.M, n_iter, converged,
                        raw_corr_params=point.raw_alpha, stopped=stopped)


def _well_conditioned(H: np.ndarray) -> bool:
    """Whether ``H``, scaled to unit diagonal (so the columns' units do not matter), is safely positive
    definite: an iterate running off to infinity can shrink the score statistic while ``H`` collapses."""
    d = np.diag(H)
    if not np.all(d > 0):
        return False
    scaled = H / np.sqrt(np.outer(d, d))
    return bool(np.linalg.eigvalsh(scaled)[0] > 1e-10)


def _try(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray, scale: float | None,
         moments: str) -> ScoringPoint | None:
    """:func:`evaluate` at a candidate ``beta``; None where the mean, correlation or ``H`` is unusable."""
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # such values are caught below
            return evaluate(rows, family, structure, beta, scale, moments)
    except (FloatingPointError, np.linalg.LinAlgError):
        return None
