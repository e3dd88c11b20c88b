"""Bounded derivative-free minimization (NLopt's BOBYQA) with a record of how it went."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import nlopt
import numpy as np

_RESULT_MESSAGES = {
    1: "success",
    2: "stopval reached",
    3: "ftol reached",
    4: "xtol reached",
    5: "maximum number of evaluations reached",
    6: "maximum time reached",
    -1: "failure",
    -2: "invalid arguments",
    -3: "out of memory",
    -4: "roundoff limited",
    -5: "forced stop",
}


#: The keyword arguments the fitting functions pass on to :func:`minimize_bobyqa`.
OPTIMIZER_OPTIONS = ("ftol_rel", "ftol_abs", "xtol_abs", "initial_step", "maxeval", "verbose")


def check_optimizer_options(options: dict[str, Any], function: Callable[..., Any]) -> dict[str, Any]:
    """Refuse a keyword that is neither an optimizer option nor a parameter of ``function``.

    The error names the keyword and the close matches among both (case
    ignored), so ``lmm(..., REML=False)`` says "did you mean 'reml'?"
    instead of failing inside the optimizer or being ignored.

    Examples
    --------
    >>> def fit(formula, data, *, reml=True, **options): return check_optimizer_options(options, fit)
    >>> fit("y ~ x", None, maxeval=10)
    {'maxeval': 10}
    >>> fit("y ~ x", None, REML=False)
    Traceback (most recent call last):
    ...
    TypeError: fit() got an unexpected keyword argument 'REML'; did you mean 'reml'?
    """
    import inspect
    from difflib import get_close_matches

    for key in options:
        if key in OPTIMIZER_OPTIONS:
            continue
        params = [p.name for p in inspect.signature(function).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        choices = params + list(OPTIMIZER_OPTIONS)
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in get_close_matches(key.lower(), list(lowered), n=3, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"; it takes {', '.join(params)} and the optimizer options {', '.join(OPTIMIZER_OPTIONS)}")
        raise TypeError(f"{function.__name__}() got an unexpected keyword argument {key!r}{hint}")
    return options


@dataclass
class OptSummary:
    """How the optimizer went: start, end, evaluations, tolerances, outcome.

    ``converged`` is true when NLopt stopped on a tolerance (not on the
    evaluation limit or an error).
    """

    optimizer: str
    initial: np.ndarray
    lower: np.ndarray
    final: np.ndarray
    fmin: float
    feval: int
    return_code: int
    message: str
    elapsed: float
    ftol_rel: float
    ftol_abs: float
    xtol_abs: float
    maxeval: int
    history: list[float] = field(default_factory=list, repr=False)
    #: Finite-difference gradient of the objective at ``final`` (central, one-sided on a bound), when the
    #: fit was polished (:func:`newton_polish`); ``None`` otherwise.
    gradient: np.ndarray | None = None
    #: Newton steps taken after BOBYQA by :func:`newton_polish` (0: none helped or none was needed).
    polish_steps: int = 0

    @property
    def converged(self) -> bool:
        return self.return_code in (1, 2, 3, 4) or (self.return_code == -4 and np.isfinite(self.fmin))

    @property
    def max_abs_gradient(self) -> float:
        """Largest absolute gradient entry off the bounds (``nan`` when no gradient was computed)."""
        if self.gradient is None:
            return float("nan")
        free = ~_on_bounds(self.final, self.lower, None, self.gradient)
        return float(np.max(np.abs(self.gradient[free]), initial=0.0))


def minimize_bobyqa(
    objective: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    ftol_rel: float = 1e-14,
    ftol_abs: float = 1e-8,
    xtol_abs: float = 1e-10,
    initial_step: float | np.ndarray = 0.75,
    maxeval: int = 100_000,
    upper: np.ndarray | None = None,
    verbose: bool | int = False,
) -> OptSummary:
    """Minimize ``objective`` over ``x >= lower`` (and ``x <= upper`` where given) with BOBYQA.

    Non-finite objective values (a system that is not positive definite) are
    replaced by a large finite number so the trust region backs off. With
    ``verbose`` every evaluation is printed (``verbose=2``: with its
    parameters), as lme4's ``verbose=``.

    Examples
    --------
    >>> s = minimize_bobyqa(lambda x: float((x[0] - 0.5) ** 2), np.array([1.0]), np.array([0.0]))
    >>> round(float(s.final[0]), 6), s.converged
    (0.5, True)
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    best = {"f": np.inf, "x": x0.copy()}
    history: list[float] = []

    if not isinstance(verbose, (bool, int, np.integer)) or verbose < 0:
        raise TypeError(f"verbose must be True, False or a level 0, 1, 2, not {verbose!r}")

    def wrapped(x: np.ndarray, _grad: np.ndarray) -> float:
        f = float(objective(x))
        history.append(f)
        if verbose:
            at = f" at {np.array2string(x, precision=6, separator=', ')}" if verbose > 1 else ""
            print(f"evaluation {len(history):5d}: objective {f:.10g}{at}", flush=True)
        if not np.isfinite(f):
            return 1e300
        if f < best["f"]:
            best["f"], best["x"] = f, x.copy()
        return f

    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_lower_bounds(lower)
    if upper is not None:
        opt.set_upper_bounds(np.asarray(upper, dtype=float))
    opt.set_min_objective(wrapped)
    opt.set_ftol_rel(ftol_rel)
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(xtol_abs)
    opt.set_maxeval(maxeval)
    opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), x0.shape).copy())
    start = time.perf_counter()
    try:
        opt.optimize(x0)
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        code = -4
    except (RuntimeError, ValueError):
        code = -1
    elapsed = time.perf_counter() - start
    return OptSummary(
        optimizer="LN_BOBYQA (NLopt)",
        initial=x0,
        lower=lower,
        final=best["x"],
        fmin=best["f"],
        feval=len(history),
        return_code=int(code),
        message=_RESULT_MESSAGES.get(int(code), str(code)),
        elapsed=elapsed,
        ftol_rel=ftol_rel,
        ftol_abs=ftol_abs,
        xtol_abs=xtol_abs,
        maxeval=maxeval,
        history=history,
    )


