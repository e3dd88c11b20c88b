"""Names a formula takes from the caller's scope: ``I(x * k)``, ``npy.log1p(x)``, ``f(x)``.

The public fitting functions capture their caller's frame (as patsy's
``EvalEnvironment`` and formulaic's ``capture_context`` do) and the design
builders keep only the names the formula mentions, in a
:class:`FormulaContext`. Results keep that small mapping, so
``predict(newdata)`` evaluates the formula the same way after the caller's
variables have gone out of scope, and never a frame (which would keep every
local alive and cannot be pickled).
"""

from __future__ import annotations

import importlib
import pickle
import re
import sys
import types
import warnings
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import numpy as np
from formulaic.transforms import TRANSFORMS

# Identifiers in formula text (a backticked name is a column, never a scope name).
_IDENTIFIER = re.compile(r"`[^`]*`|([A-Za-z_][A-Za-z0-9_]*)")

#: Names every formula may use even if the caller's scope lacks them (formulaic's own transforms,
#: ``np``, ``log``, ``C``, ``center``, ... come from formulaic itself).
DEFAULT_NAMES: dict[str, Any] = {"numpy": np, "sqrt": np.sqrt}

class FormulaContext(Mapping):
    """The caller's variables, functions and modules that a formula uses, by name.

    A read-only mapping. It pickles modules by name and other values by
    value; a value that cannot be pickled (a lambda, a function defined
    inside another function) is left out with a warning, and a later
    evaluation that needs it says so.

    Examples
    --------
    >>> import pickle, math
    >>> ctx = FormulaContext({"k": 2.0, "m": math})
    >>> back = pickle.loads(pickle.dumps(ctx))
    >>> back["k"], back["m"] is math
    (2.0, True)
    """

    def __init__(self, values: Mapping[str, Any] | None = None, lost: tuple[str, ...] = ()) -> None:
        self._values = dict(values or {})
        #: Names whose values could not be pickled with a result (empty unless this is an unpickled copy).
        self.lost = tuple(lost)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        lost = f", lost={list(self.lost)}" if self.lost else ""
        return f"FormulaContext({sorted(self._values)}{lost})"

    # Copies share the values (a copy of a result must not drop a lambda the way pickling does).
    def __copy__(self) -> FormulaContext:
        return self

    def __deepcopy__(self, memo: dict) -> FormulaContext:
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        modules, values, lost = {}, {}, list(self.lost)
        for name, value in self._values.items():
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
                continue
            try:
                pickle.dumps(value)
            except (pickle.PicklingError, AttributeError, TypeError):  # a local object, a lambda, a C object
                lost.append(name)
                continue
            values[name] = value
        if len(lost) > len(self.lost):
            warnings.warn(
                f"the formula uses {', '.join(repr(n) for n in lost[len(self.lost):])} from the caller's scope, "
                "which cannot be pickled (a lambda or a function defined inside another function), so the "
                "pickled result leaves it out: predict(newdata) on the unpickled copy cannot evaluate it. "
                "Define it at module level to keep it",
                UserWarning,
                stacklevel=2,
            )
        return _restore, (values, modules, tuple(lost))


def _restore(values: dict[str, Any], modules: dict[str, str], lost: tuple[str, ...]) -> FormulaContext:
    """Rebuild a pickled :class:`FormulaContext` (modules imported again by name)."""
    restored = dict(values)
    for name, module in modules.items():
        try:
            restored[name] = importlib.import_module(module)
        except ImportError:
            lost += (name,)
    return FormulaContext(restored, lost)


class CallerScope:
    """The local and global names of a caller's frame (locals first), held only while a design is built.

    Not kept by designs or results: :func:`formula_context` copies out the names a formula uses.
    """

    def __init__(self, local_names: Mapping[str, Any], global_names: Mapping[str, Any]) -> None:
        self.local_names = local_names
        self.global_names = global_names

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.local_names:
            return self.local_names[name]
        return self.global_names.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.local_names or name in self.global_names


def caller_context(depth: int = 1) -> CallerScope | None:
    """The scope of the caller of the function that calls this (``depth`` frames further up).

    Call it in a public fitting function, at its top: ``lmm_design(..., context=caller_context())``.

    Examples
    --------
    >>> def fit(formula):
    ...     return caller_context()
    >>> k = 3
    >>> fit("y ~ I(x * k)").get("k")
    3
    """
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:  # not CPython: names must then be data columns or formulaic's own
        return None
    frame = getframe(depth + 1)  # multilevel.lmm(...) calls lmm() with no frame between (callable_module.py)
    try:
        return CallerScope(frame.f_locals, frame.f_globals)
    finally:
        del frame  # no reference cycle through this frame


def formula_identifiers(*texts: str) -> list[str]:
    """Root identifiers in formula text, in order (``npy.log1p(x)`` gives ``npy`` and ``x``)."""
    found: list[str] = []
    for text in texts:
        for match in _IDENTIFIER.finditer(text):
            name = match.group(1)
            if name and name not in found and not _is_attribute(text, match.start()):
                found.append(name)
    return found


def _is_attribute(text: str, start: int) -> bool:
    """Whether the identifier at ``start`` follows a '.', as ``log1p`` in ``npy.log1p``."""
    j = start - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    return j >= 0 and text[j] == "."


def formula_context(scope: Any, *texts: str, columns: Collection[str] = ()) -> FormulaContext:
    """The names of ``texts`` (formula pieces) found in ``scope``, except data ``columns`` and formulaic's own.

    ``scope`` is a :class:`CallerScope`, a mapping, a :class:`FormulaContext` (returned as it is) or
    None. A data column wins over a variable of the same name (as formulaic evaluates them), so it is
    not copied out of the scope: a result does not keep the caller's ``x`` array next to the data's
    ``x``. Names formulaic provides itself (``C``, ``I``, ``np``, ``log``, ``center``, ``scale``,
    ``poly``, ``bs``, ...) keep formulaic's meaning even if the caller has a variable of that name.

    Examples
    --------
    >>> formula_context({"k": 2, "x": [1, 2], "scale": 10.0, "unused": 1}, "y ~ I(x * k) + scale(z)",
    ...                 columns=["x", "y", "z"])
    FormulaContext(['k'])
    """
    if isinstance(scope, FormulaContext):
        return scope
    texts = tuple(t for t in texts if isinstance(t, str))  # a formula that is not a string is refused later
    columns = set(columns)
    values: dict[str, Any] = {}
    for name in formula_identifiers(*texts):
        if name in columns or name in TRANSFORMS or name.startswith("__"):
            continue
        if scope is not None and name in scope:
            values[name] = scope.get(name)
        elif name in DEFAULT_NAMES:
            values[name] = DEFAULT_NAMES[name]
    return FormulaContext(values)
