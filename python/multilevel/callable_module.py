"""Subpackages that are also their main function.

``multilevel.lmm`` is both the function that fits a linear mixed model and
the subpackage holding its modules (``multilevel.lmm.design``,
``multilevel.lmm.result_at_theta``, ...). A plain function of that name in
``multilevel/__init__.py`` would hide the subpackage, so that
``multilevel.lmm.result_at_theta`` and ``import multilevel.lmm.residual``
failed. Instead the subpackage itself is callable: calling it calls the
function, and its docstring and signature are the function's, so ``help()``
and IDEs show the function.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any


class CallableModule(types.ModuleType):
    """A module that is called as its entry-point function (one subclass per module, made by :func:`make_callable`).

    ``__call__`` is the function itself (a static method), not a wrapper, so
    no extra frame sits between the caller and the function: warnings raised
    with ``stacklevel`` still point at the caller's line.
    """

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # pickled by name, as functions are (partial(multilevel.lmm, ...) crosses a process pool)
        return importlib.import_module, (self.__name__,)


def make_callable(module_name: str, function: Callable[..., Any]) -> None:
    """Make the module ``module_name`` call ``function`` and describe itself as it.

    Examples
    --------
    >>> import multilevel, inspect
    >>> list(inspect.signature(multilevel.lmm).parameters)[:2]
    ['formula', 'data']
    >>> multilevel.lmm.result_at_theta.__name__
    'result_at_theta'
    """
    module = sys.modules[module_name]
    module.__class__ = type(f"{function.__name__}_module", (CallableModule,), {"__call__": staticmethod(function)})
    module.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    module.__doc__ = function.__doc__