def minimize_bobyqa_restarted(objective: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, *,
                              restarts: int = 3, restart_step: float = 0.05, **options: Any) -> OptSummary:
    """:func:`minimize_bobyqa`, restarted from its end with a small trust region while that still gains.

    BOBYQA stops on the objective's relative change; on flat valleys of
    several parameters (an unstructured correlation with variance weights)
    that can be short of the optimum by 1e-7 in log-likelihood. A restart
    rebuilds the quadratic model around the best point. The summary counts
    every evaluation and keeps the best point.
    """
    total = minimize_bobyqa(objective, x0, lower, **options)
    feval, elapsed, history = total.feval, total.elapsed, list(total.history)
    for _ in range(restarts):
        again = minimize_bobyqa(objective, total.final, lower, **{**options, "initial_step": restart_step})
        feval, elapsed = feval + again.feval, elapsed + again.elapsed
        history += again.history
        gained = total.fmin - again.fmin
        if gained > 0:
            total = again
        if not gained > max(total.ftol_abs, 1e-12 * abs(total.fmin)):
            break
    return OptSummary(total.optimizer + ", restarted", np.asarray(x0, dtype=float), total.lower, total.final,
                      total.fmin, feval, total.return_code, total.message, elapsed, total.ftol_rel, total.ftol_abs,
                      total.xtol_abs, total.maxeval, history)


def _on_bounds(x: np.ndarray, lower: np.ndarray, upper: np.ndarray | None, margin: np.ndarray | float = 0.0
               ) -> np.ndarray:
    """Coordinates within ``margin`` of a bound (where a central difference would cross it)."""
    near = x - lower <= margin
    if upper is not None:
        near |= upper - x <= margin
    return near


