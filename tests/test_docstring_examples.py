"""The runnable examples in the public docstrings stay runnable."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import multilevel

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(multilevel.__path__, prefix="multilevel.") if not m.name.endswith("_core")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
