"""``cbind(successes, failures)`` responses of binomial models, as glmer and geepack write them:
``cbind(incidence, size - incidence) ~ period + (1 | herd)``.

The left side is split here (text only); the fixed-effects builder evaluates
each expression on the data with the formula's context (as it does an
``offset(...)``), and the response becomes the proportion
``successes / (successes + failures)`` with the trials as prior weights (R's
``binomial()$initialize``).
"""

from __future__ import annotations

import re
from typing import Any

from multilevel.formula.offsets import _outside_backticks
from multilevel.formula.random_terms import _split_top_level, formula_sides

_CBIND_CALL = re.compile(r"\bcbind\s*\(")

#: The message of every model that takes no cbind response (lmm, gls, non-binomial families).
CBIND_MODELS = "cbind responses are for binomial glmm/gee"


def has_cbind(formula: str) -> bool:
    """Whether ``formula`` has a ``cbind(...)`` call outside backticks (a column may be called `cbind(a)`)."""
    return isinstance(formula, str) and _CBIND_CALL.search(_outside_backticks(formula)) is not None


def cbind_response(formula: str) -> tuple[str, str] | None:
    """The two expressions of a ``cbind(successes, failures)`` left side; None without ``cbind``.

    A ``cbind`` elsewhere (on the right, or inside a larger left side) or with other than two
    arguments is a ValueError.

    Examples
    --------
    >>> cbind_response("cbind(incidence, size - incidence) ~ period + (1 | herd)")
    ('incidence', 'size - incidence')
    >>> cbind_response("y ~ x") is None
    True
    """
    if not has_cbind(formula):
        return None
    lhs, rhs = formula_sides(formula)
    if _CBIND_CALL.search(_outside_backticks(rhs)):
        raise ValueError(f"formula {formula!r} has cbind(...) on the right of '~'; it is a response: "
                         "cbind(successes, failures) ~ x")
    blank = _outside_backticks(lhs)
    match = _CBIND_CALL.match(blank)
    inner = blank[match.end():-1] if match is not None and blank.endswith(")") else None
    depth = 0
    for ch in inner or "":  # the call's parentheses must enclose the whole left side: not `cbind(a, b) / 2`
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            inner = None
            break
    if inner is None or depth != 0:
        raise ValueError(f"the left side {lhs!r} of formula {formula!r} must be cbind(successes, failures) alone")
    written = lhs[match.end():-1]  # the text as written (backticked names kept)
    args, start = [], 0
    for piece in _split_top_level(inner, ","):
        args.append(written[start:start + len(piece)].strip())
        start += len(piece) + 1
    if len(args) != 2 or not all(args):
        raise ValueError(f"{lhs!r} has {len([a for a in args if a])} argument(s); a binomial response is "
                         "cbind(successes, failures), e.g. cbind(incidence, size - incidence)")
    return args[0], args[1]


def refuse_cbind(formula: str, where: str = "") -> None:
    """A ValueError if ``formula`` has a ``cbind(...)`` response (lmm, gls, data read in chunks).

    Examples
    --------
    >>> refuse_cbind("y ~ x")
    >>> refuse_cbind("cbind(s, f) ~ x", "lmm")
    Traceback (most recent call last):
    ...
    ValueError: cbind responses are for binomial glmm/gee, not lmm: 'cbind(s, f) ~ x'
    """
    if has_cbind(formula):
        raise ValueError(f"{CBIND_MODELS}{', not ' + where if where else ''}: {formula!r}")


def require_binomial(formula: str, family: Any) -> None:
    """A ValueError if ``formula`` has a ``cbind(...)`` response and ``family`` is not binomial.

    ``family``: a name or a :class:`~multilevel.families.Family`.

    Examples
    --------
    >>> require_binomial("cbind(s, f) ~ x", "binomial")
    >>> require_binomial("cbind(s, f) ~ x", "poisson")
    Traceback (most recent call last):
    ...
    ValueError: cbind responses are for binomial glmm/gee, not the poisson family: 'cbind(s, f) ~ x'
    """
    from multilevel.families import get_family

    if not has_cbind(formula):
        return
    name = getattr(family, "name", None)
    if name is None:
        try:
            name = get_family(family).name
        except ValueError:  # an unknown family: its own error comes later
            return
    if name != "binomial":
        refuse_cbind(formula, f"the {name} family")
