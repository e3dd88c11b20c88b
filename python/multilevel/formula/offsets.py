"""``offset(expr)`` terms of a formula, as R and lme4 write them: ``y ~ x + offset(log(t)) + (1 | g)``.

They are taken out of the formula before formulaic sees it; the fixed-effects
builder evaluates each expression on the data (with the formula's context)
and adds them to the linear predictor, like the ``offset=`` argument.
"""

from __future__ import annotations

import re

from multilevel.formula.random_terms import _split_top_level, formula_sides

_OFFSET_CALL = re.compile(r"\boffset\s*\(")


def _outside_backticks(text: str) -> str:
    """``text`` with backticked names blanked (a column may be called `offset(x)`)."""
    return re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), text)


def _offset_argument(piece: str) -> str | None:
    """The expression of a piece that is exactly ``offset(...)``, else None."""
    piece = piece.strip()
    match = _OFFSET_CALL.match(piece)
    if match is None or not piece.endswith(")"):
        return None
    inner = piece[match.end():-1]
    depth = 0
    for ch in inner:  # the call's parentheses must enclose the rest: not `offset(a) * (b)`
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return None
    return inner.strip() if depth == 0 else None


def split_offsets(formula: str) -> tuple[str, list[str]]:
    """Separate the ``offset(...)`` terms of a formula's right-hand side.

    Returns the formula without them (``"y ~ 1"`` if nothing else is left;
    ``"y ~ 0"`` keeps its ``0``) and each offset's expression, in order.
    An ``offset(...)`` that is not a term of its own (inside an interaction,
    subtracted, on the left) is a ValueError.

    Examples
    --------
    >>> split_offsets("y ~ x + offset(log(t)) + (1 | g)")
    ('y ~ x + (1 | g)', ['log(t)'])
    >>> split_offsets("y ~ offset(t)")
    ('y ~ 1', ['t'])
    """
    lhs, rhs = formula_sides(formula)
    if _OFFSET_CALL.search(_outside_backticks(lhs)):
        raise ValueError(f"formula {formula!r} has offset(...) on the left of '~'; it belongs on the right")
    if not _OFFSET_CALL.search(_outside_backticks(rhs)):
        return formula, []
    kept: list[str] = []
    offsets: list[str] = []
    for piece in _split_top_level(rhs, "+"):
        expr = _offset_argument(_outside_backticks(piece))
        if expr is None:
            if piece.strip():
                kept.append(piece.strip())
            continue
        if not expr:
            raise ValueError(f"formula {formula!r} has an empty offset(); write offset(log(exposure))")
        offsets.append(piece.strip()[piece.strip().index("(") + 1:-1].strip())  # the text as written
    for piece in kept:
        if _OFFSET_CALL.search(_outside_backticks(piece)):
            raise ValueError(
                f"offset(...) in {piece.strip()!r} of formula {formula!r} must be a term of its own, added with "
                "'+': y ~ x + offset(log(t))"
            )
    return f"{lhs} ~ {' + '.join(kept) if kept else '1'}", offsets


def refuse_offset(text: str, where: str) -> None:
    """A ValueError if ``text`` (a random term's expression, say) has an ``offset(...)``."""
    if _OFFSET_CALL.search(_outside_backticks(text)):
        raise ValueError(f"offset(...) cannot appear in {where}; add it to the fixed part: y ~ x + offset(t) + (1 | g)")
