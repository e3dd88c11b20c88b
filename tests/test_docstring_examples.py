"""The runnable examples in the public docstrings stay runnable."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import multilevel

MODULES = sorted(
    # the compiled builds (_core_base, _core_avx2) and the module that loads one of them are left out
    m.name for m in pkgutil.walk_packages(multilevel.__path__, prefix="multilevel.")
    if not m.name.rsplit(".", 1)[-1].startswith("_core")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
