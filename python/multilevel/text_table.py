"""Plain-text tables for model summaries."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: R's ``.Machine$double.eps``: ``format.pval``'s default ``eps``; smaller p-values print as ``<2e-16``.
DOUBLE_EPS = 2.220446049250313e-16

#: Significant digits of printed p-values: printCoefmat's ``dig.tst`` for summary()'s ``digits = 4``.
PVALUE_DIGITS = 3


def aligned_table(table: pd.DataFrame, left: int) -> str:
    """Plain-text table: the first ``left`` columns left-aligned, the rest right-aligned.

    Examples
    --------
    >>> print(aligned_table(pd.DataFrame({"name": ["a"], "value": ["1.5"]}), 1))
     name value
     a      1.5
    """
    cells = [list(map(str, table.columns))] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    lines = []
    for r in cells:
        parts = [v.ljust(w) if j < left else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))]
        lines.append(" " + " ".join(parts).rstrip())
    return "\n".join(lines)


def data_notes(fixed: Any, n_dropped: int) -> list[str]:
    """Summary notes on the data: aliased fixed-effect columns dropped, rows with missing values dropped."""
    notes = []
    if fixed is not None and fixed.dropped:
        notes.append("NOTE: dropped aliased fixed-effect column(s): " + ", ".join(fixed.dropped))
    if n_dropped:
        notes.append(f"NOTE: {n_dropped} row(s) with missing values were dropped.")
    return notes


def html_report(header: list[str], tables: list[pd.DataFrame], lines: list[str]) -> str:
    """HTML of a model summary: bold header lines, tables (a coefficient table keeps its index), plain lines."""
    parts = [f"<p><b>{html.escape(line)}</b></p>" for line in header]
    for table in tables:
        keep_index = not isinstance(table.index, pd.RangeIndex)
        parts.append(table.to_html(index=keep_index, float_format=lambda v: f"{v:.6g}"))
    parts.extend(f"<p>{html.escape(line)}</p>" for line in lines)
    return "\n".join(parts)


def _sig_and_power(x: float, digits: int) -> tuple[int, int]:
    """R's ``scientific()``: the decimal exponent of ``x`` rounded to ``digits`` significant
    digits, and how many of those digits are needed (trailing zeros dropped)."""
    if x == 0.0:
        return 0, 1
    mantissa, exponent = f"{abs(x):.{digits - 1}e}".split("e")
    return int(exponent), len(mantissa.replace(".", "").rstrip("0")) or 1


def r_format(values: Sequence[float], digits: int) -> list[str]:
    """Finite numbers formatted together as R's ``format(x, digits = digits)``.

    All get one layout: fixed notation with the decimals the most demanding value needs for
    ``digits`` significant digits, unless scientific notation is narrower (``scipen = 0``);
    the strings are padded to a common width, as R's.

    Examples
    --------
    >>> r_format([0.470659, 0.00484244], 3)
    ['0.47066', '0.00484']
    >>> r_format([1.27435e-11, 0.000123], 3)
    ['1.27e-11', '1.23e-04']
    """
    if not len(values):
        return []
    info = [_sig_and_power(float(v), digits) for v in values]
    neg = int(any(v < 0 for v in values))
    powers = [k for k, _ in info]
    rgt = max(0, max(nsig - k - 1 for k, nsig in info))
    left = max(max(k + 1, 1) for k in powers)
    fixed_width = neg + left + rgt + (rgt > 0)
    mantissa = max(nsig for _, nsig in info) - 1
    wide_exponent = max(powers) >= 100 or min(powers) <= -100
    sci_width = neg + (mantissa > 0) + mantissa + 4 + (2 if wide_exponent else 1)
    if fixed_width <= sci_width:
        out = [f"{float(v):.{rgt}f}" for v in values]
    else:
        out = [f"{float(v):.{mantissa}e}" for v in values]
        if wide_exponent:  # R writes every exponent with three digits then
            out = [re.sub(r"e([+-])(\d\d)$", r"e\g<1>0\2", v) for v in out]
    width = max(map(len, out))
    return [v.rjust(width) for v in out]


def format_pvalues(pvalues: Iterable[float], digits: int = PVALUE_DIGITS, eps: float = DOUBLE_EPS) -> list[str]:
    """P-values as R's ``format.pval(pv, digits, eps)`` prints them in ``printCoefmat``.

    Values below ``eps`` (``.Machine$double.eps``) print as ``<2e-16``, with a space
    (``< 2e-16``) when the other values are wider than 6 characters, as R's; values from
    1e-4 up are formatted together in fixed notation, smaller ones together (scientific
    unless fixed is as narrow), each with ``digits`` significant digits. NaN prints as ``NA``.
    Values from 1e-4 to 1e-3 count as fixed when ``digits > 1`` (R 4's rule).

    Examples
    --------
    >>> format_pvalues([4.4e-297, 1.27435e-11])
    ['< 2e-16', '1.27e-11']
    >>> format_pvalues([1e-20, 0.0123])
    ['<2e-16', '0.0123']
    """
    pv = [float(v) for v in pvalues]
    out = ["NA" if math.isnan(v) else "" for v in pv]
    tiny = [i for i, v in enumerate(pv) if not math.isnan(v) and v < eps]
    rest = [i for i, v in enumerate(pv) if not math.isnan(v) and v >= eps]
    # R's rule (R >= 4.0): fixed notation from 1e-4 up (from 1e-3 up when digits = 1)
    fixed = [i for i in rest if math.floor(math.log10(pv[i])) >= (-4 if digits > 1 else -3)]
    small = [i for i in rest if i not in fixed]
    for group in (fixed, small):
        for i, text in zip(group, r_format([pv[i] for i in group], digits)):
            out[i] = text
    if tiny:
        eps_digits = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if eps_digits > 1 and eps_digits + 6 > nc:
                eps_digits = max(1, nc - 7)
            sep = "" if eps_digits == 1 and nc <= 6 else " "
        else:
            sep = "" if eps_digits == 1 else " "
        text = "<" + sep + r_format([eps], eps_digits)[0]
        for i in tiny:
            out[i] = text
    return out


def coefficient_display(table: pd.DataFrame, float_digits: int = 6) -> pd.DataFrame:
    """A coefficient table as printed: p-value columns (``Pr(...)``) by :func:`format_pvalues`,
    other numbers with ``float_digits`` significant digits; the table itself keeps the numbers."""
    out = pd.DataFrame(index=table.index)
    for name, column in table.items():
        if str(name).startswith("Pr("):
            out[name] = format_pvalues(column.to_numpy(dtype=float))
        elif pd.api.types.is_float_dtype(column):
            out[name] = [f"{v:.{float_digits}g}" for v in column]
        else:
            out[name] = column
    return out


def _r_abbreviate_one(name: str, minlength: int) -> str:
    """R's C ``stripchars`` (``abbreviate(use.classes = TRUE)``): drop lower-case vowels from the
    right, then lower-case letters, then any character not starting a word, until short enough."""
    buf = list(name.strip())
    if len(buf) < minlength:
        return "".join(buf)
    nspace = sum(c.isspace() for c in buf)

    def short() -> bool:
        return len(buf) - nspace <= minlength

    def first_char(i: int) -> bool:
        return buf[i - 1].isspace()

    def last_char(i: int) -> bool:
        return not buf[i - 1].isspace() and (i + 1 == len(buf) or buf[i + 1].isspace())

    rules = (lambda i: buf[i] in "aeiou" and last_char(i), lambda i: buf[i] in "aeiou" and not first_char(i),
             lambda i: buf[i].islower() and last_char(i), lambda i: buf[i].islower() and not first_char(i),
             lambda i: not first_char(i) and not buf[i].isspace())
    if not short():
        for rule in rules:
            for i in range(len(buf) - 1, 0, -1):
                if i < len(buf) and rule(i):
                    del buf[i]
                if short():
                    break
            if short():
                break
    if len(buf) > minlength:  # spaces went on counting as word boundaries; now they go
        buf = [buf[0]] + [c for c in buf[1:] if not c.isspace()]
    return "".join(buf)


def r_abbreviate(names: Sequence[str], minlength: int) -> list[str]:
    """R's ``abbreviate(names, minlength)``: names that abbreviate alike get a longer minimum
    length until all differ (duplicated names share their abbreviation).

    Examples
    --------
    >>> r_abbreviate(["(Intercept)", "Days", "Sex[T.Female]"], 6)
    ['(Intr)', 'Days', 'S[T.F]']
    """
    unique = list(dict.fromkeys(n.strip() for n in names))
    out = [_r_abbreviate_one(n, minlength) for n in unique]
    length = minlength
    while True:
        seen: set[str] = set()
        dup = []
        for a in out:
            dup.append(a in seen)
            seen.add(a)
        if not any(dup):
            break
        length += 1
        clashing = {a for a, d in zip(out, dup) if d}
        redo = [d or a in clashing for d, a in zip(dup, out)]
        out = [_r_abbreviate_one(n, length) if r else a for n, r, a in zip(unique, redo, out)]
    lookup = dict(zip(unique, out))
    return [lookup[n.strip()] for n in names]


def correlation_lines(cov: pd.DataFrame) -> list[str]:
    """lme4's "Correlation of Fixed Effects" block: the lower triangle of the correlation of
    ``cov``, 3 decimals, rows named ``abbreviate(minlength = 11)`` and columns ``minlength = 6``."""
    sd = np.sqrt(np.diag(cov.to_numpy()))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov.to_numpy() / np.outer(sd, sd)
    p = corr.shape[0]
    # R's format(round(x, 3), nsmall = 3): one width for all entries, no "-0.000"
    cells = [f"{round(float(v), 3) + 0.0:.3f}" if np.isfinite(v) else "NaN" for v in corr.ravel()]
    width = max(map(len, cells))
    cells = [c.rjust(width) for c in cells]
    names = [str(n) for n in cov.index]
    rows, cols = r_abbreviate(names, 11)[1:], r_abbreviate(names, 6)[:-1]
    table = [[cells[i * p + j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    # print(<character matrix>, quote = FALSE): every column left-aligned, row names too
    name_width = max(map(len, rows))
    widths = [max(len(cols[j]), *(len(r[j]) for r in table)) for j in range(p - 1)]
    lines = [" " * name_width + " " + " ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += [rows[i].ljust(name_width) + " " + " ".join(c.ljust(w) for c, w in zip(table[i], widths))
              for i in range(p - 1)]
    return [line.rstrip() for line in lines]