def newton_polish(objective: Callable[[np.ndarray], float], summary: OptSummary, *,
                  upper: np.ndarray | None = None, scale: float | np.ndarray = 1.0, relative_step: float = 1e-4,
                  max_steps: int = 4, xtol_rel: float = 1e-10) -> OptSummary:
    """Finish a BOBYQA minimization with Newton steps on finite differences, and record the gradient.

    BOBYQA stops on the objective: in a flat valley its end can be 1e-5 off
    in the parameters while the objective is within 1e-10 of the minimum.
    Near the optimum Newton steps converge in the parameters: the Hessian is
    differenced once at the start (central on the diagonal, one extra point
    per pair), then each step costs a central gradient (two evaluations per
    free coordinate) and one evaluation of the new point. A step is kept only
    when it lowers the objective, so the result is never worse than
    ``summary``; coordinates on (or within a difference step of) a bound stay
    where they are (a singular fit keeps its zero). The gradient at the final
    point is stored in ``gradient`` (one-sided on the bounds). ``scale`` is each
    coordinate's typical size (the first difference step is ``relative_step``
    times the larger of ``|x|`` and ``scale``).

    Examples
    --------
    >>> f = lambda x: float((x[0] - 0.5) ** 2 + 10 * (x[0] - 0.5) * (x[1] - 1) + 30 * (x[1] - 1) ** 2)
    >>> s = newton_polish(f, minimize_bobyqa(f, np.array([2.0, 2.0]), np.array([0.0, 0.0]), ftol_rel=1e-4))
    >>> np.round(s.final, 9).tolist(), float(s.max_abs_gradient) < 1e-6
    ([0.5, 1.0], True)
    """
    lower = np.asarray(summary.lower, dtype=float)
    upper = None if upper is None else np.asarray(upper, dtype=float)
    x, f = np.asarray(summary.final, dtype=float).copy(), float(summary.fmin)
    size = np.maximum(np.abs(x), np.broadcast_to(np.asarray(scale, dtype=float), x.shape))
    h = relative_step * size
    history: list[float] = []

    def value(point: np.ndarray) -> float:
        out = float(objective(point))
        history.append(out)
        return out

    def shifted(point: np.ndarray, i: int, step: float) -> np.ndarray:
        moved = point.copy()
        moved[i] += step
        return moved

    def central_gradient(point: np.ndarray, center: float, free: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
        """Gradient (central on free coordinates, forward elsewhere), the diagonal curvature and f(x + h e_i)."""
        g, curvature, plus = np.zeros(x.size), np.zeros(x.size), np.zeros(x.size)
        for i in range(x.size):
            # one-sided away from the nearer bound off the free coordinates
            sign = 1.0 if free[i] or upper is None or point[i] - lower[i] <= upper[i] - point[i] else -1.0
            plus[i] = value(shifted(point, i, sign * h[i]))
            if free[i]:
                minus = value(shifted(point, i, -h[i]))
                g[i] = (plus[i] - minus) / (2 * h[i])
                curvature[i] = (plus[i] - 2 * center + minus) / h[i] ** 2
            else:
                g[i] = sign * (plus[i] - center) / h[i]
        return g, curvature, plus

    free = ~_on_bounds(x, lower, upper, 2 * h)
    steps = 0
    gradient: np.ndarray | None = None
    if np.isfinite(f) and f < 1e300:
        g, curvature, plus = central_gradient(x, f, free)
        # Central differences balance truncation (h^2 times the third derivative) against rounding (noise / h).
        # In the units where the curvature is one the third derivative is of order one and the noise about
        # 1e-13 |f|, so the best step is about (3e-13 |f|)^(1/3) of those units: redo the coordinates whose
        # first step was far from it.
        natural = (3e-13 * max(abs(f), 1.0)) ** (1 / 3) / np.sqrt(np.where(curvature > 0, curvature, np.inf))
        refined = np.clip(natural, 1e-8 * size, h)
        redo = free & (curvature > 0) & (refined < h / 2) & (x - lower > 2 * refined)
        if np.any(redo):
            h = np.where(redo, refined, h)
            free = ~_on_bounds(x, lower, upper, 2 * h)
            g, curvature, plus = central_gradient(x, f, free)
        idx = np.flatnonzero(free)
        hessian = np.diag(curvature[idx])
        for a, i in enumerate(idx):  # f(x + h_i e_i + h_j e_j): one point per pair (error O(h), enough for Newton)
            for b in range(a):
                j = idx[b]
                both = value(shifted(shifted(x, i, h[i]), j, h[j]))
                hessian[a, b] = hessian[b, a] = (both - plus[i] - plus[j] + f) / (h[i] * h[j])
        gradient = g
        if not np.all(np.isfinite(history)):
            gradient, idx = None, idx[:0]  # the objective failed near the optimum: keep BOBYQA's end
        try:
            factor = np.linalg.cholesky(hessian) if idx.size else None
        except np.linalg.LinAlgError:
            factor = None  # not convex here (a ridge or a boundary): Newton has no direction to offer
        while factor is not None and steps < max_steps:
            dx = np.zeros(x.size)
            dx[idx] = -np.linalg.solve(factor.T, np.linalg.solve(factor, g[idx]))
            if np.max(np.abs(dx) / size) <= xtol_rel:
                break
            room = np.where(dx < 0, (x - lower) / np.maximum(-dx, 1e-300), np.inf)
            if upper is not None:
                room = np.minimum(room, np.where(dx > 0, (upper - x) / np.maximum(dx, 1e-300), np.inf))
            candidate = x + min(1.0, float(np.min(room))) * dx
            candidate = np.maximum(candidate, lower) if upper is None else np.clip(candidate, lower, upper)
            trial = value(candidate)
            if not trial < f:
                break  # within the objective's rounding: this is the optimum to the digits it has
            x, f, steps = candidate, trial, steps + 1
            free = ~_on_bounds(x, lower, upper, 2 * h)
            g, _, _ = central_gradient(x, f, free)
            gradient = g
            idx = idx[free[idx]]
            if idx.size < hessian.shape[0]:
                break  # a coordinate reached a bound: keep it there
    return replace(summary, final=x, fmin=f, feval=summary.feval + len(history),
                   history=list(summary.history) + history, gradient=gradient, polish_steps=steps,
                   optimizer=summary.optimizer + (", Newton polish" if steps else ""))


def minimize_quasi_newton(
    objective: Callable[[np.ndarray], float],
    x0: np.ndarray,
    bounds: list[tuple[float | None, float | None]],
    *,
    gradient_step: float = 1e-6,
    ftol: float = 1e-13,
    gtol: float = 1e-7,
    maxiter: int = 1000,
    with_gradient: bool = False,
) -> OptSummary:
    """Minimize a smooth ``objective`` with L-BFGS-B.

    With ``with_gradient`` the objective returns ``(value, gradient)``;
    otherwise gradients are forward differences. For well-scaled smooth
    problems (coordinates of order one) this needs far fewer evaluations than
    BOBYQA. Non-finite values are replaced by a large number, as in
    :func:`minimize_bobyqa`.

    Examples
    --------
    >>> s = minimize_quasi_newton(lambda x: float((x[0] - 0.5) ** 2 + (x[1] - 1.5) ** 2), np.array([1.0, 1.0]),
    ...                           [(0.0, None), (None, None)])
    >>> np.round(s.final, 4).tolist(), s.converged
    ([0.5, 1.5], True)
    """
    from scipy import optimize

    x0 = np.asarray(x0, dtype=float)
    history: list[float] = []

    def wrapped(x: np.ndarray) -> Any:
        out = objective(x)
        f = float(out[0] if with_gradient else out)
        history.append(f)
        if not np.isfinite(f):
            return (1e300, np.zeros_like(x)) if with_gradient else 1e300
        return (f, np.asarray(out[1], dtype=float)) if with_gradient else f

    start = time.perf_counter()
    res = optimize.minimize(wrapped, x0, method="L-BFGS-B", bounds=bounds, jac=with_gradient or None,
                            options={"ftol": ftol, "gtol": gtol, "eps": gradient_step, "maxiter": maxiter})
    elapsed = time.perf_counter() - start
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    code = 1 if res.success else -1
    return OptSummary(
        optimizer="L-BFGS-B (SciPy), " + ("exact gradient" if with_gradient else "forward-difference gradient"),
        initial=x0, lower=lower, final=np.asarray(res.x, dtype=float), fmin=float(res.fun), feval=len(history),
        return_code=code, message=str(res.message), elapsed=elapsed, ftol_rel=ftol, ftol_abs=0.0,
        xtol_abs=0.0, maxeval=maxiter, history=history,
    )
