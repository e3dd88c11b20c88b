"""Split a mixed-model formula into its fixed part and lme4-style bar terms.

``y ~ x + (1 + x | g) + (1 | a/b)`` becomes the fixed formula ``y ~ x`` and
the random terms ``(1 + x | g)``, ``(1 | a)``, ``(1 | a:b)``. Double bars
``(x || g)`` become one uncorrelated term per formula term of ``x``, as lme4
expands them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term ``(expr | g1:g2:...)`` as written in a formula.

    Attributes
    ----------
    expr : str
        Right-hand side of the term's model matrix, e.g. ``"1 + Days"``.
    factors : tuple of str
        Grouping columns whose interaction defines the groups.
    """

    expr: str
    factors: tuple[str, ...]

    @property
    def group_name(self) -> str:
        """The grouping factor's name as lme4 prints it (``cask:batch``)."""
        return ":".join(self.factors)

    def __str__(self) -> str:
        return f"({self.expr} | {self.group_name})"


def require_formula_string(formula: Any) -> None:
    """A TypeError unless ``formula`` is a string (formulaic would fail later with an unrelated message)."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string such as 'y ~ x + (1 | g)', not {type(formula).__name__}")


def formula_sides(formula: Any) -> tuple[str, str]:
    """``(response, right-hand side)`` of ``"response ~ rhs"``: the one place that refuses a formula
    that is not a string (TypeError) or lacks a '~' or a response (ValueError).

    Examples
    --------
    >>> formula_sides("y ~ x + (1 | g)")
    ('y', ' x + (1 | g)')
    """
    require_formula_string(formula)
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} has no '~'; write it as 'response ~ predictors'")
    lhs, rhs = formula.split("~", 1)
    if not lhs.strip():
        raise ValueError(f"formula {formula!r} has no response on the left of '~'")
    return lhs.strip(), rhs


def refuse_bars(formula: str) -> None:
    """A ValueError if a formula for a model without random effects has a bar term or a top-level '|'."""
    lhs, rhs = formula_sides(formula)
    if "|" in lhs or any(_is_bar_term(p) for p in _split_top_level(rhs, "+")) or len(_split_top_level(rhs, "|")) > 1:
        raise ValueError(
            f"formula {formula!r} has a '|': random-effects terms such as (1 | g) belong in lmm or glmm; "
            "gls and gee take the clusters as groups="
        )


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in formula term {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '(' in formula {text!r}")
    parts.append(text[start:])
    return parts


def _is_bar_term(piece: str) -> bool:
    piece = piece.strip()
    if not (piece.startswith("(") and piece.endswith(")")):
        return False
    inner = piece[1:-1]
    # The outer parentheses must enclose the whole piece, and hold a bar at top level.
    try:
        if len(_split_top_level(inner, "|")) < 2:
            return False
    except ValueError:
        return False
    depth = 0
    for ch in piece[:-1]:
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return False
    return True


def _group_factors(group: str, term: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (b, a), (c, b, a)] (lme4 names them ``b:a``); ``a:b`` -> [(a, b)]."""
    nested = [g.strip() for g in group.split("/")]
    out: list[tuple[str, ...]] = []
    outer: tuple[str, ...] = ()
    for level in nested:
        factors = tuple(f.strip().strip("`") for f in level.split(":"))
        if any(not f for f in factors):
            raise ValueError(f"cannot read the grouping factor in random term {term!r}")
        outer = factors + outer
        out.append(outer)
    return out


def _expand_double_bar(expr: str) -> list[str]:
    """``1 + x + z`` -> ["1", "0 + x", "0 + z"]; without an explicit ``0``/``-1``, an intercept is included."""
    pieces = [p.strip() for p in _split_top_level(expr, "+") if p.strip()]
    has_intercept = True
    terms: list[str] = []
    for piece in pieces:
        if piece in ("0", "-1"):
            has_intercept = False
        elif piece == "1":
            continue
        elif piece.endswith(("- 1", "-1")):
            has_intercept = False
            terms.append(piece.rsplit("-", 1)[0].strip())
        else:
            terms.append(piece)
    out = ["1"] if has_intercept else []
    out += [f"0 + {t}" for t in terms]
    return out


def split_formula(formula: str) -> tuple[str, list[RandomTermSpec]]:
    """Separate the fixed-effects formula from the random-effects terms.

    Parameters
    ----------
    formula : str
        A formula such as ``"y ~ x + (1 + x | g)"``.

    Returns
    -------
    fixed : str
        The formula without bar terms (``"y ~ 1"`` if nothing else is left).
    random : list of RandomTermSpec
        One entry per random-effects term, in formula order, with ``/``
        nesting and ``||`` expanded.

    Examples
    --------
    >>> fixed, random = split_formula("y ~ x + (x || g) + (1 | a/b)")
    >>> fixed
    'y ~ x'
    >>> [str(t) for t in random]
    ['(1 | g)', '(0 + x | g)', '(1 | a)', '(1 | b:a)']
    """
    lhs, rhs = formula_sides(formula)
    fixed_pieces: list[str] = []
    random: list[RandomTermSpec] = []
    for piece in _split_top_level(rhs, "+"):
        if not _is_bar_term(piece):
            if piece.strip():
                fixed_pieces.append(piece.strip())
            continue
        inner = piece.strip()[1:-1]
        double = "||" in inner and len(_split_top_level(inner.replace("||", "\x00"), "\x00")) == 2
        if double:
            expr, group = inner.split("||", 1)
            exprs = _expand_double_bar(expr.strip())
        else:
            parts = _split_top_level(inner, "|")
            if len(parts) != 2:
                raise ValueError(f"random term {piece.strip()!r} must have exactly one '|' or '||'")
            expr, group = parts
            exprs = [expr.strip()]
        if not expr.strip():
            raise ValueError(f"random term {piece.strip()!r} has nothing left of the bar; write (1 | g)")
        for factors in _group_factors(group.strip(), piece.strip()):
            random.extend(RandomTermSpec(e, factors) for e in exprs)
    fixed_rhs = " + ".join(fixed_pieces) if fixed_pieces else "1"
    return f"{lhs} ~ {fixed_rhs}", random
